"""Tests of tripfiles.py: compressed streams decompressed by a child process (the files'
end-to-end reading and the one-line messages for damaged files are in test_trips_to_flows.py)."""
import bz2
import gzip
import time
import zipfile
import zlib

import numpy as np
import pytest

import tripfiles


def csv_like(size, seed=0):
    """`size` bytes of CSV-like digits, commas and newlines."""
    rng = np.random.default_rng(seed)
    text = rng.integers(0, 10, size, dtype=np.uint8) + ord("0")
    text[rng.random(size) < 0.1] = ord(",")
    text[rng.random(size) < 0.02] = ord("\n")
    return text.tobytes()


def read_all(path, kind, entry=None):
    with tripfiles.open_bytes(tripfiles.Source(str(path), str(path), entry, kind)) as f:
        return f.read()


@pytest.mark.parametrize("kind, compress", [("gzip", gzip.compress), ("bzip2", bz2.compress)])
def test_child_stream_reads_every_stream_of_a_file(tmp_path, kind, compress):
    data = csv_like(3 * tripfiles.BLOCK_BYTES + 12345)
    path = tmp_path / "trips.csv.x"
    # Streams back to back (a multi-member gzip, pbzip2's output), the last one empty.
    path.write_bytes(compress(data) + compress(b"tail,1\n") + compress(b""))
    assert read_all(path, kind) == data + b"tail,1\n"


def test_child_stream_reads_one_entry_of_a_zip(tmp_path):
    path = tmp_path / "trips.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.csv", b"first\n")
        archive.writestr("b.csv", csv_like(200_000, seed=1))
    assert read_all(path, "zip", "b.csv") == csv_like(200_000, seed=1)


@pytest.mark.parametrize("kind, compress", [("gzip", gzip.compress), ("bzip2", bz2.compress)])
def test_child_stream_raises_the_error_of_a_cut_or_corrupt_file(tmp_path, kind, compress):
    whole, path = compress(csv_like(200_000)), tmp_path / "trips.csv.x"
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(EOFError, match="ended before the end-of-stream"):
        read_all(path, kind)
    path.write_bytes(whole[:-3])   # all the data but the last bytes (the checksum's)
    with pytest.raises(EOFError):
        read_all(path, kind)
    broken = bytearray(whole)
    broken[len(broken) // 2] ^= 0xFF
    path.write_bytes(bytes(broken))
    with pytest.raises((zlib.error, OSError)):
        read_all(path, kind)


def test_child_stream_stops_its_child_when_closed_early(tmp_path):
    path = tmp_path / "big.csv.gz"
    path.write_bytes(gzip.compress(csv_like(8 * tripfiles.BLOCK_BYTES), compresslevel=1))
    stream = tripfiles.ChildStream(tripfiles.Source(str(path), str(path), None, "gzip"))
    assert stream.read(10) == csv_like(8 * tripfiles.BLOCK_BYTES)[:10]
    started = time.perf_counter()
    stream.close()
    assert time.perf_counter() - started < 2 and stream.child.returncode is not None
