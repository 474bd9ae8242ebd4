"""libcity.py: LibCity grid atomic files (.geo, .grid, config.json) read into frames and back."""
import json

import numpy as np
import pytest

import datasets
import flowfiles
import libcity
import timestamps

pytestmark = pytest.mark.smoke

# A NYCBike20140409-style data set in LibCity's text, 2 x 3 grid, lines cell by cell (time within
# a cell) as LibCity's converters write them; new_flow = 100 row + 10 column + t, end_flow = that
# + 1000; 01:00 and 02:00 of 2014-04-01 are the h5 release's slots 2014040102 and 2014040103.
GRID_TEXT = """\
dyna_id,type,time,row_id,column_id,new_flow,end_flow
0,state,2014-04-01T01:00:00Z,0,0,0.0,1000
1,state,2014-04-01T02:00:00Z,0,0,1.0,1001
2,state,2014-04-01T01:00:00Z,0,1,10.0,1010
3,state,2014-04-01T02:00:00Z,0,1,11.0,1011
4,state,2014-04-01T01:00:00Z,0,2,20.0,1020
5,state,2014-04-01T02:00:00Z,0,2,21.0,1021
6,state,2014-04-01T01:00:00Z,1,0,100.0,1100
7,state,2014-04-01T02:00:00Z,1,0,101.0,1101
8,state,2014-04-01T01:00:00Z,1,1,110.0,1110
9,state,2014-04-01T02:00:00Z,1,1,111.0,1111
10,state,2014-04-01T01:00:00Z,1,2,120.0,1120
11,state,2014-04-01T02:00:00Z,1,2,121.0,1121
"""
# Its .geo, coordinates as a quoted GeoJSON polygon the way T_drive.py writes them.
GEO_TEXT = """\
geo_id,type,coordinates,row_id,column_id
0,Polygon,"[[[116.25, 39.83], [116.26, 39.83], [116.26, 39.84], [116.25, 39.83]]]",0,0
1,Polygon,"[[[116.26, 39.83], [116.27, 39.83], [116.27, 39.84], [116.26, 39.83]]]",0,1
2,Polygon,"[[[116.27, 39.83], [116.28, 39.83], [116.28, 39.84], [116.27, 39.83]]]",0,2
3,Polygon,"[[[116.25, 39.84], [116.26, 39.84], [116.26, 39.85], [116.25, 39.84]]]",1,0
4,Polygon,"[[[116.26, 39.84], [116.27, 39.84], [116.27, 39.85], [116.26, 39.84]]]",1,1
5,Polygon,"[[[116.27, 39.84], [116.28, 39.84], [116.28, 39.85], [116.27, 39.84]]]",1,2
"""


def day(date):
    return int(np.datetime64(date, "D").astype(np.int64))


def tiny(T, slots, H=3, W=2, seed=0):
    """Random non-integer flows on an H x W grid at the given slots of 2013-07-01 (may pass
    midnight), with the slot ids datasets.py would give them."""
    frames = np.random.default_rng(seed).uniform(0, 50, (len(slots), H, W, 2)).astype(np.float32)
    return frames, day("2013-07-01") * T + np.asarray(slots, np.int64)


@pytest.mark.parametrize("T, with_config, names", [(24, True, ("inflow", "outflow")),
                                                   (48, False, ("new_flow", "end_flow"))])
def test_round_trip(tmp_path, T, with_config, names):
    frames, slot_ids = tiny(T, [0, 1, 2, 5, T - 1, T, T + 1])  # a gap, and across midnight
    libcity.write_grid(tmp_path, "CITY", frames, slot_ids, T, names, with_config=with_config)
    got, got_slots, got_T, got_names = libcity.read_grid(tmp_path / "CITY.grid")
    assert got.dtype == np.float32 and np.array_equal(got, frames)
    assert got_slots.dtype == np.int64 and np.array_equal(got_slots, slot_ids)
    assert (got_T, got_names) == (T, names)


def write_literal(folder, grid_lines, config=None):
    """GRID_TEXT's data set folder with the given .grid lines."""
    folder.mkdir(exist_ok=True)
    (folder / "NYCBIKE20140409.geo").write_text(GEO_TEXT)
    (folder / "NYCBIKE20140409.grid").write_text("\n".join(grid_lines) + "\n")
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder / "NYCBIKE20140409.grid"


def literal_lines():
    return GRID_TEXT.splitlines()


