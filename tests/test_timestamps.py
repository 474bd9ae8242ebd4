"""Tests of timestamps.py: the files' 'YYYYMMDDSS' text to slot numbers and back, the weekday of a
slot, and the stamps that are refused.

Every expectation is computed here by hand or with datetime (conftest's sid), never copied from a
run of the code under test."""
from datetime import date

import numpy as np
import pytest

import timestamps
from conftest import sid, stamp, stamp_of_sid

pytestmark = pytest.mark.smoke


def test_parse_timestamps_values_and_bytes():
    cases = [(date(1970, 1, 1), 1, 24), (date(2014, 4, 1), 1, 24), (date(2014, 9, 30), 24, 24),
             (date(2016, 2, 29), 48, 48), (date(2013, 7, 1), 17, 48), (date(1969, 12, 31), 3, 4)]
    for d, s, T in cases:
        expected = sid(d, s, T)
        assert timestamps.parse_timestamps([stamp(d, s)], T)[0] == expected
        assert timestamps.parse_timestamps(np.array([stamp(d, s).encode()], dtype="S10"),
                                           T)[0] == expected
    # Hand values: 1970-01-01 slot 1 is 0; the next day's slot 1 is T.
    assert timestamps.parse_timestamps(["1970010101", "1970010201"], 24).tolist() == [0, 24]
    assert timestamps.parse_timestamps(["1970010148"], 48).tolist() == [47]


def test_parse_format_round_trip():
    stamps = ["2013070101", "2013123148", "2014010101", "2016022924", "2016030101", "2015110130",
              "2000022948", "1999123101"]
    ids = timestamps.parse_timestamps(stamps, 48)
    assert list(timestamps.format_timestamps(ids, 48)) == stamps
    # and the other way round over a contiguous range crossing a leap day and a year end
    T = 24
    ids = np.arange(sid(date(2015, 12, 30), 1, T), sid(date(2016, 3, 2), 24, T) + 1)
    text = timestamps.format_timestamps(ids, T)
    assert [stamp_of_sid(i, T) for i in ids[::37]] == list(text[::37])
    np.testing.assert_array_equal(timestamps.parse_timestamps(text, T), ids)


def test_weekday_matches_datetime():
    days = [date(1970, 1, 1), date(1969, 12, 28), date(2013, 1, 1), date(2014, 4, 1),
            date(2014, 4, 5), date(2014, 4, 6), date(2014, 4, 7), date(2016, 2, 29),
            date(2016, 4, 10), date(2015, 11, 1)]
    for T in (24, 48):
        for slot in (1, T):
            ids = np.array([sid(d, slot, T) for d in days])
            assert timestamps.weekday(ids, T).tolist() == [d.weekday() for d in days]


@pytest.mark.parametrize("bad, T", [
    ("201404010", 24),      # too short
    ("20140401011", 24),    # too long
    ("2014O40101", 24),     # a letter
    ("20140401 1", 24),     # a space
    ("2014040100", 24),     # slot 00
    ("2014040125", 24),     # slot T + 1
    ("2014040149", 48),     # slot T + 1 (half hours)
    ("2014023001", 24),     # no such date
    ("2014130101", 24),     # no such month
])
def test_bad_stamps_raise(bad, T):
    with pytest.raises(timestamps.DataError):
        timestamps.parse_timestamps([stamp(date(2014, 4, 1), 1), bad], T)
    with pytest.raises(timestamps.DataError):
        timestamps.parse_timestamps(np.array([bad.encode()], dtype="S11"), T)


def test_slot_T_is_accepted_but_T_plus_one_is_not():
    assert timestamps.parse_timestamps(["2014040148"], 48)[0] == sid(date(2014, 4, 1), 48, 48)
    with pytest.raises(timestamps.DataError):
        timestamps.parse_timestamps(["2014040148"], 24)
