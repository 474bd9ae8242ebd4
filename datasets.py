"""Crowd-flow data: file loaders, time stamps, ST-ResNet samples, external features, scaling, and
the input pipeline.

The frames of a data set are held once, channels-last, on the original scale: (n, H, W, 2). A
sample is a row of index arrays into them (target, closeness, period, trend positions), so a
TaxiBJ-sized series never materialises its windows; the input pipeline gathers and scales each
batch. Time stamps are turned into integer slot numbers (day number * T + slot - 1) so that every
dependency is looked up by time, not by array position, and gaps in the data are handled exactly.
"""
import collections
import functools
import hashlib
import os
import sys

import h5py
import numpy as np

import libcity
import synthetic_city

BIKENYC_FILE = os.path.join("BikeNYC", "NYC14_M16x8_T60_NewEnd.h5")
TAXIBJ_FILES = [os.path.join("TaxiBJ", f"BJ{y}_M32x32_T30_InOut.h5") for y in (13, 14, 15, 16)]
TAXIBJ_METEOROLOGY = os.path.join("TaxiBJ", "BJ_Meteorology.h5")
TAXIBJ_HOLIDAY = os.path.join("TaxiBJ", "BJ_Holiday.txt")
# The published md5 sums of the release files (data/README.md); another sum gives a warning.
RELEASE_MD5 = {
    "NYC14_M16x8_T60_NewEnd.h5": "461e58f5e14e33f279164ecc74b748b2",
    "BJ13_M32x32_T30_InOut.h5": "24cec8a5310d4982ffcee43c7aa3ad70",
    "BJ14_M32x32_T30_InOut.h5": "bfe5144413e950207cad50999b3910ab",
    "BJ15_M32x32_T30_InOut.h5": "70fa80fcb4441f2df18d3dde246dc5fb",
    "BJ16_M32x32_T30_InOut.h5": "6592f29581f0ed5fc930d2c7f40f8e6f",
    "BJ_Meteorology.h5": "cf749c9f9de700d7a9edfffb428aad42",
}
SYNTHETIC_FILE = os.path.join("Synthetic", "SYN_M16x8_T60_OutIn.h5")
SYNTHETIC_HOLIDAY = os.path.join("Synthetic", "SYN_Holiday.txt")


class DataError(ValueError):
    """A problem with the user's data files or with what the settings ask of them."""


# ---- time stamps ---------------------------------------------------------------------------------

def as_text(dates, source="data"):
    """Date strings or bytes (as h5py returns them, fixed or variable length) -> unicode array."""
    dates = np.asarray(dates)
    try:
        if dates.dtype.kind == "O":
            dates = np.array([d.decode("ascii") if isinstance(d, bytes) else str(d)
                              for d in dates.ravel()], dtype="U").reshape(dates.shape)
        return np.char.decode(dates, "ascii") if dates.dtype.kind == "S" else dates.astype("U")
    except (UnicodeDecodeError, ValueError, TypeError) as err:
        raise DataError(f"{source}: time stamps must be ASCII text YYYYMMDD + slot "
                        f"({type(err).__name__}: {err})") from None


def parse_days(dates, source="data"):
    """'YYYYMMDD...' strings or bytes -> day numbers since 1970-01-01 (int64)."""
    iso = [f"{d[:4]}-{d[4:6]}-{d[6:8]}" for d in as_text(dates, source)]
    try:
        return np.array(iso, dtype="datetime64[D]").astype(np.int64)
    except ValueError as err:
        raise DataError(f"{source}: dates must start with a valid YYYYMMDD; {err}") from None


def slot_numbers(text, source, expected):
    """The SS of 10-digit 'YYYYMMDDSS' stamps (int64); any other shape is a DataError."""
    bad = [d for d in text if len(d) != 10 or not d.isdigit()]
    if bad:
        raise DataError(f"{source}: time stamps must be 10 digits YYYYMMDD + slot {expected}, "
                        f"found {bad[0]!r}")
    return np.array([int(d[8:]) for d in text], dtype=np.int64)


