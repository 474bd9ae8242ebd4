"""Tests of cleaning.py: the rules for real files' quirks, applied by every loader (named data
sets, own files, forecasting): repeated time stamps (--duplicates), all-zero frames
(--empty_slots) and outage-like zeros, incomplete days, and the lines that say what was done."""
from datetime import date

import numpy as np
import pytest

import cleaning
import datasets
import flowfiles
from conftest import load_small, sid, stamps, write_flow_h5

pytestmark = pytest.mark.smoke


def marked(n, base):
    """Frames whose every value is base + row: (n, 2, 4, 3), so that the row a frame came from
    can be read back."""
    return np.broadcast_to((base + np.arange(n, dtype=float))[:, None, None, None],
                           (n, 2, 4, 3)).copy()


# ---- incomplete days -----------------------------------------------------------------------------

def test_complete_days_mask_drops_days_missing_a_slot():
    T = 4
    d0 = sid(date(2014, 4, 7), 1, T)
    full = [d0 + k for k in range(12)]                         # days 0, 1, 2 complete
    series = [s for s in full if s != d0 + 4 + 2]              # day 1 lacks its 3rd slot
    series += [d0 + 12 + 0, d0 + 12 + 3]                       # day 3: two slots only
    series = np.array(series[::-1])                            # order must not matter
    mask = cleaning.complete_days_mask(series, T)
    day = (series - d0) // T
    np.testing.assert_array_equal(mask, (day == 0) | (day == 2))
    assert mask.sum() == 8


# ---- repeated time stamps ------------------------------------------------------------------------

def test_repeats_error_names_count_examples_and_option(tmp_path):
    a = write_flow_h5(tmp_path / "a.h5", stamps(date(2021, 3, 1), 4, 24))
    b = write_flow_h5(tmp_path / "b.h5", stamps(date(2021, 3, 4), 4, 24))  # day 4 in both
    with pytest.raises(flowfiles.DataError, match=r"24 time stamp\(s\) appear more than once, "
                                                 r"e\.g\. 2021030401, 2021030402, 2021030403 "
                                                 r"\.\.\..*--duplicates=first"):
        load_small(f"{a},{b}")


@pytest.mark.parametrize("keep, expected_base", [("first", 0), ("last", 1000)])
def test_repeats_across_files_keep_the_copy_in_the_order_given(tmp_path, keep, expected_base):
    a = write_flow_h5(tmp_path / "a.h5", stamps(date(2021, 3, 1), 4, 24), marked(96, 0))
    b = write_flow_h5(tmp_path / "b.h5", stamps(date(2021, 3, 4), 4, 24), marked(96, 1000))
    ds = load_small(f"{a},{b}", duplicates=keep)
    assert len(ds.slot_ids) == 7 * 24 and np.all(np.diff(ds.slot_ids) == 1)
    day4 = ds.frames[3 * 24:4 * 24, 0, 0, 0]  # file a's rows 72..95 or file b's rows 0..23
    np.testing.assert_array_equal(day4, expected_base + np.arange(24) + (72 if keep == "first"
                                                                         else 0))
    assert any(f"24 repeated slot(s), the {keep} copy kept" in line for line in ds.notes)


def test_repeats_within_a_file_out_of_order(tmp_path):
    dates = stamps(date(2021, 3, 1), 4, 24)
    dates = dates[:50] + dates[40:]  # slots 41..50 twice, the file runs backwards at the join
    data = marked(len(dates), 0)
    path = write_flow_h5(tmp_path / "a.h5", dates, data)
    first, last = load_small(path, duplicates="first"), load_small(path, duplicates="last")
    assert first.frames[45, 0, 0, 0] == 45 and last.frames[45, 0, 0, 0] == 55
    np.testing.assert_array_equal(first.slot_ids, last.slot_ids)


# ---- empty slots and outages ---------------------------------------------------------------------

