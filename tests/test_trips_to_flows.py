"""Tests of trips_to_flows.py: raw trip CSVs -> in/out-flow files in the release layout.

Every expected grid is written out here by hand. The box used by most tests is lat 40..41, lon
-74..-73 on a 4 x 2 grid, so the grid lines (lat 40.75, 40.5, 40.25; lon -73.5) are exact in binary:
row = floor((41 - lat) * 4), col = floor((lon + 74) * 2).
"""
import bz2
import csv
import gzip
import io
import json
import struct
import subprocess
import sys
import zipfile
from datetime import date
from pathlib import Path

import h5py
import numpy as np
import pytest

import flowfiles
import timestamps
import trips_to_flows as ttf

SCRIPT = Path(__file__).resolve().parents[1] / "trips_to_flows.py"
BBOX, GRID = (40.0, 41.0, -74.0, -73.0), (4, 2)
NEW_HEADER = ["ride_id", "rideable_type", "started_at", "ended_at", "start_station_name",
              "start_lat", "start_lng", "end_lat", "end_lng", "member_casual"]
OLD_HEADER = ["tripduration", "starttime", "stoptime", "start station id", "start station name",
              "start station latitude", "start station longitude", "end station latitude",
              "end station longitude", "bikeid"]
# Points (lat, lon) by the cell they fall in, and one outside the box.
NW, SE, OUT = (40.9, -73.9), (40.1, -73.1), (41.5, -73.9)


def trip(started, ended, start_point, end_point):
    """One row in the 2021+ Citi Bike layout (NEW_HEADER)."""
    return ["id", "classic_bike", started, ended, "name", *start_point, *end_point, "member"]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return str(path)


def convert(tmp_path, rows, header=NEW_HEADER, minutes=60, **kwargs):
    """Write rows as one CSV, convert it, -> (report, data (n, 2, H, W), dates as str)."""
    kwargs.setdefault("columns", "citibike")
    kwargs.setdefault("draw_map", False)   # the map has tests of its own; drawing it takes time
    src = write_csv(tmp_path / "trips.csv", header, rows)
    out = str(tmp_path / "flows.h5")
    report = ttf.convert([src], out, BBOX, GRID, minutes, overwrite=True, **kwargs)
    with h5py.File(out, "r") as f:
        return report, f["data"][()], f["date"][()].astype(str)


def stamps(day, slots):
    """'YYYYMMDD' + each 1-based slot, two digits: the files' time stamps."""
    return [f"{day}{s:02d}" for s in slots]


# ---- helpers -------------------------------------------------------------------------------------

def test_cell_of_internal_grid_lines_go_south_and_east():
    row, col = ttf.cell_of([40.75, 40.5, 40.25, 40.8], [-73.5, -73.9, -73.5, -73.5], BBOX, GRID)
    assert row.tolist() == [1, 2, 3, 0]   # on the 40.75 line -> row 1, the cell south of it
    assert col.tolist() == [1, 0, 1, 1]   # on the -73.5 line -> column 1, the cell east of it


def test_cell_of_outer_edges():
    above = np.nextafter(41.0, 42.0)
    lat = [41.0, 40.0, 40.0, above, np.nextafter(40.0, 39.0), 40.5, 40.5, np.nan]
    lon = [-74.0, -73.0, -74.0, -73.9, -73.9, np.nextafter(-73.0, -72.0), -74.5, -73.9]
    row, col = ttf.cell_of(lat, lon, BBOX, GRID)
    # North-west corner, lat_min/lon_max (inside: last row and column), then five points outside.
    assert row.tolist() == [0, 3, 3, -1, -1, -1, -1, -1]
    assert col.tolist() == [0, 1, 0, -1, -1, -1, -1, -1]


def test_cell_of_decimal_grid_line():
    # 40.7..40.8 in 10 rows: the line 40.79 is not exact in binary, and (40.8 - 40.79) / 0.1 * 10
    # rounds to 0.99999...; the documented rule still puts the point south of the line (row 1).
    bbox = (40.7, 40.8, -74.02, -73.92)
    row, col = ttf.cell_of([40.79, 40.7901], [-74.01, -74.0101], bbox, (10, 10))
    assert row.tolist() == [1, 0] and col.tolist() == [1, 0]


def test_slot_of_numbers_slots_like_datasets():
    times = np.array(["2021-01-01T00:29:59", "2021-01-01T00:30:00", "2021-01-01T23:59:59"],
                     dtype="datetime64[s]")
    day = (date(2021, 1, 1) - date(1970, 1, 1)).days
    assert ttf.slot_of(times, 30).tolist() == [day * 48, day * 48 + 1, day * 48 + 47]
    assert ttf.slot_of(times, 60).tolist() == [day * 24, day * 24, day * 24 + 23]


# ---- conversion ----------------------------------------------------------------------------------

