"""Tests of evaluation.py: error measures, the BikeNYC paper factor and the two baselines.
Expectations are computed by hand or independently (plain Python, datetime, h5py)."""
import math
from datetime import date, timedelta

import h5py
import numpy as np
import pytest

import evaluation
import flowfiles
from conftest import BIKENYC_PATH, sid

pytestmark = pytest.mark.smoke


def test_rmse_mae_hand_values():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([1.0, 2.0, 3.0, 0.0])
    assert evaluation.rmse(a, b) == pytest.approx(2.0)          # sqrt(16 / 4)
    assert evaluation.mae(a, b) == pytest.approx(1.0)           # 4 / 4
    assert evaluation.rmse(np.zeros(2), np.array([3.0, 4.0])) == pytest.approx(math.sqrt(12.5))
    assert evaluation.mae(np.zeros(2), np.array([3.0, -4.0])) == pytest.approx(3.5)
    assert evaluation.rmse(a, a) == 0.0 and evaluation.mae(a, a) == 0.0
    assert isinstance(evaluation.rmse(a, b), float)
    # over a multi-dimensional array: all values count equally
    y = np.zeros((2, 2, 2, 2))
    p = np.zeros((2, 2, 2, 2))
    p[0, 0, 0, 0] = 4.0
    assert evaluation.rmse(y, p) == pytest.approx(1.0)          # sqrt(16 / 16)
    assert evaluation.mae(y, p) == pytest.approx(0.25)


def test_paper_factor_hand_case():
    frames = np.zeros((5, 2, 3, 2))            # (n, H, W, F): 6 cells
    frames[0, 0, 0, 0] = 1.0                   # cell (0, 0) active in flow 0 once
    frames[4, 1, 2, 1] = 2.0                   # cell (1, 2) active in flow 1 once
    assert evaluation.paper_factor(frames) == pytest.approx(math.sqrt(6 / 2))
    frames[2, 0, 1, 0] = -1.0                  # any non-zero value counts
    assert evaluation.paper_factor(frames) == pytest.approx(math.sqrt(6 / 3))
    assert evaluation.paper_factor(np.ones((2, 4, 4, 2))) == pytest.approx(1.0)


def test_paper_factor_bikenyc():
    with h5py.File(BIKENYC_PATH, "r") as f:
        data = f["data"][()]
    frames = np.moveaxis(data, 1, -1)           # channels last, as the loader holds them
    assert evaluation.paper_factor(frames) == pytest.approx(math.sqrt(128 / 81))
    assert evaluation.paper_factor(frames) == pytest.approx(1.2571, abs=1e-4)


def test_historical_average_hand_built():
    T = 2
    mon1, tue1, mon2, mon3 = date(2014, 4, 7), date(2014, 4, 8), date(2014, 4, 14), date(2014, 4, 21)
    assert mon1.weekday() == 0 and mon3.weekday() == 0 and tue1.weekday() == 1
    series = [(mon1, 1, 10.0), (mon1, 2, 100.0), (tue1, 1, 1000.0),
              (mon2, 1, 20.0),                   # mon2 slot 2 is missing
              (mon3, 1, 60.0), (mon3, 2, 7.0)]
    slots = np.array([sid(d, s, T) for d, s, _ in series])
    frames = np.array([v for _, _, v in series]).reshape(-1, 1, 1, 1) * np.ones((1, 2, 1, 2))
    frames[:, 1, 0, 1] += 1.0                   # make the cells/flows differ
    targets = np.array([sid(mon3, 1, T), sid(mon3, 2, T), sid(date(2014, 4, 22), 1, T),
                        sid(date(2014, 4, 28), 1, T)])
    # before = 4: frames at positions >= 4 (mon3's) are excluded
    ha = evaluation.historical_average(frames, slots, T, targets, before=4)
    assert ha.shape == (4, 2, 1, 2)
    np.testing.assert_allclose(ha[:, 0, 0, 0], [15.0, 100.0, 1000.0, 15.0])
    np.testing.assert_allclose(ha[:, 1, 0, 1], [16.0, 101.0, 1001.0, 16.0])
    # before = 6: mon3's frames count too
    ha = evaluation.historical_average(frames, slots, T, targets[[0, 1, 3]], before=6)
    np.testing.assert_allclose(ha[:, 0, 0, 0], [30.0, (100.0 + 7.0) / 2, 30.0])
    # a Wednesday slot has no history at all
    with pytest.raises(flowfiles.DataError):
        evaluation.historical_average(frames, slots, T,
                                      np.array([sid(date(2014, 4, 23), 1, T)]), before=6)
    # with before = 1 a Monday slot 2 target has no history (only mon1 slot 1 is before)
    with pytest.raises(flowfiles.DataError):
        evaluation.historical_average(frames, slots, T, np.array([sid(mon3, 2, T)]), before=1)


