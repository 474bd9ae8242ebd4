"""Tests of main.py, the story of one run: the session's tiny end-to-end run (a real child
process, conftest.tiny_run) with every artefact of its run folder (metrics, model, scaler, params,
history, test predictions, plots) checked against independent recomputations, a TaxiBJ run on
files in the release format, and too little data reported before training."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

import datasets
import pipeline
import timestamps
from conftest import main_in_process, run_main, write_taxibj

pytestmark = pytest.mark.usefixtures("fresh_params")


def test_too_little_data_is_reported_with_the_sample_counts(tmp_path):
    result = run_main("--days_test=200", f"--data_dir={tmp_path}", f"--out_dir={tmp_path / 'runs'}")
    assert result.returncode != 0
    assert "only 3720 samples" in result.stderr and "needs 4800" in result.stderr


def test_tiny_end_to_end_run_writes_every_artefact(tiny_run, synthetic_dir):
    # the session's one real `python main.py` run (conftest.tiny_run); running the same command
    # again, killed and resumed, is test_resume.py's
    run_dir, stdout, stderr = tiny_run
    assert "threads: 1 intra-op, 1 inter-op" in stdout
    files = {p.name for p in run_dir.iterdir()}
    assert {"metrics.json", "model.keras", "scaler.json", "params.json", "history.csv",
            "test_predictions.h5",
            "learning_curves.png", "maps_busiest_slot.png", "series_busiest_region.png"} <= files
    assert not any("tmp" in f for f in files)
    for png in ("learning_curves.png", "maps_busiest_slot.png", "series_busiest_region.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("dataset", "n_train", "n_test", "rmse", "mae", "rmse_paper", "rmse_ha", "mae_ha",
                "rmse_last", "mae_last", "rmse_flow0", "rmse_flow1", "mape", "mape_flow0",
                "mape_ha", "mape_last_flow1", "mape_stage1"):
        assert key in metrics
    assert metrics["mape_threshold"] == 10.0 and 0 < metrics["mape_values"] < 240 * 128 * 2
    assert "MAPE over the" in stdout
    # on validation: stage 1's best val_rmse on the original scale, beside the baselines
    scaler = json.loads((run_dir / "scaler.json").read_text())
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    best = min(float(r["val_rmse"]) for r in rows if r["stage"] == "1")
    assert metrics["rmse_val_stage1"] == pytest.approx(best * (scaler["max"] - scaler["min"]) / 2)
    assert metrics["n_val"] == 3480 - int(0.9 * 3480)   # validation_fraction 0.1
    assert {"rmse_val_ha", "mae_val_ha", "rmse_val_last", "mae_val_last"} <= set(metrics)
    assert f"stage 1 {metrics['rmse_val_stage1']:.3f}, HA {metrics['rmse_val_ha']:.3f}" in stdout
    assert metrics["dataset"] == "synthetic" and metrics["n_test"] == 240
    assert metrics["precision"] == "float32"  # the paper preset computes in float32
    assert metrics["n_train"] == 3720 - 240
    assert metrics["rmse_paper"] == pytest.approx(metrics["rmse"] * np.sqrt(128 / 81))
    assert metrics["rmse_stage1"] != metrics["rmse"]  # stage 2 changed the weights
    assert "after stage 1 only" in stdout
    assert all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))

    history = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [int(r["stage"]) for r in history] == [1, 1, 2, 2]
    cfg = json.loads((run_dir / "params.json").read_text())
    assert cfg["nb_filters"] == 4 and cfg["nb_residual_unit"] == 1 and cfg["T"] == 24
    assert "ST-ResNet (this run)" in stdout and "HA (same weekday and slot)" in stdout
    assert "oneDNN custom operations" not in stderr  # TensorFlow's start-up notices hidden
    assert "stage 1 epoch 1/2 - " in stdout and "stage 2 epoch 1/2 - " in stdout

    # The run folder alone (model, scaler, params) reproduces the reported test RMSE. Importing
    # modules registers the fusion layer, so no custom_objects are needed.
    import keras
    import evaluation
    import modules  # noqa: F401
    model = keras.saving.load_model(run_dir / "model.keras")
    ds = datasets.load_dataset("synthetic", str(synthetic_dir), cfg["len_closeness"],
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
        assert f["date"][0] == timestamps.format_timestamps(ds.target_slots[ds.n_train:][:1], 24)[0].encode()
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


def test_taxibj_end_to_end_on_files_in_the_release_format(tmp_path, capsys):
    write_taxibj(tmp_path / "data")  # BJ13..BJ16, BJ_Meteorology.h5, BJ_Holiday.txt
    out = tmp_path / "runs"
    run_dir = main_in_process(["--dataset=taxibj", "--batch_norm=True", "--days_test=1",
                               "--nb_filters=4", "--nb_residual_unit=1", "--epochs=1",
                               "--epochs_cont=1", "--batch_size=144",
                               f"--data_dir={tmp_path / 'data'}",
                               f"--out_dir={out}"])
    assert list(out.iterdir()) == [Path(run_dir)]
    stdout = capsys.readouterr().out
    run_dir = Path(run_dir)
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
    assert "paper: ST-ResNet L12-E-BN" in stdout
    scaler = json.loads((run_dir / "scaler.json").read_text())
    assert set(scaler["external"]) == {"wind", "temperature"}
    assert scaler["external"]["wind"][0] < scaler["external"]["wind"][1]
