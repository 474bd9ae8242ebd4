"""Tests of settings.py: command-line overrides (type-checked against params.py), the paper's
per-dataset defaults, presets, and the clear errors for impossible settings, both in-process and
as one line from main.py before any run folder is made."""
import importlib

import pytest

import params
import settings
from conftest import run_main

pytestmark = [pytest.mark.smoke, pytest.mark.usefixtures("fresh_params")]


def test_overrides_are_type_checked_and_applied():
    settings.apply_overrides(["--dataset=bikenyc", "--lr=1", "--batch_norm=True", "--len_trend=2"])
    assert params.dataset == "bikenyc"
    assert params.lr == 1.0 and isinstance(params.lr, float)
    assert params.batch_norm is True and params.len_trend == 2


@pytest.mark.parametrize("arg, message", [
    ("--nope=1", "unknown param 'nope'"),
    ("--lr=fast", "--lr expects a value of type float"),
    ("--batch_norm=1", "--batch_norm expects a value of type bool"),
    ("--len_closeness=2.5", "--len_closeness expects a value of type int"),
    ("lr=1", "--key=value"),
])
def test_bad_overrides_name_the_problem(arg, message):
    with pytest.raises(settings.ConfigError, match=message.replace("(", r"\(")):
        settings.apply_overrides([arg])


def test_dataset_defaults_are_the_papers_and_explicit_values_win():
    settings.apply_overrides(["--dataset=taxibj"])
    cfg = settings.resolve_config()
    assert (cfg["T"], cfg["len_closeness"], cfg["len_period"], cfg["len_trend"]) == (48, 3, 1, 1)
    assert (cfg["nb_residual_unit"], cfg["patience"], cfg["days_test"]) == (12, 2, 28)
    assert cfg["use_holiday"] and cfg["use_meteorology"]
    importlib.reload(params)
    settings.apply_overrides(["--dataset=bikenyc", "--nb_residual_unit=2"])
    cfg = settings.resolve_config()
    assert (cfg["T"], cfg["len_period"], cfg["len_trend"], cfg["patience"]) == (24, 4, 4, 5)
    assert cfg["nb_residual_unit"] == 2 and not cfg["use_meteorology"]


def test_a_preset_lays_its_settings_over_the_papers_and_the_command_line_wins():
    settings.apply_overrides(["--dataset=bikenyc"])
    paper = settings.resolve_config()
    assert (paper["lr_schedule"], paper["average_last"], paper["lr_cont"]) == ("constant", 0, 0.0)
    importlib.reload(params)
    settings.apply_overrides(["--dataset=bikenyc", "--preset=improved", "--average_last=5"])
    cfg = settings.resolve_config()
    preset = params.PRESETS["improved"]
    assert preset and all(cfg[k] == v for k, v in preset.items() if k != "average_last")
    assert cfg["average_last"] == 5
    assert {k: v for k, v in cfg.items() if k not in preset and k != "preset"} == \
        {k: v for k, v in paper.items() if k not in preset and k != "preset"}


@pytest.mark.parametrize("dataset", ["city.h5", "a.h5,b.h5", "city.grid"])
def test_own_files_default_to_the_fast_preset_and_the_named_sets_keep_the_papers(dataset):
    settings.apply_overrides([f"--dataset={dataset}"])
    cfg = settings.resolve_config()
    assert cfg["preset"] == "fast"
    assert (cfg["epochs_cont"], cfg["lr_schedule"], cfg["average_last"]) == (30, "cosine", 10)
    assert (cfg["patience"], cfg["precision"]) == (15, "auto")
    assert (cfg["epochs"], cfg["lr"], cfg["nb_residual_unit"], cfg["loss"]) == (500, 2e-4, 4, "mse")
    fast = cfg
    importlib.reload(params)
    settings.apply_overrides([f"--dataset={dataset}", "--preset=paper"])  # the old file defaults
    cfg = settings.resolve_config()
    assert (cfg["epochs_cont"], cfg["lr_schedule"], cfg["average_last"]) == (100, "constant", 0)
    assert (cfg["patience"], cfg["precision"]) == (5, "float32")
    assert {k: v for k, v in cfg.items() if k not in params.PRESETS["fast"] and k != "preset"} \
        == {k: v for k, v in fast.items() if k not in params.PRESETS["fast"] and k != "preset"}
    importlib.reload(params)
    settings.apply_overrides([f"--dataset={dataset}", "--epochs_cont=50"])  # the command line wins
    cfg = settings.resolve_config()
    assert (cfg["preset"], cfg["epochs_cont"], cfg["lr_schedule"], cfg["average_last"]) == \
        ("fast", 50, "cosine", 10)
    for name in ("bikenyc", "taxibj", "synthetic"):  # the paper's protocol, number for number
        importlib.reload(params)
        settings.apply_overrides([f"--dataset={name}"])
        cfg = settings.resolve_config()
        assert (cfg["preset"], cfg["lr_schedule"], cfg["average_last"], cfg["lr_cont"]) == \
            ("paper", "constant", 0, 0.0)
        assert cfg["epochs_cont"] == params.DATASET_DEFAULTS[name]["epochs_cont"]
        assert (cfg["patience"], cfg["precision"]) == \
            (params.DATASET_DEFAULTS[name]["patience"], "float32")


@pytest.mark.parametrize("args, message", [
    (["--len_closeness=0", "--len_period=0", "--len_trend=0"], "at least one branch"),
    (["--days_test=0"], "days_test must be >= 1"),
    (["--len_trend=-1"], "len_trend must be >= 0"),
    (["--dataset=paris"], "dataset must be one of"),
    (["--seed=-1"], "seed must be >= 0"),
    (["--mape_threshold=-1"], "mape_threshold must be >= 0"),
    (["--threads=-2"], "threads must be >= 0"),
    (["--loss=l1"], "loss must be one of mse, mae, huber"),
    (["--preset=best"], "preset must be one of auto, paper, fast, improved"),
    (["--lr_schedule=step"], "lr_schedule must be one of constant, cosine"),
    (["--average_last=-2"], "average_last must be >= 0"),
    (["--warmup_epochs=-1"], "warmup_epochs must be >= 0"),
    (["--plateau_factor=1.0"], r"plateau_factor must be in \[0, 1\)"),
    (["--plateau_cuts=-1"], "plateau_cuts >= 0"),
    (["--huber_delta=0"], "huber_delta must be > 0"),
    (["--output_activation=relu"], "output_activation must be one of tanh, linear"),
])
def test_impossible_settings_are_rejected(args, message):
    settings.apply_overrides(args)
    with pytest.raises(settings.ConfigError, match=message):
        settings.resolve_config()


def test_cli_errors_are_one_clear_line_and_leave_no_run_folder(tmp_path):
    result = run_main("--nb_filters=many", f"--out_dir={tmp_path / 'runs'}")
    assert result.returncode != 0
    assert "error: --nb_filters expects a value of type int" in result.stderr
    assert "Traceback" not in result.stderr

    result = run_main("--dataset=bikenyc", f"--data_dir={tmp_path}", f"--out_dir={tmp_path / 'runs'}")
    assert result.returncode != 0
    assert f"data file not found: {tmp_path / 'BikeNYC' / 'NYC14_M16x8_T60_NewEnd.h5'}" in result.stderr
    assert "data/README.md" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_help_lists_every_param_and_exits_cleanly():
    result = run_main("--help")
    assert result.returncode == 0
    for key in ("dataset", "len_closeness", "epochs_cont", "out_dir"):
        assert f"--{key}=" in result.stdout
