"""Tests of tripcsv.py: the time stamps and coordinates of trip-record CSV fields, every preset's
header generations in its operator's style, loose names, encodings and station tables."""
import codecs
from pathlib import Path

import numpy as np
import pytest

import tripcsv
import tripfiles


def test_parse_times_formats():
    got = tripcsv.parse_times(["2021-03-04 05:06:07", "2021-03-04T05:06:07", "2019-01-01 00:01:47.4010",
                           "1/2/2015 0:01", "12/31/2014 23:59:07", " 2020-02-29 12:00:00 "])
    want = ["2021-03-04T05:06:07", "2021-03-04T05:06:07", "2019-01-01T00:01:47",
            "2015-01-02T00:01:00", "2014-12-31T23:59:07", "2020-02-29T12:00:00"]
    np.testing.assert_array_equal(got, np.array(want, dtype="datetime64[s]"))


@pytest.mark.parametrize("text", ["", "abc", "2021-01-01", "2021-02-29 10:00:00", "13/1/2015 0:00",
                                  "2021-01-01 24:00:00", "2021-01-01 10:00:00+01:00",
                                  "2021-01-01  10:00:00", "2021/01/01 10:00:00", "NaT", "now",
                                  "2021-01-01 10:00:00" + " " * 100])   # longer than MAX_FIELD
def test_parse_times_rejects(text):
    assert np.isnat(tripcsv.parse_times(["2021-01-01 00:00:00", text])).tolist() == [False, True]


def test_parse_coordinates():
    got = tripcsv.parse_coordinates(["40.5", " -73.25 ", "", "abc", "nan", "inf", "1" * 100])
    np.testing.assert_array_equal(got, [40.5, -73.25] + [np.nan] * 5)


# ---- time formats --------------------------------------------------------------------------------

def test_parse_times_without_seconds_two_digit_years_and_day_first():
    got = tripcsv.parse_times(["2019-01-01 00:07", "7/1/19 0:04", "12/31/99 23:59:59",
                               "1/2/68 10:00", "2019-07-01T08:30:15.250"])
    want = ["2019-01-01T00:07:00", "2019-07-01T00:04:00", "1999-12-31T23:59:59",
            "2068-01-02T10:00:00", "2019-07-01T08:30:15"]
    np.testing.assert_array_equal(got, np.array(want, dtype="datetime64[s]"))
    day_first = tripcsv.parse_times(["13/1/2015 0:00", "1/2/2015 0:00", "2015-01-02 00:00:00",
                                     "1/13/2015 0:00"], day_first=True)
    np.testing.assert_array_equal(day_first[:3], np.array(
        ["2015-01-13", "2015-02-01", "2015-01-02"], dtype="datetime64[s]"))
    assert np.isnat(day_first[3])   # month 13


def test_time_styles_and_date_order_evidence():
    values = np.array(["7/1/2019 0:04", "7/13/2019 0:04:05", "7/2/2019 1:00"])
    assert tripcsv.time_styles(values, False) == "M/D/YYYY H:MM, M/D/YYYY H:MM:SS"
    assert tripcsv.time_styles(np.array(["2019-01-01T00:07:00.5", "x"]), False) == \
        "YYYY-MM-DDTHH:MM:SS.fff"
    assert tripcsv.date_order_evidence(values) == [None, "7/13/2019 0:04:05"]
    assert tripcsv.date_order_evidence(np.array(["13/7/2019 0:04", "2019-12-13 00:00"])) == [
        "13/7/2019 0:04", None]


def test_parse_points_zero_blank_and_off_globe_are_bad():
    lat, lon = tripcsv.parse_points(["40.5", "0", "40.5", "", "91", "40.5", "0.0"],
                                    ["-74", "-74", "0", "-74", "-74", "-181", "0.0"])
    assert lat.tolist()[0] == 40.5 and lon.tolist()[0] == -74
    assert np.isnan(lat[1:]).all() and np.isnan(lon[1:]).all()


# ---- files as operators publish them -------------------------------------------------------------

def write(path, lines, encoding="utf-8"):
    """Write text lines (CRLF, as most operators' exports) and return the path as str."""
    Path(path).write_bytes("\r\n".join(lines).encode(encoding) + b"\r\n")
    return str(path)


