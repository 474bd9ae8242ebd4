"""Understanding raw trip-record files for trips_to_flows.py, as operators publish them.

    inspect_inputs(paths, columns, stations, date_order) -> [Source]   every check a sample allows
    parse_trips(fields, short, source, stations) -> Trips            times and places, vectorised

A Source is one CSV, opened and streamed by tripfiles.py (read_chunks). Of its header it takes the
start and end time (one column each, or 'date+time': a date and a time column) and the start and
end place: four coordinate columns, or two station-id columns that a station table
(read_stations) maps to coordinates. Names are found by a preset of an operator's header
generations or given, and match loosely (case, spaces and underscores ignored). Each file's time
format is found from its values; unparseable fields become NaT / NaN, counted by the caller.
"""
import itertools
import operator
from typing import NamedTuple

import numpy as np

from tripfiles import TripError, detect_encoding, open_rows, read_chunks, sources_of

# Each preset lists an operator's header generations: (label, fields), the fields being the start
# and end time, then the start lat, start lon, end lat, end lon, or, for headers without
# coordinates, the start and end station ids (mapped by --stations). Names match loosely, so
# 'starttime' also reads 'Start Time' and 'start_time'. Sources: docs/own_city.md.
RIDE_ID = ("started_at", "ended_at", "start_lat", "start_lng", "end_lat", "end_lng")
CITIBIKE_2013 = ("starttime", "stoptime", "start station latitude", "start station longitude",
                 "end station latitude", "end station longitude")
COLUMN_PRESETS = {
    "citibike": [("2013-2020", CITIBIKE_2013), ("2021+", RIDE_ID)],
    "divvy": [("2020+", RIDE_ID),
              ("2013-2016", ("starttime", "stoptime", "from_station_id", "to_station_id")),
              ("2017-2019", ("start_time", "end_time", "from_station_id", "to_station_id")),
              ("2018 Q1, 2019 Q2", ("01 - Rental Details Local Start Time",
                                    "01 - Rental Details Local End Time",
                                    "03 - Rental Start Station ID", "02 - Rental End Station ID"))],
    "capitalbikeshare": [("2020+", RIDE_ID),
                         ("2010-2020", ("Start date", "End date", "Start station number",
                                        "End station number"))],
    "baywheels": [("2020+", RIDE_ID),
                  ("Ford GoBike 2017-2020", ("start_time", "end_time", "start_station_latitude",
                                             "start_station_longitude", "end_station_latitude",
                                             "end_station_longitude")),
                  ("Bay Area Bike Share 2013-2016", ("Start Date", "End Date", "Start Terminal",
                                                     "End Terminal"))],
    "bluebikes": [("2023+", RIDE_ID), ("Hubway and Bluebikes 2015-2023", CITIBIKE_2013),
                  ("Hubway 2011-2013", ("start_date", "end_date", "strt_statn", "end_statn"))],
    "metro": [("Los Angeles 2016+", ("start_time", "end_time", "start_lat", "start_lon", "end_lat",
                                     "end_lon"))]}
# A station table's columns when --station_columns does not name them: id, latitude, longitude.
STATION_NAMES = (("id", "station_id", "station_number", "terminal", "terminal_number",
                  "short_name"), ("latitude", "lat", "station_latitude"),
                 ("longitude", "lon", "lng", "long", "station_longitude"))
MAX_FIELD = 64       # longer time or coordinate fields are invalid (a broken quote swallows lines)
SAMPLE_ROWS = 1_000            # the first rows of a file, checked before any counting
SCAN_ROWS = 20_000             # rows read at a time while looking for a day above 12
DASH, SLASH, COLON, DOT, SPACE, T = map(ord, "-/:. T")


class Layout(NamedTuple):
    """Where a file holds the fields: the header names used and their column positions, start
    time first; time_parts: columns per time (2 for 'date+time'); stations: places are ids."""
    label: str
    names: tuple
    positions: tuple
    time_parts: tuple
    stations: bool


class Trips(NamedTuple):
    """One chunk parsed: start and end times (NaT: unparseable), places [(lat, lon, unknown)] for
    start and end (NaN: bad; unknown: station id not in --stations, None without it), and the
    number of rows too short to hold every column."""
    start: np.ndarray
    end: np.ndarray
    places: list
    short: int


# ---- parsing -------------------------------------------------------------------------------------

def as_text(strings):
    """Strings -> a unicode array, fields longer than MAX_FIELD blanked: numpy pads every string
    to the longest, so one runaway field would otherwise blow up the whole chunk's memory."""
    if isinstance(strings, np.ndarray) and strings.dtype.kind == "U":
        return strings   # made here already (a 'date+time' pair, joined after each was made)
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


