"""flowfiles.py, cleaning.py and datasets.py together, against damage: many corrupted variants of
one valid small flow file, each loaded the way main.py loads a file: every variant either loads to
exactly the samples of the valid file or raises flowfiles.DataError, never another exception and
never different samples.

Two families: content corruptions rewritten with h5py (each with the outcome it must have), and
random byte damage (truncation, flipped bytes outside the array payloads, whose damage no HDF5
reader can see; the release files' payloads are covered by the md5 check)."""
from datetime import date, timedelta

import h5py
import numpy as np
import pytest

import datasets
import flowfiles

pytestmark = pytest.mark.smoke

T, DAYS = 24, 12
LOAD = dict(len_closeness=3, len_period=1, len_trend=1, days_test=2)


def valid_arrays():
    days = [date(2021, 3, 1) + timedelta(d) for d in range(DAYS)]
    dates = np.array([f"{d:%Y%m%d}{s:02d}" for d in days for s in range(1, T + 1)], dtype="S10")
    data = np.random.default_rng(0).poisson(5, size=(len(dates), 2, 3, 2)).astype(np.float32)
    return {"data": data, "date": dates}


def write(path, arrays):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def load(path):
    return datasets.load_dataset(str(path), "", **LOAD)


def same_samples(a, b):
    return (np.array_equal(a.frames, b.frames) and np.array_equal(a.slot_ids, b.slot_ids)
            and np.array_equal(a.external, b.external) and a.n_train == b.n_train
            and all(np.array_equal(a.index[k], b.index[k]) for k in a.index))


def outcome(path, reference):
    """'same', or 'error' (a DataError); anything else fails the test."""
    try:
        ds = load(path)
    except flowfiles.DataError as err:
        assert str(err), "an error must say something"
        return "error"
    assert same_samples(ds, reference), f"{path.name} loaded to different samples"
    return "same"


def content_variants(rng):
    """(name, arrays, expected outcome) for content corruptions."""
    v = valid_arrays()
    n = len(v["date"])
    out = []
    for _ in range(6):
        i = int(rng.integers(n))
        for name, value in (("nan", np.nan), ("inf", np.inf), ("negative", -1.0)):
            data = v["data"].copy()
            data[i, int(rng.integers(2)), int(rng.integers(3)), int(rng.integers(2))] = value
            out.append((f"{name}@{i}", dict(v, data=data), "error"))
        dates = v["date"].copy()
        text = bytearray(dates[i])
        text[int(rng.integers(10))] = int(rng.choice(list(b"x-/ :")))
        dates[i] = bytes(text)
        out.append((f"bad char@{i}", dict(v, date=dates), "error"))
        dates = v["date"].copy()
        dates[i] = dates[i][:8] + rng.choice([b"00", b"25", b"99"])
        out.append((f"slot out of 1..T@{i}", dict(v, date=dates), "error"))
        dates = v["date"].copy()
        dates[i] = dates[(i + 1) % n]
        out.append((f"duplicate@{i}", dict(v, date=dates), "error"))
        dates = v["date"].copy()
        dates[i] = b"2021" + dates[i][4:5] + b"9" + b"31" + dates[i][8:]  # no such day
        out.append((f"impossible day@{i}", dict(v, date=dates), "error"))
        order = rng.permutation(n)
        out.append((f"shuffled rows {i}", {"data": v["data"][order], "date": v["date"][order]},
                    "same"))
        k = int(rng.integers(1, n))
        out.append((f"lengths differ {k}", dict(v, date=v["date"][:k]), "error"))
    out += [
        ("no data", {"date": v["date"]}, "error"),
        ("no date", {"data": v["data"]}, "error"),
        ("renamed", {"Data": v["data"], "date": v["date"]}, "error"),
        ("float64 data", dict(v, data=v["data"].astype(np.float64)), "same"),
        ("integer data", dict(v, data=v["data"].astype(np.int32)), "same"),
        ("extra key", dict(v, notes=np.arange(3)), "same"),
        ("string data", dict(v, data=v["data"].astype("S4")), "error"),
        ("three flows", dict(v, data=np.concatenate([v["data"], v["data"][:, :1]], 1)), "error"),
        ("channels last", dict(v, data=np.moveaxis(v["data"], 1, -1)), "error"),
        ("rank 3", dict(v, data=v["data"][:, 0]), "error"),
        ("scalar date", dict(v, date=np.bytes_(b"2021030101")), "error"),
        ("integer dates", dict(v, date=v["date"].astype(np.int64)), "same"),
        ("empty", {"data": v["data"][:0], "date": v["date"][:0]}, "error"),
        ("too short", {"data": v["data"][:3 * T], "date": v["date"][:3 * T]}, "error"),
        ("hourly stamps at T=48", dict(v, date=np.array(
            [d[:8] + b"%02d" % (2 * int(d[8:])) for d in v["date"]])), "error"),
        ("huge values", dict(v, data=np.where(v["data"] > 8, 1e300, v["data"].astype(float))),
         "error"),
        ("null dataspace", dict(v, data=h5py.Empty("f")), "error"),
    ]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return load(write(tmp_path_factory.mktemp("ref") / "valid.h5", valid_arrays()))


def test_content_corruptions_raise_or_load_the_same(tmp_path, reference):
    rng = np.random.default_rng(1)
    seen = {"same": 0, "error": 0}
    for k, (name, arrays, expected) in enumerate(content_variants(rng)):
        got = outcome(write(tmp_path / f"v{k}.h5", arrays), reference)
        assert got == expected, name
        seen[got] += 1
    assert seen["same"] >= 10 and seen["error"] >= 40


def payload_ranges(path):
    with h5py.File(path, "r") as f:
        return [(f[k].id.get_offset(), f[k].id.get_offset() + f[k].id.get_storage_size())
                for k in f]


def test_random_byte_damage_raises_or_loads_the_same(tmp_path, reference):
    valid = write(tmp_path / "valid.h5", valid_arrays())
    raw = valid.read_bytes()
    payload = payload_ranges(valid)
    outside = np.array([i for i in range(len(raw))
                        if not any(lo <= i < hi for lo, hi in payload)])
    rng = np.random.default_rng(2)
    seen = {"same": 0, "error": 0}
    for k in range(150):
        damaged = bytearray(raw)
        if k % 3 == 0:
            damaged = damaged[:int(rng.integers(len(raw)))]
        else:
            for pos in rng.choice(outside, size=int(rng.integers(1, 6)), replace=False):
                damaged[pos] ^= int(rng.integers(1, 256))
        path = tmp_path / f"d{k}.h5"
        path.write_bytes(bytes(damaged))
        seen[outcome(path, reference)] += 1
    assert seen["error"] >= 50  # every truncation at least