def read_all(paths, columns="auto", stations=None, station_columns=None, date_order=None):
    """Inspect and read files as trips_to_flows.convert does -> (sources, [Trips])."""
    table = tripcsv.read_stations(stations, station_columns) if stations else None
    sources = tripcsv.inspect_inputs(paths, columns, table, date_order)
    return sources, [tripcsv.parse_trips(f, short, s, table)
                     for s in sources for f, short in tripfiles.read_chunks(s, 1000)]


RIDE_ID_HEADER = ("ride_id,rideable_type,started_at,ended_at,start_station_name,start_station_id,"
                  "end_station_name,end_station_id,start_lat,start_lng,end_lat,end_lng,"
                  "member_casual")
RIDE_ID_ROW = ("121DD7DD23CB1335,docked_bike,2021-02-03 23:11:28,2021-02-03 23:18:28,Hoboken Ave,"
               "JC105,Christ Hospital,JC034,40.735208,-74.046964,40.734786,-74.050444,member")
RIDE_ID_WANT = ("2021-02-03T23:11:28", "2021-02-03T23:18:28", (40.735208, -74.046964),
                (40.734786, -74.050444))
# Every preset's header generations, each a header and a row in that operator's style (a
# station table where the header has no coordinates): preset, generation, header, row,
# stations (lines or None), station_columns, then the start and end time and point wanted.
GENERATIONS = [
    ("citibike", "2013-2020", "Trip Duration,Start Time,Stop Time,Start Station ID,Start Station "
     "Name,Start Station Latitude,Start Station Longitude,End Station ID,End Station Name,End "
     "Station Latitude,End Station Longitude,Bike ID,User Type,Birth Year,Gender",
     "435,2017-02-01 00:06:33,2017-02-01 00:13:49,3214,Essex Light Rail,40.7127742,-74.0364857,"
     "3199,Newport Pkwy,40.7287448,-74.0321082,24493,Subscriber,1988,1", None, None,
     "2017-02-01T00:06:33", "2017-02-01T00:13:49", (40.7127742, -74.0364857),
     (40.7287448, -74.0321082)),
    *[(preset, year, RIDE_ID_HEADER, RIDE_ID_ROW, None, None, *RIDE_ID_WANT)
      for preset, year in [("citibike", "2021+"), ("divvy", "2020+"), ("capitalbikeshare", "2020+"),
                           ("baywheels", "2020+"), ("bluebikes", "2023+")]],
    ("divvy", "2013-2016", "trip_id,starttime,stoptime,bikeid,tripduration,from_station_id,"
     "from_station_name,to_station_id,to_station_name,usertype,gender,birthyear",
     "2886259,7/31/2014 23:56,8/1/2014 0:03,2602,386,291,Wells St & Evergreen Ave,53,Wells St & "
     "Erie St,Subscriber,Female,1979",
     ["id,name,latitude,longitude,dpcapacity,online date",
      "291,Wells St & Evergreen Ave,41.906724,-87.63483,23,8/12/2013",
      "53,Wells St & Erie St,41.893833,-87.634215,19,6/28/2013"], None,
     "2014-07-31T23:56:00", "2014-08-01T00:03:00", (41.906724, -87.63483), (41.893833, -87.634215)),
    ("divvy", "2017-2019", '"trip_id","start_time","end_time","bikeid","tripduration",'
     '"from_station_id","from_station_name","to_station_id","to_station_name","usertype","gender",'
     '"birthyear"', '"13518905","3/31/2017 23:59:07","4/1/2017 00:13:24","5292","857","66",'
     '"Clinton St & Lake St","171","May St & Cullerton St","Subscriber","Male","1989"',
     ["id,name,city,latitude,longitude,dpcapacity,online_date,",   # a trailing comma, as published
      "66,Clinton St & Lake St,Chicago,41.885637,-87.641823,23,6/10/2013 10:43,",
      "171,May St & Cullerton St,Chicago,41.855136,-87.654127,15,6/10/2013 10:43,"], None,
     "2017-03-31T23:59:07", "2017-04-01T00:13:24", (41.885637, -87.641823),
     (41.855136, -87.654127)),
    ("divvy", "2018 Q1, 2019 Q2", '"01 - Rental Details Rental ID","01 - Rental Details Local '
     'Start Time","01 - Rental Details Local End Time","01 - Rental Details Bike ID","01 - Rental '
     'Details Duration In Seconds Uncapped","03 - Rental Start Station ID","03 - Rental Start '
     'Station Name",'
     '"02 - Rental End Station ID","02 - Rental End Station Name","User Type","Member Gender",'
     '"05 - Member Details Member Birthday Year"',
     '22178529,2019-04-01 00:02:22,2019-04-01 00:09:48,6251,446.0,81,Daley Center Plaza,56,'
     'Desplaines St & Kinzie St,Subscriber,Male,1975',
     ["id,name,city,latitude,longitude,dpcapacity,online_date",
      "81,Daley Center Plaza,Chicago,41.884241,-87.629634,46,6/10/2013",
      "56,Desplaines St & Kinzie St,Chicago,41.888716,-87.644448,27,6/10/2013"], None,
     "2019-04-01T00:02:22", "2019-04-01T00:09:48", (41.884241, -87.629634),
     (41.888716, -87.644448)),
    ("capitalbikeshare", "2010-2020", "Duration (ms),Start date,End date,Start station number,"
     "Start station,End station number,End station,Bike number,Member Type",
     "840866,8/31/2016 23:59,9/1/2016 0:13,31117,15th & Euclid St  NW,31228,8th & H St NW,W20409,"
     "Registered",   # the DC open-data table: its 'ID' is not the number the trips give
     ["X,Y,OBJECTID,ID,ADDRESS,TERMINAL_NUMBER,LATITUDE,LONGITUDE,INSTALLED",
      "-77.03,38.92,1,72,15th & Euclid St  NW,31117,38.923330,-77.035200,YES",
      "-77.02,38.90,2,93,8th & H St NW,31228,38.899700,-77.023086,YES"],
     "TERMINAL_NUMBER,LATITUDE,LONGITUDE",
     "2016-08-31T23:59:00", "2016-09-01T00:13:00", (38.92333, -77.0352), (38.8997, -77.023086)),
    ("baywheels", "Ford GoBike 2017-2020", "duration_sec,start_time,end_time,start_station_id,"
     "start_station_name,start_station_latitude,start_station_longitude,end_station_id,"
     "end_station_name,end_station_latitude,end_station_longitude,bike_id,user_type,"
     "member_birth_year,member_gender,bike_share_for_all_trip",
     "598,2017-12-31 16:57:39.6540,2017-12-31 17:07:38.0000,74,Laguna St at Hayes St,"
     "37.7764348192,-122.4262440205,43,San Francisco Public Library,37.7787677,-122.4159292,96,"
     "Customer,1987,Male,No", None, None,
     "2017-12-31T16:57:39", "2017-12-31T17:07:38", (37.7764348192, -122.4262440205),
     (37.7787677, -122.4159292)),
    ("baywheels", "Bay Area Bike Share 2013-2016", "Trip ID,Duration,Start Date,Start Station,"
     "Start Terminal,End Date,End Station,End Terminal,Bike #,Subscriber Type,Zip Code",
     "4576,63,8/29/13 14:13,South Van Ness at Market,66,8/29/13 14:14,Market at 10th,67,520,"
     "Subscriber,94127",
     ["station_id,name,lat,long,dockcount,landmark,installation",
      "66,South Van Ness at Market,37.774814,-122.418954,19,San Francisco,8/23/2013",
      "67,Market at 10th,37.776619,-122.417385,27,San Francisco,8/23/2013"], None,
     "2013-08-29T14:13:00", "2013-08-29T14:14:00", (37.774814, -122.418954),
     (37.776619, -122.417385)),
    ("bluebikes", "Hubway and Bluebikes 2015-2023", '"tripduration","starttime","stoptime",'
     '"start station id","start station name","start station latitude","start station longitude",'
     '"end station id","end station name","end station latitude","end station longitude","bikeid",'
     '"usertype","birth year","gender"',
     '"1793","2019-01-01 00:09:13.7980","2019-01-01 00:39:07.1120","80","MIT Stata Center",'
     '"42.3621312344991","-71.09115600585936","179","MIT Vassar St","42.355601","-71.103945",'
     '"3689","Subscriber","1987","1"', None, None,
     "2019-01-01T00:09:13", "2019-01-01T00:39:07", (42.3621312344991, -71.09115600585936),
     (42.355601, -71.103945)),
    ("bluebikes", "Hubway 2011-2013", "seq_id,hubway_id,status,duration,start_date,strt_statn,"
     "end_date,end_statn,bike_nr,subsc_type,zip_code,birth_date,gender",
     "1,8,Closed,9,7/28/2011 10:12:00,23,7/28/2011 10:12:00,23,B00468,Registered,'97217,1976,Male",
     ["id,terminal,station,municipal,lat,lng,status",
      "23,B32008,Mayor Thomas M. Menino - Government Center,Boston,42.359677,-71.059364,Existing"],
     "id,lat,lng", "2011-07-28T10:12:00", "2011-07-28T10:12:00", (42.359677, -71.059364),
     (42.359677, -71.059364)),
    ("metro", "Los Angeles 2016+", '"trip_id","duration","start_time","end_time","start_station",'
     '"start_lat","start_lon","end_station","end_lat","end_lon","bike_id","plan_duration",'
     '"trip_route_category","passholder_type","bike_type"',
     '112536773,7,"2019-01-01 00:07:00","2019-01-01 00:14:00",3046,34.052872,-118.247490,3051,'
     '34.045422,-118.253517,"06468",1,"One Way","Walk-up","standard"', None, None,
     "2019-01-01T00:07:00", "2019-01-01T00:14:00", (34.052872, -118.24749),
     (34.045422, -118.253517)),
    ("metro", "Los Angeles 2016+", "trip_id,duration,start_time,end_time,start_station,start_lat,"
     "start_lon,end_station,end_lat,end_lon,bike_id,plan_duration,trip_route_category,"
     "passholder_type,bike_type", "124657107,5,7/13/2019 0:04,7/13/2019 0:09,4312,34.06699,"
     "-118.290878,4410,34.063351,-118.296799,6168,30,One Way,Monthly Pass,standard", None, None,
     "2019-07-13T00:04:00", "2019-07-13T00:09:00", (34.06699, -118.290878),
     (34.063351, -118.296799))]


