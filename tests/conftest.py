"""Shared by every test module: the Keras backend, quiet TensorFlow, the project's flat modules
importable from the repository root, and what several test modules use. The helpers and
constants are plain names, imported as `from conftest import ...`; `fresh_params` is a fixture,
asked for with `pytest.mark.usefixtures("fresh_params")`."""
import contextlib
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow on one thread here and in the runs started from here, as `--threads=1` sets it: runs
# compared bit for bit then sum in the same order in this process and in a child, and the tiny
# models of the tests gain nothing from a second thread (pytest-xdist's other worker uses it)
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BIKENYC_PATH = SHARED_DATA / "BikeNYC" / "NYC14_M16x8_T60_NewEnd.h5"
HOLIDAY_PATH = SHARED_DATA / "TaxiBJ" / "BJ_Holiday.txt"
EPOCH = date(1970, 1, 1)

# The session's tiny run (the fixture tiny_run): two epochs in each stage, stage 2 on a cosine
# rate with both epochs averaged; TensorFlow on one thread. The test that runs it again, killed
# and resumed (test_resume.py), gives these arguments too.
TINY_RUN = ["--nb_filters=4", "--nb_residual_unit=1", "--epochs=2", "--epochs_cont=2",
            "--batch_size=256", "--average_last=2", "--lr_schedule=cosine", "--threads=1"]


# ---- params and runs of main.py ------------------------------------------------------------------

@pytest.fixture
def fresh_params():
    """params as its file sets them, before and after the test (apply_overrides changes it)."""
    import importlib

    import params
    importlib.reload(params)
    yield
    importlib.reload(params)


def main_in_process(args):
    """main.main(args) with params as its file sets them, before and after."""
    import importlib

    import main
    import params
    importlib.reload(params)
    try:
        return main.main(list(args))
    finally:
        importlib.reload(params)


def shared_dir(tmp_path_factory):
    """A folder of this test session that every pytest-xdist worker sees (the session's base
    folder without xdist): what is made there once serves all of them."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def made_once(folder):
    """Yields True to the one process (xdist worker) that must make `folder`, False to the others,
    which wait until it is made."""
    import fcntl
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder.with_name(folder.name + ".done")
        yield not done.exists()
        done.touch()


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """A data folder holding the built-in synthetic city, written once for the session."""
    folder = shared_dir(tmp_path_factory) / "synthetic_data"
    with made_once(folder) as first:
        if first:
            import flowfiles
            import synthetic_city
            synthetic_city.write(str(folder / flowfiles.SYNTHETIC_FILE),
                                 str(folder / flowfiles.SYNTHETIC_HOLIDAY))
    return folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, synthetic_dir):
    """The session's one real `python main.py` run, TINY_RUN on the synthetic city, in a child
    process: (run folder, stdout, stderr)."""
    out = shared_dir(tmp_path_factory) / "tiny_run"
    with made_once(out) as first:
        if first:
            result = run_main(*TINY_RUN, f"--data_dir={synthetic_dir}", f"--out_dir={out}")
            assert result.returncode == 0, result.stderr[-3000:]
            (run_dir,) = out.iterdir()
            (out.parent / "tiny_run.stdout").write_text(result.stdout)
            (out.parent / "tiny_run.stderr").write_text(result.stderr)
            (out.parent / "tiny_run.folder").write_text(str(run_dir))
    # later runs of the same command may add folders to out (test_resume.py): the first is named
    return (Path((out.parent / "tiny_run.folder").read_text()),
            (out.parent / "tiny_run.stdout").read_text(),
            (out.parent / "tiny_run.stderr").read_text())


# A small city: the synthetic city's first 28 days as a flow file of your own (16x8, hourly), so
# the defaults for files apply (lengths 3/1/1, the output bias). Runs on it (SMALL_RUN, 456
# training samples) take a fraction of the synthetic city's time; the ensemble, distribution,
# forecasting and backend tests train on it. With the slot-of-day feature, so that forecasting
# must rebuild it from a run's settings.
SMALL_CITY_DAYS = 28
# float32 whatever the CPU (an own file's preset, fast, would take bfloat16 where it is native):
# the tests compare this run's numbers across backends and runs at float32's tolerance
SMALL_RUN = ["--days_test=2", "--nb_filters=4", "--nb_residual_unit=1", "--epochs=3",
             "--epochs_cont=2", "--batch_size=64", "--average_last=2", "--lr_schedule=cosine",
             "--use_time_of_day=True", "--precision=float32"]


@pytest.fixture(scope="session")
def small_city(tmp_path_factory, synthetic_dir):
    """The small city's file, written once for the session."""
    import flowfiles
    path = shared_dir(tmp_path_factory) / "small_city" / "small_city.h5"
    with made_once(path.parent) as first:
        if first:
            path.parent.mkdir()
            with h5py.File(synthetic_dir / flowfiles.SYNTHETIC_FILE, "r") as f:
                n = SMALL_CITY_DAYS * 24
                write_flow_h5(path, f["date"][:n], f["data"][:n])
    return path


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, small_city):
    """SMALL_RUN on the small city, seed 1337, with 3-step scores, run once for the session in
    the process that first needs it: its run folder. Tests only read it; those that write into
    a run folder take a copy (copy_run)."""
    out = shared_dir(tmp_path_factory) / "small_run"
    with made_once(out) as first:
        if first:
            main_in_process([*SMALL_RUN, "--horizon=3", f"--dataset={small_city}",
                             f"--out_dir={out}"])
    (run_dir,) = out.iterdir()
    return run_dir


