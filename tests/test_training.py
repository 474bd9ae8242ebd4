"""Tests of training.py: the compiled model (optimizer, loss, precision), the sample order, the
two-stage loop (best stage-1 weights kept, stage-2 schedule and weight averaging, warm-up) with
fit_one_epoch replaced by known weights, and the checks that stop a run that diverged or collapsed
to a constant prediction, with the output bias that prevents the collapse."""
import importlib
import json
from datetime import date, timedelta

import h5py
import numpy as np
import pytest

import datasets
import main
import params
import report
import settings
import st_resnet
import training

pytestmark = pytest.mark.usefixtures("fresh_params")


# ---- the compiled model and the sample order -----------------------------------------------------

@pytest.mark.smoke
def test_training_options_reach_the_compiled_model(synthetic_dir):
    settings.apply_overrides(["--weight_decay=0.001", "--loss=huber", "--huber_delta=0.25"])
    cfg = settings.resolve_config()
    ds = datasets.load_dataset("synthetic", str(synthetic_dir), 1, 0, 0, 1, True, False, False,
                               None, "", "")
    model = training.build_and_compile(cfg, ds)
    assert type(model.optimizer).__name__ == "AdamW"
    assert model.optimizer.weight_decay == pytest.approx(0.001)
    assert type(model.loss).__name__ == "Huber"
    # quadratic up to the threshold, linear beyond: 0.5 e^2 at e = 0.2, 0.25 (e - 0.125) at 1
    y = np.zeros((1, 2), np.float32)
    np.testing.assert_allclose(float(model.loss(y, y + [[0.2, 1.0]])),
                               (0.5 * 0.2 ** 2 + 0.25 * (1.0 - 0.125)) / 2, rtol=1e-5)


def test_mixed_precision_computes_in_bfloat16_with_float32_weights_and_output(synthetic_dir):
    import keras
    settings.apply_overrides(["--precision=mixed_bfloat16", "--nb_filters=4", "--nb_residual_unit=1"])
    cfg = settings.resolve_config()
    ds = datasets.load_dataset("synthetic", str(synthetic_dir), 3, 4, 4, 10, True, False, False,
                               None, "", "")
    keras.mixed_precision.set_global_policy(cfg["precision"])
    try:
        model = training.build_and_compile(cfg, ds)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(c.compute_dtype == "bfloat16" for c in convs)
    assert all(w.dtype == "float32" for w in model.weights)
    pred = report.predict_test(model, ds)
    assert model.output.dtype == "float32" and np.isfinite(pred).all()


def test_epoch_order_is_a_permutation_fixed_by_seed_stage_and_epoch():
    rows = np.arange(10, 60)
    a = training.epoch_order(rows, 7, 1, 3)
    assert sorted(a) == list(rows) and not np.array_equal(a, rows)
    np.testing.assert_array_equal(a, training.epoch_order(rows, 7, 1, 3))
    for other in [(8, 1, 3), (7, 2, 3), (7, 1, 4)]:
        assert not np.array_equal(a, training.epoch_order(rows, *other))


# ---- the two-stage loop --------------------------------------------------------------------------

def test_stage2_rate_is_constant_by_default_and_a_half_cosine_when_asked():
    cfg = {"lr": 2e-4, "lr_cont": 0.0, "lr_schedule": "constant", "epochs_cont": 4}
    assert [training.stage2_lr(cfg, e) for e in range(4)] == [2e-4] * 4
    cfg.update(lr_cont=1e-3, lr_schedule="cosine")
    rates = [training.stage2_lr(cfg, e) for e in range(4)]
    # 1e-3 * (1 + cos(pi e / 4)) / 2 for e = 0..3
    np.testing.assert_allclose(rates, [1e-3, 1e-3 * (2 + 2 ** 0.5) / 4, 5e-4,
                                       1e-3 * (2 - 2 ** 0.5) / 4])


