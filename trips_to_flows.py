"""Raw trip records (CSV) -> an in/out-flow HDF5 file in the release layout that
flowfiles.load_flow_file reads: 'data' float64 (n, 2, H, W) and 'date' |S10 YYYYMMDD + slot 01..T,
with a map of the grid beside it (<output>.map.png) and a report (<output>.report.json).

Inputs: operators' trip files as published: CSV, .csv.gz, .csv.bz2, or .zip (every CSV inside;
macOS resource entries skipped); UTF-8 (with or without BOM) or Latin-1. --columns names the start
time, end time and start and end place: a preset (citibike, divvy, capitalbikeshare, baywheels,
bluebikes, metro: each covers its operator's header generations), auto (every preset; the report
says which matched), or names matched regardless of case, spaces and underscores. A time may be
two columns, date+time. Places are coordinates, or station ids mapped by --stations.
Time stamps are local wall-clock times, each file's format found from its values:
'YYYY-MM-DD HH:MM[:SS[.fff]]' (or with a 'T'), 'M/D/YYYY H:MM[:SS]' and 'M/D/YY H:MM[:SS]';
day-first dates (D/M/YYYY) are found by a day above 12, or set by --date_order. Clocks that change
for daylight saving are counted as written: the skipped spring hour's slot is empty, the repeated
autumn hour's trips share one slot, and a trip seeming to end before it starts across it is
counted under 'end before start'.

Flows (the paper's definitions, BikeNYC's order): flow 0 = outflow ("new-flow"), the trips that
start in a region during a slot, by start time and place; flow 1 = inflow ("end-flow"), the trips
that end there, by end time and place. The two ends of a trip are counted independently.
Grid: row 0 is the north edge (largest latitude), column 0 the west edge. A point's cell is
row = floor((lat_max - lat) / (lat_max - lat_min) * H), col = floor((lon - lon_min) / (lon_max -
lon_min) * W): a point on an internal grid line (to 1e-9 of a cell, so that decimal lines count)
belongs to the cell south / east of it; points on the outer edges are inside (lat_min -> last
row, lon_max -> last column). --bbox=auto proposes the box: the smallest one holding 99% (or
auto:PERCENT) of the trip starts of the busiest cluster of stations, printed to copy or change.
Every trip end that is not counted is counted under a reason in the report (returned, printed,
and written to <output>.report.json); blank lines are not records; a blank, zero or off-globe
coordinate is a bad coordinate.
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
import tripfiles
import tripgrid
from tripcsv import TripError

CHUNK_ROWS = 10_000   # rows parsed at once: small enough to stay in the CPU's caches, and to let a
                      # decompressing child run ahead in its pipe while a chunk is counted
FLOWS = ("outflow (new-flow: trips started)", "inflow (end-flow: trips ended)")
END_REASONS = ("bad time", "bad coordinates", "outside the box", "outside the time range")
UNKNOWN_STATION = "station not in --stations"   # a reason of its own, only with --stations
ROW_REASONS = ("row too short", "end before start")  # these drop both ends of the row
NO_LIMIT = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)  # slot range when none is given
AUTO_SHARE = 0.99     # --bbox=auto: the share of the busiest cluster's trip starts in the box


def reasons(with_stations):
    """The report's reasons for a trip end not counted, in the order they are checked."""
    ends = END_REASONS[:1] + (UNKNOWN_STATION,) * with_stations + END_REASONS[1:]
    return ROW_REASONS + tuple(f"{end}: {r}" for end in ("start", "end") for r in ends)


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

def count_chunk(trips, counts, report, places, bbox, grid, minutes, slot_range):
    """Add one parsed chunk (tripcsv.Trips) to counts {slot: (2, H*W) int64}, the ends not
    counted to the report by reason, and every end's place with coordinates to places."""
    backwards = trips.end < trips.start   # NaT compares False: a bad time is its end's problem
    report["not_counted"]["row too short"] += trips.short
    report["not_counted"]["end before start"] += int(backwards.sum())
    report["rows_read"] += len(trips.start) + trips.short
    for flow, (name, t, (lat, lon, unknown)) in enumerate(
            zip(("start", "end"), (trips.start, trips.end), trips.places)):
        row, col = cell_of(lat, lon, bbox, grid)
        slots = slot_of(t, minutes)
        located = ~np.isnan(lat)
        places.add(lat[located], lon[located])
        checks = [("bad time", ~np.isnat(t))]
        if unknown is not None:   # a station id that the --stations table lacks
            checks.append((UNKNOWN_STATION, ~unknown))
        checks += [("bad coordinates", located), ("outside the box", row >= 0),
                   ("outside the time range", (slots >= slot_range[0]) & (slots < slot_range[1]))]
        keep = ~backwards
        for reason, passed in checks:  # first failed check is the reason
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