def time_fields(strings):
    """Time-stamp strings -> (numbers (n, 9), iso (n,), slash (n,), n_seps (n,), seps (n, 9)):
    iso marks 'YYYY-MM-DD HH:MM' (or a 'T' for the space), slash 'A/B/YYYY H:MM' (or YY), both
    optionally with ':SS' and then '.fff'. Called by parse_times and the format detection."""
    text = np.strings.strip(as_text(strings))
    v, s, n_v, n_s = digit_runs(text)
    # Numbers and single separators alternate; the clock is H:MM, H:MM:SS or H:MM:SS.fff.
    clock = ((n_v == n_s + 1) & (s[:, 3] == COLON)
             & ((n_s == 4) | (s[:, 4] == COLON) & ((n_s == 5) | (n_s == 6) & (s[:, 5] == DOT))))
    iso = clock & (s[:, 0] == DASH) & (s[:, 1] == DASH) & ((s[:, 2] == SPACE) | (s[:, 2] == T))
    slash = clock & (s[:, 0] == SLASH) & (s[:, 1] == SLASH) & (s[:, 2] == SPACE)
    return v, iso, slash, n_s, s


def parse_times(strings, day_first=False):
    """Time-stamp strings -> datetime64[s] (fractional seconds dropped), NaT where unparseable.
    Slash dates are M/D/Y, or D/M/Y with day_first; a two-digit year YY is 19YY from 69, else
    20YY (as strptime's %y). Local wall-clock times are kept as they are written."""
    if len(strings) == 0:
        return np.zeros(0, "datetime64[s]")
    v, iso, slash, _, _ = time_fields(strings)
    first, second = (v[:, 1], v[:, 0]) if day_first else (v[:, 0], v[:, 1])
    century = np.where(v[:, 2] < 69, 2000, 1900) * (v[:, 2] < 100)
    year = np.where(iso, v[:, 0], v[:, 2] + century)
    month, day = np.where(iso, v[:, 1], first), np.where(iso, v[:, 2], second)
    ok = (iso | slash) & (year >= 1000) & (year <= 9999) & (month >= 1) & (month <= 12)
    month_start = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    first_day = month_start.astype("datetime64[D]")
    ok &= (day >= 1) & (day <= ((month_start + 1).astype("datetime64[D]") - first_day).astype(int))
    hour, minute, second = v[:, 3], v[:, 4], v[:, 5]   # 'H:MM' leaves v[:, 5] = 0
    ok &= (hour < 24) & (minute < 60) & (second < 60)
    seconds = first_day.astype(np.int64) * 86400 + (day - 1) * 86400 + hour * 3600 + minute * 60
    return np.where(ok, seconds + second, np.iinfo(np.int64).min).astype("datetime64[s]")


def time_styles(strings, day_first):
    """The formats of the parseable time stamps among strings, commonest first, e.g.
    'M/D/YYYY H:MM, M/D/YYYY H:MM:SS'. Called by inspect_source for the report."""
    v, iso, slash, n_s, s = time_fields(strings)
    ok = ~np.isnat(parse_times(strings, day_first))
    codes = np.stack([iso, s[:, 2] == T, v[:, 2] < 100, n_s], axis=1)[ok]
    styles, counts = np.unique(codes, axis=0, return_counts=True)
    labels = []
    for is_iso, with_t, short_year, n in styles[np.argsort(-counts, kind="stable")].tolist():
        clock = "H:MM" + ":SS" * (n >= 5) + ".fff" * (n == 6)
        if is_iso:
            labels.append("YYYY-MM-DD" + ("T" if with_t else " ") + "H" + clock)
        else:
            labels.append(("D/M/" if day_first else "M/D/") + ("YY" if short_year else "YYYY")
                          + " " + clock)
    return ", ".join(labels)


def date_order_evidence(strings):
    """Among slash dates: (a value whose first number is a day, 13..31, or None; a value whose
    second number is one, or None). Called by settle_date_order."""
    v, _, slash, _, _ = time_fields(strings)
    found = []
    for place in (0, 1):
        hits = np.flatnonzero(slash & (v[:, place] > 12) & (v[:, place] <= 31))
        found.append(str(strings[hits[0]]) if len(hits) else None)
    return found


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


