"""main.py with ensemble=k: k models trained in turn (seeds seed .. seed+k-1), saved as one
model.keras that averages them. Each member is exactly the single run of its seed (member 2 of an
ensemble from seed 1336 is the session's small run, seed 1337), and an ensemble crashed at each
boundary a run can stop at (within stage 1 of its second member, its stage 1 to 2, after
training before metrics.json) and resumed each time ends with exactly the uninterrupted result."""
import contextlib
import csv
import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import datasets
import pipeline
import report
import run_folder
import training
from conftest import SMALL_RUN, main_in_process, run_results

ARGS = [*SMALL_RUN, "--ensemble=2", "--seed=1336"]
pytestmark = pytest.mark.xdist_group("ensemble")  # its tests share ensemble_run: one worker


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory, small_city):
    out = tmp_path_factory.mktemp("ensemble")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_dir = main_in_process([*ARGS, f"--dataset={small_city}", f"--out_dir={out}"])
    return Path(run_dir), printed.getvalue()


def test_each_member_is_the_single_run_of_its_seed_and_the_model_averages_them(
        ensemble_run, small_run, small_city):
    run_dir, stdout = ensemble_run
    m = json.loads((run_dir / "metrics.json").read_text())
    alone = json.loads((small_run / "metrics.json").read_text())  # seed 1337, one model
    assert m["member_seeds"] == [1336, 1337]
    assert m["rmse_member2"] == alone["rmse"] and m["mae_member2"] == alone["mae"]
    assert m["epochs_stage1"] == 6 and m["epochs_stage2"] == 4  # both members' epochs
    assert m["epochs_stage1_members"] == [3, 3] and m["epochs_stage2_members"] == [2, 2]
    assert "member 1 alone (seed 1336)" in stdout and "member 2 alone (seed 1337)" in stdout

    # model.keras alone: its output is the mean of its two members'
    import keras
    import modules  # noqa: F401  (registers the fusion layer)
    model = keras.saving.load_model(run_dir / "model.keras")
    cfg = json.loads((run_dir / "params.json").read_text())
    ds = datasets.load_dataset(str(small_city), "", cfg["len_closeness"],
                               cfg["len_period"], cfg["len_trend"], cfg["days_test"],
                               cfg["use_meta"], cfg["use_holiday"], cfg["use_meteorology"],
                               use_time_of_day=cfg["use_time_of_day"])
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
        (mem, str(e), s) for mem in "12" for e, s in zip(range(1, 6), "11122")]
    assert (run_dir / "member2" / "history.csv").is_file()
    assert not any(p.name == "checkpoint" for p in run_dir.rglob("*"))


class Crash(Exception):
    pass


def crash(*args, **kwargs):
    raise Crash


def test_an_ensemble_crashed_at_each_boundary_resumes_to_the_same_result(
        ensemble_run, small_city, tmp_path, monkeypatch, capsys):
    """Deterministic stop points that a real kill (test_resume.py) rarely hits, one after the
    other in one run folder, each followed by the same command with --resume."""
    args = [*ARGS, f"--dataset={small_city}", f"--out_dir={tmp_path}"]
    # 1. in the second member's stage 1: its first epoch done, its second never finished
    real_epoch = training.fit_one_epoch

    def second_members_second_epoch(model, ds, rows, cfg, stage, epoch):
        if cfg["seed"] == 1337 and (stage, epoch) == (1, 1):
            raise Crash
        return real_epoch(model, ds, rows, cfg, stage, epoch)
    monkeypatch.setattr(training, "fit_one_epoch", second_members_second_epoch)
    with pytest.raises(Crash):
        main_in_process(args)
    monkeypatch.undo()
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "metrics.json").exists()
    args.append(f"--resume={run_dir}")

    # 2. between the second member's last stage-1 epoch and the transition's checkpoint
    monkeypatch.setattr(report, "predict_test", crash)  # called for its stage-1 predictions
    capsys.readouterr()
    with pytest.raises(Crash):
        main_in_process(args)
    monkeypatch.undo()
    printed = capsys.readouterr().out
    assert "resuming from the checkpoint: both stages done" in printed  # member 1
    assert "resuming from the checkpoint: stage 1, 1 epoch(s) of it done" in printed  # member 2

    # 3. after training, before metrics.json marks the run finished
    real_write = run_folder.write_json
    monkeypatch.setattr(run_folder, "write_json", lambda path, obj: crash() if path.endswith(
        "metrics.json") else real_write(path, obj))
    with pytest.raises(Crash):
        main_in_process(args)
    monkeypatch.undo()
    # member 2 stopped with its stage 1 done but not yet marked so
    assert "resuming from the checkpoint: stage 1, 3 epoch(s) of it done" in \
        capsys.readouterr().out
    assert not (run_dir / "metrics.json").exists()

    main_in_process(args)
    assert capsys.readouterr().out.count("resuming from the checkpoint: both stages done") == 2
    assert list(tmp_path.iterdir()) == [run_dir]
    got, want = run_results(run_dir), run_results(ensemble_run[0])
    assert got[0] == want[0] and got[1] == want[1]
    np.testing.assert_array_equal(got[2], want[2])
