"""backend.py, and the whole job under the JAX and PyTorch backends, each in its own process with
TensorFlow made impossible to import: both training stages with an ensemble, weight averaging,
weight decay, the Huber loss, bfloat16 and multi-step evaluation; a kill and --resume that end with
exactly the uninterrupted run's metrics (which also shows that the seed alone fixes a run on one
backend); and model files that cross backends both ways with the same forecasts to float32's
tolerance (bfloat16's for a bfloat16 model). Also backend.py's own checks: what each backend
refuses, and which precision 'auto' picks on which hardware.

PyTorch's tests need it installed (pip install -r requirements-torch.txt; CI does)."""
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
import main
import settings
from conftest import ROOT, TINY, kill_in_second_member

ARGS = ["--nb_filters=4", "--nb_residual_unit=1", "--epochs=3", "--epochs_cont=2",
        "--batch_size=256", "--ensemble=2", "--average_last=1", "--weight_decay=0.1",
        "--loss=huber", "--horizon=2", "--precision=mixed_bfloat16", "--verbose=2"]
BACKENDS = [pytest.param("jax"), pytest.param("torch", marks=pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="PyTorch is not installed: pip install -r requirements-torch.txt"))]


def env(name, blocked):
    """The environment of a process on backend `name`, where `import tensorflow` fails. JAX
    keeps its compiled steps in a cache that the test processes share (the same programs, so the
    same results; it saves the tests most of their compile time)."""
    return {**os.environ, "KERAS_BACKEND": name, "PYTHONPATH": str(blocked),
            "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
            "JAX_COMPILATION_CACHE_DIR": str(blocked.parent / "jax_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    """A folder whose `tensorflow` package raises ImportError, put first on the path."""
    folder = tmp_path_factory.mktemp("no_tensorflow")
    (folder / "tensorflow").mkdir()
    (folder / "tensorflow" / "__init__.py").write_text(
        "raise ImportError('TensorFlow is blocked in this test')\n")
    return folder


def run(name, blocked, *args):
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=600, env=env(name, blocked))


def metrics(run_dir):
    m = json.loads((Path(run_dir) / "metrics.json").read_text())
    m.pop("train_seconds")
    return m


def forecast(run_dir, name=None, blocked=None):
    """A 2-step forecast from the run folder (this process's TensorFlow when name is None)."""
    before = set(Path(run_dir).glob("forecast-*.h5"))
    if name is None:
        main.main([f"--forecast_from={run_dir}", "--horizon=2"])
    else:
        result = run(name, blocked, f"--forecast_from={run_dir}", "--horizon=2")
        assert result.returncode == 0, result.stderr[-3000:]
    (path,) = set(Path(run_dir).glob("forecast-*.h5")) - before
    with h5py.File(path) as f:
        return f["data"][:]


def test_the_import_guard_blocks_tensorflow(blocked):
    result = subprocess.run([sys.executable, "-c", "import tensorflow"], text=True,
                            capture_output=True, env=env("jax", blocked))
    assert result.returncode != 0 and "TensorFlow is blocked" in result.stderr


@pytest.fixture(scope="module")
def tf_run(tmp_path_factory):
    """A small run made by this process, under TensorFlow."""
    out = tmp_path_factory.mktemp("tf_run")
    return main.main([*TINY, "--verbose=0", f"--out_dir={out}"])


@pytest.fixture(scope="module", params=BACKENDS)
def whole(request, blocked, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(f"whole_{name}")
    result = run(name, blocked, *ARGS, f"--out_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = out.iterdir()
    return name, run_dir, result.stdout


def test_the_whole_job_runs_without_tensorflow(whole):
    name, run_dir, stdout = whole
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


def test_a_killed_run_resumes_to_the_same_metrics(whole, blocked, tmp_path):
    name, run_dir, _ = whole
    # killed in member 2's stage 1, after member 1 has finished
    kill_in_second_member([*ARGS, f"--out_dir={tmp_path}"], env(name, blocked),
                          "stage 1 epoch 2/3", ROOT)
    (killed,) = tmp_path.iterdir()
    assert not (killed / "metrics.json").exists()
    resumed = run(name, blocked, *ARGS, f"--out_dir={tmp_path}", f"--resume={killed}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint" in resumed.stdout
    assert metrics(killed) == metrics(run_dir)


def test_model_files_cross_backends(whole, blocked, tf_run):
    name, run_dir, _ = whole
    # a float32 model, made here under TensorFlow: float32's tolerance
    theirs, ours = forecast(tf_run, name, blocked), forecast(tf_run)
    assert theirs.shape == ours.shape == (2, 2, 16, 8)
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4 * np.abs(ours).max())
    # the backend's bfloat16 model: each backend sums its bfloat16 products in its own order, so
    # they agree to bfloat16's precision (8 bits: 0.4% a rounding), within 1% of the largest flow
    own, by_tf = forecast(run_dir, name, blocked), forecast(run_dir)
    assert np.abs(by_tf - own).max() <= 0.01 * np.abs(own).max()
    assert np.abs(by_tf - own).mean() <= 0.002 * np.abs(own).max()


def test_a_backend_refuses_what_it_cannot_do(monkeypatch):
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


def test_jax_data_parallel_over_two_devices_matches_one_device(blocked, tmp_path):
    # 3131 training rows: the last batch (59) and others do not split evenly among 2 devices,
    # so they are padded with samples weighted 0 (pipeline.PAD_TO)
    args = ["--nb_filters=4", "--nb_residual_unit=1", "--epochs=2", "--epochs_cont=1",
            "--batch_size=64", "--validation_fraction=0.1001"]
    one = run("jax", blocked, *args, f"--out_dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "main.py", *args, "--distribute=mirrored",
                          f"--out_dir={tmp_path / 'two'}"], cwd=ROOT, text=True,
                         capture_output=True, timeout=600, env={
                             **env("jax", blocked),
                             "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert two.returncode == 0, two.stderr[-3000:]
    assert "distribute=mirrored: 2 replicas, 32 samples each per step" in two.stdout
    assert "every local replica holds the same weights: True" in two.stdout
    (a,), (b,) = (tmp_path / "one").iterdir(), (tmp_path / "two").iterdir()
    assert metrics(b)["rmse"] == pytest.approx(metrics(a)["rmse"], rel=0.01)


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