def test_literal_libcity_text_lands_at_row_column_flow(tmp_path):
    config = {"grid": {"including_types": ["state"], "state": {"row_id": 2, "column_id": 3}},
              "info": {"data_col": ["new_flow", "end_flow"], "time_intervals": 3600}}
    frames, slot_ids, T, names = libcity.read_grid(write_literal(tmp_path, literal_lines(), config))
    assert frames.shape == (2, 2, 3, 2) and T == 24 and names == ("new_flow", "end_flow")
    assert frames[1, 0, 2, 0] == 21 and frames[0, 1, 0, 0] == 100 and frames[1, 1, 2, 1] == 1121
    t, r, c = np.meshgrid(range(2), range(2), range(3), indexing="ij")
    assert np.array_equal(frames[..., 0], 100 * r + 10 * c + t)
    assert np.array_equal(frames[..., 1], 1000 + 100 * r + 10 * c + t)
    assert np.array_equal(slot_ids, timestamps.parse_timestamps(["2014040102", "2014040103"], 24))


def test_interval_from_config_or_inferred(tmp_path):
    lines = literal_lines()
    path = write_literal(tmp_path, lines, {"info": {"time_intervals": 1800}})
    _, slot_ids, T, _ = libcity.read_grid(path)
    assert T == 48 and list(slot_ids - day("2014-04-01") * 48) == [2, 4]  # 01:00, 02:00
    (tmp_path / "config.json").unlink()
    _, slot_ids, T, _ = libcity.read_grid(path)
    assert T == 24 and list(slot_ids - day("2014-04-01") * 24) == [1, 2]


def test_grid_size_from_config_without_geo(tmp_path):
    """A 2 x 3 grid whose last column is absent from the .grid: the config's size names it."""
    lines = [ln for ln in literal_lines() if ln.split(",")[4] != "2"]
    path = write_literal(tmp_path, lines, {"grid": {"including_types": ["state"],
                                                    "state": {"row_id": 2, "column_id": 3}}})
    (tmp_path / "NYCBIKE20140409.geo").unlink()
    with pytest.raises(libcity.GridError, match="01:00:00Z row_id 0 column_id 2 is missing"):
        libcity.read_grid(path)
    (tmp_path / "config.json").unlink()  # no size anywhere: the ids in the file decide
    assert libcity.read_grid(path)[0].shape == (2, 2, 2, 2)


def fixture_lines(tmp_path, config=True):
    frames, slot_ids = tiny(24, [0, 1, 2], H=2, W=2)
    libcity.write_grid(tmp_path, "CITY", frames, slot_ids, 24, with_config=config)
    return (tmp_path / "CITY.grid").read_text().splitlines()


def read_edited(tmp_path, lines):
    (tmp_path / "CITY.grid").write_text("\n".join(lines) + "\n")
    return libcity.read_grid(tmp_path / "CITY.grid")


def test_missing_cell_names_time_and_cell(tmp_path):
    lines = fixture_lines(tmp_path)
    del lines[5]  # cell (0, 1) at 01:00
    with pytest.raises(libcity.GridError, match="time 2013-07-01T01:00:00Z row_id 0 column_id 1 "
                                                "is missing"):
        read_edited(tmp_path, lines)


def test_repeated_cell_names_line(tmp_path):
    lines = fixture_lines(tmp_path)
    lines.append(lines[2])  # line 3 again, as line 14
    with pytest.raises(libcity.GridError, match="line 14: time 2013-07-01T01:00:00Z row_id 0 "
                                                "column_id 0 is given more than once"):
        read_edited(tmp_path, lines)


def test_id_outside_the_geo_grid(tmp_path):
    lines = fixture_lines(tmp_path)
    lines[4] = lines[4].replace(",0,1,", ",2,1,")  # row_id 2 on a 2 x 2 grid
    with pytest.raises(libcity.GridError, match=r"line 5: cell \(row_id 2, column_id 1\) lies "
                                                r"outside the 2 x 2 grid"):
        read_edited(tmp_path, lines)


def test_time_off_the_slot_boundary(tmp_path):
    lines = fixture_lines(tmp_path)
    lines = [ln.replace("T02:00:00Z", "T02:30:00Z") for ln in lines]
    with pytest.raises(libcity.GridError, match="2013-07-01T02:30:00Z is not on a slot boundary "
                                                "of 3600 s"):
        read_edited(tmp_path, lines)


@pytest.mark.parametrize("value, what", [("abc", "flows must be numbers"),
                                         ("nan", "flows must be finite"),
                                         ("1e39", "flows must be finite")])
def test_bad_value_names_line(tmp_path, value, what):
    lines = fixture_lines(tmp_path)
    lines[7] = lines[7].rsplit(",", 1)[0] + "," + value
    with pytest.raises(libcity.GridError, match=f"line 8: {what}"):
        read_edited(tmp_path, lines)


def test_bad_time_and_id_text_name_line(tmp_path):
    lines = fixture_lines(tmp_path)
    bad_time = lines[:3] + [lines[3].replace("2013-07-01T02", "2013-07-01 2")] + lines[4:]
    with pytest.raises(libcity.GridError, match="line 4: time must be ISO-8601"):
        read_edited(tmp_path, bad_time)
    bad_id = lines[:9] + [lines[9].replace(",1,0,", ",1.5,0,")] + lines[10:]
    with pytest.raises(libcity.GridError, match="line 10: row_id must be a whole number"):
        read_edited(tmp_path, bad_id)