def parse_timestamps(dates, T, source="data", first_slot=1):
    """'YYYYMMDDSS' (slot SS in 01..T, or 00..T-1 with first_slot=0) -> slot numbers
    day * T + SS - first_slot (int64)."""
    text = as_text(dates, source)
    slot = slot_numbers(text, source, f"{first_slot:02d}..{T - 1 + first_slot}")
    if len(slot) and (slot.min() < first_slot or slot.max() > T - 1 + first_slot):
        wrong = text[(slot < first_slot) | (slot > T - 1 + first_slot)][0]
        raise DataError(f"{source}: slot numbers must lie in {first_slot:02d}.."
                        f"{T - 1 + first_slot} (T = {T} slots a day), found {wrong!r}; is T right "
                        f"for this data set?")
    return parse_days(text, source) * T + slot - first_slot


def format_timestamps(slot_ids, T, first_slot=1):
    """Slot numbers -> 'YYYYMMDDSS' strings (the files' format; SS from 01, or 00 with
    first_slot=0)."""
    days = (np.asarray(slot_ids) // T).astype("datetime64[D]")
    ymd = np.char.replace(days.astype("U10"), "-", "")
    slots = np.char.zfill((np.asarray(slot_ids) % T + first_slot).astype("U2"), 2)
    return np.char.add(ymd, slots)


def weekday(slot_ids, T):
    """Monday = 0 .. Sunday = 6 (1970-01-01 was a Thursday)."""
    return (np.asarray(slot_ids) // T + 3) % 7


# ---- files ---------------------------------------------------------------------------------------

def require_file(path, where_from):
    if not os.path.isfile(path):
        raise DataError(f"data file not found: {path}\n{where_from}")


def check_release_md5(path):
    """Warns (does not stop) when a release file's md5 differs from the published one."""
    expected = RELEASE_MD5.get(os.path.basename(path))
    if expected is None:
        return
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        print(f"warning: {path}: md5 {digest.hexdigest()} differs from the release's {expected}; "
              f"the file may be damaged or another version, so results may not compare with the "
              f"paper's (data/README.md)", file=sys.stderr)


def read_arrays(path, keys):
    """The named datasets of an HDF5 file as arrays; DataError when unreadable or missing."""
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in keys if not isinstance(f.get(k), h5py.Dataset)]
            if missing:
                raise DataError(f"{path}: missing key(s) {missing}; found {sorted(f.keys())}")
            values = [f[k][()] for k in keys]
    except (DataError, MemoryError):
        raise
    except Exception as err:  # h5py reports damage as OSError, RuntimeError, KeyError, ...
        raise DataError(f"{path}: not a readable HDF5 file ({type(err).__name__}: {err}); is it "
                        f"complete (not truncated) and in the format of data/README.md?") from None
    return _arrays_or_error(values, keys, path)


def _arrays_or_error(values, keys, path):
    for key, value in zip(keys, values):
        if not isinstance(value, (np.ndarray, np.generic)) or np.size(value) == 0:
            raise DataError(f"{path}: '{key}' is empty; expected the data of data/README.md")
    return values


def check_counts(values, path, key, dates):
    """Flows must be finite, non-negative numbers; names the first slot that is not."""
    bad = ~np.isfinite(values) if values.dtype.kind == "f" else np.zeros(values.shape, bool)
    for what, mask in (("NaN or infinite", bad), ("negative", values < 0)):
        if mask.any():
            rows = np.flatnonzero(mask.reshape(len(values), -1).any(axis=1))
            first = as_text(dates[rows[:1]], path)[0]
            raise DataError(f"{path}: '{key}' has {int(mask.sum())} {what} value(s) in "
                            f"{len(rows)} slot(s), the first at {first}; flows are counts >= 0: "
                            f"repair or drop those slots")


def load_flow_file(path):
    """An HDF5 flow file (keys 'data' (n, 2, H, W) and 'date') -> ((n, H, W, 2) float32, dates)."""
    check_release_md5(path)
    data, dates = read_arrays(path, ("data", "date"))
    if data.ndim != 4 or data.shape[1] != 2 or dates.ndim != 1 or len(data) != len(dates) \
            or min(data.shape) == 0:
        raise DataError(f"{path}: 'data' must be (n, 2, H, W) (time, flow, rows, columns; "
                        f"channels-first as released) with one 'date' per slot, got data "
                        f"{data.shape} and 'date' {dates.shape}")
    if data.dtype.kind not in "biuf":
        raise DataError(f"{path}: 'data' must hold numbers, found dtype {data.dtype}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are named below
        frames = np.ascontiguousarray(np.moveaxis(data, 1, -1), dtype=np.float32)
    check_counts(frames, path, "data", dates)  # after the cast: values beyond float32 are inf
    return frames, dates


def load_holidays(path):
    """A holiday list (one YYYYMMDD a line, any line endings) -> set of day numbers."""
    try:
        with open(path) as f:
            lines = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable text holiday list ({err}); expected one "
                        f"YYYYMMDD a line") from None
    return set(parse_days(lines, source=path).tolist())


def load_meteorology(path, T):
    """BJ_Meteorology.h5 -> (slot ids, (n, 19) features [weather one-hot 17, wind, temperature])."""
    check_release_md5(path)
    dates, weather, wind, temperature = (np.atleast_1d(a) for a in read_arrays(
        path, ("date", "Weather", "WindSpeed", "Temperature")))
    for key, values in (("Weather", weather), ("WindSpeed", wind), ("Temperature", temperature)):
        if values.dtype.kind not in "biuf" or (values.dtype.kind == "f"
                                               and not np.isfinite(values).all()):
            raise DataError(f"{path}: '{key}' must hold finite numbers (dtype {values.dtype}); "
                            f"repair the missing entries")
    weather = np.asarray(weather, dtype=np.float32)
    wind = np.asarray(wind, dtype=np.float32).reshape(len(wind), -1)
    temperature = np.asarray(temperature, dtype=np.float32).reshape(len(temperature), -1)
    if weather.ndim != 2 or weather.shape[1] != 17 or wind.shape[1:] != (1,) or \
            temperature.shape[1:] != (1,) or not (
            len(dates) == len(weather) == len(wind) == len(temperature)):
        raise DataError(f"{path}: expected 'date' (n,), 'Weather' (n, 17), 'WindSpeed' (n,) and "
                        f"'Temperature' (n,), got {len(dates)}, {weather.shape}, {len(wind)}, "
                        f"{len(temperature)}")
    slots = parse_timestamps(dates, T, source=path)
    if not np.any(slots % T == T - 1):  # e.g. an hourly file read with T = 48
        raise DataError(f"{path}: no entry has slot {T}; its time stamps must use the flow data's "
                        f"{T} slots a day")
    # The official code's order: weather, wind speed, temperature.
    return slots, np.hstack([weather, wind, temperature])


def complete_days_mask(slot_ids, T):
    """True for the slots of days that have all T slots (the official TaxiBJ pipeline keeps only
    those)."""
    days = slot_ids // T
    _, inverse, counts = np.unique(days, return_inverse=True, return_counts=True)
    return counts[inverse] == T


# ---- samples -------------------------------------------------------------------------------------

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
    wd = weekday(slot_ids, T)
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

# What flow 0 and flow 1 of each data set's files mean.
FLOW_NAMES = {"bikenyc": ("new-flow (out)", "end-flow (in)"), "taxibj": ("inflow", "outflow"),
              "synthetic": ("outflow", "inflow")}

# frames and slot_ids hold the files' rows in the order given (repeats and empty slots included,
# see clean_series); sources: (path, rows) of each file in that order; notes: lines to print.
# first_slot: 1 for slots numbered 01..T, 0 for 00..T-1 (messages quote the files' numbering).
Series = collections.namedtuple("Series", "frames slot_ids T holiday_path meteorology_path "
                                          "sources notes first_slot", defaults=((), (), 1))


def flow_names(name):
    first = name.split(",")[0].strip()
    if name not in FLOW_NAMES and first.endswith(".grid") and os.path.isfile(first):
        try:
            return libcity.flow_names(first)
        except libcity.GridError:
            pass
    return FLOW_NAMES.get(name, ("flow0", "flow1"))


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
        self._tensors = None

    @property
    def external_scaling(self):
        return self.features.scaling if self.features is not None else {}

    @property
    def target_slots(self):
        return self.slot_ids[self.index["target"]]

    def targets(self, rows):
        """Raw target frames of the given sample rows, (len(rows), H, W, F)."""
        return self.frames[self.index["target"][rows]]


def infer_slots_per_day(T, source, why):
    """T of flow files, read from their slot numbers (`why`); it must divide a day into whole
    minutes."""
    if T < 1 or 1440 % T:
        raise DataError(f"{source}: {why}, which does not divide a day into equal slots; give "
                        f"the number of slots a day with --slots_per_day=")
    return T


def slot_numbering(texts, T=None):
    """(T, first slot number) of flow files ({path: 'YYYYMMDDSS' strings}): files whose slots
    include 00 number them 00..T-1 (T = their largest slot + 1 unless given), the others 01..T.
    Files mixing both numberings are refused, naming the file."""
    slots = {path: slot_numbers(text, path, "01..T or 00..T-1") for path, text in texts.items()}
    zero = [path for path, s in slots.items() if s.min() == 0]
    if not zero:  # the release layout; over all files: a short file alone may lack the last slots
        largest = max(int(s.max()) for s in slots.values())
        return T or infer_slots_per_day(largest, ", ".join(slots),
                                        f"the largest slot number is {largest}"), 1
    largest = max(int(slots[p].max()) for p in zero)
    if not T and 1440 % (largest + 1) and not 1440 % largest:  # e.g. 00 and 24 side by side
        T = largest
    T = T or infer_slots_per_day(largest + 1, ", ".join(zero),
                                 f"slots 00..{largest:02d} make {largest + 1} a day")
    for path, s in slots.items():
        if s.max() >= T:
            why = (f"holds both slot 00 and slot {int(s.max()):02d}" if path in zero else
                   f"numbers its slots up to {int(s.max()):02d} while {zero[0]} starts at 00")
            raise DataError(f"{path} {why}: a day's slots are numbered either 01..T (release "
                            f"layout) or 00..T-1, not both. Renumber the file(s) one way, or give "
                            f"--slots_per_day= if T is larger than {T}")
    return T, 0


def check_one_grid(loaded):
    """The files of one data set ([(path, frames (n, H, W, F), ...), ...]) must share a grid."""
    for path, frames, *_ in loaded[1:]:
        if frames.shape[1:] != loaded[0][1].shape[1:]:
            raise DataError(f"{path}: grid {frames.shape[1:3]} differs from {loaded[0][0]}'s "
                            f"{loaded[0][1].shape[1:3]}; the files must share one grid")


def load_files(paths, T=None):
    """Flow files in the release layout (slots 01..T or 00..T-1), their rows concatenated in the
    order given; T inferred unless given."""
    loaded = []
    for path in paths:
        require_file(path, "A flow file is HDF5 with 'data' (n, 2, H, W) and 'date' YYYYMMDD + "
                           "slot (data/README.md, 'Formats').")
        loaded.append((path,) + load_flow_file(path))
    check_one_grid(loaded)
    texts = {path: as_text(dates, path) for path, _, dates in loaded}
    T, first = slot_numbering(texts, T)
    notes = [] if first else [f"slots numbered 00..{T - 1}: read as zero-based, {T} slots a day"]
    slots = [parse_timestamps(texts[path], T, path, first) for path, _, _ in loaded]
    return Series(np.concatenate([f for _, f, _ in loaded]), np.concatenate(slots), T, None, None,
                  [(path, len(frames)) for path, frames, _ in loaded], notes, first)


def load_grid_files(paths, T=None):
    """LibCity grid files (<folder>/<NAME>.grid with the .geo and config.json beside it), their
    frames concatenated in the order given, as load_files does for HDF5 files."""
    loaded = []
    for path in paths:
        try:
            frames, slot_ids, file_T, names = libcity.read_grid(path)
        except libcity.GridError as err:
            raise DataError(str(err)) from None
        check_counts(frames, path, "flows", format_timestamps(slot_ids, file_T))
        expected = T or (loaded[0][3] if loaded else file_T)
        if file_T != expected:
            raise DataError(f"{path} has {file_T} slots a day, not {expected}"
                            f"{'' if T else ' like ' + loaded[0][0]}; the files must share one "
                            f"slot length")
        loaded.append((path, frames, slot_ids, file_T, names))
        check_one_grid(loaded)
    notes = [f"LibCity grid file(s), flows {', '.join(loaded[0][4])}, {loaded[0][3]} slots a day"]
    return Series(np.concatenate([f for _, f, _, _, _ in loaded]),
                  np.concatenate([s for _, _, s, _, _ in loaded]), loaded[0][3], None, None,
                  [(path, len(frames)) for path, frames, _, _, _ in loaded], notes)


def load_series(name, data_dir, T=None):
    """The frames, slot ids, T and side-file paths of a named data set, or of flow files (a
    comma-separated list of paths)."""
    if name == "bikenyc":
        path = os.path.join(data_dir, BIKENYC_FILE)
        require_file(path, "Get NYC14_M16x8_T60_NewEnd.h5 as data/README.md describes and put it "
                           "there, or point --data_dir at the folder that holds BikeNYC/.")
        return load_files([path], 24)
    if name == "synthetic":
        path = os.path.join(data_dir, SYNTHETIC_FILE)
        holiday_path = os.path.join(data_dir, SYNTHETIC_HOLIDAY)
        if not synthetic_city.is_current(path, holiday_path):
            try:
                synthetic_city.write(path, holiday_path)
            except OSError as err:
                raise DataError(f"cannot write the synthetic data set to {path} ({err}); choose "
                                f"a writable --data_dir") from None
        return load_files([path], 24)._replace(holiday_path=holiday_path)
    if name == "taxibj":
        paths = [os.path.join(data_dir, p) for p in TAXIBJ_FILES]
        for path in paths:
            require_file(path, "Get the TaxiBJ release as data/README.md describes and put its "
                               "files in <data_dir>/TaxiBJ/.")
        return load_files(paths, 48)._replace(holiday_path=os.path.join(data_dir, TAXIBJ_HOLIDAY),
                                              meteorology_path=os.path.join(data_dir,
                                                                            TAXIBJ_METEOROLOGY))
    paths = [p.strip() for p in name.split(",")]
    if all(p.endswith(".grid") for p in paths):
        return load_grid_files(paths, T)
    if not all(p.endswith((".h5", ".hdf5")) for p in paths):
        raise DataError(f"unknown dataset {name!r}; expected synthetic, bikenyc, taxibj, the "
                        f"path(s) of HDF5 flow files or of LibCity .grid files (not both)")
    return load_files(paths, T)


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
            require_file(series.holiday_path, "The holiday list is one YYYYMMDD per line "
                                              "(see data/README.md).")
            holidays = load_holidays(series.holiday_path)
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
            require_file(path, "BJ_Meteorology.h5 comes with the TaxiBJ release (data/README.md).")
            meteorology = load_meteorology(path, series.T) + (path,)
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


def with_side_files(series, holiday_file, meteorology_file):
    """The series with the given holiday list / meteorology file replacing its own."""
    if holiday_file:
        series = series._replace(holiday_path=holiday_file)
    if meteorology_file:
        series = series._replace(meteorology_path=meteorology_file)
    return series


# An all-zero frame between two slots with at least this many flows city-wide is an outage,
# not a quiet hour: for counts, zero after a mean of 20 has odds e^-20. A small city's night
# hours (a few trips) stay below it.
BUSY_SLOT_TOTAL = 20


def outage_like(slot_ids, totals):
    """Mask of the all-zero rows whose nearest non-empty slots before and after (those that
    exist) each hold at least BUSY_SLOT_TOTAL flows."""
    busy = {}
    for slot, total in zip(slot_ids.tolist(), totals.tolist()):
        busy[slot] = max(busy.get(slot, 0.0), total)
    filled = np.array(sorted(s for s, t in busy.items() if t > 0), dtype=np.int64)
    if not len(filled):
        return np.zeros(len(slot_ids), bool)
    level = np.array([busy[s] for s in filled.tolist()])
    after = np.searchsorted(filled, slot_ids, side="right")
    before = np.searchsorted(filled, slot_ids, side="left") - 1
    last = len(filled) - 1
    ok_after = (after > last) | (level[np.minimum(after, last)] >= BUSY_SLOT_TOTAL)
    ok_before = (before < 0) | (level[np.maximum(before, 0)] >= BUSY_SLOT_TOTAL)
    has_side = (after <= last) | (before >= 0)
    return (totals == 0) & ok_after & ok_before & has_side


def listed(stamps, k=3):
    return ", ".join(stamps[:k]) + (" ..." if len(stamps) > k else "")


def clean_series(series, name, duplicates="error", empty_slots="keep"):
    """The series' frames and slot numbers in time order, one frame a slot, and what was done as
    lines to print. empty_slots=missing drops all-zero frames first (so such a copy of a repeated
    slot never wins); repeated slots then keep the first or last copy in the order given, or are
    an error (duplicates=error)."""
    frames, slot_ids, T = series.frames, series.slot_ids, series.T

    def stamps_of(ids):  # as the files write them
        return format_timestamps(ids, T, series.first_slot)
    totals = frames.reshape(len(frames), -1).sum(axis=1, dtype=np.float64)
    sources = series.sources or [(name, len(frames))]
    notes = [f"read {len(frames)} slots from {len(sources)} file(s)", *series.notes]
    empty = totals == 0
    if empty.any() and empty_slots == "missing":
        notes.append(f"{int(empty.sum())} empty slot(s) (all zeros city-wide) treated as missing "
                     f"(--empty_slots=missing): {listed(stamps_of(slot_ids[empty]))}")
        frames, slot_ids = frames[~empty], slot_ids[~empty]
    elif empty.any():
        warn_outages(slot_ids, totals, sources, stamps_of)
    order = np.argsort(slot_ids, kind="stable")  # repeats stay in the order given
    if duplicates == "last":
        order = order[::-1][np.argsort(slot_ids[order[::-1]], kind="stable")]
    ids = slot_ids[order]
    repeat = np.r_[False, ids[1:] == ids[:-1]]
    if repeat.any():
        stamps = stamps_of(np.unique(ids[repeat]))
        if duplicates == "error":
            raise DataError(f"{name}: {len(stamps)} time stamp(s) appear more than once, e.g. "
                            f"{listed(stamps)}. Keep the first or the last copy in the order the "
                            f"files are given with --duplicates=first or --duplicates=last")
        notes.append(f"{len(stamps)} repeated slot(s), the {duplicates} copy kept "
                     f"(--duplicates={duplicates}): {listed(stamps)}")
    return frames[order[~repeat]], ids[~repeat], notes


def warn_outages(slot_ids, totals, sources, stamps_of):
    """Warns, per file, of all-zero frames between busy slots (a gap in the recording, not a
    quiet hour); they stay as data with --empty_slots=keep."""
    start = 0
    for path, rows in sources:
        part = slice(start, start + rows)
        start += rows
        suspect = outage_like(slot_ids[part], totals[part])
        if suspect.any():
            stamps = stamps_of(slot_ids[part][suspect])
            print(f"warning: {path}: {len(stamps)} slot(s) are all zeros city-wide between busy "
                  f"slots, e.g. {listed(stamps)}; if these are recording gaps, not real zeros, "
                  f"give --empty_slots=missing", file=sys.stderr)


def load_dataset(name, data_dir, len_closeness, len_period, len_trend, days_test,
                 use_meta=True, use_holiday=False, use_meteorology=False, slots_per_day=None,
                 holiday_file="", meteorology_file="", use_time_of_day=False,
                 duplicates="error", empty_slots="keep"):
    """Load a data set (named, or flow files) and build its samples, external features and split.
    Slots are put in time order, empty and repeated slots handled (clean_series); days lacking
    any of their slots are dropped first, as the official TaxiBJ pipeline does."""
    series = load_series(name, data_dir, slots_per_day)
    series = with_side_files(series, holiday_file, meteorology_file)
    T = series.T
    frames, slot_ids, notes = clean_series(series, name, duplicates, empty_slots)
    complete = complete_days_mask(slot_ids, T)
    dropped = sorted({d[:8] for d in format_timestamps(slot_ids[~complete], T)}) \
        if not complete.all() else []
    if dropped:
        notes.append(f"dropped {len(dropped)} day(s) lacking some of their {T} slots: "
                     f"{listed(dropped, 5)}")
    frames, slot_ids = frames[complete], slot_ids[complete]
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
    series = load_series(name, data_dir)  # a file's T inferred, to compare with the model's
    if series.T != T:
        raise DataError(f"{name} has {series.T} slots a day, the model was trained on {T}")
    series = with_side_files(series, holiday_file, meteorology_file)
    frames, slot_ids, _ = clean_series(series, name, duplicates, empty_slots)
    features = ExternalFeatures.from_series(series, use_meta, use_holiday, use_meteorology, name,
                                            scaling, use_time_of_day)
    return frames, slot_ids, features


# ---- input pipeline ------------------------------------------------------------------------------

def gather_batch(ds, arrays, rows, take, transpose, reshape):
    """One batch of sample rows: each branch's frames gathered from the one frame array and
    scaled to [-1, 1] -> ({closeness, period, trend, external}, target). The arrays (frames,
    external and the index, as in ds) and the three functions come from one array library: numpy
    (PyDataset) or TensorFlow (tf.data)."""
    h, w, f = ds.frames.shape[1:]
    inputs = {}
    for k in ("closeness", "period", "trend"):
        if ds.index[k].shape[1]:
            x = take(arrays["frames"], take(arrays[k], rows))   # (B, len, H, W, F)
            x = transpose(x, [0, 2, 3, 1, 4])                  # (B, H, W, len, F)
            inputs[k] = ds.scaler.transform(reshape(x, [-1, h, w, f * ds.index[k].shape[1]]))
    if ds.external.shape[1]:
        inputs["external"] = take(arrays["external"], rows)
    return inputs, ds.scaler.transform(take(arrays["frames"], take(arrays["target"], rows)))


# Under JAX's data parallelism every batch must split evenly among the devices: batches are then
# padded to a multiple of PAD_TO (main sets it) with copies of their last sample, weighted 0.
PAD_TO = 1


def batches(ds, rows, batch_size):
    """The batches of the sample rows, in their order, for fit, evaluate and predict (predict
    through `predict`). Training shuffles the rows it passes (training.epoch_order). Under
    TensorFlow a tf.data pipeline, under JAX and PyTorch a keras.utils.PyDataset; both gather
    each batch by gather_batch."""
    import keras  # imported here so that errors in settings and data come first
    rows = np.asarray(rows, dtype=np.int64)
    if keras.backend.backend() == "tensorflow":
        return tf_batches(ds, rows, batch_size)
    arrays = {"frames": ds.frames, "external": ds.external, **ds.index}
    take = functools.partial(np.take, axis=0)
    return py_dataset(rows, batch_size, lambda part: gather_batch(
        ds, arrays, part, take, np.transpose, np.reshape))


def array_batches(arrays, batch_size):
    """Batches of in-memory arrays ({input name: (n, ...)}), in order, for `predict`."""
    import keras
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size).with_options(
            pipeline_options())
    n = len(next(iter(arrays.values())))
    return py_dataset(np.arange(n), batch_size,
                      lambda part: ({k: v[part] for k, v in arrays.items()},))


