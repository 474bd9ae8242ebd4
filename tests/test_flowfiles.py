"""Tests of flowfiles.py: reading flow files (the release layout, several files, LibCity grids),
their slot numbering (from 01 or from 00), holiday lists, meteorology files and the release
files' md5 check."""
from datetime import date

import h5py
import numpy as np
import pytest

import datasets
import flowfiles
from conftest import (BIKENYC_PATH, EPOCH, HOLIDAY_PATH, load_small,
                      read_holidays_independently, stamp, stamps, write_flow_h5, write_taxibj)

pytestmark = pytest.mark.smoke


# ---- flow files ----------------------------------------------------------------------------------

def test_unknown_dataset_and_missing_file_raise(tmp_path):
    with pytest.raises(flowfiles.DataError):
        datasets.load_dataset("nosuch", str(tmp_path), 3, 1, 1, 1)
    with pytest.raises(flowfiles.DataError):
        datasets.load_dataset("bikenyc", str(tmp_path), 3, 1, 1, 1)


def test_taxibj_missing_file_raises(tmp_path):
    write_taxibj(tmp_path)
    (tmp_path / "TaxiBJ" / "BJ15_M32x32_T30_InOut.h5").unlink()
    with pytest.raises(flowfiles.DataError):
        datasets.load_dataset("taxibj", str(tmp_path), 3, 1, 1, 1)


def test_bad_flow_files_raise(tmp_path):
    path = tmp_path / "BikeNYC" / "NYC14_M16x8_T60_NewEnd.h5"
    path.parent.mkdir()
    path.write_text("not an HDF5 file")
    with pytest.raises(flowfiles.DataError):
        datasets.load_dataset("bikenyc", str(tmp_path), 3, 1, 1, 1)
    path.unlink()
    with h5py.File(path, "w") as f:     # no 'date' key
        f.create_dataset("data", data=np.zeros((10, 2, 16, 8)))
    with pytest.raises(flowfiles.DataError):
        datasets.load_dataset("bikenyc", str(tmp_path), 3, 1, 1, 1)
    path.unlink()
    with h5py.File(path, "w") as f:     # slot 25 in an hourly file
        f.create_dataset("data", data=np.zeros((2, 2, 16, 8)))
        f.create_dataset("date", data=np.array([b"2014040124", b"2014040125"]))
    with pytest.raises(flowfiles.DataError):
        datasets.load_dataset("bikenyc", str(tmp_path), 3, 1, 1, 1)


def test_flow_file_in_the_wrong_layout_is_refused(tmp_path):
    path = tmp_path / "channels_last.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.zeros((5, 16, 8, 2)))  # (n, H, W, 2): not the release's
        f.create_dataset("date", data=np.array([stamp(date(2014, 4, 1), s) for s in range(1, 6)],
                                               dtype="S10"))
    with pytest.raises(flowfiles.DataError, match=r"must be \(n, 2, H, W\)"):
        flowfiles.load_flow_file(str(path))


def test_files_of_another_grid_are_refused_for_both_formats(tmp_path):
    import libcity
    a = write_flow_h5(tmp_path / "a.h5", stamps(date(2021, 3, 1), 2, 24))
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


def test_a_damaged_release_file_gets_an_md5_warning_and_the_genuine_one_none(tmp_path, capsys):
    flowfiles.check_release_md5(str(BIKENYC_PATH))
    assert "warning" not in capsys.readouterr().err
    copy = tmp_path / BIKENYC_PATH.name
    raw = bytearray(BIKENYC_PATH.read_bytes())
    raw[-100] ^= 1
    copy.write_bytes(bytes(raw))
    flowfiles.check_release_md5(str(copy))
    err = capsys.readouterr().err
    assert f"warning: {copy}: md5" in err and "differs from the release's " \
        "461e58f5e14e33f279164ecc74b748b2" in err


# ---- slot numbering: from 01 or from 00 ----------------------------------------------------------

