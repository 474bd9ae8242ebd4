"""Run by test_backends.py in a child process under KERAS_BACKEND=jax or torch, with TensorFlow
blocked: everything that test module checks of one backend, in one process (one start-up and,
under JAX, one compilation cache instead of one per step).

    python tests/backend_job.py <out folder> <a flow file: the tests' small city>

The test writes <out>/tf_run.txt, the path of a float32 run folder made under TensorFlow, while
this process trains; step 3 waits for it.

1. the whole job (ARGS: both stages, an ensemble, averaging, weight decay, Huber, bfloat16,
   multi-step scores) into <out>/whole;
2. the same command stopped in member 2's stage 1 (its first epoch done, its second not), then
   resumed, into <out>/killed;
3. 2-step forecasts from <out>/whole's model and from a copy of the TensorFlow run;
4. under JAX, started with two host devices: a one-device and a distribute=mirrored run of
   DP_ARGS (uneven batches, padded), into <out>/one and <out>/two; mirrored last, since it sets
   the process's distribution.
What each step printed is written to <out>/<step>.txt."""
import contextlib
import importlib
import io
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import backend  # noqa: E402
import main  # noqa: E402
import params  # noqa: E402
import training  # noqa: E402

ARGS = ["--days_test=2", "--nb_filters=4", "--nb_residual_unit=1", "--epochs=3",
        "--epochs_cont=2", "--batch_size=64", "--ensemble=2", "--average_last=1",
        "--weight_decay=0.1", "--loss=huber", "--horizon=2", "--precision=mixed_bfloat16",
        "--output_bias=False", "--verbose=2"]  # untrained, far off: each member clearly learns
# 409 training rows: the last batch (25) does not split evenly among 2 devices, nor do the 47
# validation rows, so they are padded with samples weighted 0 (pipeline.PAD_TO)
DP_ARGS = ["--days_test=2", "--nb_filters=4", "--nb_residual_unit=1", "--epochs=2",
           "--epochs_cont=1", "--batch_size=64", "--validation_fraction=0.102"]


class Crash(Exception):
    pass


def step(out, name, args):
    """main.main(args) with fresh params; what it printed goes to <out>/<name>.txt."""
    importlib.reload(params)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            return main.main(args)
    finally:
        (out / f"{name}.txt").write_text(printed.getvalue())
        importlib.reload(params)


def stopped_in_member2(out, data):
    real = training.fit_one_epoch

    def epoch(model, ds, rows, cfg, stage, number):
        if cfg["seed"] == 1338 and (stage, number) == (1, 1):
            raise Crash
        return real(model, ds, rows, cfg, stage, number)
    training.fit_one_epoch = epoch
    try:
        step(out, "killed", [*ARGS, data, f"--out_dir={out / 'killed'}"])
    except Crash:
        pass
    finally:
        training.fit_one_epoch = real
    (run_dir,) = (out / "killed").iterdir()
    assert not (run_dir / "metrics.json").exists()
    step(out, "resumed", [*ARGS, data, f"--out_dir={out / 'killed'}", f"--resume={run_dir}"])


def tf_run_of(out, seconds=600):
    """The TensorFlow run folder the test names in <out>/tf_run.txt, once it is there."""
    named = out / "tf_run.txt"
    for _ in range(seconds * 10):
        if named.exists():
            return Path(named.read_text())
        time.sleep(0.1)
    raise TimeoutError(f"{named} was not written")


def job(out, city):
    data = f"--dataset={city}"
    whole = step(out, "whole", [*ARGS, data, f"--out_dir={out / 'whole'}"])
    stopped_in_member2(out, data)
    step(out, "forecast_own", [f"--forecast_from={whole}", "--horizon=2"])
    theirs = shutil.copytree(tf_run_of(out), out / "tf_run")
    step(out, "forecast_tf", [f"--forecast_from={theirs}", "--horizon=2"])
    if backend.name() == "jax":
        step(out, "one", [*DP_ARGS, data, f"--out_dir={out / 'one'}"])
        step(out, "two", [*DP_ARGS, data, "--distribute=mirrored", f"--out_dir={out / 'two'}"])


if __name__ == "__main__":
    job(Path(sys.argv[1]), sys.argv[2])
    os._exit(0)  # skip the framework's slow teardown
