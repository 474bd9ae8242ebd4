"""forecast.py and multi-step prediction: inputs with predictions fed back in
(datasets.recursive_inputs), the evaluation per step (report.py's horizon report), and
--forecast_from, which forecasts the slots after a data file's last one from a saved run folder."""
import csv
import json

import h5py
import numpy as np
import pytest

import datasets
from conftest import copy_run, main_in_process, run_main
from settings import ConfigError
from timestamps import DataError


def test_recursive_inputs_take_predictions_for_slots_from_the_start_on():
    T = 4
    slots = np.arange(100, 140)
    slots = slots[slots != 120]                        # one missing slot
    frames = np.arange(len(slots), dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 1, 2))
    value = dict(zip(slots.tolist(), frames[:, 0, 0, 0]))
    starts = np.array([130, 125])
    preds = [np.full((2, 1, 1, 2), -1.0 - i, np.float32) for i in range(5)]  # step i+1 -> -(i+1)
    lengths = (2, 1, 0)                                # closeness t-1, t-2; period t-T
    x, ok = datasets.recursive_inputs(frames, slots, T, lengths, starts, 1, preds[:0])
    assert ok.all()
    assert list(x["closeness"][0, 0, 0, ::2]) == [value[129], value[128]]   # nearest first
    assert x["period"][1, 0, 0, 0] == value[125 - 4]
    x, ok = datasets.recursive_inputs(frames, slots, T, lengths, starts, 2, preds[:1])
    assert list(x["closeness"][0, 0, 0, ::2]) == [-1.0, value[129]]        # t-1 is step 1's
    assert x["period"][0, 0, 0, 0] == value[131 - 4]
    x, ok = datasets.recursive_inputs(frames, slots, T, lengths, starts, 3, preds[:2])
    assert list(x["closeness"][0, 0, 0, ::2]) == [-2.0, -1.0]
    x, ok = datasets.recursive_inputs(frames, slots, T, lengths, starts, 5, preds[:4])
    assert x["period"][0, 0, 0, 0] == -1.0                                   # t-T = step 1's slot
    # start 124, step 1: t-T = 120 is missing -> not valid; start 130 is
    x, ok = datasets.recursive_inputs(frames, slots, T, (1, 1, 0), np.array([124, 130]), 1, [])
    assert list(ok) == [False, True]


@pytest.fixture
def trained(small_run, small_city, tmp_path):
    """A copy of the session's small run (3-step scores, the slot-of-day feature, so that
    forecasting must rebuild it from the run's settings) and its data file."""
    return small_city, copy_run(small_run, tmp_path)


def test_horizon_scores_start_with_the_one_step_test(trained):
    _, run_dir = trained
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = list(csv.DictReader((run_dir / "horizon.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert float(rows[0]["rmse"]) == pytest.approx(metrics["rmse"], rel=1e-4)
    assert float(rows[0]["rmse_last"]) == pytest.approx(metrics["rmse_last"], rel=1e-6)
    assert int(rows[0]["n"]) == 48 and int(rows[2]["n"]) == 46   # targets stay in the test
    assert float(rows[2]["rmse_last"]) > float(rows[0]["rmse_last"])  # older frame, larger error
    assert (run_dir / "error_vs_horizon.png").read_bytes()[:4] == b"\x89PNG"


def test_forecast_from_a_run_folder_matches_its_test_prediction(trained, tmp_path):
    city, run_dir = trained
    # The data up to the first test target: forecasting its next slot must give the run's own
    # test prediction for that slot, from the run folder and this file alone.
    with h5py.File(city, "r") as f:
        data, dates = f["data"][()], f["date"][()]
    with h5py.File(run_dir / "test_predictions.h5", "r") as f:
        first_test, expected = f["date"][0], f["data"][0]
    cut = int(np.flatnonzero(dates == first_test)[0])
    with h5py.File(tmp_path / "upto.h5", "w") as f:
        f.create_dataset("data", data=data[:cut])
        f.create_dataset("date", data=dates[:cut])
    args = [f"--forecast_from={run_dir}", f"--dataset={tmp_path / 'upto.h5'}", "--horizon=2"]
    main_in_process(args)
    path = run_dir / f"forecast-{first_test.decode()}-2.h5"
    with h5py.File(path, "r") as f:
        assert f["data"].shape == (2, 2, 16, 8)
        assert [d.decode() for d in f["date"][()]] == [first_test.decode(),
                                                       dates[cut + 1].decode()]
        np.testing.assert_allclose(f["data"][0], expected, rtol=1e-4, atol=1e-3)
    assert path.with_suffix(".png").is_file()
    main_in_process(args)
    assert (run_dir / f"forecast-{first_test.decode()}-2-2.h5").is_file()


def test_forecast_from_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path):
    result = run_main(f"--forecast_from={tmp_path}")
    assert result.returncode != 0 and "is not a run folder of main.py" in result.stderr
    assert "Traceback" not in result.stderr


def test_forecast_on_data_of_another_grid_is_refused(trained, tmp_path):
    _, run_dir = trained
    dates = np.array([f"202001{d:02d}{s:02d}" for d in range(1, 31) for s in range(1, 25)],
                     dtype="S10")
    with h5py.File(tmp_path / "other_grid.h5", "w") as f:
        f.create_dataset("data", data=np.ones((len(dates), 2, 5, 5)))
        f.create_dataset("date", data=dates)
    with pytest.raises(DataError, match=r"has frames of \(5, 5, 2\) but the model"):
        main_in_process([f"--forecast_from={run_dir}", f"--dataset={tmp_path / 'other_grid.h5'}"])


def test_forecast_names_the_missing_history_and_refuses_other_settings(trained, tmp_path):
    _, run_dir = trained
    dates = np.array([f"202001{d:02d}{s:02d}" for d in range(1, 6) for s in range(1, 25)],
                     dtype="S10")                      # 5 days: the trend needs a week
    with h5py.File(tmp_path / "short.h5", "w") as f:
        f.create_dataset("data", data=np.ones((len(dates), 2, 16, 8)))
        f.create_dataset("date", data=dates)
    with pytest.raises(DataError, match="lacks .*2019123"):
        main_in_process([f"--forecast_from={run_dir}", f"--dataset={tmp_path / 'short.h5'}"])
    with pytest.raises(ConfigError, match="the other settings are the run's"):
        main_in_process([f"--forecast_from={run_dir}", "--len_trend=0"])


def test_forecast_refuses_a_file_with_other_slots_per_day(trained, tmp_path):
    _, run_dir = trained
    dates = np.array([f"2020{m:02d}{d:02d}{s:02d}" for m in (1, 2) for d in range(1, 29)
                      for s in range(1, 49)], dtype="S10")  # half-hourly: T = 48
    with h5py.File(tmp_path / "halfhourly.h5", "w") as f:
        f.create_dataset("data", data=np.ones((len(dates), 2, 16, 8)))
        f.create_dataset("date", data=dates)
    with pytest.raises(DataError, match="has 48 slots a day, the model was trained on 24"):
        main_in_process([f"--forecast_from={run_dir}", f"--dataset={tmp_path / 'halfhourly.h5'}"])
