"""The loader's rules for real files' quirks: zero-based slot numbers, repeated time stamps
(--duplicates), all-zero frames (--empty_slots), and the lines that say what was done."""
from datetime import date, timedelta

import h5py
import numpy as np
import pytest

import datasets
import cleaning
import flowfiles


def stamps(first_day, days, T, first_slot=1):
    return [f"{first_day + timedelta(days=d):%Y%m%d}{s:02d}" for d in range(days)
            for s in range(first_slot, T + first_slot)]


def write(path, dates, data=None, seed=0):
    """A flow file (4x3 grid) whose frame i is filled with the value base + i, so that the row
    a frame came from can be read back."""
    if data is None:
        data = np.random.default_rng(seed).poisson(30, size=(len(dates), 2, 4, 3)).astype(float)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("date", data=np.array(dates, dtype="S10"))
    return str(path)


def marked(n, base):
    """Frames whose every value is base + row: (n, 2, 4, 3)."""
    return np.broadcast_to((base + np.arange(n, dtype=float))[:, None, None, None],
                           (n, 2, 4, 3)).copy()


def load(name, **kw):
    return datasets.load_dataset(name, "", 1, 1, 0, 1, **kw)


def test_zero_based_slots_read_as_the_same_times(tmp_path):
    one = write(tmp_path / "one.h5", stamps(date(2021, 3, 1), 6, 24))
    zero = write(tmp_path / "zero.h5", stamps(date(2021, 3, 1), 6, 24, first_slot=0))
    a, b = load(one), load(zero)
    assert b.T == 24
    np.testing.assert_array_equal(a.slot_ids, b.slot_ids)  # 00 is the first hour, like 01
    assert any("read as zero-based, 24 slots a day" in line for line in b.notes)
    assert not any("zero-based" in line for line in a.notes)
    # slot 00 of 2021-03-01 is the first slot of that day
    assert b.slot_ids[0] == (np.datetime64("2021-03-01") - np.datetime64("1970-01-01")).astype(
        int) * 24


def test_zero_based_half_hours_and_a_given_T(tmp_path):
    path = write(tmp_path / "half.h5", stamps(date(2021, 3, 1), 4, 48, first_slot=0))
    assert load(path).T == 48
    assert load(path, slots_per_day=48).slot_ids[0] % 48 == 0
    dates = stamps(date(2021, 3, 1), 4, 24, first_slot=0)
    dates[30] = "2021030224"
    hourly = write(tmp_path / "hourly.h5", dates)
    with pytest.raises(flowfiles.DataError, match="hourly.h5 holds both slot 00 and slot 24"):
        load(hourly, slots_per_day=24)


def test_a_file_mixing_both_numberings_is_refused(tmp_path):
    dates = stamps(date(2021, 3, 1), 3, 24)
    dates[5] = "2021030200"  # one 00 among 01..24
    path = write(tmp_path / "mixed.h5", dates)
    with pytest.raises(flowfiles.DataError, match="mixed.h5 holds both slot 00 and slot 24"):
        load(path)


def test_files_mixing_numberings_are_refused_naming_the_file(tmp_path):
    zero = write(tmp_path / "a_zero.h5", stamps(date(2021, 3, 1), 4, 24, first_slot=0))
    one = write(tmp_path / "b_one.h5", stamps(date(2021, 3, 5), 4, 24))
    with pytest.raises(flowfiles.DataError, match="b_one.h5 numbers its slots up to 24 while "
                                                 ".*a_zero.h5 starts at 00"):
        load(f"{zero},{one}")


def test_repeats_error_names_count_examples_and_option(tmp_path):
    a = write(tmp_path / "a.h5", stamps(date(2021, 3, 1), 4, 24))
    b = write(tmp_path / "b.h5", stamps(date(2021, 3, 4), 4, 24))  # day 4 in both
    with pytest.raises(flowfiles.DataError, match=r"24 time stamp\(s\) appear more than once, "
                                                 r"e\.g\. 2021030401, 2021030402, 2021030403 "
                                                 r"\.\.\..*--duplicates=first"):
        load(f"{a},{b}")


