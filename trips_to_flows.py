"""Raw trip records (CSV) -> an in/out-flow HDF5 file in the release layout that
flowfiles.load_flow_file reads: 'data' float64 (n, 2, H, W) and 'date' |S10 YYYYMMDD + slot 01..T.

Flows (the paper's definitions, BikeNYC's order): flow 0 = outflow ("new-flow"), the trips that
start in a region during a slot, by start time and place; flow 1 = inflow ("end-flow"), the trips
that end there, by end time and place. The two ends of a trip are counted independently.
Grid: row 0 is the north edge (largest latitude), column 0 the west edge. A point's cell is
row = floor((lat_max - lat) / (lat_max - lat_min) * H), col = floor((lon - lon_min) / (lon_max -
lon_min) * W): a point on an internal grid line (to 1e-9 of a cell, so that decimal lines count)
belongs to the cell south / east of it; points on the outer edges are inside (lat_min -> last
row, lon_max -> last column).
Time stamps are local naive times: 'YYYY-MM-DD HH:MM:SS[.fff]', 'YYYY-MM-DDTHH:MM:SS[.fff]' or
'M/D/YYYY H:MM[:SS]'. Every trip end that is not counted is counted under a reason in the report
(returned, printed, and written to <output>.report.json); blank lines are not records.
Time range: whole days, slot 01 of the first to slot T of the last. By default both follow the
trip STARTS: the first and the last day on which a trip start is counted in the flows. So a
month's file ends with that month's last day of rentals, not with days holding only the bikes
returned late (the next day, or weeks later); trip ends outside the range are counted under
'end: outside the time range'. --start / --end set either edge instead. Days inside the range on
which no trip starts are left out of the file (absent, not zeros: a gap in the records, such as the
years between two periods' monthly files, must not become a quiet city), and their trip ends are
counted under the same reason; --empty_days=zeros writes them as zeros instead.
"""
import argparse
import csv
import json
import os
import sys
import time

import h5py
import numpy as np

import flowfiles
import timestamps
import tripcsv
from tripcsv import TripError

CHUNK_ROWS = 250_000  # rows parsed at once: bounds memory (a few hundred MB) whatever the file size
FLOWS = ("outflow (new-flow: trips started)", "inflow (end-flow: trips ended)")
END_REASONS = ("bad time", "bad coordinates", "outside the box", "outside the time range")
ROW_REASONS = ("row too short", "end before start")  # these drop both ends of the row
REASONS = ROW_REASONS + tuple(f"{end}: {r}" for end in ("start", "end") for r in END_REASONS)
NO_LIMIT = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)  # slot range when none is given


def slot_of(times, minutes):
    """datetime64 -> slot numbers day * T + slot - 1 (datasets' numbering), T = 1440 / minutes."""
    return times.astype("datetime64[s]").astype(np.int64) // (60 * minutes)


def cell_of(lat, lon, bbox, grid):
    """Points -> (row, col) int64 arrays, -1 for both where the point is outside the box."""
    lat_min, lat_max, lon_min, lon_max = bbox
    (h, w), lat, lon = grid, np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    inside = (lat >= lat_min) & (lat <= lat_max) & (lon >= lon_min) & (lon <= lon_max)
    # The 1e-9 of a cell lets a point written on a grid line in decimal (40.8 in 40.6..40.9 / 3)
    # fall south / east of it, as documented, despite the rounding of (lat_max - lat) / span.
    row = np.floor((lat_max - lat) / (lat_max - lat_min) * h + 1e-9)
    col = np.floor((lon - lon_min) / (lon_max - lon_min) * w + 1e-9)
    row = np.where(inside, np.clip(np.nan_to_num(row), 0, h - 1), -1).astype(np.int64)
    col = np.where(inside, np.clip(np.nan_to_num(col), 0, w - 1), -1).astype(np.int64)
    return row, col


# ---- counting ------------------------------------------------------------------------------------

def count_chunk(fields, short, counts, report, bbox, grid, minutes, slot_range):
    """Parse one chunk and add its counted trip ends to counts {slot: (2, H*W) int64}."""
    start_t, end_t = tripcsv.parse_times(fields[0]), tripcsv.parse_times(fields[1])
    backwards = end_t < start_t   # NaT compares False: an unparseable time is its end's problem
    report["not_counted"]["row too short"] += short
    report["not_counted"]["end before start"] += int(backwards.sum())
    report["rows_read"] += len(start_t) + short
    for flow, (name, t, lat, lon) in enumerate([("start", start_t, fields[2], fields[3]),
                                                ("end", end_t, fields[4], fields[5])]):
        lat, lon = tripcsv.parse_coordinates(lat), tripcsv.parse_coordinates(lon)
        row, col = cell_of(lat, lon, bbox, grid)
        slots = slot_of(t, minutes)
        checks = [~np.isnat(t), ~np.isnan(lat) & ~np.isnan(lon), row >= 0,
                  (slots >= slot_range[0]) & (slots < slot_range[1])]
        keep = ~backwards
        for reason, passed in zip(END_REASONS, checks):  # first failed check is the reason
            report["not_counted"][f"{name}: {reason}"] += int((keep & ~passed).sum())
            keep &= passed
        report[("outflow_events", "inflow_events")[flow]] += int(keep.sum())
        add_events(counts, flow, slots[keep], row[keep] * grid[1] + col[keep], grid[0] * grid[1])


