"""Tests of datasets.py: the sample index (closeness/period/trend windows looked up by time), the
external features (metadata, holidays, meteorology, slot of day), the min-max scaler, and
load_dataset end to end on small TaxiBJ files written here and on the real BikeNYC file.

Every expectation is computed here by hand or by an independent (plain Python / datetime / h5py)
route, never copied from a run of the code under test.
"""
from datetime import date, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest

import datasets
import flowfiles
import timestamps
from conftest import (BIKENYC_PATH, BJ_DAYS, BJ_MISSING, BJ_STARTS, BJ_T, HOLIDAY_PATH, SHARED_DATA,
                      from_sid, read_holidays_independently, sid, stamp, stamp_of_sid,
                      write_taxibj)

pytestmark = pytest.mark.smoke


# ---- the sample index ----------------------------------------------------------------------------

GAP_T = 4
GAP_START = sid(date(2014, 4, 7), 1, GAP_T)       # a Monday; not zero, so offsets matter
GAP_REMOVED = {2, 13, 30, 35}                      # relative slots missing from the series
GAP_REL = np.array([r for r in range(44) if r not in GAP_REMOVED])   # 11 days x 4 slots


def test_build_index_with_gaps_hand_computed():
    slots = GAP_START + GAP_REL
    index = datasets.build_index(slots, GAP_T, 2, 1, 1)
    # Target r needs r-1, r-2 (closeness), r-4 (period), r-28 (trend), all present.
    # By hand: 28, 29 ok; 30 missing; 31 (needs 30) no; 32 (needs 30) no; 33 ok; 34 (period 30) no;
    # 35 missing; 36, 37 (need 35) no; 38 ok; 39 (period 35) no; 40 ok; 41 (trend 13) no; 42, 43 ok.
    # Array position of relative slot r = r - (number of removed slots below r).
    expected = {  # target: (target pos, closeness pos [t-1, t-2], period pos [t-4], trend pos [t-28])
        28: (26, [25, 24], [22], [0]),
        29: (27, [26, 25], [23], [1]),
        33: (30, [29, 28], [27], [4]),
        38: (34, [33, 32], [31], [9]),
        40: (36, [35, 34], [32], [11]),
        42: (38, [37, 36], [34], [12]),
        43: (39, [38, 37], [35], [13]),
    }
    rows = list(expected.values())
    np.testing.assert_array_equal(index["target"], [r[0] for r in rows])
    np.testing.assert_array_equal(index["closeness"], [r[1] for r in rows])
    np.testing.assert_array_equal(index["period"], [r[2] for r in rows])
    np.testing.assert_array_equal(index["trend"], [r[3] for r in rows])
    assert index["closeness"].shape == (7, 2)
    assert index["period"].shape == (7, 1) and index["trend"].shape == (7, 1)
    # the target slots themselves
    np.testing.assert_array_equal(slots[index["target"]] - GAP_START, list(expected))


def test_build_index_looks_up_by_timestamp_not_position():
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(GAP_REL))
    slots = (GAP_START + GAP_REL)[perm]               # frames stored in a scrambled order
    index = datasets.build_index(slots, GAP_T, 2, 1, 1)
    targets = slots[index["target"]]
    assert sorted((targets - GAP_START).tolist()) == [28, 29, 33, 38, 40, 42, 43]
    np.testing.assert_array_equal(slots[index["closeness"]], targets[:, None] - [1, 2])
    np.testing.assert_array_equal(slots[index["period"]], targets[:, None] - [4])
    np.testing.assert_array_equal(slots[index["trend"]], targets[:, None] - [28])


def test_build_index_longer_windows_nearest_first():
    # contiguous series, lc=3, lp=2, lq=2, T=4: targets start at 2*28 = 56
    slots = 1000 + np.arange(70)
    index = datasets.build_index(slots, GAP_T, 3, 2, 2)
    np.testing.assert_array_equal(index["target"], np.arange(56, 70))
    np.testing.assert_array_equal(index["closeness"][0], [55, 54, 53])
    np.testing.assert_array_equal(index["period"][0], [52, 48])
    np.testing.assert_array_equal(index["trend"][0], [28, 0])