@pytest.mark.parametrize("tune_days", [0, 1])
def test_the_loop_keeps_the_best_stage1_weights_and_averages_stage2s_last_epochs(
        tmp_path, monkeypatch, synthetic_dir, tune_days):
    """Each 'epoch' sets every weight to a known value; what the loop keeps is then known:
    stage 1's best epoch (by validation RMSE), stage 2's mean of its last average_last epochs,
    and the stage-2 rates of the schedule. A tuning run scores its period after each stage-2
    epoch, with the weights of that epoch."""
    settings.apply_overrides(["--nb_filters=2", "--nb_residual_unit=1", "--epochs=6", "--patience=2",
                          "--epochs_cont=5", "--average_last=3", "--lr_schedule=cosine",
                          "--verbose=0", "--len_period=0", "--len_trend=0",
                          f"--tune_days={tune_days}"])
    cfg = settings.resolve_config()
    ds = datasets.load_dataset("synthetic", str(synthetic_dir), 3, 0, 0, 1, True, False, False,
                               None, "", "", tune_days=tune_days)
    model = training.build_and_compile(cfg, ds)
    fit_rows, val_rows = training.split_rows(ds, cfg["validation_fraction"])
    values = {1: [0.0, 0.001, 5.0, 6.0, 7.0, 8.0], 2: [0.1, 0.2, 0.3, 0.5, 0.9]}  # best: epoch 2
    rates = []

    def fake_epoch(model, ds, rows, cfg, stage, epoch):
        rates.append(float(np.asarray(model.optimizer.learning_rate)))
        model.set_weights([np.full(w.shape, values[stage][epoch], np.float32)
                           for w in model.get_weights()])
        return 0.0, 0.0
    monkeypatch.setattr(training, "fit_one_epoch", fake_epoch)

    def fake_evaluate(data, verbose=0, return_dict=True):  # best where the weights are 0.001
        error = abs(float(model.get_weights()[0].flat[0]) - 0.001) + 0.1
        return {"loss": error ** 2, "rmse": error}
    model.evaluate = fake_evaluate
    history, stage1_pred, _ = training.train(model, ds, cfg, fit_rows, val_rows, str(tmp_path),
                                             lambda m: m.get_weights()[0].copy())
    assert history["stage"] == [1, 1, 1, 1, 2, 2, 2, 2, 2]  # patience 2 stopped after epoch 4
    np.testing.assert_allclose(stage1_pred, 0.001)  # the best of stage 1 went on
    for w in model.get_weights():
        np.testing.assert_allclose(w, (0.3 + 0.5 + 0.9) / 3, rtol=1e-6)
    np.testing.assert_allclose(rates[4:], [training.stage2_lr(cfg, e) for e in range(5)],
                               rtol=1e-6)
    if tune_days:
        np.testing.assert_allclose(history["val_rmse"][4:], [abs(v - 0.001) + 0.1
                                                             for v in values[2]], rtol=1e-6)
    else:
        assert np.isnan(history["val_rmse"][4:]).all()


@pytest.mark.parametrize("crash_at", [None, 5])
def test_a_plateau_cuts_stage1s_rate_from_the_best_weights_then_ends_stage1(
        tmp_path, monkeypatch, synthetic_dir, crash_at):
    """plateau_factor=0.5, plateau_cuts=1, patience 2. Validation error |w - 0.002| + 0.1 with
    each epoch setting every weight to a known value: epoch 2 (w = 0.001) is best, epochs 3-4
    make a plateau, so epoch 5 starts from epoch 2's weights at half the rate, finds the best
    (0.002), and the plateau of epochs 6-7 ends stage 1 (no cut left). A run that crashes in
    epoch 6 and resumes goes on at the cut rate to the same end."""
    settings.apply_overrides(["--nb_filters=2", "--nb_residual_unit=1", "--epochs=20",
                              "--patience=2", "--plateau_factor=0.5", "--plateau_cuts=1",
                              "--epochs_cont=0", "--verbose=0", "--len_period=0", "--len_trend=0"])
    cfg = settings.resolve_config()
    ds = datasets.load_dataset("synthetic", str(synthetic_dir), 3, 0, 0, 1, True, False, False,
                               None, "", "")
    fit_rows, val_rows = training.split_rows(ds, cfg["validation_fraction"])
    values = [0.0, 0.001, 5.0, 6.0, 0.002, 7.0, 8.0, 9.0]
    seen = {}  # epoch: (rate, the first weight at its start)

    def fake_epoch(model, ds, rows, cfg, stage, epoch):
        if epoch == crash_at and not seen.get("crashed"):
            seen["crashed"] = True
            raise KeyboardInterrupt
        seen[epoch] = (float(np.asarray(model.optimizer.learning_rate)),
                       float(model.get_weights()[0].flat[0]))
        model.set_weights([np.full(w.shape, values[epoch], np.float32)
                           for w in model.get_weights()])
        return 0.0, 0.0
    monkeypatch.setattr(training, "fit_one_epoch", fake_epoch)
    monkeypatch.setattr(training, "check_constant", lambda ratios, cfg: None)  # constant weights

    def run():
        model = training.build_and_compile(cfg, ds)
        model.evaluate = lambda data, verbose=0, return_dict=True: {
            "loss": 0.0, "rmse": abs(float(model.get_weights()[0].flat[0]) - 0.002) + 0.1}
        return model, training.train(model, ds, cfg, fit_rows, val_rows, str(tmp_path),
                                     lambda m: None)
    if crash_at:
        with pytest.raises(KeyboardInterrupt):
            run()
    model, (history, _, _) = run()
    assert history["stage"] == [1] * 7
    np.testing.assert_allclose([seen[e][0] for e in range(7)], [2e-4] * 4 + [1e-4] * 3)
    assert seen[4][1] == pytest.approx(0.001)  # the cut restarted from epoch 2's weights
    np.testing.assert_allclose(model.get_weights()[0], 0.002)  # stage 1's best went on
    cfg_off = dict(cfg, plateau_factor=0.0)  # off: the paper's rule, patience 2 ends at epoch 4
    assert training.plateau_epochs_left(cfg_off, 0, 0) == 2


