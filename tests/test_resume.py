"""Interrupted runs (main.py's --resume, checkpoint.py): a real SIGINT (as Ctrl-C) of `python
main.py` in stage 2, then the same command with --resume, ends with exactly the metrics, history
and predictions of the uninterrupted run of that command, the session's tiny run (tolerance 0:
every epoch's sample order is a function of (seed, stage, epoch), and weights and optimizer state
are restored bit for bit); and a crash while a checkpoint is written leaves the previous one
whole. The deterministic crash points (stage 1 to 2, within stage 1, before metrics.json, an
ensemble's second member) are test_ensemble.py's."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import checkpoint
from conftest import ROOT, TINY_RUN, main_in_process, run_results

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def test_a_run_killed_by_a_signal_resumes_to_the_uninterrupted_result(tiny_run, synthetic_dir,
                                                                      capsys):
    whole, _, _ = tiny_run
    assert not (whole / checkpoint.CHECKPOINT).exists()  # removed once the results are written
    out = whole.parent  # the same command again: a new folder beside the first
    before = set(out.iterdir())
    first_metrics = (whole / "metrics.json").read_bytes()
    args = [*TINY_RUN, f"--data_dir={synthetic_dir}", f"--out_dir={out}"]
    # SIGINT as at a terminal: pytest started as a background job would pass on SIG_IGN for it,
    # and Python installs no KeyboardInterrupt handler for an ignored signal
    proc = subprocess.Popen([sys.executable, "main.py", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:
            if line.startswith("stage 2 epoch 1/2"):  # mid stage 2: cosine rate, averaging begun
                proc.send_signal(signal.SIGINT)
                break
        else:
            pytest.fail("the run ended without printing 'stage 2 epoch 1/2'")
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "trained in" not in rest
    (run_dir,) = set(out.iterdir()) - before
    assert not (run_dir / "metrics.json").exists()
    # a clear message with the command that continues the run
    assert f"--resume={run_dir}" in err and "Traceback" not in err

    capsys.readouterr()
    main_in_process([*args, f"--resume={run_dir}"])
    assert "resuming from the checkpoint: stage 2, " in capsys.readouterr().out
    assert set(out.iterdir()) - before == {run_dir}  # no third folder
    assert (whole / "metrics.json").read_bytes() == first_metrics  # the first run untouched
    metrics, history, pred = run_results(run_dir)
    want = run_results(whole)
    assert metrics == want[0]
    assert history == want[1]
    np.testing.assert_array_equal(pred, want[2])


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