def test_build_index_zero_length_branches():
    slots = GAP_START + GAP_REL
    index = datasets.build_index(slots, GAP_T, 1, 0, 0)
    # only t-1 is needed: every present r >= 1 whose predecessor is present
    expected_rel = [r for r in range(1, 44)
                    if r not in GAP_REMOVED and r - 1 not in GAP_REMOVED]
    assert len(expected_rel) == 35
    np.testing.assert_array_equal(slots[index["target"]] - GAP_START, expected_rel)
    assert index["period"].shape == (35, 0)
    assert index["trend"].shape == (35, 0)
    assert index["closeness"].shape == (35, 1)
    np.testing.assert_array_equal(slots[index["closeness"][:, 0]], slots[index["target"]] - 1)


# ---- external features ---------------------------------------------------------------------------

def test_metadata_features_known_dates():
    T = 48
    known = {  # date: (weekday index Monday = 0, weekday flag)
        date(2014, 4, 7): (0, 1),    # Monday
        date(2014, 4, 8): (1, 1),    # Tuesday
        date(2013, 1, 2): (2, 1),    # Wednesday
        date(2015, 10, 1): (3, 1),   # Thursday
        date(2014, 4, 11): (4, 1),   # Friday
        date(2014, 4, 12): (5, 0),   # Saturday
        date(2016, 4, 10): (6, 0),   # Sunday
    }
    for d, (wd, _) in known.items():
        assert d.weekday() == wd    # the test's own calendar is right
    ids = np.array([sid(d, s, T) for d in known for s in (1, 48)])
    feats = datasets.metadata_features(ids, T)
    assert feats.shape == (14, 8)
    for i, (wd, flag) in enumerate(v for v in known.values() for _ in (1, 48)):
        expected = np.zeros(8)
        expected[wd] = 1
        expected[7] = flag
        np.testing.assert_array_equal(feats[i], expected)


def test_holiday_features_real_file():
    T = 48
    holidays = flowfiles.load_holidays(str(HOLIDAY_PATH))
    cases = [(date(2013, 1, 1), 1), (date(2013, 10, 3), 1), (date(2016, 6, 11), 1),
             (date(2014, 2, 1), 1),                       # a holiday Saturday
             (date(2013, 1, 8), 0), (date(2014, 3, 5), 0),  # normal weekdays
             (date(2014, 3, 8), 0)]                       # a normal Saturday is not a holiday
    ids = np.array([sid(d, s, T) for d, _ in cases for s in (1, 24, 48)])
    feats = datasets.holiday_features(ids, T, holidays)
    assert feats.shape == (len(ids), 1)
    np.testing.assert_array_equal(feats[:, 0], [h for _, h in cases for _ in range(3)])


def test_time_of_day_feature_is_the_targets_slot_one_hot_after_the_official_vector(tmp_path):
    plain = datasets.load_dataset("synthetic", str(tmp_path), 3, 1, 1, 10, use_holiday=True)
    ds = datasets.load_dataset("synthetic", str(tmp_path), 3, 1, 1, 10, use_holiday=True,
                               use_time_of_day=True)
    assert ds.external.shape == (plain.n_samples, 9 + 24)
    np.testing.assert_array_equal(ds.external[:, :9], plain.external)
    stamps = timestamps.format_timestamps(ds.target_slots, 24)         # YYYYMMDD + slot 01..24
    hours = np.array([int(s[8:]) - 1 for s in stamps])
    np.testing.assert_array_equal(ds.external[:, 9:], np.eye(24)[hours])


