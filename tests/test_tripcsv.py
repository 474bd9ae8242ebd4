"""Tests of tripcsv.py: the time stamps and coordinates of trip-record CSV fields."""
import numpy as np
import pytest

import tripcsv


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
