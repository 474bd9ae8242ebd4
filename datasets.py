"""ST-ResNet's samples from a cleaned series: the index of each sample's target, closeness,
period and trend frames, the external features, the train/test split and the scaler.

The frames of a data set are held once, channels-last, on the original scale: (n, H, W, 2). A
sample is a row of index arrays into them (target, closeness, period, trend positions), so a
TaxiBJ-sized series never materialises its windows; pipeline.py gathers and scales each batch.
Every dependency is looked up by slot number, so gaps in the data are handled exactly.
"""
import sys

import numpy as np

import cleaning
import flowfiles
import timestamps
from timestamps import DataError, format_timestamps

def branch_offsets(T, len_closeness, len_period, len_trend):
    """How many slots before the target each branch's frames lie, nearest first."""
    return {"closeness": np.arange(1, len_closeness + 1),
            "period": T * np.arange(1, len_period + 1),
            "trend": 7 * T * np.arange(1, len_trend + 1)}


def slot_positions(slot_ids):
    """A function mapping slot numbers to frame positions (-1 where the slot is missing)."""
    lookup = np.full(slot_ids.max() - slot_ids.min() + 1, -1, dtype=np.int64)
    lookup[slot_ids - slot_ids.min()] = np.arange(len(slot_ids))

    def position(slots):
        rel = np.asarray(slots) - slot_ids.min()
        pos = np.full(rel.shape, -1, dtype=np.int64)
        inside = (rel >= 0) & (rel < len(lookup))
        pos[inside] = lookup[rel[inside]]
        return pos
    return position


def build_index(slot_ids, T, len_closeness, len_period, len_trend):
    """Positions of every valid sample's target and dependency frames.

    A slot t is a target when all of t-1..t-lc, t-T..t-lp*T and t-7T..t-lq*7T exist. Dependencies are
    ordered nearest first (t-1, t-2, ...), as in the official code. Returns a dict of int arrays:
    target (n,), closeness (n, lc), period (n, lp), trend (n, lq).
    """
    slot_ids = np.asarray(slot_ids, dtype=np.int64)
    offsets = branch_offsets(T, len_closeness, len_period, len_trend)
    position = slot_positions(slot_ids)
    deps = {name: position(slot_ids[:, None] - off[None, :]) for name, off in offsets.items()}
    valid = np.all([np.all(d >= 0, axis=1) for d in deps.values()], axis=0)
    index = {"target": np.flatnonzero(valid)}
    index.update({name: d[valid] for name, d in deps.items()})
    return index


def metadata_features(slot_ids, T):
    """Day-of-week one-hot (7, Monday first) + weekday flag (1 Mon-Fri, 0 weekend) -> (n, 8)."""
    wd = timestamps.weekday(slot_ids, T)
    return np.hstack([np.eye(7, dtype=np.float32)[wd], (wd < 5).astype(np.float32)[:, None]])


def time_of_day_features(slot_ids, T):
    """One-hot of the slot within its day (0 .. T-1) -> (n, T)."""
    return np.eye(T, dtype=np.float32)[np.asarray(slot_ids) % T]


