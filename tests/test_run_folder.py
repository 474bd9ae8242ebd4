"""Tests of run_folder.py: new run folders (never reused), the free-space check, the checks before
--resume continues a folder, and load_run for folders written by older versions."""
import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

import run_folder
import settings

pytestmark = [pytest.mark.smoke, pytest.mark.usefixtures("fresh_params")]


def test_run_folders_are_never_reused(tmp_path):
    first = run_folder.new_run_dir(str(tmp_path), "x")
    (Path(first) / "model.keras").write_text("earlier result")
    second = run_folder.new_run_dir(str(tmp_path), "x")
    assert first != second and (Path(first) / "model.keras").read_text() == "earlier result"


def test_too_little_disk_is_refused_before_training(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 ** 9, 10 ** 9 - 10 ** 6, 10 ** 6))
    with pytest.raises(settings.ConfigError, match=r"only 1 MiB free .* needs about \d+ MiB"):
        run_folder.check_free_space(str(tmp_path), 906_272)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 ** 12, 0, 10 ** 12))
    run_folder.check_free_space(str(tmp_path), 906_272)  # enough: no error


def test_resume_refuses_a_non_run_an_unstarted_one_a_finished_one_and_other_settings(tmp_path):
    cfg = {"resume": str(tmp_path), "lr": 0.0002, "seed": 1, "out_dir": "elsewhere"}
    scaler = {"min": 0.0, "max": 9.0}
    with pytest.raises(settings.ConfigError, match="not a run folder"):
        run_folder.check_resumable(str(tmp_path), cfg, scaler)
    (tmp_path / "params.json").write_text(json.dumps(dict(cfg, out_dir="runs")))
    (tmp_path / "scaler.json").write_text(json.dumps(scaler))
    with pytest.raises(settings.ConfigError, match="stopped before its first epoch ended"):
        run_folder.check_resumable(str(tmp_path), cfg, scaler)
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text("{}")
    assert run_folder.check_resumable(str(tmp_path), cfg, scaler) == str(tmp_path)  # out_dir may differ
    with pytest.raises(settings.ConfigError, match="other settings: lr=0.0002 there, 0.001 now"):
        run_folder.check_resumable(str(tmp_path), dict(cfg, lr=0.001), scaler)
    # a run started under another preset's defaults (own files: paper, now fast) names it
    (tmp_path / "params.json").write_text(json.dumps(dict(cfg, out_dir="runs", preset="paper")))
    with pytest.raises(settings.ConfigError, match=r"preset='paper' there, 'fast' now.*"
                                                   r"it \(with --preset=paper if"):
        run_folder.check_resumable(str(tmp_path), dict(cfg, preset="fast"), scaler)
    (tmp_path / "params.json").write_text(json.dumps(dict(cfg, out_dir="runs")))
    # a setting the folder lacks (a run from before the option existed) ran with its default
    assert run_folder.check_resumable(str(tmp_path), dict(cfg, use_time_of_day=False), scaler)
    with pytest.raises(settings.ConfigError, match="use_time_of_day=False there, True now"):
        run_folder.check_resumable(str(tmp_path), dict(cfg, use_time_of_day=True), scaler)
    with pytest.raises(settings.ConfigError, match="the data differ .*scaling ranges differ"):
        run_folder.check_resumable(str(tmp_path), cfg, {"min": 0.0, "max": 10.0})
    (tmp_path / "checkpoint" / "state.json").write_text('{"data": "abc"}')
    assert run_folder.check_resumable(str(tmp_path), cfg, scaler, "abc") == str(tmp_path)
    with pytest.raises(settings.ConfigError, match="frames, slots or external features differ"):
        run_folder.check_resumable(str(tmp_path), cfg, scaler, "abd")
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(settings.ConfigError, match="that run has finished"):
        run_folder.check_resumable(str(tmp_path), cfg, scaler)
    assert (tmp_path / "metrics.json").read_text() == "{}"  # untouched


def test_load_run_fills_the_settings_an_older_folder_lacks(tmp_path):
    # written before the side-file, slot-of-day and loss options existed, except for weight_decay
    (tmp_path / "params.json").write_text(json.dumps({"dataset": "bikenyc", "weight_decay": 0.3}))
    (tmp_path / "scaler.json").write_text(json.dumps({"min": 0.0, "max": 1.0}))
    (tmp_path / "model.keras").write_bytes(b"")
    run, scaler = run_folder.load_run(str(tmp_path))
    assert scaler == {"min": 0.0, "max": 1.0}
    assert run["holiday_file"] == "" and run["meteorology_file"] == ""
    assert run["use_time_of_day"] is False and run["loss"] == "mse"
    assert run["weight_decay"] == 0.3  # a setting the folder has is kept