@pytest.mark.parametrize("keep, expected_base", [("first", 0), ("last", 1000)])
def test_repeats_across_files_keep_the_copy_in_the_order_given(tmp_path, keep, expected_base):
    a = write(tmp_path / "a.h5", stamps(date(2021, 3, 1), 4, 24), marked(96, 0))
    b = write(tmp_path / "b.h5", stamps(date(2021, 3, 4), 4, 24), marked(96, 1000))
    ds = load(f"{a},{b}", duplicates=keep)
    assert len(ds.slot_ids) == 7 * 24 and np.all(np.diff(ds.slot_ids) == 1)
    day4 = ds.frames[3 * 24:4 * 24, 0, 0, 0]  # file a's rows 72..95 or file b's rows 0..23
    np.testing.assert_array_equal(day4, expected_base + np.arange(24) + (72 if keep == "first"
                                                                         else 0))
    assert any(f"24 repeated slot(s), the {keep} copy kept" in line for line in ds.notes)


def test_repeats_within_a_file_out_of_order(tmp_path):
    dates = stamps(date(2021, 3, 1), 4, 24)
    dates = dates[:50] + dates[40:]  # slots 41..50 twice, the file runs backwards at the join
    data = marked(len(dates), 0)
    path = write(tmp_path / "a.h5", dates, data)
    first, last = load(path, duplicates="first"), load(path, duplicates="last")
    assert first.frames[45, 0, 0, 0] == 45 and last.frames[45, 0, 0, 0] == 55
    np.testing.assert_array_equal(first.slot_ids, last.slot_ids)


def test_empty_copy_of_a_repeat_never_wins_with_missing(tmp_path):
    a = marked(96, 1)
    a[72:96] = 0  # file a's copy of day 4 is an outage, file b's is real
    pa = write(tmp_path / "a.h5", stamps(date(2021, 3, 1), 4, 24), a)
    pb = write(tmp_path / "b.h5", stamps(date(2021, 3, 4), 4, 24), marked(96, 1000))
    ds = load(f"{pa},{pb}", duplicates="first", empty_slots="missing")
    np.testing.assert_array_equal(ds.frames[72:96, 0, 0, 0], 1000 + np.arange(24))
    assert any("24 empty slot(s) (all zeros city-wide) treated as missing" in line
               for line in ds.notes)
    assert not any("repeated" in line for line in ds.notes)  # nothing left to resolve
    # with keep, the empty copy is data: first keeps it
    kept = load(f"{pa},{pb}", duplicates="first")
    assert kept.frames[72:96].max() == 0


def test_empty_slot_drops_its_day_with_missing(tmp_path):
    data = marked(6 * 24, 1)
    data[2 * 24 + 9] = 0
    path = write(tmp_path / "a.h5", stamps(date(2021, 3, 1), 6, 24), data)
    ds = load(path, empty_slots="missing")
    assert ds.dropped_days == ["20210303"] and len(ds.slot_ids) == 5 * 24
    assert any("dropped 1 day(s)" in line for line in ds.notes)
    assert len(load(path).slot_ids) == 6 * 24  # keep: the zero frame stays as data


def test_keep_warns_of_zeros_between_busy_slots_only(tmp_path, capsys):
    n = 6 * 24
    busy = np.full((n, 2, 4, 3), 5.0)  # 120 flows city-wide every hour
    busy[30:33] = 0                     # a three-hour outage in busy hours
    path = write(tmp_path / "busy.h5", stamps(date(2021, 3, 1), 6, 24), busy)
    load(path)
    err = capsys.readouterr().err
    assert "busy.h5: 3 slot(s) are all zeros city-wide between busy slots, e.g. 2021030207, " \
           "2021030208, 2021030209" in err and "--empty_slots=missing" in err
    quiet = np.full((n, 2, 4, 3), 5.0)
    night = np.arange(n) % 24 < 6
    quiet[night] = 0
    quiet[night, 0, 0, 0] = np.random.default_rng(0).integers(0, 2, night.sum())  # 0-1 trips
    path = write(tmp_path / "quiet.h5", stamps(date(2021, 3, 1), 6, 24), quiet)
    assert (quiet.reshape(n, -1).sum(1) == 0).sum() > 5  # true zero hours at night
    load(path)
    assert "warning" not in capsys.readouterr().err