def test_grid_lines_and_edges_end_to_end(tmp_path):
    points = [(40.75, -73.5), (41.0, -74.0), (40.0, -73.0), (41.0000001, -73.9)]
    rows = [trip("2021-01-01 10:00:00", "2021-01-01 10:30:00", p, SE) for p in points]
    report, data, dates = convert(tmp_path, rows)
    want = np.zeros((4, 2))
    want[1, 1] = want[0, 0] = want[3, 1] = 1     # the fourth start is north of the box
    np.testing.assert_array_equal(data[10, 0], want)
    assert report["not_counted"]["start: outside the box"] == 1
    assert data[10, 1, 3, 1] == 4 and data.sum() == 3 + 4


def test_midnight_and_later_slot(tmp_path):
    rows = [trip("2021-01-01 23:50:00", "2021-01-02 00:10:00", NW, SE),
            trip("2021-01-02 08:15:00", "2021-01-02 10:40:00", SE, NW)]
    report, data, dates = convert(tmp_path, rows)
    assert dates.tolist() == stamps("20210101", range(1, 25)) + stamps("20210102", range(1, 25))
    want = np.zeros((48, 2, 4, 2))
    want[23, 0, 0, 0] = 1          # outflow: last slot of day 1, at the start (NW)
    want[24, 1, 3, 1] = 1          # inflow: first slot of day 2, at the end (SE)
    want[24 + 8, 0, 3, 1] = 1      # 08:15 -> slot 09 of day 2
    want[24 + 10, 1, 0, 0] = 1     # 10:40 -> slot 11 of day 2
    np.testing.assert_array_equal(data, want)
    assert (report["outflow_events"], report["inflow_events"]) == (2, 2)


def test_one_end_outside_the_box(tmp_path):
    rows = [trip("2021-01-01 10:00:00", "2021-01-01 10:30:00", NW, OUT),
            trip("2021-01-01 11:00:00", "2021-01-01 11:30:00", OUT, SE)]
    report, data, _ = convert(tmp_path, rows)
    assert data[10, 0, 0, 0] == 1 and data[11, 1, 3, 1] == 1 and data.sum() == 2
    assert report["not_counted"]["end: outside the box"] == 1
    assert report["not_counted"]["start: outside the box"] == 1


def test_malformed_rows_counted_per_reason(tmp_path):
    good = trip("2021-01-01 10:00:00", "2021-01-01 10:30:00", NW, SE)
    rows = [good,
            trip("yesterday", "2021-01-01 10:30:00", NW, SE),          # start: bad time
            trip("2021-01-01 10:00:00", "2021-01-01 10:30:00", NW, ("", -73.1)),  # end coords
            trip("2021-01-01 10:00:00", "2021-01-01 10:30:00", ("abc", -73.9), SE),
            trip("2021-01-01 10:00:00", "2021-01-01 09:59:59", NW, SE),  # end before start
            ["id", "classic_bike", "2021-01-01 10:00:00"],                # row too short
            []]                                                          # blank line: no record
    report, data, _ = convert(tmp_path, rows)
    assert report["not_counted"] == {
        "row too short": 1, "end before start": 1,
        "start: bad time": 1, "start: bad coordinates": 1, "start: outside the box": 0,
        "start: outside the time range": 0, "end: bad time": 0, "end: bad coordinates": 1,
        "end: outside the box": 0, "end: outside the time range": 0}
    assert report["rows_read"] == 6
    assert (report["outflow_events"], report["inflow_events"]) == (2, 3)
    assert data[10, 0, 0, 0] == 2 and data[10, 1, 3, 1] == 3 and data.sum() == 5
    # Every trip end of every row is either counted or counted under a reason.
    row_drops = report["not_counted"]["row too short"] + report["not_counted"]["end before start"]
    end_drops = sum(report["not_counted"].values()) - row_drops
    assert 2 * report["rows_read"] == 5 + 2 * row_drops + end_drops


def test_citibike_preset_reads_every_header_style(tmp_path):
    times, seen = ("2021-01-01 10:00:00", "2021-01-01 11:05:00"), []
    old = [["60", *times, "1", "name", *NW, *SE, "7"]]
    title = [h.title() for h in OLD_HEADER]
    title[1:3] = ["Start Time", "Stop Time"]                  # the 2016-10..2017-03 files
    quoted = [f' "{h.upper()}" ' for h in NEW_HEADER]          # case, quotes, spaces ignored
    for header, rows in [(OLD_HEADER, old), (title, old), (quoted, [trip(*times, NW, SE)])]:
        _, data, _ = convert(tmp_path, rows, header=header)
        seen.append((data[10, 0, 0, 0], data[11, 1, 3, 1], data.sum()))
    assert seen == [(1, 1, 2)] * 3


def test_custom_columns_and_missing_columns(tmp_path):
    header = ["a", "t0", "t1", "y0", "x0", "y1", "x1"]
    rows = [["x", "2021-01-01 10:00:00", "2021-01-01 10:10:00", *NW, *SE]]
    for columns in ("t0,t1,y0,x0,y1,x1", ["T0", "t1", "y0", "x0", "y1", "x1"]):
        _, data, _ = convert(tmp_path, rows, header=header, columns=columns)
        assert data[10, 0, 0, 0] == 1 and data[10, 1, 3, 1] == 1 and data.sum() == 2
    with pytest.raises(ttf.TripError, match=r"expected .*'started_at'.* found \['a', 't0'"):
        convert(tmp_path, rows, header=header)
    with pytest.raises(ttf.TripError, match="six names"):
        convert(tmp_path, rows, header=header, columns="t0,t1")