def holiday_features(slot_ids, T, holidays):
    """1 where the slot's date is in the holiday list -> (n, 1)."""
    return np.isin(np.asarray(slot_ids) // T, list(holidays)).astype(np.float32)[:, None]


def meteorology_rows(target_slots, meteo_slots, T, source):
    """Rows of the meteorology table for each target: slot t-1 (the target's own weather is not
    known at prediction time), or where t-1 is missing the latest entry before it, as the
    official code's "previous row" does."""
    order = np.argsort(meteo_slots, kind="stable")
    wanted = np.asarray(target_slots) - 1
    pos = np.searchsorted(meteo_slots, wanted, side="right", sorter=order) - 1
    # no entry at all before t-1, or only one more than a day older: the file does not cover it
    stale = (pos < 0) | (wanted - meteo_slots[order[np.maximum(pos, 0)]] > T)
    if np.any(stale):
        first = format_timestamps(wanted[stale][:1], T)[0]
        raise DataError(f"{source} has no entry within a day before {first} (the slot before a "
                        f"target); it must cover the flow data's period")
    return order[pos]


class MinMaxScaler:
    """Min-max scaling to [-1, 1] with one global min and max (the paper's normalisation)."""

    def __init__(self, min_=None, max_=None):
        self.min, self.max = min_, max_

    def fit(self, x):
        self.min, self.max = float(np.min(x)), float(np.max(x))
        if self.max <= self.min:
            raise DataError(f"cannot scale: the training frames are constant ({self.min})")
        return self

    def transform(self, x):
        return 2.0 * (x - self.min) / (self.max - self.min) - 1.0

    def inverse_transform(self, x):
        return (x + 1.0) / 2.0 * (self.max - self.min) + self.min

    def to_dict(self):
        return {"min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, d):
        return cls(d["min"], d["max"])


# ---- data sets -----------------------------------------------------------------------------------

class FlowDataset:
    """A data set ready for ST-ResNet: raw frames, the sample index, external features, the split
    and the scaler fitted on the frames before the first test target.

    Attributes: frames (n, H, W, F) original scale; slot_ids (n,); T; index (dict of int arrays,
    see build_index); external (n_samples, ext) float32 and the features object that made it;
    n_train, n_test; scaler.
    """

    def __init__(self, frames, slot_ids, T, index, external, n_test, name, features=None,
                 dropped_days=(), notes=()):
        self.frames, self.slot_ids, self.T, self.index = frames, slot_ids, T, index
        self.external, self.n_test, self.name = external, n_test, name
        self.features = features  # the ExternalFeatures that made `external`
        self.dropped_days = list(dropped_days)  # 'YYYYMMDD' of incomplete days removed on load
        self.notes = list(notes)  # what loading did, a line each (clean_series)
        self.n_samples = len(index["target"])
        self.n_train = self.n_samples - n_test
        # Frames the model may learn from: everything before the first test target.
        self.first_test_frame = int(index["target"][self.n_train])
        self.scaler = MinMaxScaler().fit(frames[:self.first_test_frame])
        self._tf_gather = None   # TensorFlow's traced gather of its pipelines (backend.tf_gather)

    @property
    def external_scaling(self):
        return self.features.scaling if self.features is not None else {}

    @property
    def target_slots(self):
        return self.slot_ids[self.index["target"]]

    def targets(self, rows):
        """Raw target frames of the given sample rows, (len(rows), H, W, F)."""
        return self.frames[self.index["target"][rows]]


class ExternalFeatures:
    """The external vector of any target slot, in the official order [metadata 8, holiday 1,
    meteorology 19], then (an option beyond the paper) the slot-of-day one-hot [T]. Wind and
    temperature are scaled to [0, 1] with ranges fitted on the training targets (`fit`) or
    restored from a saved run (`scaling`)."""

    def __init__(self, T, use_meta, holidays=None, meteorology=None, scaling=None,
                 time_of_day=False):
        self.T, self.use_meta, self.holidays, self.meteorology = T, use_meta, holidays, meteorology
        self.time_of_day = time_of_day
        self.scaling = dict(scaling or {})

    @classmethod
    def from_series(cls, series, use_meta, use_holiday, use_meteorology, name, scaling=None,
                    use_time_of_day=False):
        holidays = meteorology = None
        if use_holiday:
            if series.holiday_path is None:
                raise DataError(f"{name} has no holiday list; set use_holiday=False or give "
                                f"--holiday_file=")
            flowfiles.require_file(series.holiday_path, "The holiday list is one YYYYMMDD per "
                                                        "line (see data/README.md).")
            holidays = flowfiles.load_holidays(series.holiday_path)
            first, last = series.slot_ids.min() // series.T, series.slot_ids.max() // series.T
            if holidays and not any(first <= h <= last for h in holidays):
                span = format_timestamps(np.array([first, last]) * series.T, series.T)
                print(f"warning: none of the {len(holidays)} holidays in {series.holiday_path} "
                      f"falls within the data's days {span[0][:8]}..{span[1][:8]}; is it the list "
                      f"for this city and period?", file=sys.stderr)
        if use_meteorology:
            path = series.meteorology_path
            if path is None:
                raise DataError(f"{name} has no meteorology file; set use_meteorology=False or "
                                f"give --meteorology_file=")
            flowfiles.require_file(path, "BJ_Meteorology.h5 comes with the TaxiBJ release "
                                         "(data/README.md).")
            meteorology = flowfiles.load_meteorology(path, series.T) + (path,)
        return cls(series.T, use_meta, holidays, meteorology, scaling, use_time_of_day)

    def weather(self, known_before):
        """Raw meteorology rows of the latest slot before each `known_before` slot."""
        slots, table, path = self.meteorology
        return table[meteorology_rows(known_before, slots, self.T, path)]

    def fit(self, target_slots):
        if self.meteorology is not None:
            meteo = self.weather(target_slots)
            for col, key in ((-2, "wind"), (-1, "temperature")):
                self.scaling[key] = [float(meteo[:, col].min()), float(meteo[:, col].max())]
        return self

    def __call__(self, target_slots, known_before=None):
        """(n, ext) float32. Weather is that of the slot before `known_before` (default: the
        target itself, i.e. slot t-1), the last one known when forecasting several steps."""
        parts = []
        if self.use_meta:
            parts.append(metadata_features(target_slots, self.T))
        if self.holidays is not None:
            parts.append(holiday_features(target_slots, self.T, self.holidays))
        if self.meteorology is not None:
            meteo = self.weather(target_slots if known_before is None else known_before)
            for col, key in ((-2, "wind"), (-1, "temperature")):
                lo, hi = self.scaling[key]
                meteo[:, col] = (meteo[:, col] - lo) / max(hi - lo, 1e-12)
            parts.append(meteo)
        if self.time_of_day:
            parts.append(time_of_day_features(target_slots, self.T))
        external = np.hstack(parts) if parts else np.zeros((len(target_slots), 0))
        return external.astype(np.float32)


def load_dataset(name, data_dir, len_closeness, len_period, len_trend, days_test,
                 use_meta=True, use_holiday=False, use_meteorology=False, slots_per_day=None,
                 holiday_file="", meteorology_file="", use_time_of_day=False,
                 duplicates="error", empty_slots="keep", tune_days=0):
    """Load a data set (named, or flow files) and build its samples, external features and split.
    Slots are put in time order, empty and repeated slots handled (clean_series); days lacking
    any of their slots are dropped first, as the official TaxiBJ pipeline does. tune_days > 0
    leaves the test period out (its samples and the frames after the last sample kept) and makes
    the last tune_days days before it the scored period (params.tune_days)."""
    series = flowfiles.load_series(name, data_dir, slots_per_day)
    series = flowfiles.with_side_files(series, holiday_file, meteorology_file)
    T = series.T
    frames, slot_ids, notes = cleaning.clean_series(series, name, duplicates, empty_slots)
    frames, slot_ids, dropped = cleaning.drop_incomplete_days(frames, slot_ids, T, notes)
    if len(slot_ids) == 0:
        raise DataError(f"{name}: no day has all its {T} slots; is slots_per_day right?")

    index = build_index(slot_ids, T, len_closeness, len_period, len_trend)
    n_test = days_test * T
    n_samples = len(index["target"])
    if n_samples < n_test + 2:
        raise DataError(f"{name}: only {n_samples} samples have all their closeness/period/trend "
                        f"frames (lengths {len_closeness}/{len_period}/{len_trend}), but the test "
                        f"period alone needs {n_test} (days_test={days_test} x {T}) and training "
                        f"at least 2 more; shorten days_test or the window lengths")
    if tune_days:
        n_tune = tune_days * T
        if n_samples - n_test < n_tune + 2:
            raise DataError(f"{name}: {n_samples - n_test} samples precede the test period, but "
                            f"tune_days={tune_days} x {T} needs {n_tune} and training at least 2 "
                            f"more; lower tune_days")
        index = {key: rows[:n_samples - n_test] for key, rows in index.items()}
        frames, slot_ids = (a[:int(index["target"][-1]) + 1] for a in (frames, slot_ids))
        notes = list(notes) + [f"tuning run: the {days_test} test days are left out; the "
                               f"{tune_days} days before them are scored in their place"]
        n_samples, n_test = n_samples - n_test, n_tune
    target_slots = slot_ids[index["target"]]
    features = ExternalFeatures.from_series(series, use_meta, use_holiday, use_meteorology, name,
                                            use_time_of_day=use_time_of_day)
    features.fit(target_slots[:n_samples - n_test])
    return FlowDataset(frames, slot_ids, T, index, features(target_slots), n_test, name,
                       features, dropped, notes)


def missing_history(slot_ids, T, lengths, start, horizon):
    """The real slots before `start` that forecasting `horizon` steps from it needs and the data
    lacks (sorted)."""
    offsets = np.concatenate(list(branch_offsets(T, *lengths).values()))
    needed = {start + step - 1 - off for step in range(1, horizon + 1) for off in offsets
              if step - 1 - off < 0}
    return sorted(needed - set(np.asarray(slot_ids).tolist()))


def recursive_inputs(frames, slot_ids, T, lengths, starts, step, predictions):
    """Unscaled model inputs for slot start + step - 1 of each start slot (step 1: the start
    itself), knowing the real frames before `start` and the predictions of steps 1 .. step-1
    (predictions[i]: (n, H, W, F) for slot start + i). -> ({branch: (n, H, W, F * len)}, mask of
    the starts whose needed real frames all exist)."""
    position = slot_positions(np.asarray(slot_ids))
    starts = np.asarray(starts)
    n, (h, w, f) = len(starts), frames.shape[1:]
    valid, inputs = np.ones(n, bool), {}
    for name, offsets in branch_offsets(T, *lengths).items():
        if not len(offsets):
            continue
        stack = np.zeros((n, len(offsets), h, w, f), np.float32)  # (n, len, H, W, F)
        for j, off in enumerate(offsets):
            earlier = step - 1 - off  # that frame's slot is start + earlier
            if earlier >= 0:
                stack[:, j] = predictions[earlier]
            else:
                pos = position(starts + earlier)
                valid &= pos >= 0
                stack[:, j] = frames[np.maximum(pos, 0)]
        inputs[name] = stack.transpose(0, 2, 3, 1, 4).reshape(n, h, w, f * len(offsets))
    return inputs, valid


def load_for_forecast(name, data_dir, T, use_meta, use_holiday, use_meteorology, holiday_file,
                      meteorology_file, scaling, use_time_of_day=False, duplicates="error",
                      empty_slots="keep"):
    """Frames in time order, their slot numbers and the external features (with a saved run's
    wind/temperature ranges) of a data set to forecast from; the last day may be incomplete."""
    series = flowfiles.load_series(name, data_dir)  # a file's T inferred, to compare below
    if series.T != T:
        raise DataError(f"{name} has {series.T} slots a day, the model was trained on {T}")
    series = flowfiles.with_side_files(series, holiday_file, meteorology_file)
    frames, slot_ids, _ = cleaning.clean_series(series, name, duplicates, empty_slots)
    features = ExternalFeatures.from_series(series, use_meta, use_holiday, use_meteorology, name,
                                            scaling, use_time_of_day)
    return frames, slot_ids, features
