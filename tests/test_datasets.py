"""Tests of datasets.py (time stamps, sample index, external features, loaders, scaling, the tf.data
pipeline) and of the synthetic city generator.

Every expectation is computed here by hand or by an independent (plain Python / datetime / h5py)
route, never copied from a run of the code under test.
"""
from datetime import date, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest

import datasets
import synthetic_city
import cleaning
import flowfiles
import pipeline

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BIKENYC_PATH = SHARED_DATA / "BikeNYC" / "NYC14_M16x8_T60_NewEnd.h5"
HOLIDAY_PATH = SHARED_DATA / "TaxiBJ" / "BJ_Holiday.txt"
EPOCH = date(1970, 1, 1)


# ---- independent helpers ---------------------------------------------------------------------------

def sid(d, slot, T):
    """Slot number of (date, 1-based slot), computed with datetime: day number * T + slot - 1."""
    return (d - EPOCH).days * T + slot - 1


def from_sid(n, T):
    """Inverse of sid: -> (date, 1-based slot)."""
    n = int(n)
    return EPOCH + timedelta(days=n // T), n % T + 1


def stamp(d, slot):
    return f"{d:%Y%m%d}{slot:02d}"


def stamp_of_sid(n, T):
    d, s = from_sid(n, T)
    return stamp(d, s)


def read_holidays_independently():
    return set(HOLIDAY_PATH.read_bytes().decode("ascii").split())


# ---- 1. time stamps --------------------------------------------------------------------------------

def test_parse_timestamps_values_and_bytes():
    cases = [(date(1970, 1, 1), 1, 24), (date(2014, 4, 1), 1, 24), (date(2014, 9, 30), 24, 24),
             (date(2016, 2, 29), 48, 48), (date(2013, 7, 1), 17, 48), (date(1969, 12, 31), 3, 4)]
    for d, s, T in cases:
        expected = sid(d, s, T)
        assert flowfiles.parse_timestamps([stamp(d, s)], T)[0] == expected
        assert flowfiles.parse_timestamps(np.array([stamp(d, s).encode()], dtype="S10"),
                                         T)[0] == expected
    # Hand values: 1970-01-01 slot 1 is 0; the next day's slot 1 is T.
    assert flowfiles.parse_timestamps(["1970010101", "1970010201"], 24).tolist() == [0, 24]
    assert flowfiles.parse_timestamps(["1970010148"], 48).tolist() == [47]


def test_parse_format_round_trip():
    stamps = ["2013070101", "2013123148", "2014010101", "2016022924", "2016030101", "2015110130",
              "2000022948", "1999123101"]
    ids = flowfiles.parse_timestamps(stamps, 48)
    assert list(flowfiles.format_timestamps(ids, 48)) == stamps
    # and the other way round over a contiguous range crossing a leap day and a year end
    T = 24
    ids = np.arange(sid(date(2015, 12, 30), 1, T), sid(date(2016, 3, 2), 24, T) + 1)
    text = flowfiles.format_timestamps(ids, T)
    assert [stamp_of_sid(i, T) for i in ids[::37]] == list(text[::37])
    np.testing.assert_array_equal(flowfiles.parse_timestamps(text, T), ids)


def test_weekday_matches_datetime():
    days = [date(1970, 1, 1), date(1969, 12, 28), date(2013, 1, 1), date(2014, 4, 1),
            date(2014, 4, 5), date(2014, 4, 6), date(2014, 4, 7), date(2016, 2, 29),
            date(2016, 4, 10), date(2015, 11, 1)]
    for T in (24, 48):
        for slot in (1, T):
            ids = np.array([sid(d, slot, T) for d in days])
            assert flowfiles.weekday(ids, T).tolist() == [d.weekday() for d in days]


@pytest.mark.parametrize("bad, T", [
    ("201404010", 24),      # too short
    ("20140401011", 24),    # too long
    ("2014O40101", 24),     # a letter
    ("20140401 1", 24),     # a space
    ("2014040100", 24),     # slot 00
    ("2014040125", 24),     # slot T + 1
    ("2014040149", 48),     # slot T + 1 (half hours)
    ("2014023001", 24),     # no such date
    ("2014130101", 24),     # no such month
])
def test_bad_stamps_raise(bad, T):
    with pytest.raises(flowfiles.DataError):
        flowfiles.parse_timestamps([stamp(date(2014, 4, 1), 1), bad], T)
    with pytest.raises(flowfiles.DataError):
        flowfiles.parse_timestamps(np.array([bad.encode()], dtype="S11"), T)


def test_slot_T_is_accepted_but_T_plus_one_is_not():
    assert flowfiles.parse_timestamps(["2014040148"], 48)[0] == sid(date(2014, 4, 1), 48, 48)
    with pytest.raises(flowfiles.DataError):
        flowfiles.parse_timestamps(["2014040148"], 24)


# ---- 2. build_index ----------------------------------------------------------------------------------

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


# ---- 3. complete days --------------------------------------------------------------------------------

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


# ---- 4. external features ----------------------------------------------------------------------------

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


def test_load_holidays_real_file():
    holidays = flowfiles.load_holidays(str(HOLIDAY_PATH))
    text = read_holidays_independently()
    assert len(text) == 106 and len(holidays) == 106
    expected = {(date(int(t[:4]), int(t[4:6]), int(t[6:])) - EPOCH).days for t in text}
    assert holidays == expected
    # the last line has no newline and must still be read
    assert (date(2016, 6, 11) - EPOCH).days in holidays
    assert (date(2013, 1, 1) - EPOCH).days in holidays


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


# ---- 5. TaxiBJ loader, end to end on small files written here -------------------------------------

BJ_T = 48
BJ_DAYS = 10
BJ_STARTS = {13: date(2013, 9, 11), 14: date(2014, 3, 1), 15: date(2015, 3, 29),
             16: date(2016, 3, 28)}
BJ_MISSING = (14, 8, 17)            # BJ14, day index 8 (2014-03-09), slot 17 is missing
# (year, day index, slot, flow, row, col, value) overrides; other values are in 10..100
BJ_SPECIAL = {
    "incomplete_day_big": (14, 8, 1, 0, 0, 0, 700.0),   # in the incomplete day: dropped
    "train_max": (16, 8, 48, 1, 5, 7, 500.0),           # last frame before the first test target
    "test_big": (16, 9, 5, 0, 1, 2, 1000.0),            # in the test period: not fitted
    "train_min": (13, 2, 3, 1, 3, 3, 3.0),
    "test_small": (16, 9, 6, 0, 0, 0, 1.0),
}
BJ_TEST_WIND_SLOT = (16, 9, 20)      # t-1 of a test target: wind far above the training range
BJ_TEST_TEMP_SLOT = (16, 9, 30)      # t-1 of a test target: temperature far below


def write_taxibj(root, drop_meteo=None):
    """Write BJ13..BJ16 flow files, BJ_Meteorology.h5 and a copy of the real holiday list under
    root/TaxiBJ. Returns the truth: {stamp: (2, 32, 32) data} and {stamp: (weather, wind, temp)}."""
    rng = np.random.default_rng(2017)
    folder = Path(root) / "TaxiBJ"
    folder.mkdir(parents=True)
    flows, meteo = {}, {}
    for year, start in BJ_STARTS.items():
        stamps = [stamp(start + timedelta(days=k), s)
                  for k in range(BJ_DAYS) for s in range(1, BJ_T + 1)]
        for st in stamps:   # meteorology covers every slot of the period
            meteo[st] = (int(rng.integers(0, 17)), float(rng.uniform(0, 12)),
                         float(rng.uniform(-10, 30)))
        y, d, s = BJ_MISSING
        if year == y:
            stamps.remove(stamp(start + timedelta(days=d), s))
        data = rng.integers(10, 101, size=(len(stamps), 2, 32, 32)).astype(np.float64)
        for (yy, d, s, f, r, c, v) in BJ_SPECIAL.values():
            if yy == year:
                data[stamps.index(stamp(start + timedelta(days=d), s)), f, r, c] = v
        for st, x in zip(stamps, data):
            flows[st] = x
        with h5py.File(folder / f"BJ{year}_M32x32_T30_InOut.h5", "w") as f:
            f.create_dataset("data", data=data)
            f.create_dataset("date", data=np.array(stamps, dtype="S10"))
    for key, (y, d, s) in {"wind": BJ_TEST_WIND_SLOT, "temp": BJ_TEST_TEMP_SLOT}.items():
        st = stamp(BJ_STARTS[y] + timedelta(days=d), s)
        w, wind, temp = meteo[st]
        meteo[st] = (w, 40.0, temp) if key == "wind" else (w, wind, -50.0)
    keys = [k for k in meteo if k != drop_meteo]
    keys = [keys[i] for i in rng.permutation(len(keys))]   # rows not in time order
    with h5py.File(folder / "BJ_Meteorology.h5", "w") as f:
        f.create_dataset("date", data=np.array(keys, dtype="S10"))
        f.create_dataset("Weather", data=np.eye(17)[[meteo[k][0] for k in keys]])
        f.create_dataset("WindSpeed", data=np.array([meteo[k][1] for k in keys]))
        f.create_dataset("Temperature", data=np.array([meteo[k][2] for k in keys]))
    (folder / "BJ_Holiday.txt").write_bytes(HOLIDAY_PATH.read_bytes())
    return flows, meteo


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


def test_taxibj_meteorology_scaling_ranges_are_kept(taxibj):
    ds, _, meteo = taxibj
    train_prev = {stamp_of_sid(s - 1, BJ_T) for s in ds.target_slots[:ds.n_train]}
    winds = [meteo[k][1] for k in train_prev]
    temps = [meteo[k][2] for k in train_prev]
    assert ds.external_scaling["wind"] == pytest.approx([min(winds), max(winds)], rel=1e-6)
    assert ds.external_scaling["temperature"] == pytest.approx([min(temps), max(temps)], rel=1e-6)


def test_taxibj_missing_file_raises(tmp_path):
    write_taxibj(tmp_path)
    (tmp_path / "TaxiBJ" / "BJ15_M32x32_T30_InOut.h5").unlink()
    with pytest.raises(flowfiles.DataError):
        datasets.load_dataset("taxibj", str(tmp_path), 3, 1, 1, 1)


# ---- 6. BikeNYC, the real file ---------------------------------------------------------------------


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


def test_unknown_dataset_and_missing_file_raise(tmp_path):
    with pytest.raises(flowfiles.DataError):
        datasets.load_dataset("nosuch", str(tmp_path), 3, 1, 1, 1)
    with pytest.raises(flowfiles.DataError):
        datasets.load_dataset("bikenyc", str(tmp_path), 3, 1, 1, 1)


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


# ---- 7. MinMaxScaler ----------------------------------------------------------------------------------

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


# ---- 8. the tf.data pipeline ---------------------------------------------------------------------

def small_flow_dataset(lc=3, lp=2, lq=1, ext_cols=3, n_test=4):
    """A hand-built FlowDataset: T=4, 16 days, 3x2 grid, 2 flows, a few missing slots."""
    T = 4
    rng = np.random.default_rng(11)
    start = sid(date(2014, 4, 7), 1, T)
    rel = np.array([r for r in range(64) if r not in (5, 33, 41)])
    slots = start + rel
    frames = rng.integers(0, 50, size=(len(slots), 3, 2, 2)).astype(np.float32)
    index = datasets.build_index(slots, T, lc, lp, lq)
    n = len(index["target"])
    if ext_cols:
        external = np.column_stack([np.arange(n), rng.random((n, ext_cols - 1))]).astype(np.float32)
    else:
        external = np.zeros((n, 0), dtype=np.float32)
    ds = datasets.FlowDataset(frames, slots, T, index, external, n_test, "small")
    return ds, dict(zip(slots.tolist(), frames))


def collect(tf_data):
    xs, ys = [], []
    for x, y in tf_data:
        xs.append({k: v.numpy() for k, v in x.items()})
        ys.append(y.numpy())
    keys = xs[0].keys()
    return {k: np.concatenate([x[k] for x in xs]) for k in keys}, np.concatenate(ys)


def test_make_tf_dataset_matches_manual_construction():
    ds, by_slot = small_flow_dataset()
    T = ds.T
    n = ds.n_samples
    assert n > 8
    first_test_slot = ds.slot_ids[ds.index["target"][n - 4]]
    train = np.stack([v for s, v in by_slot.items() if s < first_test_slot])
    lo, hi = train.min(), train.max()

    def scaled(x):
        return 2.0 * (x - lo) / (hi - lo) - 1.0

    rows = [0, 3, n - 1, 5, n - 4]
    x, y = collect(pipeline.batches(ds, rows, batch_size=2))
    assert set(x) == {"closeness", "period", "trend", "external"}
    assert x["closeness"].shape == (5, 3, 2, 6)
    assert x["period"].shape == (5, 3, 2, 4)
    assert x["trend"].shape == (5, 3, 2, 2)
    assert y.shape == (5, 3, 2, 2)
    for i, r in enumerate(rows):
        t = int(ds.slot_ids[ds.index["target"][r]])
        np.testing.assert_allclose(y[i], scaled(by_slot[t]), atol=1e-5)
        for name, step, length in (("closeness", 1, 3), ("period", T, 2), ("trend", 7 * T, 1)):
            for j in range(length):
                frame = by_slot[t - (j + 1) * step]
                for f in range(2):
                    np.testing.assert_allclose(x[name][i, :, :, 2 * j + f],
                                               scaled(frame[:, :, f]), atol=1e-5)
        np.testing.assert_array_equal(x["external"][i], ds.external[r])
        assert x["external"][i, 0] == r


def test_make_tf_dataset_zero_length_branch_and_no_external():
    ds, by_slot = small_flow_dataset(lc=2, lp=0, lq=1, ext_cols=0)
    x, y = collect(pipeline.batches(ds, [0, 1, 2], batch_size=8))
    assert set(x) == {"closeness", "trend"}
    assert x["closeness"].shape == (3, 3, 2, 4) and x["trend"].shape == (3, 3, 2, 2)
    lo, hi = ds.scaler.min, ds.scaler.max
    t = int(ds.slot_ids[ds.index["target"][2]])
    np.testing.assert_allclose(x["closeness"][2, :, :, 2:4],
                               2 * (by_slot[t - 2] - lo) / (hi - lo) - 1, atol=1e-5)
    np.testing.assert_allclose(x["trend"][2], 2 * (by_slot[t - 28] - lo) / (hi - lo) - 1,
                               atol=1e-5)


def test_make_tf_dataset_keeps_the_order_of_the_rows_given():
    ds, _ = small_flow_dataset()
    rows = np.random.default_rng(0).permutation(ds.n_samples)  # as training.epoch_order gives
    x, y = collect(pipeline.batches(ds, rows, batch_size=3))
    np.testing.assert_array_equal(x["external"][:, 0].astype(int), rows)
    np.testing.assert_allclose(y, ds.scaler.transform(ds.targets(rows)), atol=1e-5)


def test_pipelines_run_without_tf_data_autotuning():
    # With autotuning on, the end of each iterator waited for the tuner's thread to wake (periods
    # doubling up to 10 s), which stretched every fit/evaluate/predict call
    # (backend.tf_pipeline_options).
    ds, _ = small_flow_dataset()
    data = pipeline.batches(ds, np.arange(ds.n_samples), batch_size=4)
    assert data.options().autotune.enabled is False
    import tensorflow as tf
    policy = data.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA


# ---- 10. the synthetic city ---------------------------------------------------------------------

def test_synthetic_city_generate():
    flows, dates = synthetic_city.generate()
    flows2, dates2 = synthetic_city.generate()
    np.testing.assert_array_equal(flows, flows2)
    np.testing.assert_array_equal(dates, dates2)
    assert flows.shape == (4392, 2, 16, 8) and flows.dtype == np.float64
    assert dates[0] == b"2014040101" and dates[-1] == b"2014093024"
    # contiguous hourly stamps, checked with datetime
    ids = flowfiles.parse_timestamps(dates, 24)
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


def test_time_of_day_feature_is_the_targets_slot_one_hot_after_the_official_vector(tmp_path):
    plain = datasets.load_dataset("synthetic", str(tmp_path), 3, 1, 1, 10, use_holiday=True)
    ds = datasets.load_dataset("synthetic", str(tmp_path), 3, 1, 1, 10, use_holiday=True,
                               use_time_of_day=True)
    assert ds.external.shape == (plain.n_samples, 9 + 24)
    np.testing.assert_array_equal(ds.external[:, :9], plain.external)
    stamps = flowfiles.format_timestamps(ds.target_slots, 24)         # YYYYMMDD + slot 01..24
    hours = np.array([int(s[8:]) - 1 for s in stamps])
    np.testing.assert_array_equal(ds.external[:, 9:], np.eye(24)[hours])


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


def test_flow_file_in_the_wrong_layout_is_refused(tmp_path):
    path = tmp_path / "channels_last.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.zeros((5, 16, 8, 2)))  # (n, H, W, 2): not the release's
        f.create_dataset("date", data=np.array([stamp(date(2014, 4, 1), s) for s in range(1, 6)],
                                               dtype="S10"))
    with pytest.raises(flowfiles.DataError, match=r"must be \(n, 2, H, W\)"):
        flowfiles.load_flow_file(str(path))


def test_taxibj_weather_more_than_a_day_old_is_refused(tmp_path):
    # a meteorology file that stops two days before the end of BJ16: stale rows are not reused
    _, meteo = write_taxibj(tmp_path)
    end = stamp(BJ_STARTS[16] + timedelta(days=BJ_DAYS - 2), 1)
    keep = sorted(k for k in meteo if k < end)
    rewrite_meteorology(tmp_path, meteo, keep)
    with pytest.raises(flowfiles.DataError, match="no entry within a day before 2016040"):
        datasets.load_dataset("taxibj", str(tmp_path), 3, 1, 1, 1, use_meta=True,
                              use_holiday=True, use_meteorology=True)


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