def run_results(run_dir):
    """What a finished run folder reports, for runs that must agree exactly: (metrics without
    the training time, history.csv's text, the test predictions)."""
    import json
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    metrics.pop("train_seconds")
    with h5py.File(Path(run_dir) / "test_predictions.h5") as f:
        pred = f["data"][:]
    return metrics, (Path(run_dir) / "history.csv").read_text(), pred


def copy_run(run_dir, dest):
    """A copy of a run folder, for a test that writes into one (forecasts)."""
    import shutil
    return Path(shutil.copytree(run_dir, Path(dest) / Path(run_dir).name))


def run_main(*args, cwd=ROOT):
    """`python main.py *args` in a child process; its output is captured as text."""
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


# ---- time stamps, computed independently with datetime -------------------------------------------

def sid(d, slot, T):
    """Slot number of (date, 1-based slot), computed with datetime: day number * T + slot - 1."""
    return (d - EPOCH).days * T + slot - 1


def from_sid(n, T):
    """Inverse of sid: -> (date, 1-based slot)."""
    n = int(n)
    return EPOCH + timedelta(days=n // T), n % T + 1


def stamp(d, slot):
    return f"{d:%Y%m%d}{slot:02d}"


def stamp_of_sid(n, T):
    d, s = from_sid(n, T)
    return stamp(d, s)


def stamps(first_day, days, T, first_slot=1):
    """Every time stamp of `days` days from first_day, slots numbered from first_slot."""
    return [f"{first_day + timedelta(days=d):%Y%m%d}{s:02d}" for d in range(days)
            for s in range(first_slot, T + first_slot)]


def read_holidays_independently():
    return set(HOLIDAY_PATH.read_bytes().decode("ascii").split())


# ---- small flow files ----------------------------------------------------------------------------

def write_flow_h5(path, dates, data=None, seed=0):
    """A flow file (4x3 grid) of the given time stamps: `data`, else Poisson(30) counts."""
    if data is None:
        data = np.random.default_rng(seed).poisson(30, size=(len(dates), 2, 4, 3)).astype(float)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("date", data=np.array(dates, dtype="S10"))
    return str(path)


def load_small(name, **kw):
    """load_dataset with closeness 1, period 1, no trend and one test day."""
    import datasets
    return datasets.load_dataset(name, "", 1, 1, 0, 1, **kw)


# ---- TaxiBJ in the release format, small ---------------------------------------------------------

BJ_T = 48
BJ_DAYS = 10
BJ_STARTS = {13: date(2013, 9, 11), 14: date(2014, 3, 1), 15: date(2015, 3, 29),
             16: date(2016, 3, 28)}
BJ_MISSING = (14, 8, 17)            # BJ14, day index 8 (2014-03-09), slot 17 is missing
# (year, day index, slot, flow, row, col, value) overrides; other values are in 10..100
BJ_SPECIAL = {
    "incomplete_day_big": (14, 8, 1, 0, 0, 0, 700.0),   # in the incomplete day: dropped
    "train_max": (16, 8, 48, 1, 5, 7, 500.0),           # last frame before the first test target
    "test_big": (16, 9, 5, 0, 1, 2, 1000.0),            # in the test period: not fitted
    "train_min": (13, 2, 3, 1, 3, 3, 3.0),
    "test_small": (16, 9, 6, 0, 0, 0, 1.0),
}
BJ_TEST_WIND_SLOT = (16, 9, 20)      # t-1 of a test target: wind far above the training range
BJ_TEST_TEMP_SLOT = (16, 9, 30)      # t-1 of a test target: temperature far below


def write_taxibj(root, drop_meteo=None):
    """Write BJ13..BJ16 flow files, BJ_Meteorology.h5 and a copy of the real holiday list under
    root/TaxiBJ. Returns the truth: {stamp: (2, 32, 32) data} and {stamp: (weather, wind, temp)}."""
    rng = np.random.default_rng(2017)
    folder = Path(root) / "TaxiBJ"
    folder.mkdir(parents=True)
    flows, meteo = {}, {}
    for year, start in BJ_STARTS.items():
        year_stamps = [stamp(start + timedelta(days=k), s)
                       for k in range(BJ_DAYS) for s in range(1, BJ_T + 1)]
        for st in year_stamps:   # meteorology covers every slot of the period
            meteo[st] = (int(rng.integers(0, 17)), float(rng.uniform(0, 12)),
                         float(rng.uniform(-10, 30)))
        y, d, s = BJ_MISSING
        if year == y:
            year_stamps.remove(stamp(start + timedelta(days=d), s))
        data = rng.integers(10, 101, size=(len(year_stamps), 2, 32, 32)).astype(np.float64)
        for (yy, d, s, f, r, c, v) in BJ_SPECIAL.values():
            if yy == year:
                data[year_stamps.index(stamp(start + timedelta(days=d), s)), f, r, c] = v
        for st, x in zip(year_stamps, data):
            flows[st] = x
        with h5py.File(folder / f"BJ{year}_M32x32_T30_InOut.h5", "w") as f:
            f.create_dataset("data", data=data)
            f.create_dataset("date", data=np.array(year_stamps, dtype="S10"))
    for key, (y, d, s) in {"wind": BJ_TEST_WIND_SLOT, "temp": BJ_TEST_TEMP_SLOT}.items():
        st = stamp(BJ_STARTS[y] + timedelta(days=d), s)
        w, wind, temp = meteo[st]
        meteo[st] = (w, 40.0, temp) if key == "wind" else (w, wind, -50.0)
    keys = [k for k in meteo if k != drop_meteo]
    keys = [keys[i] for i in rng.permutation(len(keys))]   # rows not in time order
    with h5py.File(folder / "BJ_Meteorology.h5", "w") as f:
        f.create_dataset("date", data=np.array(keys, dtype="S10"))
        f.create_dataset("Weather", data=np.eye(17)[[meteo[k][0] for k in keys]])
        f.create_dataset("WindSpeed", data=np.array([meteo[k][1] for k in keys]))
        f.create_dataset("Temperature", data=np.array([meteo[k][2] for k in keys]))
    (folder / "BJ_Holiday.txt").write_bytes(HOLIDAY_PATH.read_bytes())
    return flows, meteo