def test_a_tuning_run_leaves_the_test_period_out_and_scores_the_days_before_it(synthetic_dir):
    full = datasets.load_dataset("synthetic", str(synthetic_dir), 3, 1, 1, 10, use_holiday=True)
    tune = datasets.load_dataset("synthetic", str(synthetic_dir), 3, 1, 1, 10, use_holiday=True,
                                 tune_days=3)
    assert (tune.n_samples, tune.n_test) == (full.n_train, 3 * 24)
    np.testing.assert_array_equal(tune.target_slots, full.target_slots[:full.n_train])
    np.testing.assert_array_equal(tune.external, full.external[:full.n_train])
    # no frame of the test period is kept, and the scaler sees only what precedes the scored days
    assert tune.slot_ids.max() < full.slot_ids[full.first_test_frame]
    assert tune.scaler.max == full.frames[:tune.first_test_frame].max()
    assert tune.first_test_frame == full.index["target"][full.n_train - 3 * 24]
    assert tune.notes[-1] == ("tuning run: the 10 test days are left out; the 3 days before them "
                              "are scored in their place")
    with pytest.raises(flowfiles.DataError, match="tune_days=200 x 24 needs 4800.*lower tune_days"):
        datasets.load_dataset("synthetic", str(synthetic_dir), 3, 1, 1, 10, tune_days=200)


def test_external_features_keep_the_last_known_weather_for_later_steps():
    T = 4
    slots = np.arange(400, 440)
    weather = np.eye(17)[np.arange(len(slots)) % 17]
    table = np.hstack([weather, np.arange(len(slots))[:, None], np.zeros((len(slots), 1))])
    features = datasets.ExternalFeatures(T, use_meta=False, meteorology=(slots, table, "m.h5"),
                                         scaling={"wind": [0.0, 100.0], "temperature": [0.0, 1.0]})
    starts = np.array([420, 430])
    one_step = features(starts)                          # weather of t-1
    later = features(starts + 2, known_before=starts)    # step 3: still the slot before the start
    np.testing.assert_array_equal(one_step, later)
    assert list(one_step[:, 17] * 100) == [19.0, 29.0]   # rows of slots 419 and 429
    assert list(features(starts + 2)[:, 17] * 100) == [21.0, 31.0]  # one-step at t+2: t+1


# ---- load_dataset on TaxiBJ, small files written here --------------------------------------------

def expected_taxibj_targets():
    """Target slot numbers by brute force over a Python set of kept slots."""
    kept = set()
    for year, start in BJ_STARTS.items():
        for k in range(BJ_DAYS):
            if (year, k) == BJ_MISSING[:2]:
                continue        # the whole incomplete day is removed
            kept.update(sid(start + timedelta(days=k), s, BJ_T) for s in range(1, BJ_T + 1))
    need = [1, 2, 3, BJ_T, 7 * BJ_T]
    return sorted(t for t in kept if all(t - o in kept for o in need)), kept


@pytest.fixture(scope="module")
def taxibj(tmp_path_factory):
    root = tmp_path_factory.mktemp("taxibj_data")
    flows, meteo = write_taxibj(root)
    ds = datasets.load_dataset("taxibj", str(root), 3, 1, 1, 1, use_meta=True, use_holiday=True,
                               use_meteorology=True)
    return ds, flows, meteo


def test_taxibj_frames_channels_last_and_incomplete_day_gone(taxibj):
    ds, flows, _ = taxibj
    _, kept = expected_taxibj_targets()
    assert len(kept) == 4 * BJ_DAYS * BJ_T - BJ_T
    assert ds.frames.shape == (len(kept), 32, 32, 2)
    assert ds.T == 48
    np.testing.assert_array_equal(ds.slot_ids, sorted(kept))
    bad_day = BJ_STARTS[14] + timedelta(days=BJ_MISSING[1])
    days_present = {from_sid(s, BJ_T)[0] for s in ds.slot_ids}
    assert bad_day not in days_present
    assert bad_day - timedelta(days=1) in days_present and bad_day + timedelta(days=1) in days_present
    assert not np.any(ds.frames == 700.0)   # the marked value in the incomplete day is gone
    for i in [0, 1, 479, 480, 1000, len(kept) - 1] + list(range(500, 1872, 97)):
        raw = flows[stamp_of_sid(ds.slot_ids[i], BJ_T)]
        np.testing.assert_array_equal(ds.frames[i], raw.transpose(1, 2, 0))
        np.testing.assert_array_equal(ds.frames[i, :, :, 0], raw[0])
        np.testing.assert_array_equal(ds.frames[i, :, :, 1], raw[1])


