"""backend.py's distribution strategies, through main.py: distribute=mirrored over two logical CPU
devices and distribute=multiworker with two local processes talking over 127.0.0.1: both end with
the same final weights on every replica and worker, and a test RMSE within 1% of the single-device
run with the same seed, the session's small run (the summation order of the gradients differs, so
the runs are equal in meaning, not bit for bit)."""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SMALL_RUN

ARGS = [*SMALL_RUN, "--verbose=0"]
# main.main on two logical CPU devices: they must be set before TensorFlow starts.
TWO_CPUS = """import sys
sys.path.insert(0, {root!r})
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import main
main.main(sys.argv[1:])
"""


def env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def metrics_of(out_dir):
    runs = sorted(Path(out_dir).iterdir())
    assert len(runs) == 1, runs
    return json.loads((runs[0] / "metrics.json").read_text())


def fingerprint(stdout):
    found = re.findall(r"final weights fingerprint: (\w+);", stdout)
    assert len(found) == 1, stdout[-2000:]
    return found[0]


@pytest.fixture(scope="module")
def single_device(small_run):
    return json.loads((small_run / "metrics.json").read_text())


def test_mirrored_over_two_cpu_devices_matches_one_device(tmp_path, single_device, small_city):
    result = subprocess.run(
        [sys.executable, "-c", TWO_CPUS.format(root=str(ROOT)), *ARGS, "--distribute=mirrored",
         f"--dataset={small_city}", f"--out_dir={tmp_path}"], cwd=ROOT, capture_output=True,
        text=True, timeout=600,
        env=env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distribute=mirrored: 2 replicas, 32 samples each per step" in result.stdout
    fingerprint(result.stdout)
    assert "every local replica holds the same weights: True" in result.stdout
    m = metrics_of(tmp_path)
    assert m["rmse"] == pytest.approx(single_device["rmse"], rel=0.01)
    assert m["rmse_stage1"] == pytest.approx(single_device["rmse_stage1"], rel=0.01)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_end_with_equal_weights_and_only_the_chief_writes(tmp_path, single_device,
                                                                    small_city):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers},
                                "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, "main.py", *ARGS, "--distribute=multiworker",
             f"--dataset={small_city}", f"--out_dir={tmp_path}"], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env(TF_CONFIG=tf_config)))
    outputs = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=600)
            assert p.returncode == 0, stderr[-3000:]
            outputs.append(stdout)
    finally:
        for p in procs:
            p.kill()
    assert "(a worker's copy, deleted at the end)" in outputs[1]
    assert fingerprint(outputs[0]) == fingerprint(outputs[1])
    m = metrics_of(tmp_path)  # exactly one run folder: the chief's
    assert m["rmse"] == pytest.approx(single_device["rmse"], rel=0.01)


@pytest.mark.parametrize("tf_config, message", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{not json", "TF_CONFIG is not valid"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
     "task index 3 is not one of the 1 worker addresses"),
])
def test_a_bad_tf_config_is_a_clear_error_before_training(tmp_path, tf_config, message):
    extra = {} if tf_config is None else {"TF_CONFIG": tf_config}
    clean = {k: v for k, v in env(**extra).items() if tf_config is not None or k != "TF_CONFIG"}
    result = subprocess.run([sys.executable, "main.py", *ARGS, "--distribute=multiworker",
                             f"--out_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, env=clean)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())
