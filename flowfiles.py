"""Reading crowd-flow files: the release layout (HDF5 'data' (n, 2, H, W) + 'date'), LibCity grid
files (through libcity.py), holiday lists and meteorology files, each checked with a message
that says what was expected.

What this module returns is a Series: the files' rows as given, channels-last (n, H, W, 2), on
the original scale, with their time stamps as slot numbers (timestamps.py). datasets.py calls it;
cleaning.py then puts the rows in order, and datasets.py builds the samples.
"""
import collections
import hashlib
import os
import sys

import h5py
import numpy as np

import libcity
import synthetic_city
from timestamps import (DataError, as_text, format_timestamps, parse_days, parse_timestamps,
                        slot_numbers)

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


# ---- series of files -----------------------------------------------------------------------------

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


def with_side_files(series, holiday_file, meteorology_file):
    """The series with the given holiday list / meteorology file replacing its own."""
    if holiday_file:
        series = series._replace(holiday_path=holiday_file)
    if meteorology_file:
        series = series._replace(meteorology_path=meteorology_file)
    return series
