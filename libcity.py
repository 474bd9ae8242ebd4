"""LibCity "atomic files" grid data sets, read into crowd-flow frames and written back.

LibCity (github.com/LibCity/Bigscity-LibCity) ships its grid data sets (TAXIBJ, NYCBike20140409,
NYCTaxi20140112, T_DRIVE20150206, ...) as a folder of CSV files. read_grid turns one .grid into
frames (n, H, W, F) channels-last on the original scale, slot numbers (day * T + zero-based slot,
as timestamps.parse_timestamps) and T; write_grid writes frames in that layout (test fixtures,
export). flowfiles.py calls both; numpy and the standard library only.

    config.json     {"grid": {"state": {"row_id": H, "column_id": W, ...}}, "info": {"data_col":
                     [flows], "time_intervals": seconds, "geo_file": name, "data_files": [names]}}
    <geo_file>.geo  geo_id,type,coordinates,row_id,column_id         one line a cell
    <file>.grid     dyna_id,type,time,row_id,column_id,<flow>,<flow>  a line a cell and time:
                    0,state,2013-07-01T00:00:00Z,0,0,12.0,15.0

Confirmed from public sources (read, not copied):
- LibCity docs, "Atomic Files" (Bigscity-LibCity-Docs, source/user_guide/data/atomic_files.md):
  grid data have row_id, column_id for entity_id and the suffix .grid; time is ISO-8601 such as
  2020-12-07T02:59:46Z; lines sorted by cell, then time; a grid's .geo has row_id, column_id;
  info holds data_col (all columns if absent), time_intervals (seconds), geo_file, data_files.
- LibCity's reader (libcity/data/dataset/traffic_state_datatset.py, _load_grid_geo,
  _load_grid_4d): size = max row_id + 1, max column_id + 1 of the .geo; the .grid becomes
  (time, len_row, len_column, feature), row_id the first spatial axis; without data_col every
  column after column_id is a flow. It trusts the line order; here each line is placed by its
  own time, row_id, column_id, so any order is accepted.
- LibCity's converters (Bigscity-LibCity-Datasets: taxibj.py, nycbike20140409.py,
  nyctaxi20140112.py, T_drive.py): flows inflow,outflow (TAXIBJ, T-Drive), new_flow,end_flow
  (NYCBIKE20140409), pickup,dropoff (NYCTAXI20140112) = the h5 release's channels 0, 1; row_id,
  column_id = its H, W index; slot SS is written as its start, (SS - 1) * interval after
  midnight, with 'Z'; .geo coordinates "[]" or a quoted GeoJSON polygon (T-Drive); the size also
  in grid.state.row_id / column_id (info.grid_len_row / grid_len_column in GSNet-style sets);
  time_intervals 1800 or 3600, absent in some script versions (LibCity then assumes 300).
  TAXIBJ is one folder: TAXIBJ.geo (geo_file) and TAXIBJ2013 .. TAXIBJ2016.grid (data_files).
Grid size: the .geo (config's geo_file, else the .grid's own name), else config.json, else the
largest ids in the .grid itself (an empty last row or column is then lost). Interval: config's
time_intervals, else the most common step between the file's time stamps.
"""
import csv
import datetime
import itertools
import json
import os

import numpy as np

GRID_KEYS = ("dyna_id", "type", "time", "row_id", "column_id")
GEO_KEYS = ("geo_id", "type", "coordinates", "row_id", "column_id")
CHUNK_ROWS = 4096  # small chunks keep the garbage collector's work per chunk small (~2x faster)
DAY = 86400
EPOCH = datetime.datetime(1970, 1, 1)


class GridError(ValueError):
    """A problem with a LibCity grid data set (flowfiles.py turns it into its DataError)."""