def test_empty_copy_of_a_repeat_never_wins_with_missing(tmp_path):
    a = marked(96, 1)
    a[72:96] = 0  # file a's copy of day 4 is an outage, file b's is real
    pa = write_flow_h5(tmp_path / "a.h5", stamps(date(2021, 3, 1), 4, 24), a)
    pb = write_flow_h5(tmp_path / "b.h5", stamps(date(2021, 3, 4), 4, 24), marked(96, 1000))
    ds = load_small(f"{pa},{pb}", duplicates="first", empty_slots="missing")
    np.testing.assert_array_equal(ds.frames[72:96, 0, 0, 0], 1000 + np.arange(24))
    assert any("24 empty slot(s) (all zeros city-wide) treated as missing" in line
               for line in ds.notes)
    assert not any("repeated" in line for line in ds.notes)  # nothing left to resolve
    # with keep, the empty copy is data: first keeps it
    kept = load_small(f"{pa},{pb}", duplicates="first")
    assert kept.frames[72:96].max() == 0


def test_empty_slot_drops_its_day_with_missing(tmp_path):
    data = marked(6 * 24, 1)
    data[2 * 24 + 9] = 0
    path = write_flow_h5(tmp_path / "a.h5", stamps(date(2021, 3, 1), 6, 24), data)
    ds = load_small(path, empty_slots="missing")
    assert ds.dropped_days == ["20210303"] and len(ds.slot_ids) == 5 * 24
    assert any("dropped 1 day(s)" in line for line in ds.notes)
    assert len(load_small(path).slot_ids) == 6 * 24  # keep: the zero frame stays as data


def test_keep_warns_of_zeros_between_busy_slots_only(tmp_path, capsys):
    n = 6 * 24
    busy = np.full((n, 2, 4, 3), 5.0)  # 120 flows city-wide every hour
    busy[30:33] = 0                     # a three-hour outage in busy hours
    path = write_flow_h5(tmp_path / "busy.h5", stamps(date(2021, 3, 1), 6, 24), busy)
    load_small(path)
    err = capsys.readouterr().err
    assert "busy.h5: 3 slot(s) are all zeros city-wide between busy slots, e.g. 2021030207, " \
           "2021030208, 2021030209" in err and "--empty_slots=missing" in err
    quiet = np.full((n, 2, 4, 3), 5.0)
    night = np.arange(n) % 24 < 6
    quiet[night] = 0
    quiet[night, 0, 0, 0] = np.random.default_rng(0).integers(0, 2, night.sum())  # 0-1 trips
    path = write_flow_h5(tmp_path / "quiet.h5", stamps(date(2021, 3, 1), 6, 24), quiet)
    assert (quiet.reshape(n, -1).sum(1) == 0).sum() > 5  # true zero hours at night
    load_small(path)
    assert "warning" not in capsys.readouterr().err


def test_outage_like_needs_busy_neighbours_on_both_sides():
    ids = np.arange(10)
    totals = np.array([50, 50, 0, 50, 3, 0, 0, 60, 0, 0], float)
    np.testing.assert_array_equal(cleaning.outage_like(ids, totals),
                                  [0, 0, 1, 0, 0, 0, 0, 0, 1, 1])


# ---- every loader follows the same rules ---------------------------------------------------------

def test_named_data_sets_follow_the_same_rules(tmp_path):
    folder = tmp_path / "BikeNYC"
    folder.mkdir()
    dates = stamps(date(2014, 4, 1), 20, 24)
    write_flow_h5(folder / "NYC14_M16x8_T60_NewEnd.h5", dates + dates[-24:])  # the last day twice
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
    path = write_flow_h5(tmp_path / "a.h5", dates + dates[-3:],
                         np.concatenate([data, data[-3:] + 50]))
    args = (path, "", 24, True, False, False, "", "", {})
    with pytest.raises(flowfiles.DataError, match="3 time stamp.*--duplicates="):
        datasets.load_for_forecast(*args)
    frames, slot_ids, _ = datasets.load_for_forecast(*args, duplicates="last",
                                                     empty_slots="missing")
    assert len(slot_ids) == len(dates) - 1 and slot_ids[-1] % 24 == 18
    assert frames[-1, 0, 0, 0] == data[-1, 0, 0, 0] + 50