def test_taxibj_samples_and_split(taxibj):
    ds, _, _ = taxibj
    targets, _ = expected_taxibj_targets()
    # per period days 7..9 are targets (trend = one week back); in BJ14 day 8 is removed and day 9
    # loses its period frame, so BJ14 keeps one day: 4 * 144 - 96 = 480.
    assert len(targets) == 480
    assert ds.n_samples == 480
    np.testing.assert_array_equal(ds.target_slots, targets)
    np.testing.assert_array_equal(ds.slot_ids[ds.index["closeness"]],
                                  np.array(targets)[:, None] - [1, 2, 3])
    np.testing.assert_array_equal(ds.slot_ids[ds.index["period"]], np.array(targets)[:, None] - 48)
    np.testing.assert_array_equal(ds.slot_ids[ds.index["trend"]], np.array(targets)[:, None] - 336)
    # the test set is the last days_test * 48 samples = the last day of BJ16
    assert ds.n_test == 48 and ds.n_train == 432
    last_day = BJ_STARTS[16] + timedelta(days=BJ_DAYS - 1)
    np.testing.assert_array_equal(ds.target_slots[ds.n_train:],
                                  [sid(last_day, s, BJ_T) for s in range(1, 49)])


def test_taxibj_scaler_fitted_before_first_test_target(taxibj):
    ds, flows, _ = taxibj
    last_day = BJ_STARTS[16] + timedelta(days=BJ_DAYS - 1)
    first_test = sid(last_day, 1, BJ_T)
    assert ds.slot_ids[ds.first_test_frame] == first_test
    train_values = np.concatenate([x.ravel() for st, x in flows.items()
                                   if datasets_sid(st) < first_test
                                   and from_sid(datasets_sid(st), BJ_T)[0]
                                   != BJ_STARTS[14] + timedelta(days=BJ_MISSING[1])])
    assert ds.scaler.max == train_values.max() == 500.0
    assert ds.scaler.min == train_values.min() == 3.0
    # the test period holds values outside the fitted range
    test_frames = ds.frames[ds.index["target"][ds.n_train:]]
    assert test_frames.max() == 1000.0 and test_frames.min() == 1.0


def datasets_sid(st):
    """Slot number of a 'YYYYMMDDSS' string at T = 48, via datetime."""
    return sid(date(int(st[:4]), int(st[4:6]), int(st[6:8])), int(st[8:]), BJ_T)


