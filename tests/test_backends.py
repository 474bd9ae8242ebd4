"""backend.py, and the whole job under the JAX and PyTorch backends, each in one child process
(tests/backend_job.py) with TensorFlow made impossible to import: both training stages with an
ensemble, weight averaging, weight decay, the Huber loss, bfloat16 and multi-step evaluation; a
run stopped in its second member and resumed that ends with exactly the uninterrupted run's
metrics (which also shows that the seed alone fixes a run on one backend); model files that cross
backends both ways with the same forecasts to float32's tolerance (bfloat16's for a bfloat16
model); and, under JAX, data parallelism over two devices that matches one device. Also
backend.py's own checks: what each backend refuses, and which precision 'auto' picks on which
hardware.

PyTorch's tests need it installed (pip install -r requirements-torch.txt); without it they are
skipped with that line as the reason."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import backend
import settings
from conftest import ROOT, copy_run, main_in_process

def env(name, blocked):
    """The environment of a process on backend `name`, where `import tensorflow` fails. JAX
    keeps its compiled steps in a cache (the same programs, so the same results; each model
    of the job compiles the same steps), and compiles them without XLA's backend optimisations:
    the job's CPU time falls from 125 s to 83 s here, and what the tests compare is made under
    the same flags (a run and its resumed copy, one device and two) or compared to a tolerance
    (forecasts across backends). PyTorch runs on one thread: pytest-xdist's other worker uses
    the second core (45 s of CPU time for the job on two threads, 40 s on one)."""
    extra = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
                          "--xla_backend_optimization_level=0"} if name == "jax" else {
        "OMP_NUM_THREADS": "1"}
    return {**os.environ, "KERAS_BACKEND": name, "PYTHONPATH": str(blocked),
            "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
            "JAX_COMPILATION_CACHE_DIR": str(blocked.parent / "jax_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0", **extra}


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    """A folder whose `tensorflow` package raises ImportError, put first on the path."""
    folder = tmp_path_factory.mktemp("no_tensorflow")
    (folder / "tensorflow").mkdir()
    (folder / "tensorflow" / "__init__.py").write_text(
        "raise ImportError('TensorFlow is blocked in this test')\n")
    return folder


def metrics(run_dir):
    m = json.loads((Path(run_dir) / "metrics.json").read_text())
    m.pop("train_seconds")
    return m


def only(folder):
    (run_dir,) = Path(folder).iterdir()
    return run_dir


def forecast_file(run_dir, before=()):
    """The data of the run folder's one forecast file that is not in `before`."""
    (path,) = set(Path(run_dir).glob("forecast-*.h5")) - set(before)
    with h5py.File(path) as f:
        return f["data"][:]


def forecast_here(run_dir, tmp_path):
    """A 2-step forecast by this process's TensorFlow, from a copy of the run folder."""
    copy = copy_run(run_dir, tmp_path / Path(run_dir).parent.name)
    before = list(copy.glob("forecast-*.h5"))
    main_in_process([f"--forecast_from={copy}", "--horizon=2"])
    return forecast_file(copy, before)


def test_the_import_guard_blocks_tensorflow(blocked):
    result = subprocess.run([sys.executable, "-c", "import tensorflow"], text=True,
                            capture_output=True, env=env("jax", blocked))
    assert result.returncode != 0 and "TensorFlow is blocked" in result.stderr