@pytest.mark.parametrize("preset, generation, header, row, stations, station_columns, started, "
                         "ended, start_point, end_point", GENERATIONS,
                         ids=[f"{g[0]} {g[1]} {i}" for i, g in enumerate(GENERATIONS)])
def test_every_preset_reads_its_header_generations(tmp_path, preset, generation, header, row,
                                                   stations, station_columns, started, ended,
                                                   start_point, end_point):
    path = write(tmp_path / "trips.csv", [header, row])
    table = write(tmp_path / "stations.csv", stations) if stations else None
    for columns in (preset, "auto"):
        (source,), (trips,) = read_all([path], columns, table, station_columns)
        assert f"{preset} {generation}" in source.layout.label.split(" = ")
        assert source.layout.stations == bool(stations)
        assert (str(trips.start[0]), str(trips.end[0])) == (started, ended)
        for (lat, lon, _), want in zip(trips.places, (start_point, end_point)):
            assert (lat[0], lon[0]) == pytest.approx(want)


def test_station_header_without_stations_is_refused(tmp_path):
    header, row = GENERATIONS[6][2:4]   # Divvy 2013-2016: station ids, no coordinates
    path = write(tmp_path / "Divvy_Trips_2014-Q3-07.csv", [header, row])
    with pytest.raises(tripcsv.TripError, match=r"Divvy_Trips_2014-Q3-07.csv: its columns \(divvy "
                       r"2013-2016\) give station ids but no coordinates; pass --stations="):
        read_all([path], "divvy")


