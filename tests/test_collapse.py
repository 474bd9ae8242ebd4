"""The collapse of heavy-tailed flows to a constant prediction: the check that stops it, and the
output bias that prevents it (started at the data's mean)."""
import importlib
import json
from datetime import date, timedelta

import h5py
import numpy as np
import pytest

import datasets
import main
import params
import st_resnet
import training


@pytest.fixture(autouse=True)
def fresh_params():
    importlib.reload(params)
    yield
    importlib.reload(params)


def test_spread_is_the_mean_per_cell_deviation_across_samples():
    y = np.zeros((4, 2, 3, 2))
    y[:, 0, 0, 0] = [0, 2, 0, 2]  # std 1 in one of 12 cells
    assert training.spread(y) == pytest.approx(1 / 12)
    assert training.spread(np.ones((5, 2, 2, 2)) * 7) == 0


def test_a_slowly_creeping_constant_prediction_is_caught_at_epoch_5():
    """A collapsed network's outputs vary across samples by ~1e-7 while its validation RMSE still
    creeps down by ~1e-7 an epoch (the RMSE rule alone never fires): the spread rule does, at
    epoch 5, and names the fix that applies."""
    rng = np.random.default_rng(0)
    y_true = rng.uniform(-1, -0.5, size=(64, 4, 3, 2))
    cfg = {"output_bias": False, "lr": 2e-4}
    rmses, ratios = [], []
    for epoch in range(1, 6):
        y_pred = np.full_like(y_true, -0.97 - 1e-7 * epoch) + rng.normal(0, 1e-7, y_true.shape)
        rmses.append(0.1039 - 1e-7 * epoch)
        ratios.append(training.spread_ratio(y_pred, y_true))
        training.check_collapse(rmses, cfg)  # moves by more than 1e-6 of itself over 3 epochs
        if epoch < 5:
            training.check_constant(ratios, cfg)  # too early to judge
    with pytest.raises(training.Collapsed, match="after 5 epochs the model predicts the same "
                                                 "frame.*--output_bias=True"):
        training.check_constant(ratios, cfg)
    with pytest.raises(training.Collapsed, match=r"--warmup_epochs=1\) or lower \(lr=0.0002\)"):
        training.check_constant(ratios, dict(cfg, output_bias=True))


@pytest.mark.parametrize("ratios", [
    [0.0002, 0.0004, 0.0037, 0.054, 0.3],     # BikeNYC improved, seed 2: leaves it in epoch 4
    [0.0002, 0.0002, 0.0002, 0.0004, 0.004],  # the same, two epochs later: still growing
    [0.5, 0.4, 0.6, 0.5, 0.45],               # learning
    [float("inf")] * 5])                      # constant targets say nothing
def test_a_network_leaving_the_constant_state_is_spared(ratios):
    training.check_constant(ratios, {"output_bias": False, "lr": 2e-4})


def test_learning_predictions_have_a_large_spread_ratio():
    y_true = np.random.default_rng(2).uniform(-1, 1, size=(32, 4, 3, 2))
    noisy = y_true + np.random.default_rng(3).normal(0, 0.1, y_true.shape)
    assert training.spread_ratio(noisy, y_true) > 0.5
    assert training.spread_ratio(np.zeros_like(y_true), y_true) == 0


def test_output_bias_starts_every_cell_at_its_mean():
    """With the bias set and every other weight 0, the untrained model predicts each cell's mean
    training frame (tanh of the atanh), clipped for cells at the range's ends."""
    frames = np.random.default_rng(1).poisson(3, size=(60, 3, 2, 2)).astype(np.float32)
    frames[:, 0, 0, :] = 0  # a cell never used: scaled to -1, clipped
    ds = datasets.FlowDataset(frames, np.arange(60), 24, datasets.build_index(
        np.arange(60), 24, 2, 0, 0), np.zeros((58, 0), np.float32), 10, "t")
    for activation in ("tanh", "linear"):
        start = training.output_bias_start(ds, activation)
        model = st_resnet.build_model(map_height=3, map_width=2, len_closeness=2, len_period=0,
                                      len_trend=0, external_dim=0, nb_residual_unit=1,
                                      nb_filters=4, output_activation=activation,
                                      output_bias=True)
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
        model.get_layer("output_bias").set_weights([start])
        pred = model.predict({"closeness": np.ones((2, 3, 2, 4))}, verbose=0)
        mean = ds.scaler.transform(frames[:ds.first_test_frame].mean(axis=0))
        np.testing.assert_allclose(pred[0, 1:], mean[1:], atol=1e-5)
        assert pred[0, 0, 0, 0] == pytest.approx(-0.999 if activation == "tanh" else -1, abs=1e-5)


def heavy_tailed_city(path, days=28, grid=(8, 8), seed=1):
    """Poisson flows whose cell levels are log-normal (sigma 3.5): after min-max scaling 89% of
    the values lie below -0.99, as in TaxiNYC."""
    rng = np.random.default_rng(seed)
    level = np.exp(rng.normal(0, 3.5, size=grid))
    hours = np.arange(24)
    profile = 0.2 + np.exp(-((hours - 8) / 2) ** 2 / 2) + np.exp(-((hours - 18) / 2) ** 2 / 2)
    rate = profile[None, :, None, None, None] * level * np.ones((days, 24, 2) + grid)
    data = rng.poisson(rate).reshape(days * 24, 2, *grid).astype(float)
    with h5py.File(path, "w") as f:
        f["data"] = data
        f["date"] = np.array([f"{date(2021, 3, 1) + timedelta(days=d):%Y%m%d}{s:02d}"
                              for d in range(days) for s in range(1, 25)], dtype="S10")
    return data


def test_heavy_tailed_flows_collapse_without_the_output_bias_and_train_with_it(tmp_path):
    data = heavy_tailed_city(tmp_path / "city.h5")
    assert (2 * data / data.max() - 1 < -0.99).mean() > 0.85
    args = [f"--dataset={tmp_path / 'city.h5'}", "--nb_filters=64", "--nb_residual_unit=2",
            "--epochs=5", "--epochs_cont=0", "--batch_size=8", "--days_test=2", "--verbose=0",
            f"--out_dir={tmp_path / 'runs'}"]
    with pytest.raises(training.Collapsed, match="after 5 epochs the model predicts the same "
                                                 "frame.*--output_bias=True"):
        main.main(args + ["--output_bias=False"])  # the paper's output
    importlib.reload(params)
    run_dir = main.main(args)  # the defaults for a flow file
    with open(f"{run_dir}/metrics.json") as f:
        metrics = json.load(f)
    assert metrics["rmse"] < metrics["rmse_last"]