def auto_share(bbox):
    """'auto' -> AUTO_SHARE, 'auto:95' -> 0.95 (a percent of the trip starts); None for a box."""
    if not isinstance(bbox, str):
        return None
    name, _, percent = bbox.strip().lower().partition(":")
    try:
        share = float(percent) / 100 if percent else AUTO_SHARE
    except ValueError:
        share = None
    if name != "auto" or share is None or not 0 < share <= 1:
        raise TripError(f"bbox must be LAT_MIN,LAT_MAX,LON_MIN,LON_MAX, auto, or auto:PERCENT "
                        f"(the share of trip starts in the box, e.g. auto:95), got {bbox!r}")
    return share


def check_box(bbox):
    """Refuse a box that is empty, inverted, not finite or off the globe (lat/lon swapped)."""
    lat_min, lat_max, lon_min, lon_max = bbox
    if not (np.all(np.isfinite(bbox)) and lat_min < lat_max and lon_min < lon_max):
        raise TripError(f"bbox must be LAT_MIN,LAT_MAX,LON_MIN,LON_MAX with LAT_MIN < LAT_MAX and "
                        f"LON_MIN < LON_MAX, got {list(bbox)}")
    if not (-90 <= lat_min and lat_max <= 90 and -180 <= lon_min and lon_max <= 180):
        raise TripError(f"bbox latitudes must lie in -90..90 and longitudes in -180..180 (the "
                        f"order is LAT_MIN,LAT_MAX,LON_MIN,LON_MAX), got {list(bbox)}; "
                        f"--bbox=auto proposes a box")


def check_settings(csv_paths, output, bbox, grid, minutes, overwrite, stations, date_order):
    """Every setting and path checked before anything is read. -> the --bbox=auto share (None
    for a box given)."""
    share = auto_share(bbox)
    if share is None:
        check_box(bbox)
    if len(grid) != 2 or min(grid) < 1:
        raise TripError(f"grid must be rows x columns, both >= 1, got {grid}")
    if minutes < 1 or 1440 % minutes:
        raise TripError(f"minutes must divide a day (1440), e.g. 30 or 60, got {minutes}")
    if date_order not in (None, "month_first", "day_first"):
        raise TripError(f"date_order must be month_first or day_first, got {date_order!r}")
    missing = [p for p in [*csv_paths, *([stations] if stations else [])] if not os.path.isfile(p)]
    if missing:
        raise TripError(f"input file(s) not found: {', '.join(missing)}")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise TripError(f"{output}: the folder {folder} does not exist; create it (mkdir -p "
                        f"{folder}) or write the output elsewhere")
    if os.path.exists(output) and not overwrite:
        raise TripError(f"{output} exists; pass --overwrite (overwrite=True) to replace it")
    return share


def auto_box(sources, stations, share, chunk_rows):
    """--bbox=auto: a first pass over the inputs that counts the places of the trip starts and
    ends, then tripgrid's proposal, printed at once so that the user can copy or change it.
    -> (bbox, facts for the report)."""
    starts, ends = tripgrid.PointCounts(), tripgrid.PointCounts()
    for source in sources:
        for fields, short in tripfiles.read_chunks(source, chunk_rows):
            trips = tripcsv.parse_trips(fields, short, source, stations, with_times=False)
            for points, (lat, lon, _) in zip((starts, ends), trips.places):
                points.add(lat[~np.isnan(lat)], lon[~np.isnan(lat)])
    if not starts.counts.sum():
        raise TripError("--bbox=auto: no trip start has valid coordinates; check --columns "
                        "(and --stations)")
    bbox, facts = tripgrid.propose_box(starts, ends, share)
    text = ",".join(f"{edge:.4f}" for edge in bbox)
    print(f"--bbox=auto: {text} holds {share * 100:g}% of the trip starts in the busiest "
          f"cluster of stations ({facts['clusters']} found): {facts['starts_inside']:.1%} of all "
          f"trip starts and {facts['ends_inside']:.1%} of all trip ends with coordinates; to keep "
          f"or change it: --bbox={text}", flush=True)
    return bbox, facts


