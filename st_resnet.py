"""The ST-ResNet skeleton (Zhang, Zheng, Qi, AAAI 2017, Figure 3), from inputs to output.

    closeness (H, W, 2*lc) --branch--+
    period    (H, W, 2*lp) --branch--+-- parametric fusion --+-- add -- [bias] -- tanh --> (H, W, 2)
    trend     (H, W, 2*lq) --branch--+                       |
    external  (ext,)       -- Dense(10) ReLU Dense(2HW) ReLU -+

A length of 0 drops a branch and its input; external_dim=0 drops the external component. The
bias (per cell and flow, output_bias=True) is not in the paper.
"""
import keras
from keras import layers

import modules

BRANCHES = ("closeness", "period", "trend")


def build_model(*, map_height, map_width, nb_flow=2, len_closeness, len_period, len_trend,
                external_dim, nb_residual_unit, nb_filters=64, batch_norm=False,
                output_activation="tanh", output_bias=False, name="st_resnet"):
    """Return the uncompiled ST-ResNet, a Keras model called `name`. Inputs are named closeness,
    period, trend, external. output_activation: tanh (paper) or linear (no squashing).
    output_bias: a learnable bias per cell and flow before the activation (layer "output_bias",
    started at 0; the caller may set it to the data's mean)."""
    lengths = dict(closeness=len_closeness, period=len_period, trend=len_trend)
    for key, value in dict(lengths, map_height=map_height, map_width=map_width, nb_flow=nb_flow,
                            external_dim=external_dim, nb_residual_unit=nb_residual_unit,
                            nb_filters=nb_filters).items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"build_model: {key} must be a non-negative int, got {value!r}")
    for key, value in dict(batch_norm=batch_norm, output_bias=output_bias).items():
        if not isinstance(value, bool):
            raise ValueError(f"build_model: {key} must be True or False, got {value!r}")
    if output_activation not in ("tanh", "linear"):
        raise ValueError(f"build_model: output_activation must be tanh or linear, got "
                         f"{output_activation!r}")
    if min(map_height, map_width, nb_flow, nb_filters) < 1:
        raise ValueError("build_model: map_height, map_width, nb_flow and nb_filters must be >= 1")
    if not any(lengths.values()):
        raise ValueError("build_model: len_closeness, len_period and len_trend are all 0; "
                         "at least one branch must be switched on")

    inputs, branch_outputs = [], {}
    for branch in BRANCHES:
        if lengths[branch]:
            x = keras.Input((map_height, map_width, nb_flow * lengths[branch]), name=branch)
            inputs.append(x)
            branch_outputs[branch] = modules.branch(x, nb_flow, nb_residual_unit, nb_filters,
                                                    batch_norm, name=branch)
    y = modules.fuse(branch_outputs)  # (batch, H, W, nb_flow)
    if external_dim:
        e = keras.Input((external_dim,), name="external")
        inputs.append(e)
        y = layers.Add(name="add_external")(
            [y, modules.external_component(e, map_height, map_width, nb_flow)])
    if output_bias:
        y = modules.CellBias(name="output_bias", dtype="float32")(y)
    # float32 under mixed precision
    y = layers.Activation(output_activation, name="output", dtype="float32")(y)
    return keras.Model(inputs, y, name=name)


def ensemble(members):
    """One model whose output is the mean of the members' outputs (ST-ResNets of the same inputs,
    each with its own name)."""
    inputs = [keras.Input(t.shape[1:], name=t.name) for t in members[0].inputs]
    y = layers.Average(name="average", dtype="float32")([m(inputs) for m in members])
    return keras.Model(inputs, y, name="st_resnet_ensemble")
