"""Shared by every test module: the Keras backend, quiet TensorFlow, and the project's flat
modules importable from the repository root."""
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def kill_in_second_member(args, env, epoch_line, cwd):
    """Starts `python main.py *args` and SIGKILLs it once its ensemble's second member prints a
    line starting with epoch_line; fails the test if the run ends first."""
    import signal
    import subprocess

    import pytest
    proc = subprocess.Popen([sys.executable, "main.py", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        second = False
        for line in proc.stdout:
            second = second or line.startswith("ensemble member 2/2")
            if second and line.startswith(epoch_line):
                proc.send_signal(signal.SIGKILL)
                break
        else:
            pytest.fail(f"the run ended before its second member printed {epoch_line!r}")
        proc.communicate(timeout=120)
    finally:
        proc.kill()