def test_historical_average_random_against_brute_force():
    T = 4
    rng = np.random.default_rng(5)
    start = date(2014, 4, 2)
    all_slots = [(start + timedelta(days=k), s) for k in range(30) for s in range(1, T + 1)]
    keep = rng.random(len(all_slots)) > 0.15
    series = [x for x, k in zip(all_slots, keep) if k]
    slots = np.array([sid(d, s, T) for d, s in series])
    frames = rng.normal(size=(len(series), 2, 3, 2))
    before = 90
    targets = slots[before:]
    ha = evaluation.historical_average(frames, slots, T, targets, before=before)
    for i, (d, s) in enumerate(series[before:]):
        same = [j for j, (dj, sj) in enumerate(series[:before])
                if dj.weekday() == d.weekday() and sj == s]
        assert same
        np.testing.assert_allclose(ha[i], frames[same].mean(axis=0), atol=1e-12)


def test_last_frame_across_gap():
    slots = np.array([100, 101, 102, 105, 106])
    frames = slots.astype(float).reshape(-1, 1, 1, 1) * np.ones((1, 2, 2, 2))
    targets = np.array([103, 107, 105, 106, 101])
    pred = evaluation.last_frame(frames, slots, targets)
    # 103 -> 102 (t-1); 107 -> 106; 105 -> 102 (104, 103 missing: latest earlier frame);
    # 106 -> 105; 101 -> 100
    np.testing.assert_array_equal(pred[:, 0, 0, 0], [102, 106, 102, 105, 100])
    assert pred.shape == (5, 2, 2, 2)
    with pytest.raises(flowfiles.DataError):
        evaluation.last_frame(frames, slots, np.array([100]))


def test_scores_keys_and_values():
    y = np.zeros((2, 1, 1, 2))
    p = np.zeros((2, 1, 1, 2))
    p[:, 0, 0, 0] = [3.0, -3.0]      # flow 0: rmse 3, mae 3
    p[:, 0, 0, 1] = [0.0, 4.0]       # flow 1: rmse sqrt(8), mae 2
    s = evaluation.scores(y, p)
    assert set(s) == {"rmse", "mae", "rmse_flow0", "mae_flow0", "rmse_flow1", "mae_flow1"}
    assert s["rmse"] == pytest.approx(math.sqrt((9 + 9 + 0 + 16) / 4))
    assert s["mae"] == pytest.approx(10 / 4)
    assert s["rmse_flow0"] == pytest.approx(3.0) and s["mae_flow0"] == pytest.approx(3.0)
    assert s["rmse_flow1"] == pytest.approx(math.sqrt(8)) and s["mae_flow1"] == pytest.approx(2.0)
    s = evaluation.scores(y, p, prefix="_real")
    assert set(s) == {"rmse_real", "mae_real", "rmse_real_flow0", "mae_real_flow0",
                      "rmse_real_flow1", "mae_real_flow1"}
    assert s["rmse_real_flow1"] == pytest.approx(math.sqrt(8))


def test_mape_counts_only_values_above_the_threshold():
    y = np.array([[0.0, 10.0], [20.0, 40.0]])[:, None, None, :]   # (2, 1, 1, 2): two flows
    p = np.array([[5.0, 99.0], [25.0, 30.0]])[:, None, None, :]
    # above 10: 20 (flow 0, error 5: 25%) and 40 (flow 1, error 10: 25%); 0 and 10 itself are
    # left out, however wrong their predictions
    assert evaluation.mape(y, p, 10) == pytest.approx(0.25)
    assert evaluation.mape(y, p, 0) == pytest.approx((8.9 + 0.25 + 0.25) / 3)
    assert evaluation.mape(y, p, 40) is None   # no value above: undefined, not 0
    s = evaluation.scores(y, p, "_ha", mape_threshold=10)
    assert s["mape_ha"] == pytest.approx(0.25)
    assert s["mape_ha_flow0"] == pytest.approx(0.25) and s["mape_ha_flow1"] == pytest.approx(0.25)
    s = evaluation.scores(y, p, mape_threshold=15)
    assert s["mape_flow0"] == pytest.approx(0.25) and s["mape_flow1"] == pytest.approx(0.25)
    assert evaluation.scores(y, p, mape_threshold=30)["mape_flow0"] is None