def parse_points(lat_strings, lon_strings):
    """Latitude and longitude strings -> (lat, lon) float64, both NaN where the point is bad:
    missing or unparseable, off the globe (|lat| > 90, |lon| > 180), or on a zero line, which
    operators write for a missing place (lat 0 or lon 0: no bike-share station lies exactly on
    the equator or the prime meridian)."""
    lat, lon = parse_coordinates(lat_strings), parse_coordinates(lon_strings)
    bad = (np.abs(lat) > 90) | (np.abs(lon) > 180) | (lat == 0) | (lon == 0) | np.isnan(lat + lon)
    return np.where(bad, np.nan, lat), np.where(bad, np.nan, lon)


# ---- columns -------------------------------------------------------------------------------------

def loose(name):
    """A column name as loosely compared: case, spaces, underscores and quotes ignored."""
    return "".join(name.lower().replace("_", " ").replace('"', " ").split())


def column_alternatives(columns):
    """--columns -> [(label, fields)] to try in turn: a preset's header generations, every
    preset's for 'auto' (generations with the same names joined into one label), or the six or
    four names given (a string 'a,b,...' or a sequence)."""
    if isinstance(columns, str) and (columns == "auto" or columns in COLUMN_PRESETS):
        presets = COLUMN_PRESETS if columns == "auto" else {columns: COLUMN_PRESETS[columns]}
        labels = {}
        for preset, generations in presets.items():
            for generation, fields in generations:
                labels.setdefault(fields, []).append(f"{preset} {generation}")
        return [(" = ".join(label), fields) for fields, label in labels.items()]
    fields = tuple(c.strip() for c in (columns.split(",") if isinstance(columns, str) else columns))
    times = [f.split("+") for f in fields[:2]]   # a time: one name, or 'date+time'
    if (len(fields) not in (4, 6) or not all(len(t) <= 2 and all(map(str.strip, t)) for t in times)
            or not all(f and "+" not in f for f in fields[2:])):
        raise TripError(f"columns must be a preset ({', '.join(COLUMN_PRESETS)}), auto, six names "
                        f"start_time,end_time,start_lat,start_lon,end_lat,end_lon, or four "
                        f"start_time,end_time,start_station_id,end_station_id with --stations; a "
                        f"time may be two columns date+time; got {list(fields)}")
    return [("--columns", fields)]


def match_name(name, headers):
    """Positions of the headers that name matches: an exact match (spaces and quotes around it
    ignored) wins, else every loose match; the caller refuses anything but one."""
    exact = [i for i, h in enumerate(headers) if h == name]
    return exact or [i for i, h in enumerate(headers) if loose(h) == loose(name)]


def match_fields(fields, headers):
    """-> (positions, problems) of one alternative's fields ('date+time' gives two positions);
    problems say, per name, that it matches no header or several."""
    positions, problems = [], []
    for name in (p.strip() for f in fields for p in f.split("+")):
        hits = match_name(name, headers)
        if len(hits) == 1:
            positions.append(hits[0])
        else:
            problems.append(f"{name!r} matches " + (
                "no header" if not hits else f"{len(hits)} headers {[headers[i] for i in hits]}"))
    return positions, problems


def header_names(header):
    """A header row's names as compared and shown: spaces and quotes around each removed."""
    return [h.strip().strip('"').strip() for h in header]


def find_columns(header, columns, name, have_stations):
    """The Layout of a file with this header row: the first alternative of --columns whose
    names each match one header; a header of station ids needs have_stations (--stations)."""
    headers = header_names(header)
    misses, needs_stations = [], None
    for label, fields in column_alternatives(columns):
        positions, problems = match_fields(fields, headers)
        if problems:
            misses.append((len(problems), label, fields, problems))
        elif len(fields) == 4 and not have_stations:
            needs_stations = needs_stations or label
        else:
            parts = tuple(len(f.split("+")) for f in fields[:2])
            return Layout(label, fields, tuple(positions), parts, len(fields) == 4)
    if needs_stations:
        raise TripError(f"{name}: its columns ({needs_stations}) give station ids but no "
                        f"coordinates; pass --stations=<the operator's station table (CSV with "
                        f"id, latitude, longitude)>")
    expected = " or ".join(str(list(fields)) for _, _, fields, _ in misses)
    closest = min(misses)   # the alternative with the fewest names missing
    raise TripError(f"{name}: missing columns; expected {expected}, found {headers}; closest: "
                    f"{closest[1]}, where {', '.join(closest[3])}")


# ---- station table -------------------------------------------------------------------------------

class Stations(NamedTuple):
    """A station table: ids (sorted str) and their lat, lon (NaN where bad); name: its file."""
    name: str
    ids: np.ndarray
    lat: np.ndarray
    lon: np.ndarray


