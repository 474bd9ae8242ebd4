"""bench.py: the FLOP count from the layer shapes against a hand count of the paper's layer list,
and one short end-to-end run that prints every figure the benchmark promises."""
import re
import subprocess
import sys

import pytest

import backend
import bench
import st_resnet
from conftest import ROOT

bench_matmul = bench.matmul_gflops


def hand_flops(H, W, L, lengths, ext, f=64, flows=2):
    """Forward and training-step FLOPs of ST-ResNet per sample, from the paper's layer list:
    per branch conv1 (2*len -> f), L units of two f -> f convolutions, conv2 (f -> 2), all 3x3;
    the external component Dense(ext -> 10) and Dense(10 -> 2*H*W)."""
    conv = lambda c_in, c_out: 2 * H * W * 9 * c_in * c_out  # noqa: E731
    fwd = train = 0
    for n in lengths:
        first, rest = conv(flows * n, f), 2 * L * conv(f, f) + conv(f, flows)
        fwd += first + rest
        train += 2 * first + 3 * rest  # the first layer sees a model input: no input gradient
    dense1, dense2 = 2 * ext * 10, 2 * 10 * flows * H * W
    return fwd + dense1 + dense2, train + 2 * dense1 + 3 * dense2


@pytest.mark.parametrize("name", ["bikenyc", "taxibj"])
def test_flops_per_sample_match_a_hand_count_of_the_layers(name):
    s = bench.SETTINGS[name]
    model = st_resnet.build_model(map_height=s["H"], map_width=s["W"],
                                  len_closeness=s["lengths"][0], len_period=s["lengths"][1],
                                  len_trend=s["lengths"][2], external_dim=s["ext"],
                                  nb_residual_unit=s["L"])
    assert bench.model_flops(model) == hand_flops(s["H"], s["W"], s["L"], s["lengths"], s["ext"])


def test_a_short_run_prints_every_figure(capsys, monkeypatch):
    quiet = []  # bench.py imports the framework the quiet way (main.py's run checks its output)
    monkeypatch.setattr(backend, "import_keras", lambda threads: quiet.append(threads))
    # BikeNYC's setting with one residual unit instead of four, and a smaller matmul: the same
    # figures, printed by the same code, in a third of the time
    small = dict(bench.SETTINGS["bikenyc"], L=1)
    monkeypatch.setitem(bench.SETTINGS, "bikenyc", small)
    monkeypatch.setattr(bench, "matmul_gflops", lambda: bench_matmul(n=1024))
    bench.main(["--setting=bikenyc", "--batches=32,64", "--steps=2", "--rounds=1"])
    text = capsys.readouterr().out
    assert quiet == [0]
    assert re.search(r"peak fp32: \d+ GFLOP/s = \d+ cores x [\d.]+ GHz x \d+ FLOPs/cycle", text)
    fwd, train = hand_flops(16, 8, 1, (3, 4, 4), 8)
    assert f"FLOPs per sample: forward {fwd / 1e9:.3f} G, training step {train / 1e9:.3f} G" in text
    for batch in (32, 64):
        line = next(x for x in text.splitlines() if x.startswith(f"batch {batch:4d}:"))
        assert re.search(r"train +[\d.]+ samples/s = +[\d.]+ GFLOP/s = +[\d.]+% of peak", line)
        assert re.search(r"[\d.]+% of a step waits for input", line)
        assert re.search(r"inference +[\d.]+ samples/s", line)
    assert re.search(r"peak RSS so far \d+ MiB", text)
    assert re.search(r"22123 samples indexed in [\d.]+ s", text)


def test_an_unknown_option_prints_the_usage():
    out = subprocess.run([sys.executable, "bench.py", "--step=2"], cwd=ROOT, text=True,
                         capture_output=True, timeout=120)
    assert out.returncode != 0 and "usage: python bench.py" in out.stderr
