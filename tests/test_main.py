"""main.py: command-line overrides, per-dataset defaults, clear errors before training, and a tiny
end-to-end run that checks every artefact of a run folder."""
import csv
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import backend
import datasets
import params
import training
import flowfiles
import pipeline
import report
import run_folder
import settings

ROOT = Path(__file__).resolve().parents[1]

TINY = ["--nb_filters=4", "--nb_residual_unit=1", "--epochs=2", "--epochs_cont=1",
        "--batch_size=64"]


@pytest.fixture(autouse=True)
def fresh_params():
    importlib.reload(params)
    yield
    importlib.reload(params)


def run_main(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


# ---- configuration -------------------------------------------------------------------------------

def test_overrides_are_type_checked_and_applied():
    settings.apply_overrides(["--dataset=bikenyc", "--lr=1", "--batch_norm=True", "--len_trend=2"])
    assert params.dataset == "bikenyc"
    assert params.lr == 1.0 and isinstance(params.lr, float)
    assert params.batch_norm is True and params.len_trend == 2


@pytest.mark.parametrize("arg, message", [
    ("--nope=1", "unknown param 'nope'"),
    ("--lr=fast", "--lr expects a value of type float"),
    ("--batch_norm=1", "--batch_norm expects a value of type bool"),
    ("--len_closeness=2.5", "--len_closeness expects a value of type int"),
    ("lr=1", "--key=value"),
])
def test_bad_overrides_name_the_problem(arg, message):
    with pytest.raises(settings.ConfigError, match=message.replace("(", r"\(")):
        settings.apply_overrides([arg])


def test_dataset_defaults_are_the_papers_and_explicit_values_win():
    settings.apply_overrides(["--dataset=taxibj"])
    cfg = settings.resolve_config()
    assert (cfg["T"], cfg["len_closeness"], cfg["len_period"], cfg["len_trend"]) == (48, 3, 1, 1)
    assert (cfg["nb_residual_unit"], cfg["patience"], cfg["days_test"]) == (12, 2, 28)
    assert cfg["use_holiday"] and cfg["use_meteorology"]
    importlib.reload(params)
    settings.apply_overrides(["--dataset=bikenyc", "--nb_residual_unit=2"])
    cfg = settings.resolve_config()
    assert (cfg["T"], cfg["len_period"], cfg["len_trend"], cfg["patience"]) == (24, 4, 4, 5)
    assert cfg["nb_residual_unit"] == 2 and not cfg["use_meteorology"]


@pytest.mark.parametrize("args, message", [
    (["--len_closeness=0", "--len_period=0", "--len_trend=0"], "at least one branch"),
    (["--days_test=0"], "days_test must be >= 1"),
    (["--len_trend=-1"], "len_trend must be >= 0"),
    (["--dataset=paris"], "dataset must be one of"),
    (["--seed=-1"], "seed and threads must be >= 0"),
    (["--threads=-2"], "seed and threads must be >= 0"),
    (["--loss=l1"], "loss must be one of mse, mae, huber"),
    (["--preset=best"], "preset must be one of paper, improved"),
    (["--lr_schedule=step"], "lr_schedule must be one of constant, cosine"),
    (["--average_last=-2"], "average_last must be >= 0"),
    (["--warmup_epochs=-1"], "warmup_epochs must be >= 0"),
    (["--huber_delta=0"], "huber_delta must be > 0"),
    (["--output_activation=relu"], "output_activation must be one of tanh, linear"),
])
def test_impossible_settings_are_rejected(args, message):
    settings.apply_overrides(args)
    with pytest.raises(settings.ConfigError, match=message):
        settings.resolve_config()


def test_cli_errors_are_one_clear_line_and_leave_no_run_folder(tmp_path):
    result = run_main("--nb_filters=many", f"--out_dir={tmp_path / 'runs'}")
    assert result.returncode != 0
    assert "error: --nb_filters expects a value of type int" in result.stderr
    assert "Traceback" not in result.stderr

    result = run_main("--dataset=bikenyc", f"--data_dir={tmp_path}", f"--out_dir={tmp_path / 'runs'}")
    assert result.returncode != 0
    assert f"data file not found: {tmp_path / 'BikeNYC' / 'NYC14_M16x8_T60_NewEnd.h5'}" in result.stderr
    assert "data/README.md" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_too_little_data_is_reported_with_the_sample_counts(tmp_path):
    result = run_main("--days_test=200", f"--data_dir={tmp_path}", f"--out_dir={tmp_path / 'runs'}")
    assert result.returncode != 0
    assert "only 3720 samples" in result.stderr and "needs 4800" in result.stderr


def test_run_folders_are_never_reused(tmp_path):
    first = run_folder.new_run_dir(str(tmp_path), "x")
    (Path(first) / "model.keras").write_text("earlier result")
    second = run_folder.new_run_dir(str(tmp_path), "x")
    assert first != second and (Path(first) / "model.keras").read_text() == "earlier result"


# ---- end to end ----------------------------------------------------------------------------------

def test_tiny_end_to_end_run_writes_every_artefact(tmp_path):
    out = tmp_path / "runs"
    result = run_main(*TINY, "--threads=1", f"--data_dir={tmp_path / 'data'}", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "threads: 1 intra-op, 1 inter-op" in result.stdout
    (run_dir,) = list(out.iterdir())
    files = {p.name for p in run_dir.iterdir()}
    assert {"metrics.json", "model.keras", "scaler.json", "params.json", "history.csv",
            "test_predictions.h5",
            "learning_curves.png", "maps_busiest_slot.png", "series_busiest_region.png"} <= files
    assert not any("tmp" in f for f in files)
    for png in ("learning_curves.png", "maps_busiest_slot.png", "series_busiest_region.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("dataset", "n_train", "n_test", "rmse", "mae", "rmse_paper", "rmse_ha", "mae_ha",
                "rmse_last", "mae_last", "rmse_flow0", "rmse_flow1"):
        assert key in metrics
    assert metrics["dataset"] == "synthetic" and metrics["n_test"] == 240
    assert metrics["precision"] == "float32"  # the paper preset computes in float32
    assert metrics["n_train"] == 3720 - 240
    assert metrics["rmse_paper"] == pytest.approx(metrics["rmse"] * np.sqrt(128 / 81))
    assert metrics["rmse_stage1"] != metrics["rmse"]  # stage 2 changed the weights
    assert "after stage 1 only" in result.stdout
    assert all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))

    history = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [int(r["stage"]) for r in history] == [1, 1, 2]
    cfg = json.loads((run_dir / "params.json").read_text())
    assert cfg["nb_filters"] == 4 and cfg["nb_residual_unit"] == 1 and cfg["T"] == 24
    assert "ST-ResNet (this run)" in result.stdout and "HA (same weekday and slot)" in result.stdout
    assert "oneDNN custom operations" not in result.stderr  # TensorFlow's start-up notices hidden
    assert "stage 1 epoch 1/2 - " in result.stdout and "stage 2 epoch 1/1 - " in result.stdout

    # The run folder alone (model, scaler, params) reproduces the reported test RMSE. Importing
    # modules registers the fusion layer, so no custom_objects are needed.
    import keras
    import evaluation
    import modules  # noqa: F401
    model = keras.saving.load_model(run_dir / "model.keras")
    ds = datasets.load_dataset("synthetic", str(tmp_path / "data"), cfg["len_closeness"],
                               cfg["len_period"], cfg["len_trend"], cfg["days_test"],
                               cfg["use_meta"], cfg["use_holiday"], cfg["use_meteorology"])
    ds.scaler = datasets.MinMaxScaler.from_dict(json.loads((run_dir / "scaler.json").read_text()))
    rows = np.arange(ds.n_train, ds.n_samples)
    pred = ds.scaler.inverse_transform(
        model.predict(pipeline.batches(ds, rows, 256), verbose=0))
    assert evaluation.rmse(ds.targets(rows), pred) == pytest.approx(metrics["rmse"], rel=1e-5)

    # The test predictions file: the release layout, the truth beside it, the reported RMSE.
    import h5py
    with h5py.File(run_dir / "test_predictions.h5", "r") as f:
        assert f["data"].shape == (240, 2, 16, 8) and f["truth"].shape == (240, 2, 16, 8)
        np.testing.assert_array_equal(f["truth"][()], np.moveaxis(ds.targets(rows), -1, 1))
        assert f["date"][0] == flowfiles.format_timestamps(ds.target_slots[ds.n_train:][:1], 24)[0].encode()
        err = f["data"][()] - f["truth"][()]
    assert np.sqrt(np.mean(err ** 2)) == pytest.approx(metrics["rmse"], rel=1e-5)

    # The baselines, recomputed independently: X_{t-1} and the same weekday-and-slot mean.
    target_pos = ds.index["target"][rows]
    assert np.all(ds.slot_ids[target_pos - 1] == ds.slot_ids[target_pos] - 1)
    assert evaluation.rmse(ds.targets(rows), ds.frames[target_pos - 1]) == pytest.approx(
        metrics["rmse_last"], rel=1e-6)
    history_pos = np.arange(ds.first_test_frame)
    ha = np.stack([ds.frames[history_pos[(ds.slot_ids[history_pos] - s) % (7 * 24) == 0]].mean(0)
                   for s in ds.slot_ids[target_pos]])
    assert evaluation.rmse(ds.targets(rows), ha) == pytest.approx(metrics["rmse_ha"], rel=1e-6)

    # The same command again: a new folder, the first one untouched, identical metrics (seeded).
    before = (run_dir / "metrics.json").read_bytes()
    again = run_main(*TINY, "--threads=1", f"--data_dir={tmp_path / 'data'}", f"--out_dir={out}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list(out.iterdir())) == 2 and (run_dir / "metrics.json").read_bytes() == before
    (second,) = [p for p in out.iterdir() if p != run_dir]
    metrics2 = json.loads((second / "metrics.json").read_text())
    assert metrics2["rmse"] == metrics["rmse"] and metrics2["mae"] == metrics["mae"]


def test_taxibj_end_to_end_on_files_in_the_release_format(tmp_path):
    from test_datasets import write_taxibj  # writes BJ13..BJ16, BJ_Meteorology.h5, BJ_Holiday.txt
    write_taxibj(tmp_path / "data")
    out = tmp_path / "runs"
    result = run_main("--dataset=taxibj", "--batch_norm=True", "--days_test=1", "--nb_filters=4",
                      "--nb_residual_unit=1", "--epochs=1", "--epochs_cont=1",
                      f"--data_dir={tmp_path / 'data'}", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = list(out.iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dataset"] == "taxibj" and metrics["n_test"] == 48 and metrics["n_train"] == 432
    assert metrics["flow_names"] == ["inflow", "outflow"]
    cfg = json.loads((run_dir / "params.json").read_text())
    assert cfg["T"] == 48 and (cfg["len_closeness"], cfg["len_period"], cfg["len_trend"]) == (3, 1, 1)
    import keras
    import modules  # noqa: F401
    model = keras.saving.load_model(run_dir / "model.keras")
    assert [x.name for x in model.inputs] == ["closeness", "period", "trend", "external"]
    assert tuple(model.inputs[3].shape) == (None, 28)  # 8 metadata + 1 holiday + 19 meteorology
    assert any(layer.__class__.__name__ == "BatchNormalization" for layer in model.layers)
    assert "paper: ST-ResNet L12-E-BN" in result.stdout
    scaler = json.loads((run_dir / "scaler.json").read_text())
    assert set(scaler["external"]) == {"wind", "temperature"}
    assert scaler["external"]["wind"][0] < scaler["external"]["wind"][1]


def test_results_table_compares_each_paper_row_in_its_own_convention():
    m = {"flow_names": ["a", "b"], "paper_factor": 2.0}
    for s in ("", "_ha", "_last"):
        m.update({f"rmse{s}": 1.0, f"mae{s}": 1.0, f"rmse{s}_flow0": 1.0, f"rmse{s}_flow1": 1.0,
                  f"rmse_paper{s}": 2.0})
    taxibj = report.results_table(m, "taxibj").splitlines()
    bikenyc = report.results_table(m, "bikenyc").splitlines()
    header = taxibj[0]
    (row,) = [line for line in taxibj if "L12-E-BN" in line]
    assert row.rstrip().endswith("16.69") and len(row.rstrip()) == header.index("RMSE") + 4
    (row,) = [line for line in bikenyc if "ST-ResNet (L=4)" in line]
    assert row.rstrip().endswith("6.33") and len(row.rstrip()) == len(header)


def test_help_lists_every_param_and_exits_cleanly():
    result = run_main("--help")
    assert result.returncode == 0
    for key in ("dataset", "len_closeness", "epochs_cont", "out_dir"):
        assert f"--{key}=" in result.stdout


# ---- stage-2 options -----------------------------------------------------------------------------

def test_stage2_rate_is_constant_by_default_and_a_half_cosine_when_asked():
    cfg = {"lr": 2e-4, "lr_cont": 0.0, "lr_schedule": "constant", "epochs_cont": 4}
    assert [training.stage2_lr(cfg, e) for e in range(4)] == [2e-4] * 4
    cfg.update(lr_cont=1e-3, lr_schedule="cosine")
    rates = [training.stage2_lr(cfg, e) for e in range(4)]
    # 1e-3 * (1 + cos(pi e / 4)) / 2 for e = 0..3
    np.testing.assert_allclose(rates, [1e-3, 1e-3 * (2 + 2 ** 0.5) / 4, 5e-4,
                                       1e-3 * (2 - 2 ** 0.5) / 4])


def test_the_loop_keeps_the_best_stage1_weights_and_averages_stage2s_last_epochs(tmp_path,
                                                                                 monkeypatch):
    """Each 'epoch' sets every weight to a known value; what the loop keeps is then known:
    stage 1's best epoch (by validation RMSE), stage 2's mean of its last average_last epochs,
    and the stage-2 rates of the schedule."""
    settings.apply_overrides(["--nb_filters=2", "--nb_residual_unit=1", "--epochs=6", "--patience=2",
                          "--epochs_cont=5", "--average_last=3", "--lr_schedule=cosine",
                          "--verbose=0", "--len_period=0", "--len_trend=0"])
    cfg = settings.resolve_config()
    ds = datasets.load_dataset("synthetic", str(ROOT / "data"), 3, 0, 0, 1, True, False, False,
                               None, "", "")
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


def test_training_options_reach_the_compiled_model():
    settings.apply_overrides(["--weight_decay=0.001", "--loss=huber", "--huber_delta=0.25"])
    cfg = settings.resolve_config()
    ds = datasets.load_dataset("synthetic", str(ROOT / "data"), 1, 0, 0, 1, True, False, False,
                               None, "", "")
    model = training.build_and_compile(cfg, ds)
    assert type(model.optimizer).__name__ == "AdamW"
    assert model.optimizer.weight_decay == pytest.approx(0.001)
    assert type(model.loss).__name__ == "Huber"
    # quadratic up to the threshold, linear beyond: 0.5 e^2 at e = 0.2, 0.25 (e - 0.125) at 1
    y = np.zeros((1, 2), np.float32)
    np.testing.assert_allclose(float(model.loss(y, y + [[0.2, 1.0]])),
                               (0.5 * 0.2 ** 2 + 0.25 * (1.0 - 0.125)) / 2, rtol=1e-5)


def test_warmup_ramps_stage1s_rate_step_by_step_and_is_off_by_default():
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

    ds = datasets.load_dataset("synthetic", str(ROOT / "data"), 3, 0, 0, 1, True, False, False,
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


def test_mixed_precision_computes_in_bfloat16_with_float32_weights_and_output():
    import keras
    settings.apply_overrides(["--precision=mixed_bfloat16", "--nb_filters=4", "--nb_residual_unit=1"])
    cfg = settings.resolve_config()
    ds = datasets.load_dataset("synthetic", str(ROOT / "data"), 3, 4, 4, 10, True, False, False,
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


def test_a_preset_lays_its_settings_over_the_papers_and_the_command_line_wins():
    settings.apply_overrides(["--dataset=bikenyc"])
    paper = settings.resolve_config()
    assert (paper["lr_schedule"], paper["average_last"], paper["lr_cont"]) == ("constant", 0, 0.0)
    importlib.reload(params)
    settings.apply_overrides(["--dataset=bikenyc", "--preset=improved", "--average_last=5"])
    cfg = settings.resolve_config()
    preset = params.PRESETS["improved"]
    assert preset and all(cfg[k] == v for k, v in preset.items() if k != "average_last")
    assert cfg["average_last"] == 5
    assert {k: v for k, v in cfg.items() if k not in preset and k != "preset"} == \
        {k: v for k, v in paper.items() if k not in preset and k != "preset"}


def test_a_diverged_loss_stops_with_a_clear_error(tmp_path, monkeypatch):
    settings.apply_overrides(["--nb_filters=2", "--nb_residual_unit=1", "--epochs=3", "--verbose=0",
                          "--len_period=0", "--len_trend=0"])
    cfg = settings.resolve_config()
    ds = datasets.load_dataset("synthetic", str(ROOT / "data"), 3, 0, 0, 1, True, False, False,
                               None, "", "")
    model = training.build_and_compile(cfg, ds)
    monkeypatch.setattr(training, "fit_one_epoch", lambda *a: (float("nan"), float("nan")))
    with pytest.raises(training.Diverged, match="diverged in stage 1, epoch 1: loss nan.*Lower "
                                                "the learning rate"):
        training.train(model, ds, cfg, *training.split_rows(ds, 0.1), str(tmp_path), lambda m: None)


def test_a_collapse_to_a_constant_prediction_stops_stage1_with_the_fix(tmp_path, monkeypatch):
    """Three epochs with the same validation RMSE (to 1e-6) stop the run naming the fixes;
    ones that still move by 1e-5, or a validation RMSE of 0, do not."""
    settings.apply_overrides(["--nb_filters=2", "--nb_residual_unit=1", "--epochs=4", "--verbose=0",
                          "--len_period=0", "--len_trend=0", "--patience=10", "--epochs_cont=0"])
    cfg = settings.resolve_config()
    ds = datasets.load_dataset("synthetic", str(ROOT / "data"), 3, 0, 0, 1, True, False, False,
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


@pytest.mark.parametrize("flags, expected", [
    (["fpu", "avx512f", "avx512_bf16"], "mixed_bfloat16"),
    (["fpu", "amx_tile", "amx_bf16"], "mixed_bfloat16"),
    (["fpu", "avx2", "avx512f"], "float32"),  # bfloat16 would be emulated: slower, not faster
    ([], "float32"),  # no /proc/cpuinfo
])
def test_precision_auto_picks_bfloat16_only_on_native_hardware(monkeypatch, flags, expected):
    monkeypatch.setattr(backend, "cpu_flags", lambda: flags)
    policy, why = backend.resolve_precision("auto")
    assert policy == expected and why.startswith("auto:")
    assert backend.resolve_precision("float32") == ("float32", "as set")
    assert backend.resolve_precision("mixed_bfloat16")[0] == "mixed_bfloat16"
    settings.apply_overrides(["--precision=auto"])
    assert settings.resolve_config()["precision"] == "auto"
    settings.apply_overrides(["--precision=bf16"])
    with pytest.raises(settings.ConfigError, match="precision must be one of"):
        settings.resolve_config()


def test_load_run_fills_the_settings_an_older_folder_lacks(tmp_path):
    # written before the side-file, slot-of-day and loss options existed, except for weight_decay
    (tmp_path / "params.json").write_text(json.dumps({"dataset": "bikenyc", "weight_decay": 0.3}))
    (tmp_path / "scaler.json").write_text(json.dumps({"min": 0.0, "max": 1.0}))
    (tmp_path / "model.keras").write_bytes(b"")
    run, scaler = run_folder.load_run(str(tmp_path))
    assert scaler == {"min": 0.0, "max": 1.0}
    assert run["holiday_file"] == "" and run["meteorology_file"] == ""
    assert run["use_time_of_day"] is False and run["loss"] == "mse"
    assert run["weight_decay"] == 0.3  # a setting the folder has is kept