def station_positions(header, columns, name):
    """Positions of the id, latitude and longitude columns of a station table: the names given
    (--station_columns 'ID,LAT,LON', matched loosely) or found among STATION_NAMES."""
    headers = header_names(header)
    if columns:
        wanted = [[c] for c in (columns.split(",") if isinstance(columns, str) else columns)]
        if len(wanted) != 3:
            raise TripError(f"--station_columns must be three names ID,LATITUDE,LONGITUDE, got "
                            f"{columns!r}")
    else:
        wanted = STATION_NAMES
    positions = []
    for candidates in wanted:
        hits = sorted({i for c in candidates for i in match_name(c.strip(), headers)})
        if len(hits) != 1:
            found = "none" if not hits else " and ".join(repr(headers[i]) for i in hits)
            raise TripError(f"{name}: the station {('id', 'latitude', 'longitude')[len(positions)]}"
                            f" column is {found} of {headers}; name the three with "
                            f"--station_columns=ID,LATITUDE,LONGITUDE")
        positions.append(hits[0])
    return positions


def read_stations(path, columns=None):
    """A station table (a CSV, plain or compressed, with one row per station) -> Stations. An id
    given twice with different coordinates is refused; rows that repeat a station are merged."""
    sources = sources_of(path)
    if len(sources) > 1:
        raise TripError(f"{path}: a station table must be one CSV; the zip holds {len(sources)}")
    source = sources[0]._replace(encoding=detect_encoding(sources[0]))
    with open_rows(source) as reader:
        header = next(reader, None)
        if header is None:
            raise TripError(f"{path}: empty file; expected a station table with a header row")
        positions = station_positions(header, columns, path)
        pick, needed = operator.itemgetter(*positions), max(positions)
        rows = [pick(row) for row in reader if len(row) > needed]
    if not rows:
        raise TripError(f"{path}: the station table has no rows")
    ids, lat, lon = (list(c) for c in zip(*rows))
    ids = np.strings.strip(np.asarray(ids, dtype=str))
    lat, lon = parse_points(lat, lon)
    order = np.lexsort((lon, lat, ids))
    ids, lat, lon = ids[order], lat[order], lon[order]
    repeat = ids[1:] == ids[:-1]
    differs = repeat & ~(((lat[1:] == lat[:-1]) & (lon[1:] == lon[:-1]))
                         | np.isnan(lat[1:]) & np.isnan(lat[:-1]))
    if differs.any():
        twice = sorted(set(ids[1:][differs].tolist()))
        raise TripError(f"{path}: station id(s) {twice[:5]} given twice with different "
                        f"coordinates; keep one row per station id")
    keep = np.concatenate([[True], ~repeat])
    return Stations(path, ids[keep], lat[keep], lon[keep])


def look_up(stations, ids):
    """Station-id strings -> (lat, lon, unknown): NaN and unknown=True where not in the table."""
    ids = np.strings.strip(as_text(ids))
    at = np.minimum(np.searchsorted(stations.ids, ids), len(stations.ids) - 1)
    known = stations.ids[at] == ids
    lat, lon = np.where(known, stations.lat[at], np.nan), np.where(known, stations.lon[at], np.nan)
    return lat, lon, ~known


# ---- inspection: every check a file's first rows allow, before any counting ----------------------

def split_fields(fields, layout):
    """A chunk's fields -> (start time strings, end time strings, place fields): a 'date+time'
    pair is joined with a space, so that the time parser reads it as one stamp."""
    texts, at = [], 0
    for parts in layout.time_parts:
        columns = [as_text(c) for c in fields[at:at + parts]]
        texts.append(columns[0] if parts == 1 else np.strings.add(
            np.strings.add(columns[0], " "), columns[1]))
        at += parts
    return texts[0], texts[1], fields[at:]


def check_times(text, field, name):
    """Refuse a time column of which no non-blank value in the sample parses: a wrong column,
    a format not read here, or a 'date+time' pair whose halves do not parse together."""
    filled = text[np.strings.strip(text) != ""]
    if not len(filled) or (~np.isnat(parse_times(filled))).any():
        return
    example = str(filled[0])
    if "+" not in field:
        raise TripError(f"{name}: no value of column {field!r} in the first rows is a time stamp "
                        f"(e.g. {example!r}); read are YYYY-MM-DD HH:MM[:SS], M/D/YYYY H:MM[:SS] "
                        f"and D/M/YYYY H:MM[:SS]; check --columns")
    first, second = (p.strip() for p in field.split("+"))
    swapped = " ".join(reversed(example.split(" ", 1)))   # the halves the other way round
    fix = (f"the date column first: {second}+{first}" if not np.isnat(
        parse_times([swapped]))[0] else "a date column, then a time column, e.g. 2019-07-01 and "
           "00:04:00, or 7/1/2019 and 0:04")
    raise TripError(f"{name}: the columns {first!r}+{second!r} do not parse together as a time "
                    f"stamp (e.g. {example!r}); expected {fix}")