def count_inputs(sources, stations, chunk_rows, report, where):
    """Count every source's trips. where: (bbox, grid, minutes, slot_range).
    -> (counts {slot: (2, H*W)}, places with trips (PointCounts)); report['inputs'] says, per
    source, what was read: its columns, time format, encoding and rows."""
    counts, places = {}, tripgrid.PointCounts()
    report["inputs"] = []
    for source in sources:
        rows_before = report["rows_read"]
        for fields, short in tripfiles.read_chunks(source, chunk_rows):
            trips = tripcsv.parse_trips(fields, short, source, stations)
            count_chunk(trips, counts, report, places, *where)
        report["inputs"].append({
            "file": source.path, "entry": source.entry, "compression": source.compression,
            "encoding": source.encoding, "columns": source.layout.label,
            "places": "station ids via --stations" if source.layout.stations else "coordinates",
            "time_format": source.time_format, "rows": report["rows_read"] - rows_before})
    return counts, places


def convert(csv_paths, output, bbox, grid, minutes, columns="auto", start=None, end=None,
            overwrite=False, chunk_rows=CHUNK_ROWS, empty_days="absent", stations=None,
            station_columns=None, date_order=None, draw_map=True):
    """Count the trips of csv_paths into output; -> the report dict (also <output>.report.json).
    bbox: (LAT_MIN, LAT_MAX, LON_MIN, LON_MAX), or 'auto' / 'auto:PERCENT'; draw_map: write
    <output>.map.png."""
    began, grid = time.perf_counter(), tuple(grid)
    share = check_settings(csv_paths, output, bbox, grid, minutes, overwrite, stations, date_order)
    T = 1440 // minutes
    slot_range = (NO_LIMIT[0] if start is None else day_number(start, "start") * T,
                  NO_LIMIT[1] if end is None else (day_number(end, "end") + 1) * T)
    if slot_range[0] >= slot_range[1]:
        raise TripError(f"start {start} is after end {end}")
    table = tripcsv.read_stations(stations, station_columns) if stations else None
    sources = tripcsv.inspect_inputs(csv_paths, columns, table, date_order)
    report = {"rows_read": 0, "outflow_events": 0, "inflow_events": 0,
              "not_counted": dict.fromkeys(reasons(table is not None), 0)}
    facts = None
    if share:
        bbox, facts = auto_box(sources, table, share, chunk_rows)
    counts, places = count_inputs(sources, table, chunk_rows, report,
                                  (list(bbox), grid, minutes, slot_range))
    first, stop, left_out, slots = time_range(counts, report, start, end, slot_range, T,
                                              empty_days)
    drop_ends_outside(counts, report, slots)
    write_flows(output, counts, slots, T, grid)
    seconds = time.perf_counter() - began   # the conversion's speed, without drawing the map
    if draw_map:
        write_map(output, counts, grid, bbox, places)
    stamps = timestamps.format_timestamps([first, stop - 1], T)
    report.update(output=output, flows=list(FLOWS), grid=list(grid), bbox=list(bbox), T=T,
                  bbox_from="--bbox" if facts is None else "--bbox=auto", bbox_auto=facts,
                  stations=stations, map=output + ".map.png" if draw_map else None,
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


def write_map(output, counts, grid, bbox, places):
    """<output>.map.png: the trip starts and ends counted per cell, the box, the places."""
    cells = sum(counts.values(), np.zeros((2, grid[0] * grid[1]))).sum(0).reshape(grid)  # (H, W)
    tripgrid.draw_map(output + ".map.png", cells, bbox, places,
                      f"{os.path.basename(output)}: {grid[0]}x{grid[1]} cells, "
                      f"{int(cells.sum()):,} trip ends counted")


def time_range(counts, report, start, end, slot_range, T, empty_days):
    """The file's slots: whole days from --start (else the first day a counted trip starts) to
    --end (else the last), less the days without starts unless empty_days='zeros'.
    -> (first slot, stop slot, the days left out, the slots written)."""
    start_slots = [slot for slot, c in counts.items() if c[0].any()]   # holding a counted start
    if not start_slots and (start is None or end is None):
        outside = report["not_counted"]["start: outside the box"]
        raise TripError(f"no trip start was counted ({outside:,} outside the box), so the time "
                        f"range is unknown; check --bbox (LAT_MIN,LAT_MAX,LON_MIN,LON_MAX; "
                        f"--bbox=auto proposes one) and --columns, or give both --start and "
                        f"--end: {report}")
    first = min(start_slots) // T * T if start is None else slot_range[0]
    stop = (max(start_slots) // T + 1) * T if end is None else slot_range[1]
    left_out = days_without_starts(counts, first, stop, T) if empty_days == "absent" else []
    slots = np.setdiff1d(np.arange(first, stop), np.add.outer(left_out, np.arange(T)))
    return first, stop, left_out, slots


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


def arguments():
    """The command line's parser: the output, the inputs and the options of convert()."""
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", help="the HDF5 file to write")
    parser.add_argument("inputs", nargs="+", help="trip files (.csv, .csv.gz, .csv.bz2, .zip), "
                        "counted into one output")
    parser.add_argument("--bbox", required=True, help="LAT_MIN,LAT_MAX,LON_MIN,LON_MAX, or auto "
                        "(auto:PERCENT): the smallest box holding 99%% of the busiest cluster's "
                        "trip starts")
    parser.add_argument("--grid", required=True, help="ROWSxCOLUMNS, e.g. 16x8")
    parser.add_argument("--minutes", required=True, help="slot length; must divide 1440")
    parser.add_argument("--columns", default="auto", help="a preset (citibike, divvy, "
                        "capitalbikeshare, baywheels, bluebikes, metro), auto (the default: "
                        "every preset), or six names start_time,end_time,start_lat,start_lon,"
                        "end_lat,end_lon, or four start_time,end_time,start_station,end_station "
                        "with --stations; a time may be DATE+TIME, two columns")
    parser.add_argument("--stations", help="station table CSV (id, latitude, longitude) for "
                        "files that give station ids instead of coordinates")
    parser.add_argument("--station_columns", help="its columns ID,LATITUDE,LONGITUDE (default: "
                        "found by name, e.g. id,latitude,longitude)")
    parser.add_argument("--date_order", choices=("month_first", "day_first"), help="slash dates "
                        "M/D/YYYY or D/M/YYYY (default: found from the values)")
    parser.add_argument("--start", help="first day YYYYMMDD (default: the first day a counted "
                        "trip starts; trip ends before it are not counted)")
    parser.add_argument("--end", help="last day YYYYMMDD, inclusive (default: the last day a "
                        "counted trip starts; trip ends after it are not counted)")
    parser.add_argument("--empty_days", default="absent", choices=("absent", "zeros"),
                        help="days in the range on which no trip starts: left out of the file "
                        "(absent: a gap in the records) or written as zeros")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def main(argv=None):
    args = arguments().parse_args(argv)
    try:
        bbox = args.bbox if args.bbox.strip().lower().startswith("auto") else parse_numbers(
            args.bbox, ",", 4, "bbox", "40.66,40.80,-74.03,-73.93 or auto", float)
        grid = parse_numbers(args.grid.lower(), "x", 2, "grid", "16x8", int)
        minutes = parse_numbers(args.minutes, ",", 1, "minutes", "60", int)[0]
        report = convert(args.inputs, args.output, bbox, grid, minutes, args.columns, args.start,
                         args.end, args.overwrite, empty_days=args.empty_days,
                         stations=args.stations, station_columns=args.station_columns,
                         date_order=args.date_order)
    except (TripError, flowfiles.DataError, UnicodeDecodeError, OSError, csv.Error) as err:
        sys.exit(f"error: {err}")
    print(json.dumps(report, indent=2))
    for source in report["inputs"]:
        print(f"{source['file']}{':' + source['entry'] if source['entry'] else ''}: "
              f"{source['rows']:,} rows, columns {source['columns']}, times "
              f"{source['time_format']}, {source['encoding']}")
    print(f"time range {report['first_slot']} .. {report['last_slot']}: first day = "
          f"{report['first_day_from']}, last day = {report['last_day_from']}; the "
          f"{report['not_counted']['end: outside the time range']:,} trip ends outside it are "
          f"not counted (--start / --end widen it)")
    print(f"map of the grid: {report['map']}")
    print(f"{report['rows_read']:,} rows in {report['seconds']:.1f} s: "
          f"{report['rows_per_second']:,} rows/s")


if __name__ == "__main__":
    main()
