"""st_resnet.py and modules.py, the model: exact parameter counts, switchable branches, the fusion
layer, a forward pass checked against an independent NumPy implementation of the paper's equations,
and save/load."""
import keras
import numpy as np
import pytest

import modules
import st_resnet

pytestmark = pytest.mark.smoke

TAXIBJ = dict(map_height=32, map_width=32, len_closeness=3, len_period=1, len_trend=1,
              external_dim=28, nb_residual_unit=12)
BIKENYC = dict(map_height=16, map_width=8, len_closeness=3, len_period=4, len_trend=4,
               external_dim=8, nb_residual_unit=4)


def test_parameter_counts_match_the_papers_layer_list():
    assert st_resnet.build_model(**TAXIBJ).count_params() == 2_697_192
    assert st_resnet.build_model(**BIKENYC).count_params() == 906_272


def test_batch_norm_adds_four_vectors_per_bn_layer_half_trainable():
    model = st_resnet.build_model(**BIKENYC, batch_norm=True)
    n_bn = 3 * 4 * 2  # branches x units x BN layers per unit
    assert model.count_params() == 906_272 + n_bn * 4 * 64
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 906_272 + n_bn * 2 * 64


def test_inputs_outputs_and_switched_off_parts():
    model = st_resnet.build_model(**BIKENYC)
    assert [x.name for x in model.inputs] == ["closeness", "period", "trend", "external"]
    assert tuple(model.inputs[0].shape) == (None, 16, 8, 6)
    assert tuple(model.inputs[1].shape) == (None, 16, 8, 8)
    assert tuple(model.output.shape) == (None, 16, 8, 2)

    no_period = st_resnet.build_model(**dict(BIKENYC, len_period=0))
    assert [x.name for x in no_period.inputs] == ["closeness", "trend", "external"]
    assert not any(layer.name.startswith("period") for layer in no_period.layers)

    closeness_only = st_resnet.build_model(**dict(BIKENYC, len_period=0, len_trend=0,
                                                  external_dim=0))
    assert [x.name for x in closeness_only.inputs] == ["closeness"]
    names = [layer.name for layer in closeness_only.layers]
    assert not any("fusion" in n or "external" in n for n in names)


def test_a_linear_output_is_the_tanh_outputs_input():
    """output_activation=linear drops only the final tanh: same weights, and tanh of the linear
    model's output is the paper model's output; its values can leave [-1, 1]."""
    small = dict(BIKENYC, nb_residual_unit=1, nb_filters=4)
    paper = st_resnet.build_model(**small)
    linear = st_resnet.build_model(**small, output_activation="linear")
    assert linear.count_params() == paper.count_params()
    rng = np.random.default_rng(0)
    linear.set_weights([rng.normal(0, 1, w.shape).astype(np.float32) for w in paper.get_weights()])
    paper.set_weights(linear.get_weights())
    x = [rng.normal(0, 1, (5,) + tuple(t.shape[1:])).astype(np.float32) for t in paper.inputs]
    z = np.asarray(linear(x))
    np.testing.assert_allclose(np.asarray(paper(x)), np.tanh(z), rtol=1e-5, atol=1e-6)
    assert np.abs(z).max() > 1
    with pytest.raises(ValueError, match="output_activation must be tanh or linear"):
        st_resnet.build_model(**small, output_activation="relu")


@pytest.mark.parametrize("bad", [dict(len_closeness=0, len_period=0, len_trend=0),
                                 dict(len_closeness=-1), dict(nb_filters=0),
                                 dict(nb_residual_unit=1.5)])
def test_bad_arguments_raise_value_error(bad):
    with pytest.raises(ValueError):
        st_resnet.build_model(**dict(BIKENYC, **bad))


def test_fusion_weight_starts_uniform_and_multiplies_elementwise():
    keras.utils.set_random_seed(0)
    layer = modules.ParametricFusionWeight()
    x = np.random.default_rng(0).normal(size=(3, 10, 12, 2)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    w = keras.ops.convert_to_numpy(layer.w)
    assert w.shape == (10, 12, 2)
    assert w.min() >= 0.0 and w.max() < 1.0 and w.std() > 0.2  # uniform [0, 1) has std 0.29
    np.testing.assert_allclose(y, x * w[None], rtol=1e-6)
    clone = modules.ParametricFusionWeight.from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), y)


# ---- an independent NumPy implementation of Eqs. 2-5 --------------------------------------------

def conv_same(x, kernel, bias):
    """3x3 'same' cross-correlation, channels-last. x (B, H, W, C), kernel (3, 3, C, F)."""
    b, h, w, _ = x.shape
    p = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    out = np.zeros((b, h, w, kernel.shape[-1]))
    for i in range(3):
        for j in range(3):
            out += p[:, i:i + h, j:j + w, :] @ kernel[i, j]
    return out + bias


def relu(x):
    return np.maximum(x, 0)


def numpy_st_resnet(model, inputs, nb_residual_unit):
    weights = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}

    def conv(x, name):
        return conv_same(x, weights[f"{name}/kernel"], weights[f"{name}/bias"])

    total = 0
    for b in ("closeness", "period", "trend"):
        x = conv(inputs[b], f"{b}_conv1")
        for u in range(1, nb_residual_unit + 1):
            f = conv(relu(x), f"{b}_res{u}_a_conv")
            f = conv(relu(f), f"{b}_res{u}_b_conv")
            x = x + f
        total = total + weights[f"{b}_fusion/w"] * conv(relu(x), f"{b}_conv2")
    e = relu(inputs["external"] @ weights["external_dense1/kernel"] + weights["external_dense1/bias"])
    e = relu(e @ weights["external_dense2/kernel"] + weights["external_dense2/bias"])
    return np.tanh(total + e.reshape(total.shape))


def test_forward_pass_equals_numpy_implementation_of_the_paper():
    keras.utils.set_random_seed(3)
    model = st_resnet.build_model(map_height=5, map_width=4, len_closeness=2, len_period=1,
                                  len_trend=1, external_dim=3, nb_residual_unit=2, nb_filters=4)
    rng = np.random.default_rng(1)
    inputs = {"closeness": rng.normal(size=(2, 5, 4, 4)), "period": rng.normal(size=(2, 5, 4, 2)),
              "trend": rng.normal(size=(2, 5, 4, 2)), "external": rng.normal(size=(2, 3))}
    expected = numpy_st_resnet(model, inputs, nb_residual_unit=2)
    got = model.predict({k: v.astype("float32") for k, v in inputs.items()}, verbose=0)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_saved_model_reloads_without_custom_objects_and_predicts_identically(tmp_path):
    keras.utils.set_random_seed(0)
    model = st_resnet.build_model(map_height=6, map_width=4, len_closeness=2, len_period=1,
                                  len_trend=1, external_dim=8, nb_residual_unit=1, nb_filters=4,
                                  batch_norm=True)
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)  # saved with its slots
    rng = np.random.default_rng(0)
    x = {"closeness": rng.normal(size=(8, 6, 4, 4)), "period": rng.normal(size=(8, 6, 4, 2)),
         "trend": rng.normal(size=(8, 6, 4, 2)), "external": rng.normal(size=(8, 8))}
    x = {k: v.astype("float32") for k, v in x.items()}
    model(x, training=True)  # a training-mode call moves the BN statistics
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # safe mode, no custom_objects
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))