# ---- names ---------------------------------------------------------------------------------------

def test_loose_names_serve_headers_that_changed(tmp_path):
    columns = ("StartDate+StartTime,EndDate+EndTime,StartLatitude,StartLongitude,EndLatitude,"
               "EndLongitude")
    a = write(tmp_path / "2019-01.csv", [
        "StartDate,StartTime,EndDate,EndTime,StartLatitude,StartLongitude,EndLatitude,EndLongitude",
        "2019-01-31,23:50:00,2019-02-01,00:10:00,40.5,-73.5,40.6,-73.6"])
    b = write(tmp_path / "2019-02.csv", [
        "start_date,start time,END_DATE,End_Time,Start_Latitude,start longitude,end latitude,"
        "end_longitude", "2/13/2019,7:05,2/13/2019,7:45,40.7,-73.7,40.8,-73.8"])
    sources, chunks = read_all([a, b], columns)
    assert [str(t) for c in chunks for t in (c.start[0], c.end[0])] == [
        "2019-01-31T23:50:00", "2019-02-01T00:10:00", "2019-02-13T07:05:00", "2019-02-13T07:45:00"]
    assert [c.places[1][0][0] for c in chunks] == [40.6, 40.8]
    assert sources[1].time_format.startswith("M/D/YYYY H:MM")