class Job:
    """The tests of one backend's job; TestJax and TestPyTorch name the backend. Each class is
    one scope for pytest-xdist (--dist loadscope), so the two jobs can run side by side."""
    backend = None

    @pytest.fixture(scope="class")
    @classmethod
    def job(cls, request, blocked, tmp_path_factory, small_city):
        """tests/backend_job.py's folder under the backend: whole/, killed/, the forecasts, and
        under JAX one/ and two/; what each step printed is in <step>.txt. The float32 run
        folder made under TensorFlow that it forecasts with (the session's small run) is made,
        or waited for, while the job trains."""
        name = cls.backend
        out = tmp_path_factory.mktemp(f"job_{name}")
        proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "backend_job.py"),
                                 str(out), str(small_city)], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env(name, blocked))
        try:
            (out / "tf_run.tmp").write_text(str(request.getfixturevalue("small_run")))
            (out / "tf_run.tmp").rename(out / "tf_run.txt")
            _, stderr = proc.communicate(timeout=600)
        finally:
            proc.kill()
        assert proc.returncode == 0, stderr[-3000:]
        return name, out

    def test_the_whole_job_runs_without_tensorflow(self, job):
        name, out = job
        run_dir, stdout = only(out / "whole"), (out / "whole.txt").read_text()
        m = metrics(run_dir)
        assert m["precision"] == "mixed_bfloat16" and m["member_seeds"] == [1337, 1338]
        assert m["epochs_stage1_members"] == [3, 3] and m["epochs_stage2_members"] == [2, 2]
        params = json.loads((run_dir / "params.json").read_text())
        assert params["backend"] == name and params["jit_compile"] == backend.JIT_COMPILE[name]
        for key in ("rmse", "rmse_stage1", "rmse_member1", "rmse_member2"):
            assert np.isfinite(m[key]), key
        assert "averaged: 1" in stdout and (run_dir / "horizon.csv").is_file()
        # each member learned: stage 1's validation RMSE fell from its first epoch to its last
        for member in ("member1", "member2"):
            rows = (run_dir / member / "history.csv").read_text().splitlines()[1:4]
            val = [float(r.split(",")[5]) for r in rows]
            assert val[-1] < val[0], (member, val)

    def test_a_stopped_run_resumes_to_the_same_metrics(self, job):
        name, out = job
        resumed = (out / "resumed.txt").read_text()
        assert "resuming from the checkpoint: both stages done" in resumed  # member 1
        assert "resuming from the checkpoint: stage 1, 1 epoch(s) of it done" in resumed
        assert metrics(only(out / "killed")) == metrics(only(out / "whole"))

    def test_model_files_cross_backends(self, job, small_run, tmp_path):
        name, out = job
        # a float32 model, made under TensorFlow (the session's small run): float32's tolerance
        theirs, ours = forecast_file(out / "tf_run"), forecast_here(small_run, tmp_path)
        assert theirs.shape == ours.shape == (2, 2, 16, 8)
        np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4 * np.abs(ours).max())
        # the backend's bfloat16 model: each backend sums its bfloat16 products in its own
        # order, so they agree to bfloat16's precision (8 bits: 0.4% a rounding), within 1% of
        # the largest flow
        whole = only(out / "whole")
        own, by_tf = forecast_file(whole), forecast_here(whole, tmp_path)
        assert np.abs(by_tf - own).max() <= 0.01 * np.abs(own).max()
        assert np.abs(by_tf - own).mean() <= 0.002 * np.abs(own).max()


class TestJax(Job):
    backend = "jax"

    def test_data_parallel_over_two_devices_matches_one_device(self, job):
        name, out = job
        two = (out / "two.txt").read_text()
        assert "distribute=mirrored: 2 replicas, 32 samples each per step" in two
        assert "every local replica holds the same weights: True" in two
        assert metrics(only(out / "two"))["rmse"] == pytest.approx(
            metrics(only(out / "one"))["rmse"], rel=0.01)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed: pip install -r requirements-torch.txt")
class TestPyTorch(Job):  # its distribution is refused (test_a_backend_refuses_what_it_cannot_do)
    backend = "torch"


def test_a_backend_refuses_what_it_cannot_do(monkeypatch):
    # the rules, whichever backends are installed here
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.raises(backend.BackendError, match="not available under KERAS_BACKEND=torch"):
        backend.check(distribute="mirrored")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(backend.BackendError, match="multiworker .* not available under"):
        backend.check(distribute="multiworker")
    with pytest.raises(backend.BackendError, match="threads is not available"):
        backend.check(threads=1)
    monkeypatch.setenv("KERAS_BACKEND", "mxnet")
    with pytest.raises(backend.BackendError, match="not one of tensorflow, jax, torch"):
        backend.check()
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(backend.BackendError,
                       match="jax is not installed: pip install -r requirements-jax.txt"):
        backend.check()


@pytest.mark.usefixtures("fresh_params")
@pytest.mark.parametrize("flags, expected", [
    (["fpu", "avx512f", "avx512_bf16"], "mixed_bfloat16"),
    (["fpu", "amx_tile", "amx_bf16"], "mixed_bfloat16"),
    (["fpu", "avx2", "avx512f"], "float32"),  # bfloat16 would be emulated: slower, not faster
    ([], "float32"),  # no /proc/cpuinfo
])
def test_precision_auto_picks_bfloat16_only_on_native_hardware(monkeypatch, flags, expected):
    monkeypatch.setattr(backend, "cpu_flags", lambda: flags)
    policy, why = backend.resolve_precision("auto")
    assert policy == expected and why.startswith("auto:")
    assert backend.resolve_precision("float32") == ("float32", "as set")
    assert backend.resolve_precision("mixed_bfloat16")[0] == "mixed_bfloat16"
    settings.apply_overrides(["--precision=auto"])
    assert settings.resolve_config()["precision"] == "auto"
    settings.apply_overrides(["--precision=bf16"])
    with pytest.raises(settings.ConfigError, match="precision must be one of"):
        settings.resolve_config()


def test_precision_auto_keeps_float32_under_jax_on_a_bfloat16_cpu(monkeypatch):
    # JAX's CPU compiler trains slower in bfloat16 than in float32 (docs/backends.md, speed table)
    monkeypatch.setattr(backend, "cpu_flags", lambda: ["avx512f", "amx_bf16"])
    monkeypatch.setattr(backend, "gpu_capabilities", lambda: [])
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert backend.resolve_precision("auto")[0] == "float32"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert backend.resolve_precision("auto")[0] == "mixed_bfloat16"
    monkeypatch.setattr(backend, "gpu_capabilities", lambda: [(9, 0)])
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert backend.resolve_precision("auto") == ("mixed_bfloat16",
                                                 "auto: the GPU has compute capability 9.0")
