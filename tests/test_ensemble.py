"""main.py with ensemble=k: k models trained in turn (seeds seed .. seed+k-1), saved as one
model.keras that averages them. Each member is exactly the single run of its seed, and a killed
ensemble run resumes to the same result."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import datasets
import pipeline
from conftest import ROOT, kill_in_second_member

ARGS = ["--nb_filters=4", "--nb_residual_unit=1", "--epochs=2", "--epochs_cont=2",
        "--batch_size=64", "--average_last=1", "--threads=1"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run(*args):
    return subprocess.run([sys.executable, "main.py", *ARGS, *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=600, env=ENV)


def only_folder(out):
    (run_dir,) = Path(out).iterdir()
    return run_dir


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ensemble")
    result = run("--ensemble=2", "--seed=5", f"--data_dir={tmp / 'data'}", f"--out_dir={tmp / 'e'}")
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, only_folder(tmp / "e"), result.stdout


def test_each_member_is_the_single_run_of_its_seed_and_the_model_averages_them(ensemble_run):
    tmp, run_dir, stdout = ensemble_run
    single = run("--seed=6", f"--data_dir={tmp / 'data'}", f"--out_dir={tmp / 's'}")
    assert single.returncode == 0, single.stderr[-3000:]
    m = json.loads((run_dir / "metrics.json").read_text())
    alone = json.loads((only_folder(tmp / "s") / "metrics.json").read_text())
    assert m["member_seeds"] == [5, 6]
    assert m["rmse_member2"] == alone["rmse"] and m["mae_member2"] == alone["mae"]
    assert m["epochs_stage1"] == 4 and m["epochs_stage2"] == 4  # both members' epochs
    assert m["epochs_stage1_members"] == [2, 2] and m["epochs_stage2_members"] == [2, 2]
    assert "member 1 alone (seed 5)" in stdout and "member 2 alone (seed 6)" in stdout

    # model.keras alone: its output is the mean of its two members'
    import keras
    import modules  # noqa: F401  (registers the fusion layer)
    model = keras.saving.load_model(run_dir / "model.keras")
    cfg = json.loads((run_dir / "params.json").read_text())
    ds = datasets.load_dataset("synthetic", str(tmp / "data"), cfg["len_closeness"],
                               cfg["len_period"], cfg["len_trend"], cfg["days_test"],
                               cfg["use_meta"], cfg["use_holiday"], cfg["use_meteorology"])
    ds.scaler = datasets.MinMaxScaler.from_dict(json.loads((run_dir / "scaler.json").read_text()))
    x = next(iter(pipeline.batches(ds, np.arange(ds.n_train, ds.n_samples), 240)))[0]
    both = [model.get_layer(f"member{i}").predict(x, verbose=0) for i in (1, 2)]
    assert not np.allclose(both[0], both[1])
    np.testing.assert_allclose(model.predict(x, verbose=0), np.mean(both, axis=0), atol=1e-6)
    with h5py.File(run_dir / "test_predictions.h5") as f:
        err = f["data"][()] - f["truth"][()]
    assert np.sqrt(np.mean(err ** 2)) == pytest.approx(m["rmse"], rel=1e-5)
    member1 = np.moveaxis(ds.scaler.inverse_transform(both[0]), -1, 1)
    with h5py.File(run_dir / "test_predictions.h5") as f:
        assert np.sqrt(np.mean((member1 - f["truth"][()]) ** 2)) == pytest.approx(
            m["rmse_member1"], rel=1e-5)

    # histories: one per member, and the run's with a member column; no checkpoint left
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [(r["member"], r["epoch"], r["stage"]) for r in rows] == [
        (mem, str(e), s) for mem in "12" for e, s in zip(range(1, 5), "1122")]
    assert (run_dir / "member2" / "history.csv").is_file()
    assert not any(p.name == "checkpoint" for p in run_dir.rglob("*"))


def test_an_ensemble_killed_in_its_second_member_resumes_to_the_same_result(ensemble_run,
                                                                            tmp_path):
    tmp, whole, _ = ensemble_run
    kill_in_second_member([*ARGS, "--ensemble=2", "--seed=5", f"--data_dir={tmp / 'data'}",
                           f"--out_dir={tmp_path}"], ENV, "stage 1 epoch 1/2", ROOT)
    run_dir = only_folder(tmp_path)
    assert not (run_dir / "metrics.json").exists()
    resumed = run("--ensemble=2", "--seed=5", f"--data_dir={tmp / 'data'}",
                  f"--out_dir={tmp_path}", f"--resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint: both stages done" in resumed.stdout  # member 1
    # member 2 goes on from its last saved epoch (the kill may land after epoch 1 or 2)
    assert resumed.stdout.count("resuming from the checkpoint: stage ") == 1
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, whole))
    got.pop("train_seconds"), want.pop("train_seconds")
    assert got == want