def predict(model, data):
    """model.predict over batches or array_batches, without any padding."""
    out = model.predict(data, verbose=0)
    return data.unpad(out) if hasattr(data, "unpad") else out


_PY_DATASET = None


def py_dataset(rows, batch_size, batch):
    """A keras.utils.PyDataset of the rows in batches of batch_size; batch(rows of one batch)
    makes one. Batches are made on the training thread (workers=1): a gather is 50-200x faster than a
    training step (bench.py prints both), so a worker thread would buy nothing."""
    global _PY_DATASET
    if _PY_DATASET is None:
        import keras

        class Batches(keras.utils.PyDataset):
            def __init__(self, rows, batch_size, batch):
                super().__init__(workers=1, use_multiprocessing=False)
                self.rows, self.batch_size, self.batch = rows, batch_size, batch
                self.n = len(rows)
                self.pad_to = PAD_TO

            def __len__(self):
                return -(-self.n // self.batch_size)

            def unpad(self, out):
                """The rows of the batches' concatenated outputs that are not padding."""
                sizes = [min(self.batch_size, self.n - i * self.batch_size)
                         for i in range(len(self))]
                return out[np.concatenate([np.arange(k + -k % self.pad_to) < k for k in sizes])]

            def __getitem__(self, i):
                if not 0 <= i < len(self):
                    raise IndexError(i)
                part = self.rows[i * self.batch_size:(i + 1) * self.batch_size]
                if self.pad_to == 1:
                    return self.batch(part)
                pad = -len(part) % self.pad_to
                out = self.batch(np.r_[part, np.repeat(part[-1:], pad)])
                if len(out) == 1:  # inputs alone: predict
                    return out
                weights = np.ones(out[1].shape[:-1], np.float32)  # a loss value is per cell
                weights[len(part):] = 0
                return (*out, weights)
        _PY_DATASET = Batches
    return _PY_DATASET(rows, batch_size, batch)


def tf_batches(ds, rows, batch_size):
    import tensorflow as tf
    if ds._tensors is None:  # one copy of frames, index and features for all pipelines
        ds._tensors = {"frames": tf.constant(ds.frames), "external": tf.constant(ds.external)}
        ds._tensors.update({k: tf.constant(v) for k, v in ds.index.items()})
    data = tf.data.Dataset.from_tensor_slices(rows)
    # One thread gathers the next batches while the model computes: the gather is 50-200x faster
    # than a training step (bench.py prints both), so more parallelism would buy nothing.
    return data.batch(batch_size).map(lambda part: gather_batch(
        ds, ds._tensors, part, tf.gather, tf.transpose, tf.reshape)).prefetch(2).with_options(
        pipeline_options())


def pipeline_options():
    """The tf.data options of every pipeline (bench.py's in-memory reference too).

    Autotuning is off. Its background thread sleeps for periods that double from 10 ms up to
    10 s, and the end of an iterator waits for that thread to wake up, so every fit, evaluate and
    predict call lasted until the next of 0.01, 0.03, ... 5.11, 10.23, 20.47 s after it began,
    whatever its work: a 7-second BikeNYC epoch took 10.2 s (README, "Speed and memory").
    Under a multi-worker strategy each worker takes its part of every batch (DATA sharding)."""
    import tensorflow as tf
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options
