"""Your own flow files as the data set (flowfiles.py, cleaning.py, datasets.py and settings.py
together): T inferred, slots out of order, gaps, incomplete days, duplicates, several files, side
files; through load_dataset and through main.py."""
import importlib
import json
from datetime import date
from pathlib import Path

import h5py
import numpy as np
import pytest

import datasets
import flowfiles
import params
import settings
import timestamps
from conftest import SHARED_DATA, main_in_process, stamps

pytestmark = pytest.mark.usefixtures("fresh_params")


def write_flows(path, dates, grid=(4, 3), seed=0):
    """A flow file in the release layout; values encode their row so order can be checked."""
    rng = np.random.default_rng(seed)
    data = rng.poisson(20, size=(len(dates), 2) + grid).astype(np.float64)
    data[:, 0, 0, 0] = np.arange(len(dates))  # a marker: the row's position in the file
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("date", data=np.array(dates, dtype="S10"))
    return data


def test_quirky_file_is_read_in_time_order_with_incomplete_days_dropped(tmp_path):
    dates = stamps(date(2020, 1, 1), 20, 48)
    dates.remove("2020010517")                   # day 5 incomplete: dropped as a whole
    order = np.random.default_rng(1).permutation(len(dates))
    shuffled = [dates[i] for i in order]         # rows out of order
    data = write_flows(tmp_path / "city.h5", shuffled)
    ds = datasets.load_dataset(str(tmp_path / "city.h5"), "", 3, 1, 1, 2)
    assert ds.T == 48 and ds.frames.shape[1:] == (4, 3, 2)
    assert ds.dropped_days == ["20200105"]
    assert len(ds.frames) == 19 * 48 and np.all(np.diff(ds.slot_ids) > 0)
    # the frame at each time stamp is the file's row with that stamp
    stamp_of = timestamps.format_timestamps(ds.slot_ids, 48)
    for i in (0, 100, len(stamp_of) - 1):
        row = shuffled.index(stamp_of[i])
        np.testing.assert_array_equal(ds.frames[i], np.moveaxis(data[row], 0, -1))
    # targets need t-1..t-3, t-48 and t-7*48: day 8 needs day 1; day 5 gone removes 5, 6, 12
    target_days = sorted({s[:8] for s in timestamps.format_timestamps(ds.target_slots, 48)})
    assert target_days[0] == "20200108" and "20200112" not in target_days
    assert ds.n_test == 2 * 48


def test_duplicate_stamps_are_named(tmp_path):
    dates = stamps(date(2020, 1, 1), 10, 24)
    dates[30] = dates[29]
    write_flows(tmp_path / "dup.h5", dates)
    with pytest.raises(flowfiles.DataError, match=f"1 time stamp.s. appear more than once, e.g. {dates[29]}.*--duplicates=first"):
        datasets.load_dataset(str(tmp_path / "dup.h5"), "", 3, 1, 1, 1)


def test_slots_per_day_that_cannot_be_inferred_asks_for_it(tmp_path):
    dates = [d for d in stamps(date(2020, 1, 1), 10, 24) if not d.endswith("24")]
    write_flows(tmp_path / "no_midnight.h5", dates)
    with pytest.raises(flowfiles.DataError, match="largest slot number is 23.*--slots_per_day"):
        datasets.load_dataset(str(tmp_path / "no_midnight.h5"), "", 3, 1, 1, 1)


def test_several_files_are_joined_and_must_share_a_grid(tmp_path):
    write_flows(tmp_path / "a.h5", stamps(date(2020, 1, 1), 10, 24))
    write_flows(tmp_path / "b.h5", stamps(date(2020, 1, 11), 10, 24))
    ds = datasets.load_dataset(f"{tmp_path / 'a.h5'},{tmp_path / 'b.h5'}", "", 3, 1, 1, 2)
    assert len(ds.frames) == 20 * 24 and ds.n_samples == 20 * 24 - 7 * 24
    write_flows(tmp_path / "c.h5", stamps(date(2020, 1, 11), 10, 24), grid=(5, 3))
    with pytest.raises(flowfiles.DataError, match="differs from"):
        datasets.load_dataset(f"{tmp_path / 'a.h5'},{tmp_path / 'c.h5'}", "", 3, 1, 1, 2)


def test_a_holiday_file_adds_the_holiday_feature_to_bikenyc(tmp_path):
    (tmp_path / "us.txt").write_text("20140526\n20140704\n20140901\n")
    ds = datasets.load_dataset("bikenyc", str(SHARED_DATA), 3, 4, 4, 10, use_holiday=True,
                               holiday_file=str(tmp_path / "us.txt"))
    assert ds.external.shape[1] == 9
    days = {s[:8] for s in timestamps.format_timestamps(ds.target_slots[ds.external[:, 8] == 1], 24)}
    assert days == {"20140526", "20140704", "20140901"}


def test_config_for_a_file_uses_its_side_files_and_rejects_other_paths():
    settings.apply_overrides(["--dataset=my city.h5", "--holiday_file=h.txt"])
    cfg = settings.resolve_config()
    assert cfg["use_holiday"] is True and cfg["use_meteorology"] is False
    assert cfg["slots_per_day"] is None and (cfg["len_period"], cfg["len_trend"]) == (1, 1)
    importlib.reload(params)
    settings.apply_overrides(["--dataset=city.csv"])
    with pytest.raises(settings.ConfigError, match="path of an HDF5 flow file"):
        settings.resolve_config()
    importlib.reload(params)
    settings.apply_overrides(["--dataset=bikenyc", "--slots_per_day=48"])
    with pytest.raises(settings.ConfigError, match="bikenyc has 24 slots a day"):
        settings.resolve_config()


@pytest.mark.smoke  # the smoke tier's tiny end-to-end run
def test_main_runs_on_your_own_file(tmp_path, capsys):
    dates = stamps(date(2020, 1, 1), 16, 48)
    dates.remove("2020010517")
    write_flows(tmp_path / "city.h5", dates[::-1])  # newest first
    out = tmp_path / "runs"
    run_dir = Path(main_in_process([f"--dataset={tmp_path / 'city.h5'}", "--days_test=1",
                                    "--nb_filters=4", "--nb_residual_unit=1", "--epochs=1",
                                    "--epochs_cont=1", f"--out_dir={out}"]))
    log = capsys.readouterr().out
    assert "dropped 1 day(s) lacking some of their 48 slots: 20200105" in log
    assert "preset: fast, the default for your own files" in log
    assert list(out.iterdir()) == [run_dir] and run_dir.name.startswith("city-")
    cfg = json.loads((run_dir / "params.json").read_text())
    assert (cfg["preset"], cfg["lr_schedule"], cfg["average_last"]) == ("fast", "cosine", 10)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert cfg["T"] == 48 and cfg["slots_per_day"] == 48
    assert metrics["n_test"] == 48 and metrics["flow_names"] == ["flow0", "flow1"]


def test_slots_per_day_is_inferred_over_all_files_together(tmp_path):
    write_flows(tmp_path / "a.h5", stamps(date(2020, 1, 1), 14, 24))
    write_flows(tmp_path / "b.h5", stamps(date(2020, 1, 15), 1, 24)[:7])  # a short last file
    ds = datasets.load_dataset(f"{tmp_path / 'a.h5'},{tmp_path / 'b.h5'}", "", 3, 1, 1, 1)
    assert ds.T == 24 and ds.dropped_days == ["20200115"]