def test_taxibj_external_features(taxibj):
    ds, _, meteo = taxibj
    holidays = read_holidays_independently()
    assert ds.external.shape == (480, 28)
    assert ds.external.dtype == np.float32
    targets = ds.target_slots
    prev = [stamp_of_sid(t - 1, BJ_T) for t in targets]    # the weather is that of slot t-1
    raw_wind = np.array([meteo[p][1] for p in prev])
    raw_temp = np.array([meteo[p][2] for p in prev])
    n_train = 432
    w_lo, w_hi = raw_wind[:n_train].min(), raw_wind[:n_train].max()
    t_lo, t_hi = raw_temp[:n_train].min(), raw_temp[:n_train].max()
    expected = np.zeros((480, 28))
    for i, t in enumerate(targets):
        d, _ = from_sid(t, BJ_T)
        expected[i, d.weekday()] = 1
        expected[i, 7] = d.weekday() < 5
        expected[i, 8] = f"{d:%Y%m%d}" in holidays
        expected[i, 9 + meteo[prev[i]][0]] = 1
        expected[i, 26] = (raw_wind[i] - w_lo) / (w_hi - w_lo)
        expected[i, 27] = (raw_temp[i] - t_lo) / (t_hi - t_lo)
    np.testing.assert_array_equal(ds.external[:, :26], expected[:, :26])
    np.testing.assert_allclose(ds.external[:, 26:], expected[:, 26:], rtol=1e-5, atol=1e-5)
    # the holiday column is not trivially constant with these periods
    assert 0 < ds.external[:, 8].sum() < 480
    # the weather one-hot is really t-1's and not the target's own (they differ somewhere)
    own = np.array([meteo[stamp_of_sid(t, BJ_T)][0] for t in targets])
    assert np.any(own != ds.external[:, 9:26].argmax(axis=1))
    # training rows span exactly [0, 1]; test rows may leave it
    train = ds.external[:n_train, 26:]
    np.testing.assert_allclose(train.min(axis=0), [0, 0], atol=1e-6)
    np.testing.assert_allclose(train.max(axis=0), [1, 1], atol=1e-6)
    assert ds.external[n_train:, 26].max() > 1.0
    assert ds.external[n_train:, 27].min() < 0.0


def test_taxibj_meteorology_gap_falls_back_to_the_latest_earlier_entry(tmp_path):
    # drop the weather of the slot right before a training target: the official code's "previous
    # row" is then the slot before that
    last_day = BJ_STARTS[15] + timedelta(days=BJ_DAYS - 1)
    _, meteo = write_taxibj(tmp_path, drop_meteo=stamp(last_day, 10))
    ds = datasets.load_dataset("taxibj", str(tmp_path), 3, 1, 1, 1, use_meta=True,
                               use_holiday=True, use_meteorology=True)
    row = int(np.flatnonzero(ds.target_slots == sid(last_day, 11, BJ_T))[0])
    expected = np.eye(17)[meteo[stamp(last_day, 9)][0]]
    np.testing.assert_array_equal(ds.external[row, 9:26], expected)


def rewrite_meteorology(root, meteo, keep):
    """Replace BJ_Meteorology.h5 by one holding only the time stamps in `keep`."""
    with h5py.File(Path(root) / "TaxiBJ" / "BJ_Meteorology.h5", "w") as f:
        f.create_dataset("date", data=np.array(keep, dtype="S10"))
        f.create_dataset("Weather", data=np.eye(17)[[meteo[k][0] for k in keep]])
        f.create_dataset("WindSpeed", data=np.array([meteo[k][1] for k in keep]))
        f.create_dataset("Temperature", data=np.array([meteo[k][2] for k in keep]))


def test_taxibj_meteorology_not_covering_the_data_raises(tmp_path):
    first = BJ_STARTS[13]
    _, meteo = write_taxibj(tmp_path)
    keep = sorted(k for k in meteo if k >= stamp(first + timedelta(days=9), 1))
    rewrite_meteorology(tmp_path, meteo, keep)
    with pytest.raises(flowfiles.DataError, match="no entry within a day before"):
        datasets.load_dataset("taxibj", str(tmp_path), 3, 1, 1, 1, use_meta=True,
                              use_holiday=True, use_meteorology=True)


def test_taxibj_weather_more_than_a_day_old_is_refused(tmp_path):
    # a meteorology file that stops two days before the end of BJ16: stale rows are not reused
    _, meteo = write_taxibj(tmp_path)
    end = stamp(BJ_STARTS[16] + timedelta(days=BJ_DAYS - 2), 1)
    keep = sorted(k for k in meteo if k < end)
    rewrite_meteorology(tmp_path, meteo, keep)
    with pytest.raises(flowfiles.DataError, match="no entry within a day before 2016040"):
        datasets.load_dataset("taxibj", str(tmp_path), 3, 1, 1, 1, use_meta=True,
                              use_holiday=True, use_meteorology=True)


