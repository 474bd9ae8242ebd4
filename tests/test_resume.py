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

    class optimizer:
        variables = [np.zeros(2, np.float32)]

    def get_weights(self):
        return [np.ones(2)]


@pytest.mark.smoke
def test_ctrl_c_inside_c_code_counts_as_an_interruption():
    """A KeyboardInterrupt that lands inside a C function comes out as a SystemError caused by
    it (seen when the rate is set at the start of a stage-2 epoch); main must still say how to
    resume, not print a traceback."""
    import main
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as stop:
            raise SystemError("<built-in method __array__> returned a result with an "
                              "exception set") from stop
    except SystemError as err:
        wrapped = err
    assert main.interrupted(wrapped) and main.interrupted(KeyboardInterrupt())
    assert not main.interrupted(SystemError("a real one")) and not main.interrupted(None)
    try:   # raised while handling the interrupt (its __context__) counts too
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("during cleanup")
    except RuntimeError as err:
        assert main.interrupted(err)


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


@pytest.mark.usefixtures("fresh_params")
def test_a_checkpoint_restores_weights_and_optimizer_bit_for_bit_in_both_formats(synthetic_dir,
                                                                                 tmp_path):
    import datasets
    import settings
    import training
    settings.apply_overrides(["--nb_filters=4", "--nb_residual_unit=1", "--batch_norm=True",
                              "--weight_decay=0.1"])
    cfg = settings.resolve_config()
    ds = datasets.load_dataset("synthetic", str(synthetic_dir), cfg["len_closeness"],
                               cfg["len_period"], cfg["len_trend"], 10, True, cfg["use_holiday"])

    def fresh():
        return training.build_and_compile(cfg, ds)
    model = fresh()
    training.fit_one_epoch(model, ds, np.arange(64), dict(cfg, batch_size=32), 1, 0)
    weights = model.get_weights()   # with batch norm's moving statistics, which fitting moved
    optimizer = [np.array(v) for v in model.optimizer.variables]
    assert int(optimizer[0]) == 2 and any(np.abs(o).sum() > 0 for o in optimizer[2:])
    saved = checkpoint.Checkpoint(str(tmp_path / "new"))
    saved.save(model, {"epoch": 1}, {})
    model.save_weights(tmp_path / "model-1.weights.h5")   # the format before the .npz
    (tmp_path / "old" / "checkpoint").mkdir(parents=True)
    (tmp_path / "model-1.weights.h5").rename(tmp_path / "old" / "checkpoint" / "model-1.weights.h5")
    (tmp_path / "old" / "checkpoint" / "state.json").write_text(json.dumps(
        {"epoch": 1, "files": {"model": "model-1.weights.h5"}, "count": 1}))
    for run in ("new", "old"):
        restored = fresh()
        state = checkpoint.Checkpoint(str(tmp_path / run)).load(restored)
        assert state["epoch"] == 1
        for got, want in zip(restored.get_weights(), weights, strict=True):
            np.testing.assert_array_equal(got, want)
        for got, want in zip(restored.optimizer.variables, optimizer, strict=True):
            np.testing.assert_array_equal(np.array(got), want)
