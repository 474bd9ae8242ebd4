"""Time stamps: the files' 'YYYYMMDDSS' text (slot SS from 01, or from 00) to integer slot
numbers day * T + slot - 1 (days since 1970-01-01) and back, so that every later step looks
frames up by time, not by array position.
"""
import numpy as np


class DataError(ValueError):
    """A problem with the user's data files or with what the settings ask of them."""


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
