"""What real flow files need before samples can be built: their slots put in time order, one
frame a slot. Repeated time stamps (files joined with overlapping edges) keep the first or last
copy, or are an error; all-zero frames city-wide (recording gaps) count as missing on request;
days lacking any of their slots are dropped, as the official TaxiBJ pipeline does. What was
done comes back as lines to print. datasets.py calls it.
"""
import sys

import numpy as np

from timestamps import DataError, format_timestamps

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


def complete_days_mask(slot_ids, T):
    """True for the slots of days that have all T slots (the official TaxiBJ pipeline keeps only
    those)."""
    days = slot_ids // T
    _, inverse, counts = np.unique(days, return_inverse=True, return_counts=True)
    return counts[inverse] == T


def drop_incomplete_days(frames, slot_ids, T, notes):
    """The frames and slots of the days that have all T slots, and the dropped days
    ('YYYYMMDD'), noted in `notes`."""
    complete = complete_days_mask(slot_ids, T)
    dropped = sorted({d[:8] for d in format_timestamps(slot_ids[~complete], T)}) \
        if not complete.all() else []
    if dropped:
        notes.append(f"dropped {len(dropped)} day(s) lacking some of their {T} slots: "
                     f"{listed(dropped, 5)}")
    return frames[complete], slot_ids[complete], dropped