def test_month_day_year_format(tmp_path):
    rows = [["60", "9/30/2014 23:59:59", "10/1/2014 0:05", "1", "n", *NW, *SE, "7"]]
    # --end: by default the range would stop at 9/30, the last start day, and drop the end.
    _, data, dates = convert(tmp_path, rows, header=OLD_HEADER, end="20141001",
                             empty_days="zeros")
    assert dates[0] == "2014093001" and dates[-1] == "2014100124" and len(dates) == 48
    assert data[23, 0, 0, 0] == 1 and data[24, 1, 3, 1] == 1 and data.sum() == 2


def test_several_files_are_summed(tmp_path):
    one = [trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", NW, SE)]
    two = one * 2 + [trip("2021-01-03 07:00:00", "2021-01-03 07:10:00", SE, NW)]
    paths = [write_csv(tmp_path / "a.csv", NEW_HEADER, one),
             write_csv(tmp_path / "b.csv", NEW_HEADER, two)]
    out = str(tmp_path / "flows.h5")
    report = ttf.convert(paths, out, BBOX, GRID, 60, "citibike", empty_days="zeros",
                         draw_map=False)
    with h5py.File(out, "r") as f:
        data = f["data"][()]
    assert data.shape == (72, 2, 4, 2) and report["rows_read"] == 4
    assert data[10, 0, 0, 0] == 3 and data[10, 1, 3, 1] == 3
    assert data[48 + 7, 0, 3, 1] == 1 and data[48 + 7, 1, 0, 0] == 1 and data.sum() == 8


def test_thirty_minute_slots(tmp_path):
    rows = [trip("2021-01-01 00:29:59", "2021-01-01 00:30:00", NW, SE),
            trip("2021-01-01 23:30:00", "2021-01-01 23:59:59.9", NW, SE)]
    report, data, dates = convert(tmp_path, rows, minutes=30)
    assert report["T"] == 48 and dates.tolist() == stamps("20210101", range(1, 49))
    want = np.zeros((48, 2, 4, 2))
    want[0, 0, 0, 0] = want[1, 1, 3, 1] = want[47, 0, 0, 0] = want[47, 1, 3, 1] = 1
    np.testing.assert_array_equal(data, want)


def test_start_end_fix_the_range(tmp_path):
    rows = [trip("2021-01-01 23:50:00", "2021-01-02 00:10:00", NW, SE),   # start before --start
            trip("2021-01-03 12:00:00", "2021-01-03 12:10:00", NW, SE),
            trip("2021-01-04 23:50:00", "2021-01-05 00:10:00", NW, SE)]   # end after --end
    report, data, dates = convert(tmp_path, rows, start="20210102", end="20210104",
                                  empty_days="zeros")
    assert len(dates) == 72 and dates[0] == "2021010201" and dates[-1] == "2021010424"
    want = np.zeros((72, 2, 4, 2))
    want[0, 1, 3, 1] = want[24 + 12, 0, 0, 0] = want[24 + 12, 1, 3, 1] = want[71, 0, 0, 0] = 1
    np.testing.assert_array_equal(data, want)
    assert report["not_counted"]["start: outside the time range"] == 1
    assert report["not_counted"]["end: outside the time range"] == 1
    # A range with no trip at all is written as zeros.
    _, data, dates = convert(tmp_path, rows, start="20210110", end="20210110",
                            empty_days="zeros")
    assert data.shape == (24, 2, 4, 2) and data.sum() == 0 and dates[0] == "2021011001"


def test_range_follows_the_trip_starts(tmp_path):
    rows = [trip("2020-12-30 10:00:00", "2020-12-30 10:20:00", OUT, SE),  # start not counted
            trip("2021-01-01 10:00:00", "2021-01-01 10:30:00", NW, SE),
            trip("2021-01-02 23:30:00", "2021-01-03 00:20:00", NW, SE),  # returned the next day
            trip("2021-01-02 12:00:00", "2021-01-20 09:00:00", SE, NW),  # returned weeks later
            trip("2021-01-04 10:00:00", "2021-01-04 10:30:00", OUT, SE)]  # start not counted
    report, data, dates = convert(tmp_path, rows, chunk_rows=2)  # the last start in chunk 2
    assert dates.tolist() == stamps("20210101", range(1, 25)) + stamps("20210102", range(1, 25))
    want = np.zeros((48, 2, 4, 2))
    want[10, 0, 0, 0] = want[10, 1, 3, 1] = want[24 + 23, 0, 0, 0] = want[24 + 12, 0, 3, 1] = 1
    np.testing.assert_array_equal(data, want)
    # The ends of 12-30 (before the first start day), 01-03, 01-20 and 01-04 are not in the file.
    assert report["not_counted"]["end: outside the time range"] == 4
    assert report["not_counted"]["start: outside the box"] == 2
    assert (report["outflow_events"], report["inflow_events"]) == (3, 1)
    assert 2 * report["rows_read"] == 3 + 1 + sum(report["not_counted"].values())
    assert (report["first_day_from"], report["last_day_from"]) == (
        "the first day a counted trip starts", "the last day a counted trip starts")


def test_start_end_widen_the_range_past_the_trip_starts(tmp_path):
    rows = [trip("2020-12-30 10:00:00", "2020-12-30 10:20:00", OUT, SE),
            trip("2021-01-02 23:30:00", "2021-01-03 00:20:00", NW, SE),
            trip("2021-01-02 12:00:00", "2021-01-20 09:00:00", SE, NW)]
    report, data, dates = convert(tmp_path, rows, end="20210103", empty_days="zeros")
    assert dates[0] == "2021010201" and dates[-1] == "2021010324" and len(dates) == 48
    assert data[24, 1, 3, 1] == 1 and data[:, 1].sum() == 1    # the next-day return, 00:20
    assert report["not_counted"]["end: outside the time range"] == 2   # 12-30 and 01-20
    assert report["last_day_from"] == "--end"
    report, data, dates = convert(tmp_path, rows, start="20201230", end="20210120",
                                  empty_days="zeros")
    assert len(dates) == 22 * 24 and dates[0] == "2020123001" and dates[-1] == "2021012024"
    assert data[10, 1, 3, 1] == data[3 * 24 + 24, 1, 3, 1] == data[21 * 24 + 9, 1, 0, 0] == 1
    assert report["inflow_events"] == 3
    assert report["not_counted"]["end: outside the time range"] == 0


def test_days_without_starts_are_left_out(tmp_path):
    """Two periods of records with days between them on which nothing starts: those days are
    absent from the file (not a quiet city), and a trip end on one of them is not counted."""
    rows = [trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", NW, SE),
            trip("2021-01-01 22:00:00", "2021-01-02 09:00:00", NW, SE),   # ends on a gap day
            trip("2021-01-04 07:00:00", "2021-01-04 07:10:00", SE, NW)]
    report, data, dates = convert(tmp_path, rows)
    assert list(dates) == stamps("20210101", range(1, 25)) + stamps("20210104", range(1, 25))
    assert data[10, 0, 0, 0] == data[10, 1, 3, 1] == 1 and data[24 + 7, 0, 3, 1] == 1
    assert data[:, 1].sum() == 2 and report["inflow_events"] == 2
    assert report["not_counted"]["end: outside the time range"] == 1
    assert report["days_left_out"] == 2 and report["first_days_left_out"] == ["20210102",
                                                                             "20210103"]
    _, data, dates = convert(tmp_path, rows, empty_days="zeros")
    assert len(dates) == 4 * 24 and data[24 + 9, 1, 3, 1] == 1


def test_bad_settings_are_clear_errors(tmp_path):
    src = write_csv(tmp_path / "t.csv", NEW_HEADER, [])
    out = str(tmp_path / "o.h5")
    for kwargs, message in [(dict(bbox=(41, 40, -74, -73)), "LAT_MIN < LAT_MAX"),
                            (dict(bbox=(40, np.nan, -74, -73)), "LAT_MIN < LAT_MAX"),
                            (dict(minutes=7), "divide a day"), (dict(grid=(0, 8)), ">= 1"),
                            (dict(start="2021-01-01"), "YYYYMMDD"),
                            (dict(start="20210102", end="20210101"), "after"),
                            (dict(paths=[src, "nope.csv"]), "not found: nope.csv"),
                            (dict(), "no trip start was counted")]:
        args = dict(paths=[src], output=out, bbox=BBOX, grid=GRID, minutes=60) | kwargs
        with pytest.raises(ttf.TripError, match=message):
            ttf.convert(args.pop("paths"), **args)


def test_refuses_to_overwrite(tmp_path):
    rows = [trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", NW, SE)]
    src = write_csv(tmp_path / "t.csv", NEW_HEADER, rows)
    out = str(tmp_path / "o.h5")
    ttf.convert([src], out, BBOX, GRID, 60, draw_map=False)
    with pytest.raises(ttf.TripError, match="exists; pass --overwrite"):
        ttf.convert([src], out, BBOX, (2, 2), 60, draw_map=False)
    with h5py.File(out, "r") as f:
        assert f["data"].shape == (24, 2, 4, 2)   # untouched
    ttf.convert([src], out, BBOX, (2, 2), 60, overwrite=True, draw_map=False)
    with h5py.File(out, "r") as f:
        assert f["data"].shape == (24, 2, 2, 2)
    assert not Path(out + ".tmp").exists()


def test_round_trip_through_datasets(tmp_path):
    rows = [trip(f"2021-01-0{d} {h:02d}:{m:02d}:00", f"2021-01-0{d} {h + 1:02d}:{m:02d}:00",
                 (40.05 + 0.04 * h, -73.95 + 0.02 * m), (40.95 - 0.01 * m, -73.5 - 0.01 * h))
            for d in (2, 4) for h in range(0, 22, 3) for m in (0, 17, 45)]   # all inside
    report, _, _ = convert(tmp_path, rows, chunk_rows=5, empty_days="zeros")  # in chunks
    frames, dates = flowfiles.load_flow_file(str(tmp_path / "flows.h5"))
    slots = timestamps.parse_timestamps(dates, 24)
    day = (date(2021, 1, 2) - date(1970, 1, 1)).days
    np.testing.assert_array_equal(slots, day * 24 + np.arange(3 * 24))   # days 2, 3, 4
    assert frames.shape == (72, 4, 2, 2)
    assert frames[..., 0].sum() == report["outflow_events"] == len(rows)
    assert frames[..., 1].sum() == report["inflow_events"] == len(rows)
    with h5py.File(tmp_path / "flows.h5", "r") as f:
        assert f["data"].dtype == np.float64 and f["date"].dtype == np.dtype("S10")
    assert json.loads((tmp_path / "flows.h5.report.json").read_text()) == report
    whole, _, _ = convert(tmp_path, rows, empty_days="zeros")  # one chunk: the same counts
    assert {k: whole[k] for k in ("outflow_events", "not_counted")} == {
        k: report[k] for k in ("outflow_events", "not_counted")}


# ---- command line --------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--grid=16-8"], "--grid must look like 16x8"),
    (["--bbox=41,40,-74,-73"], "LAT_MIN < LAT_MAX"),
    (["--minutes=7"], "must divide a day"),
    (["--columns=a,b,c,d,e,f"], "missing columns; expected ['a', 'b'"),
    (["--input=nope.csv"], "not found: nope.csv"),
    (["--minutes"], "expected one argument")])