def read_grid(path):
    """<folder>/<name>.grid -> (frames (n, H, W, F) float32, slot_ids (n,) int64, T, flow_names),
    one frame per distinct time stamp, in time order."""
    if not os.path.isfile(path):
        raise GridError(f"LibCity grid file not found: {path}; give the path of a .grid file "
                        f"of a LibCity data set folder (with its .geo and config.json)")
    folder, stem = os.path.split(os.path.splitext(path)[0])
    config = _read_config(os.path.join(folder, "config.json"))
    info = config.get("info") or {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    flow_idx, flow_names = _flow_columns(header, info, path)
    secs, rows, cols, values = _read_rows(path, len(header), flow_idx)
    size = _grid_size(folder, info.get("geo_file") or stem, config)
    H, W = size if size else (int(rows.max()) + 1, int(cols.max()) + 1)
    _check_inside(rows, cols, H, W, path)
    stamps, t_index = np.unique(secs, return_inverse=True)
    interval = _interval(stamps, info, path)
    frames = _place(t_index * (H * W) + rows.astype(np.int64) * W + cols, values,
                    (len(stamps), H, W), stamps, path)
    return frames, stamps // interval, DAY // interval, flow_names


def flow_names(path):
    """The names of a .grid file's two flow columns (info.data_col, else the header's), read
    without its data lines."""
    folder = os.path.dirname(path)
    info = _read_config(os.path.join(folder, "config.json")).get("info") or {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    return _flow_columns(header, info, path)[1]


def _read_config(path):
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8-sig") as f:
            config = json.load(f)
    except (ValueError, OSError) as err:
        raise GridError(f"{path}: not a readable JSON file ({err}); fix or remove it") from None
    if not isinstance(config, dict) or not isinstance(config.get("info", {}), dict):
        raise GridError(f"{path}: expected a JSON object with an 'info' object, as LibCity's")
    return config


def _flow_columns(header, info, path):
    """Positions and names of the flow columns: info.data_col, else all after column_id."""
    if tuple(header[:5]) != GRID_KEYS:
        raise GridError(f"{path}: the header must start with {','.join(GRID_KEYS)} (LibCity's "
                        f".grid), found {','.join(header[:5]) or 'nothing'}")
    chosen = info.get("data_col") or header[5:]
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    unknown = [c for c in chosen if c not in header[5:]]
    if unknown:
        raise GridError(f"{path}: config.json's info.data_col names {unknown}, not among the "
                        f"file's flow columns {header[5:]}")
    if len(chosen) != 2:
        raise GridError(f"{path}: found {len(chosen)} flow column(s) {chosen}; exactly 2 are "
                        f"needed (e.g. inflow,outflow): set info.data_col in config.json to two")
    return [header.index(c) for c in chosen], tuple(chosen)


def _read_rows(path, width, flow_idx):
    """Every data line, in chunks: (seconds, row_id, column_id, values (N, F) float32)."""
    stamps, parts = _Stamps(), []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader)
        line = 2
        while rows := list(itertools.islice(reader, CHUNK_ROWS)):
            parts.append(_parse_chunk(rows, line, width, flow_idx, stamps, path))
            line += len(rows)
    if not parts:
        raise GridError(f"{path}: no data lines after the header")
    return [np.concatenate(p) for p in zip(*parts)]


def _parse_chunk(rows, line, width, flow_idx, stamps, path):
    if set(map(len, rows)) != {width}:
        bad = next(i for i, r in enumerate(rows) if len(r) != width)
        raise GridError(f"{path}, line {line + bad}: expected {width} comma-separated fields as "
                        f"in the header, found {len(rows[bad])}")
    cols = list(zip(*rows))
    secs = _convert(cols[2], stamps.__getitem__, np.int64, line, path,
                    "time must be ISO-8601 in whole seconds, UTC, e.g. 2013-07-01T00:00:00Z")
    ids = [_convert(cols[k], int, np.int32, line, path, f"{GRID_KEYS[k]} must be a whole number")
           for k in (3, 4)]
    values = np.stack([_convert(cols[k], float, np.float64, line, path, "flows must be numbers")
                       for k in flow_idx], axis=1)
    with np.errstate(over="ignore"):  # beyond float32 becomes inf and is named below
        values = values.astype(np.float32)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise GridError(f"{path}, line {line + i}: flows must be finite numbers (within float32), "
                        f"found {[rows[i][k] for k in flow_idx]}; repair or drop that time stamp")
    return secs, ids[0], ids[1], values


class _Stamps(dict):
    """Time text -> seconds since 1970; a file has few distinct stamps, each is parsed once."""

    def __missing__(self, text):
        stamp = datetime.datetime.fromisoformat(text)
        if stamp.utcoffset() or stamp.microsecond:
            raise ValueError(text)
        self[text] = (stamp.replace(tzinfo=None) - EPOCH) // datetime.timedelta(seconds=1)
        return self[text]


def _convert(texts, convert, dtype, line, path, what):
    """A column of text -> array; the first unconvertible entry is named with its line."""
    try:
        return np.fromiter(map(convert, texts), dtype, len(texts))
    except (ValueError, OverflowError):
        for i, text in enumerate(texts):
            try:
                np.array([convert(text)], dtype)
            except (ValueError, OverflowError):
                raise GridError(f"{path}, line {line + i}: {what}, found {text!r}") from None
        raise


def _grid_size(folder, geo_name, config):
    """(H, W) from the .geo, else config.json's info.grid_len_* or grid.<type>.row_id/column_id."""
    geo = os.path.join(folder, geo_name + ".geo")
    if os.path.isfile(geo):
        return _geo_size(geo)
    info, grid = config.get("info") or {}, config.get("grid") or {}
    sizes = [(info.get("grid_len_row"), info.get("grid_len_column"))]
    sizes += [(grid[t].get("row_id"), grid[t].get("column_id"))
              for t in grid.get("including_types", []) if isinstance(grid.get(t), dict)]
    for size in sizes:
        if all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
            return size
    return None


def _geo_size(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"row_id", "column_id"} <= set(reader.fieldnames or ()):
            raise GridError(f"{path}: a grid's .geo needs row_id and column_id columns "
                            f"({','.join(GEO_KEYS)}), found {reader.fieldnames}")
        rows = [(r["row_id"], r["column_id"]) for r in reader]
    ids = [_convert(c, int, np.int64, 2, path, "row_id and column_id must be whole numbers")
           for c in zip(*rows)]
    if not ids or min(ids[0].min(), ids[1].min()) < 0:
        raise GridError(f"{path}: expected one line per grid cell with row_id, column_id >= 0")
    return int(ids[0].max()) + 1, int(ids[1].max()) + 1


def _check_inside(rows, cols, H, W, path):
    bad = (rows < 0) | (rows >= H) | (cols < 0) | (cols >= W)
    if bad.any():
        i = int(np.argmax(bad))
        raise GridError(f"{path}, line {i + 2}: cell (row_id {rows[i]}, column_id {cols[i]}) "
                        f"lies outside the {H} x {W} grid (ids count from 0; the size comes from "
                        f"the .geo, else config.json); fix the ids or the grid size")


def _interval(stamps, info, path):
    """Slot length in seconds: config.json's time_intervals, else the most common step."""
    given = info.get("time_intervals")
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, (int, float)) or given <= 0 \
                or not float(given).is_integer():
            raise GridError(f"{path}: config.json's info.time_intervals must be a positive whole "
                            f"number of seconds, found {given!r}")
        interval, source = int(given), "config.json's info.time_intervals"
    elif len(stamps) > 1:
        steps, counts = np.unique(np.diff(stamps), return_counts=True)
        interval, source = int(steps[np.argmax(counts)]), "the most common time step"
    else:
        raise GridError(f"{path}: one time stamp only; give the slot length in seconds as "
                        f"info.time_intervals in config.json")
    if DAY % interval:
        raise GridError(f"{path}: {source} is {interval} s, which does not divide a day into "
                        f"whole slots; use e.g. 1800 or 3600")
    off = stamps % interval != 0
    if off.any():
        raise GridError(f"{path}: time {_iso(stamps[off][:1])[0]} is not on a slot boundary of "
                        f"{interval} s ({source}; slots start at midnight); fix the time stamps "
                        f"or info.time_intervals")
    return interval