def test_flow_columns_must_be_two(tmp_path):
    lines = fixture_lines(tmp_path, config=False)
    one = [ln.rsplit(",", 1)[0] for ln in lines]
    with pytest.raises(libcity.GridError, match=r"found 1 flow column\(s\) \['inflow'\]"):
        read_edited(tmp_path, one)
    three = [lines[0] + ",speed"] + [ln + ",7" for ln in lines[1:]]
    with pytest.raises(libcity.GridError, match="found 3 flow column"):
        read_edited(tmp_path, three)


def test_config_data_col_picks_two_of_three(tmp_path):
    lines = literal_lines()
    lines = [lines[0] + ",speed"] + [ln + ",7" for ln in lines[1:]]
    path = write_literal(tmp_path, lines, {"info": {"data_col": ["end_flow", "new_flow"]}})
    frames, _, _, names = libcity.read_grid(path)
    assert names == ("end_flow", "new_flow") and frames[1, 0, 2, 0] == 1021


def test_interval_must_divide_a_day(tmp_path):
    path = write_literal(tmp_path, literal_lines(), {"info": {"time_intervals": 7000}})
    with pytest.raises(libcity.GridError, match="7000 s, which does not divide a day"):
        libcity.read_grid(path)


def test_missing_grid_file(tmp_path):
    with pytest.raises(libcity.GridError, match="LibCity grid file not found: .*NOPE.grid"):
        libcity.read_grid(tmp_path / "NOPE.grid")


def test_header_must_be_libcity(tmp_path):
    lines = fixture_lines(tmp_path)
    lines[0] = lines[0].replace("time,row_id", "row_id,time")
    with pytest.raises(libcity.GridError, match="header must start with dyna_id,type,time,row_id"):
        read_edited(tmp_path, lines)


# ---- as a data set of a run ----------------------------------------------------------------------

def test_grid_files_load_like_the_same_hdf5_file(tmp_path):
    """Two LibCity .grid files of one folder (TAXIBJ's layout) give the data set the same frames,
    slots, samples and flow names as the same data in one release-layout HDF5 file."""
    import h5py
    T, days = 24, 12
    rng = np.random.default_rng(3)
    frames = rng.poisson(5, size=(days * T, 3, 4, 2)).astype(np.float32)
    slot_ids = 18700 * T + np.arange(days * T)
    libcity.write_grid(str(tmp_path / "CITY"), "CITY2021a", frames[:100], slot_ids[:100], T,
                       flow_names=("pickup", "dropoff"))
    libcity.write_grid(str(tmp_path / "CITY"), "CITY2021b", frames[100:], slot_ids[100:], T,
                       flow_names=("pickup", "dropoff"))
    with h5py.File(tmp_path / "city.h5", "w") as f:
        f["data"] = np.moveaxis(frames, -1, 1).astype(np.float64)
        f["date"] = np.char.encode(timestamps.format_timestamps(slot_ids, T), "ascii")
    grids = f"{tmp_path / 'CITY' / 'CITY2021a.grid'},{tmp_path / 'CITY' / 'CITY2021b.grid'}"
    a = datasets.load_dataset(grids, "", 3, 1, 1, 1)
    b = datasets.load_dataset(str(tmp_path / "city.h5"), "", 3, 1, 1, 1)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.slot_ids, b.slot_ids)
    np.testing.assert_array_equal(a.external, b.external)
    assert a.T == T and a.n_samples == b.n_samples
    assert flowfiles.flow_names(grids) == ("pickup", "dropoff")
    assert any("LibCity grid file(s), flows pickup, dropoff, 24 slots a day" in line
               for line in a.notes)


def test_grid_errors_reach_the_run_as_data_errors(tmp_path):
    libcity.write_grid(str(tmp_path), "A", np.ones((48, 2, 2, 2)), 18700 * 24 + np.arange(48), 24)
    libcity.write_grid(str(tmp_path / "h"), "B", np.ones((96, 2, 2, 2)),
                       18702 * 48 + np.arange(96), 48)
    with pytest.raises(flowfiles.DataError, match="B.grid has 48 slots a day, not 24"):
        flowfiles.load_series(f"{tmp_path / 'A.grid'},{tmp_path / 'h' / 'B.grid'}", "")
    with pytest.raises(flowfiles.DataError, match="not found"):
        flowfiles.load_series(str(tmp_path / "nope.grid"), "")
    with pytest.raises(flowfiles.DataError, match="not both"):
        flowfiles.load_series(f"{tmp_path / 'A.grid'},{tmp_path / 'x.h5'}", "")
