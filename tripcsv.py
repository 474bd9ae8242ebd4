"""Reading raw trip-record CSV files for trips_to_flows.py: the six columns it needs (found by
a preset of header styles or given by name), in chunks of rows, and their time stamps and
coordinates parsed vectorised, with unparseable fields marked (NaT, NaN) rather than fatal.
"""
import csv
import operator

import numpy as np

# The fields in the order convert() wants them: start time, end time, start lat/lon, end lat/lon.
COLUMN_PRESETS = {"citibike": [
    ("starttime", "stoptime", "start station latitude", "start station longitude",
     "end station latitude", "end station longitude"),                          # 2013-2020 files
    ("start time", "stop time", "start station latitude", "start station longitude",
     "end station latitude", "end station longitude"),            # 2016-10..2017-03: "Start Time"
    ("started_at", "ended_at", "start_lat", "start_lng", "end_lat", "end_lng")]}  # 2021+ files
MAX_FIELD = 64  # longer time or coordinate fields are invalid (a broken quote swallows lines)


class TripError(ValueError):
    """A problem a user can fix: bad settings, a missing file or column, an existing output."""


# ---- parsing -------------------------------------------------------------------------------------

def as_text(strings):
    """Strings -> a unicode array, fields longer than MAX_FIELD blanked: numpy pads every string
    to the longest, so one runaway field would otherwise blow up the whole chunk's memory."""
    if max(map(len, strings), default=0) > MAX_FIELD:
        strings = [t if len(t) <= MAX_FIELD else "" for t in strings]
    return np.asarray(strings, dtype=str)


def digit_runs(text, count=8):
    """Split strings into runs of digits and the characters between them, vectorised.

    -> numbers (n, count + 1) int64 (saturated at 10**9), seps (n, count + 1) code points of the
    separators in order, n_numbers (n,), n_seps (n,); runs past `count` land in the last column.
    """
    codes = text.view(np.uint32).reshape(len(text), -1)   # (n, width); 0 pads short strings
    n = len(text)
    numbers, seps = np.zeros((n, count + 1), np.int64), np.zeros((n, count + 1), np.int64)
    n_numbers, n_seps = np.zeros(n, np.int64), np.zeros(n, np.int64)
    current, in_run = np.zeros(n, np.int64), np.zeros(n, bool)
    # One pass over the character columns plus a padding column that closes the last run; only
    # the few rows where a run ends or a separator appears are touched by fancy indexing.
    for column in [*codes.T, np.zeros(n, np.uint32)]:
        digit = (column >= 48) & (column <= 57)
        ended = np.flatnonzero(in_run & ~digit)
        numbers[ended, np.minimum(n_numbers[ended], count)] = current[ended]
        n_numbers[ended] += 1
        current = np.where(digit, np.minimum(current * 10 + column - 48, 10**9), 0)
        other = np.flatnonzero(~digit & (column != 0))
        seps[other, np.minimum(n_seps[other], count)] = column[other]
        n_seps[other] += 1
        in_run = digit
    return numbers, seps, n_numbers, n_seps


def parse_times(strings):
    """Time-stamp strings -> datetime64[s] (fractional seconds dropped), NaT where unparseable."""
    text = np.strings.strip(as_text(strings))
    if len(text) == 0:
        return np.zeros(0, "datetime64[s]")
    v, s, n_v, n_s = digit_runs(text)
    # Numbers and single separators must alternate (n_v == n_s + 1) in one of the two layouts.
    alternate = n_v == n_s + 1
    iso = (alternate & np.all(s[:, [0, 1, 3, 4]] == [ord(c) for c in "--::"], axis=1)
           & np.isin(s[:, 2], [ord(" "), ord("T")])
           & ((n_s == 5) | (n_s == 6) & (s[:, 5] == ord("."))))
    us = (alternate & np.all(s[:, :4] == [ord(c) for c in "// :"], axis=1)
          & ((n_s == 4) | (n_s == 5) & (s[:, 4] == ord(":"))))
    year = np.where(iso, v[:, 0], v[:, 2])
    month, day = np.where(iso, v[:, 1], v[:, 0]), np.where(iso, v[:, 2], v[:, 1])
    ok = (iso | us) & (year >= 1000) & (year <= 9999) & (month >= 1) & (month <= 12)
    month_start = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    first_day = month_start.astype("datetime64[D]")
    ok &= (day >= 1) & (day <= ((month_start + 1).astype("datetime64[D]") - first_day).astype(int))
    hour, minute, second = v[:, 3], v[:, 4], v[:, 5]   # 'M/D/YYYY H:MM' leaves v[:, 5] = 0
    ok &= (hour < 24) & (minute < 60) & (second < 60)
    seconds = first_day.astype(np.int64) * 86400 + (day - 1) * 86400 + hour * 3600 + minute * 60
    return np.where(ok, seconds + second, np.iinfo(np.int64).min).astype("datetime64[s]")


def parse_coordinates(strings):
    """Coordinate strings -> float64, NaN where missing, not a number, or not finite."""
    def to_float(text):
        try:
            return float(text)
        except ValueError:
            return np.nan

    text = as_text(strings)
    text = np.where(np.strings.strip(text) == "", "nan", text)  # missing: common, kept vectorised
    try:
        values = text.astype(np.float64)
    except ValueError:  # some other bad value in this chunk: only then convert one by one
        values = np.array([to_float(t) for t in text], dtype=np.float64)
    return np.where(np.isfinite(values), values, np.nan)


# ---- reading -------------------------------------------------------------------------------------

def clean(names):
    """Column names as compared: case, surrounding spaces and quotes ignored."""
    return [n.strip().strip('"').strip().lower() for n in names]


def find_columns(header, columns, path):
    """Positions in a header row of the six columns: a preset name, 'a,b,c,d,e,f' or six names."""
    if isinstance(columns, str):
        columns = COLUMN_PRESETS.get(columns, [columns.split(",")])
    else:
        columns = [columns]
    if len(columns[0]) != 6:
        raise TripError(f"columns must be a preset ({', '.join(COLUMN_PRESETS)}) or six names "
                        f"start_time,end_time,start_lat,start_lon,end_lat,end_lon; "
                        f"got {list(columns[0])}")
    found = clean(header)
    for wanted in map(clean, columns):   # the first style whose columns are all there
        if all(c in found for c in wanted):
            return [found.index(c) for c in wanted]
    expected = " or ".join(str(c) for c in map(clean, columns))
    raise TripError(f"{path}: missing columns; expected {expected}, found {found}")


def read_chunks(path, columns, chunk_rows):
    """Yield (six tuples of field strings, number of rows too short) for up to chunk_rows rows."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise TripError(f"{path}: empty file; expected a header row")
        pick = operator.itemgetter(*find_columns(header, columns, path))
        rows, short = [], 0
        for row in reader:
            try:
                rows.append(pick(row))
            except IndexError:
                short += bool(row)  # a blank line is not a record
            if len(rows) == chunk_rows:
                yield list(zip(*rows)), short
                rows, short = [], 0
        yield (list(zip(*rows)) if rows else [()] * 6), short