def test_names_that_match_no_header_or_two_are_refused_with_the_headers(tmp_path):
    path = write(tmp_path / "t.csv", ["Start Time,start_time,End,lat0,lon0,lat1,lon1",
                                      "x,2019-01-01 00:00:00,2019-01-01 00:10:00,1,2,3,4"])
    with pytest.raises(tripcsv.TripError, match=r"t.csv: missing columns; expected \['StartTime', "
                       r"'End', .*found \['Start Time', 'start_time', 'End', .*'StartTime' "
                       r"matches 2 headers \['Start Time', 'start_time'\]"):
        read_all([path], "StartTime,End,lat0,lon0,lat1,lon1")
    with pytest.raises(tripcsv.TripError, match=r"'EndLat' matches no header"):
        read_all([path], "start_time,End,lat0,lon0,EndLat,lon1")
    # An exact name is not ambiguous: 'start_time' is that column, not 'Start Time' as well.
    (source,), _ = read_all([path], "start_time,End,lat0,lon0,lat1,lon1")
    assert source.layout.positions[0] == 1


@pytest.mark.parametrize("columns", ["a,b,c", "a+b+c,e,f,g,h,i", "a,b,c+d,e,f,g", "a,+b,c,d,e,f"])
def test_malformed_columns_are_refused(columns):
    with pytest.raises(tripcsv.TripError, match="six names .* or four .* with --stations"):
        tripcsv.column_alternatives(columns)


# ---- encodings and station tables ----------------------------------------------------------------

def test_encodings_utf8_bom_and_latin1(tmp_path):
    lines = ["trip,starttime,stoptime,start station latitude,start station longitude,"
             "end station latitude,end station longitude,name",
             "1,2019-01-01 00:07:00,2019-01-01 00:17:00,40.5,-73.5,40.6,-73.6,Café Ñandú"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes(codecs.BOM_UTF8 + "\n".join(lines).encode())
    sources, chunks = read_all([str(bom), write(tmp_path / "latin.csv", lines, "latin-1")],
                               "citibike")
    assert [s.encoding for s in sources] == ["utf-8 with BOM", "latin-1"]
    assert [c.places[0][0][0] for c in chunks] == [40.5, 40.5]


def test_station_table_duplicates(tmp_path):
    good = write(tmp_path / "s.csv", ["id,latitude,longitude", "1,40.5,-73.5", "1,40.5,-73.5",
                                      " 2 ,40.6,-73.6"])
    table = tripcsv.read_stations(good)
    assert table.ids.tolist() == ["1", "2"]   # a repeated row is one station
    lat, lon, unknown = tripcsv.look_up(table, np.array(["2", "1", "3", ""]))
    assert lat[:2].tolist() == [40.6, 40.5] and unknown.tolist() == [False, False, True, True]
    bad = write(tmp_path / "dup.csv", ["id,latitude,longitude", "1,40.5,-73.5", "1,40.7,-73.5"])
    with pytest.raises(tripcsv.TripError, match=r"dup.csv: station id\(s\) \['1'\] given twice "
                                                r"with different coordinates; keep one row"):
        tripcsv.read_stations(bad)
    with pytest.raises(tripcsv.TripError, match=r"the station id column is 'id' and 'terminal' "
                                                r"of .* name the three with --station_columns="):
        tripcsv.read_stations(write(tmp_path / "h.csv", GENERATIONS[-3][4]))