def _place(cells, values, shape, stamps, path):
    """Scatter each line's values into (n, H, W, F); every cell of every time exactly once."""
    n, H, W = shape
    counts = np.bincount(cells, minlength=n * H * W)
    if counts.max() > 1:
        first = np.zeros(len(cells), bool)
        first[np.unique(cells, return_index=True)[1]] = True
        i = int(np.argmin(first))
        raise GridError(f"{path}, line {i + 2}: {_cell(cells[i], stamps, H, W)} is given more "
                        f"than once; each time, row_id, column_id must appear exactly once")
    if counts.min() == 0:
        k = int(np.argmin(counts))
        raise GridError(f"{path}: {_cell(k, stamps, H, W)} is missing ({int((counts == 0).sum())} "
                        f"cell(s) missing in all); every time stamp needs all {H} x {W} cells")
    frames = np.empty((n * H * W, values.shape[1]), np.float32)
    frames[cells] = values
    return frames.reshape(n, H, W, -1)


def _cell(k, stamps, H, W):
    t, rc = divmod(int(k), H * W)
    return f"time {_iso(stamps[t:t + 1])[0]} row_id {rc // W} column_id {rc % W}"


def _iso(seconds):
    """Seconds since 1970 -> LibCity's 'YYYY-MM-DDTHH:MM:SSZ'."""
    return [f"{s}Z" for s in np.asarray(seconds, np.int64).astype("datetime64[s]").astype(str)]