def test_outage_like_needs_busy_neighbours_on_both_sides():
    ids = np.arange(10)
    totals = np.array([50, 50, 0, 50, 3, 0, 0, 60, 0, 0], float)
    np.testing.assert_array_equal(cleaning.outage_like(ids, totals),
                                  [0, 0, 1, 0, 0, 0, 0, 0, 1, 1])


def test_named_data_sets_follow_the_same_rules(tmp_path):
    folder = tmp_path / "BikeNYC"
    folder.mkdir()
    dates = stamps(date(2014, 4, 1), 20, 24)
    write(folder / "NYC14_M16x8_T60_NewEnd.h5", dates + dates[-24:])  # the last day twice
    with pytest.raises(flowfiles.DataError, match="24 time stamp.*--duplicates="):
        datasets.load_dataset("bikenyc", str(tmp_path), 3, 1, 1, 1)
    ds = datasets.load_dataset("bikenyc", str(tmp_path), 3, 1, 1, 1, duplicates="last")
    assert len(ds.slot_ids) == 20 * 24


def test_forecast_data_follow_the_same_rules(tmp_path):
    """Forecasting reads the data as training did: repeats resolved, empty slots dropped, and the
    last (incomplete) day kept."""
    dates = stamps(date(2021, 3, 1), 4, 24, first_slot=0)[:-5]
    data = marked(len(dates), 1)
    data[10] = 0
    path = write(tmp_path / "a.h5", dates + dates[-3:], np.concatenate([data, data[-3:] + 50]))
    args = (path, "", 24, True, False, False, "", "", {})
    with pytest.raises(flowfiles.DataError, match="3 time stamp.*--duplicates="):
        datasets.load_for_forecast(*args)
    frames, slot_ids, _ = datasets.load_for_forecast(*args, duplicates="last",
                                                     empty_slots="missing")
    assert len(slot_ids) == len(dates) - 1 and slot_ids[-1] % 24 == 18
    assert frames[-1, 0, 0, 0] == data[-1, 0, 0, 0] + 50


def test_files_of_another_grid_are_refused_for_both_formats(tmp_path):
    import libcity
    a = write(tmp_path / "a.h5", stamps(date(2021, 3, 1), 2, 24))
    b = str(tmp_path / "b.h5")
    with h5py.File(b, "w") as f:
        f["data"] = np.ones((48, 2, 3, 3))
        f["date"] = np.array(stamps(date(2021, 3, 3), 2, 24), dtype="S10")
    with pytest.raises(flowfiles.DataError, match=r"b.h5: grid \(3, 3\) differs from .*a.h5's "
                                                 r"\(4, 3\); the files must share one grid"):
        flowfiles.load_series(f"{a},{b}", "")
    ids = 18700 * 24 + np.arange(48)
    libcity.write_grid(str(tmp_path / "g"), "A", np.ones((48, 4, 3, 2)), ids, 24)
    libcity.write_grid(str(tmp_path / "h"), "B", np.ones((48, 3, 3, 2)), ids + 48, 24)
    with pytest.raises(flowfiles.DataError, match=r"B.grid: grid \(3, 3\) differs from .*A.grid's "
                                                 r"\(4, 3\)"):
        flowfiles.load_series(f"{tmp_path / 'g' / 'A.grid'},{tmp_path / 'h' / 'B.grid'}", "")