def test_zero_based_slots_read_as_the_same_times(tmp_path):
    one = write_flow_h5(tmp_path / "one.h5", stamps(date(2021, 3, 1), 6, 24))
    zero = write_flow_h5(tmp_path / "zero.h5", stamps(date(2021, 3, 1), 6, 24, first_slot=0))
    a, b = load_small(one), load_small(zero)
    assert b.T == 24
    np.testing.assert_array_equal(a.slot_ids, b.slot_ids)  # 00 is the first hour, like 01
    assert any("read as zero-based, 24 slots a day" in line for line in b.notes)
    assert not any("zero-based" in line for line in a.notes)
    # slot 00 of 2021-03-01 is the first slot of that day
    assert b.slot_ids[0] == (np.datetime64("2021-03-01") - np.datetime64("1970-01-01")).astype(
        int) * 24


def test_zero_based_half_hours_and_a_given_T(tmp_path):
    path = write_flow_h5(tmp_path / "half.h5", stamps(date(2021, 3, 1), 4, 48, first_slot=0))
    assert load_small(path).T == 48
    assert load_small(path, slots_per_day=48).slot_ids[0] % 48 == 0
    dates = stamps(date(2021, 3, 1), 4, 24, first_slot=0)
    dates[30] = "2021030224"
    hourly = write_flow_h5(tmp_path / "hourly.h5", dates)
    with pytest.raises(flowfiles.DataError, match="hourly.h5 holds both slot 00 and slot 24"):
        load_small(hourly, slots_per_day=24)


def test_a_file_mixing_both_numberings_is_refused(tmp_path):
    dates = stamps(date(2021, 3, 1), 3, 24)
    dates[5] = "2021030200"  # one 00 among 01..24
    path = write_flow_h5(tmp_path / "mixed.h5", dates)
    with pytest.raises(flowfiles.DataError, match="mixed.h5 holds both slot 00 and slot 24"):
        load_small(path)


def test_files_mixing_numberings_are_refused_naming_the_file(tmp_path):
    zero = write_flow_h5(tmp_path / "a_zero.h5", stamps(date(2021, 3, 1), 4, 24, first_slot=0))
    one = write_flow_h5(tmp_path / "b_one.h5", stamps(date(2021, 3, 5), 4, 24))
    with pytest.raises(flowfiles.DataError, match="b_one.h5 numbers its slots up to 24 while "
                                                 ".*a_zero.h5 starts at 00"):
        load_small(f"{zero},{one}")


# ---- holiday lists and meteorology files ---------------------------------------------------------

def test_load_holidays_real_file():
    holidays = flowfiles.load_holidays(str(HOLIDAY_PATH))
    text = read_holidays_independently()
    assert len(text) == 106 and len(holidays) == 106
    expected = {(date(int(t[:4]), int(t[4:6]), int(t[6:])) - EPOCH).days for t in text}
    assert holidays == expected
    # the last line has no newline and must still be read
    assert (date(2016, 6, 11) - EPOCH).days in holidays
    assert (date(2013, 1, 1) - EPOCH).days in holidays


def test_holiday_list_that_is_not_text_or_not_dates(tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(flowfiles.DataError, match="not a readable text holiday list"):
        flowfiles.load_holidays(str(tmp_path / "bin.txt"))
    (tmp_path / "bad.txt").write_text("20210101\n2021-13-01\n")
    with pytest.raises(flowfiles.DataError, match="valid YYYYMMDD"):
        flowfiles.load_holidays(str(tmp_path / "bad.txt"))


def test_meteorology_with_missing_values_is_refused(tmp_path):
    path = tmp_path / "meteo.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("date", data=np.array([b"2021030101", b"2021030124"]))
        f.create_dataset("Weather", data=np.eye(17, dtype=np.float32)[:2])
        f.create_dataset("WindSpeed", data=np.array([1.0, np.nan]))
        f.create_dataset("Temperature", data=np.array([3.0, 4.0]))
    with pytest.raises(flowfiles.DataError, match="'WindSpeed' must hold finite numbers"):
        flowfiles.load_meteorology(str(path), 24)