def test_taxibj_meteorology_scaling_ranges_are_kept(taxibj):
    ds, _, meteo = taxibj
    train_prev = {stamp_of_sid(s - 1, BJ_T) for s in ds.target_slots[:ds.n_train]}
    winds = [meteo[k][1] for k in train_prev]
    temps = [meteo[k][2] for k in train_prev]
    assert ds.external_scaling["wind"] == pytest.approx([min(winds), max(winds)], rel=1e-6)
    assert ds.external_scaling["temperature"] == pytest.approx([min(temps), max(temps)], rel=1e-6)


# ---- load_dataset on the real BikeNYC file -------------------------------------------------------

@pytest.fixture(scope="module")
def bikenyc():
    ds = datasets.load_dataset("bikenyc", str(SHARED_DATA), 3, 4, 4, 10)
    with h5py.File(BIKENYC_PATH, "r") as f:
        data, dates = f["data"][()], f["date"][()]
    return ds, data, dates


def test_bikenyc_real_file(bikenyc):
    ds, data, dates = bikenyc
    assert data.shape == (4392, 2, 16, 8)
    assert ds.frames.shape == (4392, 16, 8, 2)
    assert ds.T == 24
    np.testing.assert_array_equal(ds.frames[0], data[0].transpose(1, 2, 0))
    np.testing.assert_array_equal(ds.frames[-1], data[-1].transpose(1, 2, 0))
    assert ds.n_samples == 4392 - 4 * 7 * 24 == 3720
    assert ds.n_test == 240 and ds.n_train == 3480
    assert ds.external.shape == (3720, 8)
    # contiguous hourly series: targets are positions 672..4391
    np.testing.assert_array_equal(ds.index["target"], np.arange(672, 4392))
    assert stamp_of_sid(ds.target_slots[0], 24) == dates[672].decode() == "2014042901"
    # 2014-04-29 is a Tuesday
    np.testing.assert_array_equal(ds.external[0], [0, 1, 0, 0, 0, 0, 0, 1])
    # scaler: min and max of the frames before the first test target, from the raw file
    first_test = 4392 - 240
    assert ds.first_test_frame == first_test
    assert ds.scaler.min == 0.0
    assert ds.scaler.max == float(data[:first_test].max())


def test_bikenyc_too_many_test_days_raises():
    with pytest.raises(flowfiles.DataError):
        datasets.load_dataset("bikenyc", str(SHARED_DATA), 3, 4, 4, 160)


# ---- MinMaxScaler --------------------------------------------------------------------------------

def test_minmax_scaler():
    x = np.array([[3.0, 7.0], [5.0, 11.0]])
    sc = datasets.MinMaxScaler().fit(x)
    assert (sc.min, sc.max) == (3.0, 11.0)
    np.testing.assert_allclose(sc.transform(np.array([3.0, 11.0, 7.0, 5.0])), [-1, 1, 0, -0.5])
    # values outside the fitted range map outside [-1, 1]
    np.testing.assert_allclose(sc.transform(np.array([15.0, -1.0])), [2.0, -2.0])
    y = np.random.default_rng(0).uniform(-20, 40, size=(4, 3, 2))
    np.testing.assert_allclose(sc.inverse_transform(sc.transform(y)), y, rtol=1e-12, atol=1e-12)
    assert sc.to_dict() == {"min": 3.0, "max": 11.0}
    sc2 = datasets.MinMaxScaler.from_dict(sc.to_dict())
    np.testing.assert_allclose(sc2.transform(y), sc.transform(y))
    np.testing.assert_allclose(sc2.inverse_transform(np.array([-1.0, 1.0])), [3.0, 11.0])
    with pytest.raises(flowfiles.DataError):
        datasets.MinMaxScaler().fit(np.full((3, 3), 4.0))