def test_cli_user_errors_are_one_line(tmp_path, args, message):
    src = write_csv(tmp_path / "t.csv", NEW_HEADER, [])
    base = {"--input": src, "--bbox": "40,41,-74,-73", "--grid": "4x2", "--minutes": "60"}
    base.update(a.split("=") if "=" in a else (a, None) for a in args)
    options = [k if v is None else f"{k}={v}" for k, v in base.items() if k != "--input"]
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "o.h5"), base["--input"],
                             *options], capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: ") and message in result.stderr


def test_cli_success(tmp_path):
    src = write_csv(tmp_path / "t.csv", NEW_HEADER,
                    [trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", NW, SE)])
    out = tmp_path / "o.h5"
    result = subprocess.run([sys.executable, str(SCRIPT), str(out), src, "--bbox=40,41,-74,-73",
                             "--grid=4X2", "--minutes=30", "--start=20210101"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "rows/s" in result.stdout
    assert "first day = --start, last day = the last day a counted trip starts" in result.stdout
    with h5py.File(out, "r") as f:
        assert f["data"].shape == (48, 2, 4, 2) and f["data"][20, 0, 0, 0] == 1


# ---- operators' files: compression, encodings, date styles, columns, stations --------------------

def csv_bytes(header, rows):
    """A CSV file's bytes, as write_csv writes them."""
    text = io.StringIO()
    csv.writer(text).writerows([header, *rows])
    return text.getvalue().encode()


def convert_files(tmp_path, paths, **kwargs):
    """Convert the given files -> (report, data)."""
    out = str(tmp_path / "flows.h5")
    kwargs.setdefault("draw_map", False)
    report = ttf.convert([str(p) for p in paths], out, kwargs.pop("bbox", BBOX), GRID, 60,
                         overwrite=True, **kwargs)
    with h5py.File(out, "r") as f:
        return report, f["data"][()]


MONTH_ONE = [trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", NW, SE),
             trip("2021-01-01 11:00:00", "2021-01-01 11:20:00", SE, NW)]
MONTH_TWO = [trip("2021-01-02 07:00:00", "2021-01-02 07:30:00", NW, NW)]


def test_compressed_inputs_count_as_plain_ones(tmp_path):
    one, two = csv_bytes(NEW_HEADER, MONTH_ONE), csv_bytes(NEW_HEADER, MONTH_TWO)
    (tmp_path / "one.csv").write_bytes(one)
    (tmp_path / "two.csv").write_bytes(two)
    gz, bz = tmp_path / "one.csv.gz", tmp_path / "two.csv.bz2"
    gz.write_bytes(gzip.compress(one))
    bz.write_bytes(bz2.compress(two))
    with zipfile.ZipFile(tmp_path / "both.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("one.csv", one)
        z.writestr("__MACOSX/._one.csv", b"\x00\x05\x16\x07 Mac resource")
        z.writestr("sub/two.csv", two)
        z.writestr("sub/._two.csv", b"\x00\x05\x16\x07")
        z.writestr("README.txt", "not a CSV")
    plain, want = convert_files(tmp_path, [tmp_path / "one.csv", tmp_path / "two.csv"])
    assert plain["outflow_events"] == 3 and want.sum() == 6
    for paths in ([gz, bz], [tmp_path / "both.zip"]):
        report, data = convert_files(tmp_path, paths)
        np.testing.assert_array_equal(data, want)
        assert report["not_counted"] == plain["not_counted"]
    assert [(i["entry"], i["compression"], i["rows"]) for i in report["inputs"]] == [
        ("one.csv", "zip", 2), ("sub/two.csv", "zip", 1)]


def test_damaged_inputs_are_one_line_errors_naming_the_file(tmp_path):
    good = csv_bytes(NEW_HEADER, MONTH_ONE * 200)
    late = gzip.compress(csv_bytes(NEW_HEADER, MONTH_ONE * 2000))   # cut after its 1,000th row
    broken = {"cut.csv.gz": gzip.compress(good)[:-40], "late.csv.gz": late[:len(late) * 2 // 3],
              "cut.zip": (tmp_path / "z").write_bytes(b"") or zip_bytes({"a.csv": good})[:300],
              "empty.zip": zip_bytes({"__MACOSX/._a.csv": b"x", "notes.txt": b"x"}),
              "page.csv.gz": b"<html>Access denied</html>",
              "bad.csv.bz2": b"BZh9" + bytes(range(200)),
              "sheet.csv": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)}
    messages = {"cut.csv.gz": r"cut.csv.gz: corrupt or truncated gzip file \(Compressed file "
                              r"ended.*\); download it again",
                "late.csv.gz": r"late.csv.gz: corrupt or truncated gzip file",
                "cut.zip": r"cut.zip: corrupt or truncated zip file .*; download it again",
                "empty.zip": r"empty.zip: the zip holds no CSV file \(entries: "
                             r"\['__MACOSX/._a.csv', 'notes.txt'\]\)",
                "page.csv.gz": r"page.csv.gz: named as gzip but is not a gzip file \(it starts "
                               r"with b'<htm'\)",
                "bad.csv.bz2": r"bad.csv.bz2: corrupt or truncated bzip2 file",
                "sheet.csv": r"sheet.csv: not a CSV text file \(binary data"}
    for name, data in broken.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ttf.TripError, match=messages[name]) as error:
            convert_files(tmp_path, [tmp_path / name])
        assert "\n" not in str(error.value)


def zip_bytes(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buffer.getvalue()


def test_a_byte_that_is_not_utf8_deep_in_a_utf8_file_is_read_as_latin1(tmp_path):
    rows = [trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", NW, SE)] * 1500   # > 64 KiB
    rows.append(["id", "classic_bike", "2021-01-01 12:00:00", "2021-01-01 12:10:00", "Caf\xe9",
                 *NW, *SE, "member"])
    text = csv_bytes(NEW_HEADER, rows).replace("Caf\xe9".encode(), b"Caf\xe9")   # Latin-1 é
    (tmp_path / "mixed.csv").write_bytes(text)
    report, data = convert_files(tmp_path, [tmp_path / "mixed.csv"])
    assert report["inputs"][0]["encoding"] == "utf-8" and data[12, 0, 0, 0] == 1
    assert report["outflow_events"] == 1501


def test_date_styles_per_file_and_the_ambiguous_case(tmp_path):
    us = write_csv(tmp_path / "q3.csv", NEW_HEADER, [   # Los Angeles Q3: M/D/YYYY H:MM
        trip("7/1/2019 0:04", "7/1/2019 0:09", NW, SE), trip("7/13/2019 10:00", "7/13/2019 10:30",
                                                             SE, NW)])
    iso = write_csv(tmp_path / "q4.csv", NEW_HEADER, [
        trip("2019-07-02 08:00:00", "2019-07-02 08:10:00", NW, SE)])
    europe = write_csv(tmp_path / "eu.csv", NEW_HEADER, [
        trip("13/7/2019 10:00", "13/7/2019 10:30", NW, SE), trip("1/7/2019 9:00", "1/7/2019 9:05",
                                                                 NW, SE)])
    report, data = convert_files(tmp_path, [us, iso], empty_days="zeros")
    assert [i["time_format"] for i in report["inputs"]] == [
        "M/D/YYYY H:MM (month first, as in '7/13/2019 10:00')", "YYYY-MM-DD HH:MM:SS"]
    assert data[0, 0, 0, 0] == 1 and data[24 + 8, 0, 0, 0] == 1 and data[12 * 24 + 10, 0, 3, 1] == 1
    report, data = convert_files(tmp_path, [europe], empty_days="zeros")
    assert report["inputs"][0]["time_format"] == (
        "D/M/YYYY H:MM (day first, as in '13/7/2019 10:00')")
    assert data.shape[0] == 13 * 24 and data[9, 0, 0, 0] == 1 and data[12 * 24 + 10, 0, 0, 0] == 1
    ambiguous = write_csv(tmp_path / "amb.csv", NEW_HEADER, [
        trip("7/1/2019 0:04", "7/1/2019 0:09", NW, SE),
        trip("8/2/2019 0:04", "8/2/2019 0:09", NW, SE)])
    with pytest.raises(ttf.TripError, match=r"amb.csv: the dates could be day first or month first "
                       r"\(no day above 12 in the file\); pass --date_order=month_first"):
        convert_files(tmp_path, [ambiguous])
    report, data = convert_files(tmp_path, [ambiguous], date_order="day_first", empty_days="zeros")
    assert (report["first_slot"], report["last_slot"]) == ("2019010701", "2019020824")
    assert report["inputs"][0]["time_format"] == "D/M/YYYY H:MM (--date_order)"


def test_date_and_time_in_two_columns(tmp_path):
    header = ["StartDate", "StartTime", "EndDate", "EndTime", "slat", "slon", "elat", "elon"]
    rows = [["2021-01-01", "10:00", "2021-01-01", "10:20:30", *NW, *SE],
            ["12/31/2020", "23:50", "1/1/2021", "0:05", *SE, *NW]]
    columns = "StartDate+StartTime,EndDate+EndTime,slat,slon,elat,elon"
    report, data = convert_files(tmp_path, [write_csv(tmp_path / "t.csv", header, rows)],
                                 columns=columns)
    assert report["first_slot"] == "2020123101" and data.shape == (48, 2, 4, 2)
    assert data[34, 0, 0, 0] == data[34, 1, 3, 1] == data[23, 0, 3, 1] == data[24, 1, 0, 0] == 1
    assert data.sum() == 4
    swapped = "StartTime+StartDate,EndDate+EndTime,slat,slon,elat,elon"
    with pytest.raises(ttf.TripError, match=r"t.csv: the columns 'StartTime'\+'StartDate' do not "
                       r"parse together .*\(e.g. '10:00 2021-01-01'\); expected the date column "
                       r"first: StartDate\+StartTime"):
        convert_files(tmp_path, [tmp_path / "t.csv"], columns=swapped)
    with pytest.raises(ttf.TripError, match=r"the columns 'StartDate'\+'slat' do not parse "
                                            r"together .*; expected a date column, then a time"):
        convert_files(tmp_path, [tmp_path / "t.csv"], columns="StartDate+slat," + columns[20:])


def test_station_ids_mapped_by_a_station_table(tmp_path):
    header = ["trip_id", "starttime", "stoptime", "from_station_id", "to_station_id"]
    rows = [["1", "2021-01-01 10:00:00", "2021-01-01 10:10:00", "5", "7"],
            ["2", "2021-01-01 10:30:00", "2021-01-01 10:50:00", "7", "99"],    # 99: not in table
            ["3", "2021-01-01 11:00:00", "2021-01-01 11:05:00", "", "5"]]      # no start station
    trips = write_csv(tmp_path / "Divvy_Trips.csv", header, rows)
    stations = write_csv(tmp_path / "stations.csv", ["id", "name", "latitude", "longitude"],
                         [["5", "a", *NW], ["7", "b", *SE]])
    report, data = convert_files(tmp_path, [trips], columns="divvy", stations=stations)
    assert data[10, 0, 0, 0] == data[10, 1, 3, 1] == data[10, 0, 3, 1] == data[11, 1, 0, 0] == 1
    assert data.sum() == 4
    assert report["not_counted"]["start: station not in --stations"] == 1
    assert report["not_counted"]["end: station not in --stations"] == 1
    assert report["inputs"][0]["places"] == "station ids via --stations"
    # Four names given: the two times and the two station ids.
    report, again = convert_files(tmp_path, [trips], stations=stations,
                                  columns="starttime,stoptime,from_station_id,to_station_id")
    np.testing.assert_array_equal(again, data)
    with pytest.raises(ttf.TripError, match=r"none of the station ids of column "
                       r"'from_station_id' in the first rows \(e.g. '5'\) is in .*other.csv"):
        convert_files(tmp_path, [trips], columns="divvy", stations=write_csv(
            tmp_path / "other.csv", ["id", "lat", "lon"], [["A1", *NW]]))


def test_zero_and_blank_coordinates_are_bad_coordinates(tmp_path):
    rows = [trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", NW, SE),
            trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", ("0.0", "0.0"), SE),
            trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", NW, ("", "")),
            trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", NW, ("40.5", "0"))]
    report, _ = convert_files(tmp_path, [write_csv(tmp_path / "t.csv", NEW_HEADER, rows)],
                              columns="citibike", bbox=(-1.0, 41.0, -74.0, 1.0))
    assert report["not_counted"]["start: bad coordinates"] == 1
    assert report["not_counted"]["end: bad coordinates"] == 2
    assert report["not_counted"]["end: outside the box"] == 0


def test_daylight_saving_hours_are_counted_as_written(tmp_path):
    """US clocks: 2021-03-14 02:00 jumps to 03:00; 2021-11-07 02:00 falls back to 01:00."""
    rows = [trip("2021-03-14 01:50:00", "2021-03-14 03:10:00", NW, SE),   # a 20-minute ride
            trip("2021-11-07 01:10:00", "2021-11-07 01:40:00", NW, SE),   # the first 1 a.m.
            trip("2021-11-07 01:20:00", "2021-11-07 01:30:00", NW, SE),   # the second, same slot
            trip("2021-11-07 01:50:00", "2021-11-07 01:05:00", NW, SE)]   # across the fall-back
    report, data, dates = convert(tmp_path, rows)
    spring, autumn = list(dates).index("2021031401"), list(dates).index("2021110701")
    assert len(dates) == 2 * 24   # every day keeps 24 slots: no slot is added or removed
    assert data[spring + 1, 0, 0, 0] == 1 and data[spring + 3, 1, 3, 1] == 1
    assert data[spring + 2].sum() == 0   # 02:00-03:00 did not exist: an empty slot
    assert data[autumn + 1, 0, 0, 0] == data[autumn + 1, 1, 3, 1] == 2   # both 1 a.m. hours
    assert report["not_counted"]["end before start"] == 1   # both ends of that ride left out


# ---- the box and the map -------------------------------------------------------------------------

def test_bbox_auto_finds_the_busiest_cluster(tmp_path, capsys):
    busy = [(40.500, -73.500), (40.506, -73.497), (40.503, -73.506)]   # three stations, 500 m apart
    far = (40.20, -73.10)                                              # a smaller network 45 km off
    rows = [trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", a, b)
            for a in busy for b in busy] * 3
    rows += [trip("2021-01-01 12:00:00", "2021-01-01 12:10:00", far, far)] * 4
    rows += [trip("2021-01-01 12:00:00", "2021-01-01 12:10:00", busy[0], far)]
    report, data = convert_files(tmp_path, [write_csv(tmp_path / "t.csv", NEW_HEADER, rows)],
                                 bbox="auto")
    assert report["bbox"] == [40.5, 40.5061, -73.506, -73.4969]   # 1e-4 cells around the three
    assert report["bbox_auto"]["clusters"] == 2 and report["bbox_from"] == "--bbox=auto"
    assert report["bbox_auto"]["starts_inside"] == round(28 / 32, 4)
    assert report["bbox_auto"]["ends_inside"] == round(27 / 32, 4)
    assert report["outflow_events"] == 28 and data.sum() == 28 + 27
    printed = capsys.readouterr().out
    assert "--bbox=auto: 40.5000,40.5061,-73.5060,-73.4969 holds 99% of the trip starts in the " \
           "busiest cluster of stations (2 found): 87.5% of all trip starts" in printed
    with pytest.raises(ttf.TripError, match=r"bbox must be .*auto:PERCENT .* got 'auto:150'"):
        convert_files(tmp_path, [tmp_path / "t.csv"], bbox="auto:150")


def test_map_is_written_beside_the_output(tmp_path):
    src = write_csv(tmp_path / "t.csv", NEW_HEADER, MONTH_ONE + [
        trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", NW, OUT)])
    out = tmp_path / "flows.h5"
    report = ttf.convert([src], str(out), BBOX, GRID, 60)
    png = (tmp_path / "flows.h5.map.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    width, height = struct.unpack(">II", png[16:24])
    assert width > 2 * height / 1.5 and report["map"] == str(out) + ".map.png"
    assert not (tmp_path / "flows.h5.map.png.tmp.png").exists()


def test_output_folder_and_box_are_checked_before_reading(tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 truncated")
    args = dict(paths=[str(tmp_path / "broken.zip")], grid=GRID, minutes=60)
    for output, bbox, message in [
            (str(tmp_path / "no" / "such" / "o.h5"), BBOX, r"o.h5: the folder .*no/such does not "
                                                           r"exist; create it \(mkdir -p"),
            (str(tmp_path / "o.h5"), (40, 95, -74, -73), r"latitudes must lie in -90..90"),
            (str(tmp_path / "o.h5"), (40, 41, -74, 200), r"longitudes in -180..180")]:
        with pytest.raises(ttf.TripError, match=message):
            ttf.convert(args["paths"], output, bbox, GRID, 60)


def test_cli_in_process_auto_box_and_errors(tmp_path, capsys):
    src = write_csv(tmp_path / "t.csv", NEW_HEADER, [
        trip("2021-01-01 10:00:00", "2021-01-01 10:10:00", (40.7, -74.0), (40.71, -73.99))])
    out = str(tmp_path / "o.h5")
    ttf.main([out, src, "--bbox=auto:100", "--grid=2x2", "--minutes=60", "--columns=citibike"])
    printed = capsys.readouterr().out
    assert "--bbox=auto: 40.7000,40.7001,-74.0000,-73.9999 holds 100% of the trip starts" in printed
    assert f"{src}: 1 rows, columns citibike 2021+, times YYYY-MM-DD HH:MM:SS, utf-8" in printed
    assert f"map of the grid: {out}.map.png" in printed
    with pytest.raises(SystemExit, match=r"^error: .*t.csv: its columns \(divvy 2013-2016\)"):
        write_csv(tmp_path / "t.csv", ["trip_id", "starttime", "stoptime", "from_station_id",
                                       "to_station_id"], [["1", "1/13/2021 0:00", "1/13/2021 0:05",
                                                           "5", "7"]])
        ttf.main([out, src, "--bbox=40,41,-74,-73", "--grid=2x2", "--minutes=60", "--overwrite"])