def check_places(place_fields, layout, stations, name):
    """Refuse a place column of which no non-blank sample value is usable: coordinates that are
    not numbers (a wrong column), or station ids none of which is in the --stations table."""
    for field, values in zip(layout.names[2:], place_fields):
        text = np.strings.strip(as_text(values))
        filled = text[text != ""]
        if not len(filled):
            continue
        if layout.stations and look_up(stations, filled)[2].all():
            raise TripError(f"{name}: none of the station ids of column {field!r} in the first "
                            f"rows (e.g. {str(filled[0])!r}) is in {stations.name} (its ids look "
                            f"like {stations.ids[:3].tolist()}); check --stations and "
                            f"--station_columns")
        if not layout.stations and np.isnan(parse_coordinates(filled)).all():
            raise TripError(f"{name}: no value of column {field!r} in the first rows is a number "
                            f"(e.g. {str(filled[0])!r}); check --columns")


def settle_date_order(source, sample_times, date_order):
    """-> (day_first, how it was settled) for a file's slash dates: --date_order if given, else
    the first value, in the sample or further on, with a number above 12 in the first place
    (a day: day first) or the second (month first). A file with no such value is refused."""
    slashes = any(time_fields(t)[2].any() for t in sample_times)
    if date_order:
        return date_order == "day_first", "--date_order" if slashes else None
    if not slashes:
        return False, None
    time_columns = source.layout.positions[:sum(source.layout.time_parts)]
    for fields, _ in read_chunks(source, SCAN_ROWS, time_columns):
        day, month = zip(*(date_order_evidence(t) for t in split_fields(fields, source.layout)[:2]))
        day, month = next(filter(None, day), None), next(filter(None, month), None)
        if day and month:
            raise TripError(f"{source.name}: dates disagree on their order: {day!r} has the day "
                            f"first, {month!r} the month; pass --date_order=month_first or "
                            f"day_first (the other values are then counted as bad times)")
        if day or month:
            return bool(day), f"{'day' if day else 'month'} first, as in {day or month!r}"
    raise TripError(f"{source.name}: the dates could be day first or month first (no day above "
                    f"12 in the file); pass --date_order=month_first (M/D/YYYY, as US operators "
                    f"write) or --date_order=day_first (D/M/YYYY)")


def inspect_source(source, columns, stations, date_order):
    """A Source -> the same with its encoding, Layout and time format, after every check that its
    header and first SAMPLE_ROWS rows allow (so that a bad file stops the run before counting)."""
    source = source._replace(encoding=detect_encoding(source))
    with open_rows(source) as reader:
        header = next(reader, None)
        if header is None:
            raise TripError(f"{source.name}: empty file; expected a header row")
        rows = list(itertools.islice(reader, SAMPLE_ROWS))
    source = source._replace(layout=find_columns(header, columns, source.name, bool(stations)))
    pick, needed = operator.itemgetter(*source.layout.positions), max(source.layout.positions)
    picked = [pick(r) for r in rows if len(r) > needed]
    if not picked:
        return source
    start, end, places = split_fields(list(zip(*picked)), source.layout)
    for text, field in zip((start, end), source.layout.names):
        check_times(text, field, source.name)
    check_places(places, source.layout, stations, source.name)
    day_first, how = settle_date_order(source, (start, end), date_order)
    styles = time_styles(start, day_first) or "none parsed"
    return source._replace(day_first=day_first,
                           time_format=f"{styles} ({how})" if how else styles)


def inspect_inputs(paths, columns, stations, date_order):
    """Every input path -> its inspected Sources (a zip gives one per CSV entry), in order."""
    return [inspect_source(source, columns, stations, date_order)
            for path in paths for source in sources_of(path)]


def parse_trips(fields, short, source, stations, with_times=True):
    """One chunk of read_chunks -> Trips; with_times=False leaves the times unparsed strings
    (for a pass that needs only the places: --bbox=auto's)."""
    start, end, places = split_fields(fields, source.layout)
    if with_times:
        start, end = parse_times(start, source.day_first), parse_times(end, source.day_first)
    if source.layout.stations:
        ends = [look_up(stations, ids) for ids in places]
    else:
        ends = [(*parse_points(places[0], places[1]), None),
                (*parse_points(places[2], places[3]), None)]
    return Trips(start, end, ends, short)
