"""Tests of synthetic_city.py: the generated city (deterministic, contiguous hourly stamps, weekly
and daily cycles) and its files as the loader writes, reads and rewrites them."""
from datetime import date, timedelta

import h5py
import numpy as np

import datasets
import synthetic_city
import timestamps
from conftest import from_sid


def test_synthetic_city_generate():
    flows, dates = synthetic_city.generate()
    flows2, dates2 = synthetic_city.generate()
    np.testing.assert_array_equal(flows, flows2)
    np.testing.assert_array_equal(dates, dates2)
    assert flows.shape == (4392, 2, 16, 8) and flows.dtype == np.float64
    assert dates[0] == b"2014040101" and dates[-1] == b"2014093024"
    # contiguous hourly stamps, checked with datetime
    ids = timestamps.parse_timestamps(dates, 24)
    np.testing.assert_array_equal(np.diff(ids), 1)
    assert flows.min() >= 0
    np.testing.assert_array_equal(flows, np.round(flows))
    always_zero = ~np.any(flows != 0, axis=(0, 1))
    assert 0 < always_zero.sum() < 128
    # a weekly cycle: weekday vs weekend mean outflow at 8:00 (slot 09) differ clearly
    days = [date(2014, 4, 1) + timedelta(days=k) for k in range(183)]
    holidays = {date(2014, 5, 26), date(2014, 7, 4), date(2014, 9, 1)}
    at8 = flows[8::24, 0]                       # hour 8 of each day, outflow
    wk = np.array([d.weekday() < 5 and d not in holidays for d in days])
    we = np.array([d.weekday() >= 5 for d in days])
    m_wk, m_we = at8[wk].mean(), at8[we].mean()
    assert abs(m_wk - m_we) > 0.2 * max(m_wk, m_we)
    # a daily cycle: 8:00 vs 3:00 on weekdays
    assert flows[3::24, 0][wk].mean() < 0.5 * m_wk
    # a different seed gives a different city
    other, _ = synthetic_city.generate(seed=1)
    assert not np.array_equal(other, flows)


def test_synthetic_loader_writes_files(tmp_path):
    ds = datasets.load_dataset("synthetic", str(tmp_path), 3, 1, 1, 10, use_meta=True,
                               use_holiday=True)
    assert (tmp_path / "Synthetic" / "SYN_M16x8_T60_OutIn.h5").is_file()
    assert ds.frames.shape == (4392, 16, 8, 2)
    assert ds.external.shape == (4392 - 7 * 24, 9)
    # 2014-07-04 is in the synthetic holiday list
    hol = ds.external[:, 8] == 1
    days = {from_sid(s, 24)[0] for s in ds.target_slots[hol]}
    assert days == {date(2014, 5, 26), date(2014, 7, 4), date(2014, 9, 1)}


def test_synthetic_file_from_another_generator_version_is_rewritten(tmp_path):
    path = tmp_path / "Synthetic" / "SYN_M16x8_T60_OutIn.h5"
    datasets.load_dataset("synthetic", str(tmp_path), 3, 1, 1, 10)
    with h5py.File(path, "r+") as f:
        f.attrs["generator"] = "an older generator"
        f["data"][0, 0, 0, 0] = 12345.0
    ds = datasets.load_dataset("synthetic", str(tmp_path), 3, 1, 1, 10)
    assert ds.frames.max() < 12345.0
    with h5py.File(path, "r") as f:
        assert f.attrs["generator"] == synthetic_city.VERSION
