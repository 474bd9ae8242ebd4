"""Interrupted runs (main.py's --resume, checkpoint.py): a real kill (SIGKILL; SIGINT, as Ctrl-C) of
main.py in either stage, then the same command with --resume, ends with exactly the metrics, history
and predictions of an uninterrupted run with the same seed (tolerance 0: every epoch's sample order
is a function of (seed, stage, epoch), and weights and optimizer state are restored bit for bit);
and a crash while a checkpoint is written leaves the previous one whole (checkpoint.py)."""
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import checkpoint
import report
import run_folder
from conftest import ROOT

ARGS = ["--nb_filters=4", "--nb_residual_unit=1", "--epochs=4", "--epochs_cont=3",
        "--batch_size=64", "--average_last=2", "--lr_schedule=cosine", "--patience=3"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def run(*args):
    return subprocess.run([sys.executable, "main.py", *ARGS, *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=600, env=ENV)


def results(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("train_seconds")
    with open(run_dir / "history.csv") as f:
        history = list(csv.reader(f))
    with h5py.File(run_dir / "test_predictions.h5") as f:
        pred = f["data"][:]
    return metrics, history, pred


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    result = run(f"--out_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = out.iterdir()
    assert not (run_dir / checkpoint.CHECKPOINT).exists()  # removed once the results are written
    return results(run_dir)


@pytest.mark.parametrize("sig, after_line", [
    (signal.SIGKILL, "stage 1 epoch 2/4"),
    (signal.SIGINT, "stage 2 epoch 2/3"),
])
def test_killed_run_resumes_to_the_same_result(tmp_path, uninterrupted, sig, after_line):
    # SIGINT as at a terminal: pytest started as a background job would pass on SIG_IGN for it,
    # and Python installs no KeyboardInterrupt handler for an ignored signal
    proc = subprocess.Popen([sys.executable, "main.py", *ARGS, f"--out_dir={tmp_path}"],
                            cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:
            if line.startswith(after_line):
                proc.send_signal(sig)
                break
        else:
            pytest.fail(f"the run ended without printing {after_line!r}")
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "trained in" not in rest
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "metrics.json").exists()
    if sig == signal.SIGINT:  # a clear message with the command that continues the run
        assert f"--resume={run_dir}" in err and "Traceback" not in err

    resumed = run(f"--out_dir={tmp_path}", f"--resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint" in resumed.stdout
    assert list(tmp_path.iterdir()) == [run_dir]  # no second folder
    metrics, history, pred = results(run_dir)
    assert metrics == uninterrupted[0]
    assert history == uninterrupted[1]
    np.testing.assert_array_equal(pred, uninterrupted[2])


@pytest.mark.parametrize("where", ["stage 1 to 2", "before metrics.json"])
def test_a_crash_at_a_stage_boundary_resumes_to_the_same_result(tmp_path, uninterrupted,
                                                                monkeypatch, where):
    """Deterministic kill points the real kills above rarely hit: between stage 1's last epoch
    and the transition's checkpoint, and after training before the run's results are written."""
    import importlib

    import main
    import params

    class Crash(Exception):
        pass

    def crash(*args, **kwargs):
        raise Crash
    if where == "stage 1 to 2":
        monkeypatch.setattr(report, "predict_test", crash)  # first called for stage 1's predictions
    else:
        real = run_folder.write_json
        monkeypatch.setattr(run_folder, "write_json", lambda path, obj: crash() if path.endswith(
            "metrics.json") else real(path, obj))
    importlib.reload(params)
    with pytest.raises(Crash):
        main.main([*ARGS, "--verbose=0", f"--out_dir={tmp_path}"])
    monkeypatch.undo()
    importlib.reload(params)
    (run_dir,) = tmp_path.iterdir()
    main.main([*ARGS, "--verbose=0", f"--out_dir={tmp_path}", f"--resume={run_dir}"])
    importlib.reload(params)
    metrics, history, pred = results(run_dir)
    assert metrics == uninterrupted[0] and history == uninterrupted[1]
    np.testing.assert_array_equal(pred, uninterrupted[2])


class Tiny:
    """Just what Checkpoint.save uses of a model."""

    def save_weights(self, path):
        Path(path).write_text("weights")


def test_a_crash_while_saving_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    ckpt = checkpoint.Checkpoint(str(tmp_path))
    model = Tiny()
    ckpt.save(model, {"epoch": 1}, {"best": [np.ones(3)]})

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(checkpoint.json, "dump", crash)
    with pytest.raises(OSError):
        ckpt.save(model, {"epoch": 2}, {"best": [np.zeros(3)]})
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1
    for name in state["files"].values():  # every file it names is still there
        assert (tmp_path / "checkpoint" / name).is_file()
    with np.load(tmp_path / "checkpoint" / state["files"]["best"]) as z:
        np.testing.assert_array_equal(z["a0"], np.ones(3))