def add_events(counts, flow, slots, cells, n_cells):
    """Add events (slot, flat cell) to counts {slot: (2, n_cells) int64}, one bincount a chunk."""
    unique, inverse = np.unique(slots, return_inverse=True)
    per_slot = np.bincount(inverse * n_cells + cells, minlength=len(unique) * n_cells)
    for slot, row in zip(unique.tolist(), per_slot.reshape(len(unique), n_cells)):
        counts.setdefault(slot, np.zeros((2, n_cells), np.int64))[flow] += row


def drop_ends_outside(counts, report, slots):
    """Move the trip ends counted outside the given slots (e.g. bikes returned after the last day
    of starts) from counts to the report's 'end: outside the time range'. The range is known only
    after the last chunk, so the ends are counted by slot as they come and trimmed here."""
    inside = set(slots.tolist())
    for slot in [s for s in counts if s not in inside]:
        ends = int(counts.pop(slot)[1].sum())   # flow 0 is empty: every counted start is inside
        report["inflow_events"] -= ends
        report["not_counted"]["end: outside the time range"] += ends


def days_without_starts(counts, first, stop, T):
    """The days (as slot numbers of their first slot) in first..stop-1 on which no counted trip
    starts."""
    started = {slot // T for slot, c in counts.items() if c[0].any()}
    return [day * T for day in range(first // T, stop // T) if day not in started]


def write_flows(path, counts, slots, T, grid):
    """The counts of the given slots (ascending) -> the release layout, written atomically."""
    data = np.zeros((len(slots), 2, grid[0] * grid[1]))   # (n, 2, H*W): silent slots stay 0
    position = {slot: i for i, slot in enumerate(slots.tolist())}
    for slot, c in counts.items():
        data[position[slot]] = c
    with h5py.File(path + ".tmp", "w") as f:
        f.create_dataset("data", data=data.reshape(-1, 2, *grid))
        f.create_dataset("date", data=timestamps.format_timestamps(slots, T).astype("S10"))
    os.replace(path + ".tmp", path)


# ---- conversion ----------------------------------------------------------------------------------

def day_number(text, name):
    """'YYYYMMDD' -> days since 1970-01-01."""
    if len(text) != 8 or not text.isdigit():
        raise TripError(f"{name} must be a date YYYYMMDD, got {text!r}")
    return int(timestamps.parse_days([text], source=name)[0])  # DataError if no such day


def check_settings(csv_paths, output, bbox, grid, minutes, overwrite):
    lat_min, lat_max, lon_min, lon_max = bbox
    if not (np.all(np.isfinite(bbox)) and lat_min < lat_max and lon_min < lon_max):
        raise TripError(f"bbox must be LAT_MIN,LAT_MAX,LON_MIN,LON_MAX with LAT_MIN < LAT_MAX and "
                        f"LON_MIN < LON_MAX, got {list(bbox)}")
    if len(grid) != 2 or min(grid) < 1:
        raise TripError(f"grid must be rows x columns, both >= 1, got {grid}")
    if minutes < 1 or 1440 % minutes:
        raise TripError(f"minutes must divide a day (1440), e.g. 30 or 60, got {minutes}")
    missing = [p for p in csv_paths if not os.path.isfile(p)]
    if missing:
        raise TripError(f"input file(s) not found: {', '.join(missing)}")
    if os.path.exists(output) and not overwrite:
        raise TripError(f"{output} exists; pass --overwrite (overwrite=True) to replace it")


def convert(csv_paths, output, bbox, grid, minutes, columns="citibike", start=None, end=None,
            overwrite=False, chunk_rows=CHUNK_ROWS, empty_days="absent"):
    """Count the trips of csv_paths into output; -> the report dict (also <output>.report.json)."""
    began, grid = time.perf_counter(), tuple(grid)
    check_settings(csv_paths, output, bbox, grid, minutes, overwrite)
    T = 1440 // minutes
    slot_range = (NO_LIMIT[0] if start is None else day_number(start, "start") * T,
                  NO_LIMIT[1] if end is None else (day_number(end, "end") + 1) * T)
    if slot_range[0] >= slot_range[1]:
        raise TripError(f"start {start} is after end {end}")
    report = {"rows_read": 0, "outflow_events": 0, "inflow_events": 0,
              "not_counted": dict.fromkeys(REASONS, 0)}
    counts = {}
    for path in csv_paths:
        for fields, short in tripcsv.read_chunks(path, columns, chunk_rows):
            count_chunk(fields, short, counts, report, bbox, grid, minutes, slot_range)
    start_slots = [slot for slot, c in counts.items() if c[0].any()]   # holding a counted start
    if not start_slots and (start is None or end is None):
        raise TripError(f"no trip start was counted, so the time range is unknown; check --bbox "
                        f"and --columns, or give both --start and --end: {report}")
    # Whole days: the given --start / --end, else the first / last day on which a trip starts.
    first = min(start_slots) // T * T if start is None else slot_range[0]
    stop = (max(start_slots) // T + 1) * T if end is None else slot_range[1]
    left_out = days_without_starts(counts, first, stop, T) if empty_days == "absent" else []
    slots = np.setdiff1d(np.arange(first, stop), np.add.outer(left_out, np.arange(T)))
    drop_ends_outside(counts, report, slots)
    write_flows(output, counts, slots, T, grid)
    seconds = time.perf_counter() - began
    stamps = timestamps.format_timestamps([first, stop - 1], T)
    report.update(output=output, flows=list(FLOWS), grid=list(grid), bbox=list(bbox), T=T,
                  slots=len(slots), first_slot=str(stamps[0]), last_slot=str(stamps[1]),
                  days_left_out=len(left_out), first_days_left_out=[
                      str(d)[:8] for d in timestamps.format_timestamps(left_out[:5], T)]
                  if left_out else [],
                  first_day_from="--start" if start else "the first day a counted trip starts",
                  last_day_from="--end" if end else "the last day a counted trip starts",
                  seconds=round(seconds, 3),
                  rows_per_second=round(report["rows_read"] / max(seconds, 1e-9)))
    with open(output + ".report.json.tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(output + ".report.json.tmp", output + ".report.json")
    return report


# ---- command line --------------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, like every other user error of this script
        sys.exit(f"error: {message} (see --help)")


def parse_numbers(text, sep, count, name, example, kind):
    """'1,2,3' -> [1, 2, 3] of `kind`, or a TripError that shows an example of the format."""
    try:
        values = [kind(v) for v in text.split(sep)]
        if len(values) == count:
            return values
    except ValueError:
        pass
    raise TripError(f"--{name} must look like {example}, got {text!r}")


def main(argv=None):
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", help="the HDF5 file to write")
    parser.add_argument("inputs", nargs="+", help="trip CSV file(s), counted into one output")
    parser.add_argument("--bbox", required=True, help="LAT_MIN,LAT_MAX,LON_MIN,LON_MAX")
    parser.add_argument("--grid", required=True, help="ROWSxCOLUMNS, e.g. 16x8")
    parser.add_argument("--minutes", required=True, help="slot length; must divide 1440")
    parser.add_argument("--columns", default="citibike", help="'citibike' or six names: "
                        "start_time,end_time,start_lat,start_lon,end_lat,end_lon")
    parser.add_argument("--start", help="first day YYYYMMDD (default: the first day a counted "
                        "trip starts; trip ends before it are not counted)")
    parser.add_argument("--end", help="last day YYYYMMDD, inclusive (default: the last day a "
                        "counted trip starts; trip ends after it are not counted)")
    parser.add_argument("--empty_days", default="absent", choices=("absent", "zeros"),
                        help="days in the range on which no trip starts: left out of the file "
                        "(absent: a gap in the records) or written as zeros")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    try:
        bbox = parse_numbers(args.bbox, ",", 4, "bbox", "40.66,40.80,-74.03,-73.93", float)
        grid = parse_numbers(args.grid.lower(), "x", 2, "grid", "16x8", int)
        minutes = parse_numbers(args.minutes, ",", 1, "minutes", "60", int)[0]
        report = convert(args.inputs, args.output, bbox, grid, minutes, args.columns, args.start,
                         args.end, args.overwrite, empty_days=args.empty_days)
    except (TripError, flowfiles.DataError, UnicodeDecodeError, OSError, csv.Error) as err:
        sys.exit(f"error: {err}")
    print(json.dumps(report, indent=2))
    print(f"time range {report['first_slot']} .. {report['last_slot']}: first day = "
          f"{report['first_day_from']}, last day = {report['last_day_from']}; the "
          f"{report['not_counted']['end: outside the time range']:,} trip ends outside it are "
          f"not counted (--start / --end widen it)")
    print(f"{report['rows_read']:,} rows in {report['seconds']:.1f} s: "
          f"{report['rows_per_second']:,} rows/s")


if __name__ == "__main__":
    main()