@pytest.mark.smoke  # real training steps
def test_warmup_ramps_stage1s_rate_step_by_step_and_is_off_by_default(synthetic_dir):
    """Over n = 1.5 epochs of 4 steps the rate of stage-1 step s is lr (s + 1) / 6, then lr;
    later epochs and stage 2 get no callback, and a real fit applies it."""
    settings.apply_overrides(["--nb_filters=2", "--nb_residual_unit=1", "--verbose=0",
                          "--len_period=0", "--len_trend=0", "--batch_size=8",
                          "--warmup_epochs=1.5"])
    cfg = settings.resolve_config()

    class Fake:  # what the callback touches: model.optimizer.learning_rate
        optimizer = type("Opt", (), {"learning_rate": None})()
    rates = []
    for epoch in range(2):
        callback = training.warmup_callback(cfg, epoch, 4)
        callback.set_model(Fake())
        for batch in range(4):
            callback.on_train_batch_begin(batch)
            rates.append(Fake.optimizer.learning_rate)
    np.testing.assert_allclose(rates, [cfg["lr"] * min(1, (s + 1) / 6) for s in range(8)])
    assert training.warmup_callback(cfg, 2, 4) is None

    ds = datasets.load_dataset("synthetic", str(synthetic_dir), 3, 0, 0, 1, True, False, False,
                               None, "", "")
    model = training.build_and_compile(cfg, ds)
    rate = lambda: float(np.asarray(model.optimizer.learning_rate))  # noqa: E731
    training.fit_one_epoch(model, ds, np.arange(32), cfg, 1, 0)  # steps 0-3: the last at 4/6
    assert rate() == pytest.approx(cfg["lr"] * 4 / 6)
    training.fit_one_epoch(model, ds, np.arange(32), cfg, 2, 0)  # stage 2 leaves it alone
    assert rate() == pytest.approx(cfg["lr"] * 4 / 6)
    training.fit_one_epoch(model, ds, np.arange(32), cfg, 1, 1)
    assert rate() == pytest.approx(cfg["lr"])
    importlib.reload(params)
    assert params.warmup_epochs == 0 and "warmup_epochs" not in params.PRESETS["paper"]


# ---- divergence and collapse ---------------------------------------------------------------------

def test_a_diverged_loss_stops_with_a_clear_error(tmp_path, monkeypatch, synthetic_dir):
    settings.apply_overrides(["--nb_filters=2", "--nb_residual_unit=1", "--epochs=3", "--verbose=0",
                          "--len_period=0", "--len_trend=0"])
    cfg = settings.resolve_config()
    ds = datasets.load_dataset("synthetic", str(synthetic_dir), 3, 0, 0, 1, True, False, False,
                               None, "", "")
    model = training.build_and_compile(cfg, ds)
    monkeypatch.setattr(training, "fit_one_epoch", lambda *a: (float("nan"), float("nan")))
    with pytest.raises(training.Diverged, match="diverged in stage 1, epoch 1: loss nan.*Lower "
                                                "the learning rate"):
        training.train(model, ds, cfg, *training.split_rows(ds, 0.1), str(tmp_path), lambda m: None)