def write_grid(folder, name, frames, slot_ids, T, flow_names=("inflow", "outflow"),
               start_dyna_id=0, with_config=True):
    """Write frames (n, H, W, F) as LibCity's <name>.geo, <name>.grid and config.json in folder,
    lines cell by cell (row-major), time within a cell, as LibCity's converters do."""
    frames, slot_ids = np.asarray(frames), np.asarray(slot_ids, np.int64)
    if frames.ndim != 4 or frames.shape[-1] != len(flow_names) or len(frames) != len(slot_ids):
        raise ValueError(f"write_grid: frames must be (n, H, W, {len(flow_names)}) with one slot "
                         f"id each, got {frames.shape} and {slot_ids.shape}")
    if not isinstance(T, int) or T < 1 or DAY % T:
        raise ValueError(f"write_grid: T must divide a day into whole seconds, got {T!r}")
    n, H, W, _ = frames.shape
    times = _iso(slot_ids * (DAY // T))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name + ".geo"), "w", newline="") as f:
        csv.writer(f).writerows([GEO_KEYS] + [[i * W + j, "Polygon", "[]", i, j]
                                              for i in range(H) for j in range(W)])
    with open(os.path.join(folder, name + ".grid"), "w", newline="") as f:
        writer, dyna_id = csv.writer(f), itertools.count(start_dyna_id)
        writer.writerow(GRID_KEYS + tuple(flow_names))
        for i, j in itertools.product(range(H), range(W)):
            writer.writerows([next(dyna_id), "state", t, i, j, *v]
                             for t, v in zip(times, frames[:, i, j].tolist()))
    if with_config:
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(_config(name, H, W, list(flow_names), DAY // T), f, indent=1)


def _config(name, H, W, flow_names, interval):
    """config.json as LibCity's grid converters write it."""
    state = dict({"row_id": H, "column_id": W}, **{c: "num" for c in flow_names})
    polygon = {"row_id": "num", "column_id": "num"}
    return {"geo": {"including_types": ["Polygon"], "Polygon": polygon},
            "grid": {"including_types": ["state"], "state": state},
            "info": {"data_col": flow_names, "data_files": [name], "geo_file": name,
                     "output_dim": len(flow_names), "time_intervals": interval,
                     "init_weight_inf_or_zero": "inf", "set_weight_link_or_dist": "dist",
                     "calculate_weight_adj": False, "weight_adj_epsilon": 0.1}}
