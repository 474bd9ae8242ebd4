"""Run folders: each run writes everything into a new folder that no earlier run used, and
files are replaced whole (written to .tmp, then renamed), so nothing a user has is overwritten
or half-written. main.py and forecast.py call it.

    new_run_dir / start_run_folder   a new folder, its settings, scaling and holiday list
    check_resumable / resume_hint    --resume: the checks, and the command that continues a run
    write_*                          results: predictions (.h5), CSV rows, history, JSON
    load_run                         a saved run's settings and scaling (forecast.py)
"""
import csv
import datetime
import json
import os
import shlex
import shutil

import h5py
import numpy as np

import checkpoint
import timestamps
from settings import ConfigError, older_defaults


def new_run_dir(out_dir, dataset):
    """Create out_dir/<dataset>-<time>[-k], a folder no earlier run has used."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create out_dir {out_dir!r}: {err}") from None
    if not os.access(out_dir, os.W_OK):
        raise ConfigError(f"out_dir {out_dir!r} is not writable; choose another with --out_dir=")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for k in range(1, 1000):
        path = os.path.join(out_dir, f"{dataset}-{stamp}" + (f"-{k}" if k > 1 else ""))
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"could not find a free run folder name in {out_dir!r}")


def write_text(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def check_free_space(run_dir, n_params):
    """Room for the model with its optimizer state (model.keras), the checkpoint (the same plus
    the best and averaged weights) and the results, checked before training."""
    need = n_params * 4 * 12 + 50 * 2 ** 20
    free = shutil.disk_usage(run_dir).free
    if free < need:
        raise ConfigError(f"only {free / 2 ** 20:.0f} MiB free on the disk of {run_dir}; the run "
                          f"needs about {need / 2 ** 20:.0f} MiB for its model, checkpoint and "
                          f"results. Free some space or choose another --out_dir=")


def start_run_folder(run_dir, cfg, ds, scaler, n_params):
    """Checks the free space, then (unless resuming) writes the settings, the scaling and the
    holiday list: the run folder alone then suffices to forecast later."""
    try:
        check_free_space(run_dir, n_params)
    except ConfigError:
        if not cfg["resume"] and not os.listdir(run_dir):
            os.rmdir(run_dir)  # the empty folder this run made
        raise
    if not cfg["resume"]:
        write_json(os.path.join(run_dir, "params.json"), cfg)
        write_json(os.path.join(run_dir, "scaler.json"), scaler)
        if ds.features.holidays is not None:
            write_text(os.path.join(run_dir, "holidays.txt"), "\n".join(
                timestamps.format_timestamps(np.array(sorted(ds.features.holidays)) * ds.T,
                                           ds.T).astype("U8")) + "\n")


def check_resumable(run_dir, cfg, scaler, data_id=None):
    """run_dir, if it is an unfinished run of the same settings and data; else a ConfigError."""
    if not os.path.isfile(os.path.join(run_dir, "params.json")):
        raise ConfigError(f"--resume={run_dir}: not a run folder of main.py (no params.json)")
    if os.path.isfile(os.path.join(run_dir, "metrics.json")):
        raise ConfigError(f"--resume={run_dir}: that run has finished (metrics.json exists); "
                          f"its results stay as they are. Start a new run without --resume")
    states = checkpoint.checkpoint_states(run_dir)
    if not states:
        raise ConfigError(f"--resume={run_dir}: the run stopped before its first epoch ended, "
                          f"so there is nothing to resume; start it again without --resume")
    with open(os.path.join(run_dir, "params.json")) as f:
        saved = json.load(f)
    free = {"resume", "out_dir", "data_dir", "verbose", "threads", "holiday_file",
            "meteorology_file"}
    # a setting the folder lacks: see params.BEFORE_IT_EXISTED; any other one matches nothing
    saved = older_defaults(saved)
    saved = {k: saved.get(k) for k in cfg}
    differ = [f"{k}={saved[k]!r} there, {cfg[k]!r} now" for k in cfg
              if k not in free and saved[k] != cfg[k]]
    if differ:
        hint = ""
        # e.g. a run on an own file from before its default preset became fast (it was paper)
        if saved.get("preset") not in (None, cfg.get("preset")):
            hint = f" (with --preset={saved['preset']} if it was that preset's default then)"
        raise ConfigError(f"--resume={run_dir} was started with other settings: "
                          f"{'; '.join(differ)}. Resume with the command that started it{hint}")
    with open(os.path.join(run_dir, "scaler.json")) as f:
        same_scaling = json.load(f) == json.loads(json.dumps(scaler))
    with open(states[0]) as f:
        started_on = json.load(f).get("data")
    if not same_scaling or (data_id and started_on and started_on != data_id):
        what = ("their scaling ranges differ" if not same_scaling
                else "the frames, slots or external features differ")
        raise ConfigError(f"--resume={run_dir}: the data differ from those the run started with "
                          f"({what}); resume with the same data files, or start a new run")
    if not os.access(run_dir, os.W_OK):
        raise ConfigError(f"--resume={run_dir}: the folder is not writable")
    return run_dir


def resume_hint(run_dir, argv, distribute):
    """The command that continues the interrupted run in run_dir, when it can be continued."""
    if not run_dir or distribute == "multiworker" or \
            os.path.isfile(os.path.join(run_dir, "metrics.json")) or \
            not checkpoint.checkpoint_states(run_dir):
        return ""
    args = [a for a in argv if not a.startswith("--resume=")]
    return ("\ncontinue from the last completed epoch with:\n  " +
            shlex.join(["python", "main.py", *args, f"--resume={run_dir}"]))


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(path + ".tmp", path)


def write_predictions(path, y_pred, y_true, slots, T):
    """Predictions in the release layout ('data' (n, 2, H, W) on the original scale, 'date'
    YYYYMMDD + slot), with the true frames beside them ('truth', same layout) where known."""
    with h5py.File(path + ".tmp", "w") as f:
        f.create_dataset("data", data=np.moveaxis(y_pred, -1, 1))
        if y_true is not None:
            f.create_dataset("truth", data=np.moveaxis(y_true, -1, 1))
        f.create_dataset("date", data=np.char.encode(timestamps.format_timestamps(slots, T), "ascii"))
    os.replace(path + ".tmp", path)


def write_rows(path, rows):
    """A list of dicts with the same keys as CSV, written whole or not at all."""
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(path + ".tmp", path)


def write_history(path, history):
    """One row an epoch; an ensemble's rows are its members' in turn, each counting from 1."""
    keys = list(history)
    members = history.get("member", [1] * len(history["stage"]))
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch"] + keys)
        for i in range(len(history["stage"])):
            w.writerow([members[:i + 1].count(members[i])] + [history[k][i] for k in keys])
    os.replace(path + ".tmp", path)


def load_run(run_dir):
    """A run folder's settings and fitted scalers; settings an older run lacks get the value
    they had before they existed."""
    for name in ("params.json", "scaler.json", "model.keras"):
        if not os.path.isfile(os.path.join(run_dir, name)):
            raise ConfigError(f"{run_dir} is not a run folder of main.py: {name} is missing")
    with open(os.path.join(run_dir, "params.json")) as f:
        run = json.load(f)
    with open(os.path.join(run_dir, "scaler.json")) as f:
        saved_scaler = json.load(f)
    return older_defaults(run), saved_scaler