def test_a_collapse_to_a_constant_prediction_stops_stage1_with_the_fix(tmp_path, monkeypatch,
                                                                      synthetic_dir):
    """Three epochs with the same validation RMSE (to 1e-6) stop the run naming the fixes;
    ones that still move by 1e-5, or a validation RMSE of 0, do not."""
    settings.apply_overrides(["--nb_filters=2", "--nb_residual_unit=1", "--epochs=4", "--verbose=0",
                          "--len_period=0", "--len_trend=0", "--patience=10", "--epochs_cont=0"])
    cfg = settings.resolve_config()
    ds = datasets.load_dataset("synthetic", str(synthetic_dir), 3, 0, 0, 1, True, False, False,
                               None, "", "")
    model = training.build_and_compile(cfg, ds)
    monkeypatch.setattr(training, "fit_one_epoch", lambda *a: (0.00544, 0.1592))
    vals = iter([0.2, 0.1738, 0.1738, 0.1738])
    model.evaluate = lambda *a, **k: {"loss": 0.0, "rmse": next(vals)}
    with pytest.raises(training.Collapsed, match=r"stayed at 0.1738 for 3 epochs \(epochs 2-4\)"
                                                 r".*--output_bias=True.*--warmup_epochs=1"):
        training.train(model, ds, cfg, *training.split_rows(ds, 0.1), str(tmp_path / "a"),
                       lambda m: None)
    # still moving by 1e-5, or a perfect fit: not a collapse
    for i, run in enumerate(([0.2, 0.1738, 0.17381, 0.1738], [0.2, 0.0, 0.0, 0.0])):
        vals = iter(run)
        history, _, _ = training.train(model, ds, cfg, *training.split_rows(ds, 0.1),
                                       str(tmp_path / f"b{i}"), lambda m: None)
        assert history["stage"] == [1, 1, 1, 1]


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
    data = heavy_tailed_city(tmp_path / "city.h5", days=14)  # collapses in 5 epochs (10 not)
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


def test_each_epoch_line_says_how_long_the_run_has_to_go():
    assert [training.duration(s) for s in (0, 45, 600, 5400, 7500)] == [
        "0 s", "45 s", "10 min", "1 h 30 min", "2 h 05 min"]
    cfg = dict(epochs=500, epochs_cont=100, patience=5, plateau_factor=0.0)
    took = {1: [60.0, 56.0], 2: []}   # a stage-2 epoch: 58 s x 8424 / 7581 samples = 64.4 s
    assert training.time_to_go(cfg, 1, 2, 0, took, 7581, 8424) == (
        "to go: stage 1 ends within 5 epochs (5 min) unless val_rmse improves, then stage 2 "
        "1 h 47 min")
    # patience nearly used up; the epoch limit bounds it too; an ensemble's later members
    assert training.time_to_go(dict(cfg, epochs=3), 1, 2, 4, took, 7581, 8424).startswith(
        "to go: stage 1 ends within 1 epoch (58 s)")
    assert training.time_to_go(dict(cfg, members_after=2), 1, 2, 5, took, 7581, 8424) == (
        "to go: stage 2 1 h 47 min, then 2 more member(s) of about 1 h 49 min each")
    assert training.time_to_go(dict(cfg, epochs_cont=0), 1, 2, 5, took, 7581, 8424) == (
        "to go: the evaluation")
    # plateau cuts still allowed add a whole patience each to the bound
    plateau = dict(cfg, plateau_factor=0.5, plateau_cuts=2)
    assert training.time_to_go(plateau, 1, 2, 3, took, 7581, 8424, cuts=1).startswith(
        "to go: stage 1 ends within 7 epochs (7 min) unless val_rmse improves")
    # in stage 2, stage 2's own epochs time it
    took = {1: [60.0] * 20, 2: [70.0] * 10}
    assert training.time_to_go(cfg, 2, 10, 5, took, 7581, 8424) == "to go: 1 h 45 min"
    assert training.time_to_go(cfg, 2, 100, 5, took, 7581, 8424) == "to go: the evaluation"
