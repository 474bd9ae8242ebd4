"""Mean ± standard deviation over several run folders written by main.py (e.g. one per seed).

    for s in 1 2 3; do python main.py --dataset=bikenyc --seed=$s; done
    python summarize.py runs/bikenyc-*

Prints one table (model, model after stage 1, baselines; RMSE on all cells, in the paper's
convention, MAE, per flow) and the settings in which the runs differ. Runs of different data sets
or with different settings other than the seed are refused unless --mixed is given. The last row
is the ensemble: the mean of the runs' test predictions (test_predictions.h5), scored once.
"""
import json
import os
import sys

import h5py
import numpy as np

import params

ROWS = [("ST-ResNet", ""), ("  after stage 1 only", "_stage1"), ("HA", "_ha"),
        ("last frame", "_last")]
COLUMNS = [("RMSE", "rmse{}"), ("RMSE paper conv.", "rmse_paper{}"), ("MAE", "mae{}"),
           ("RMSE flow0", "rmse{}_flow0"), ("RMSE flow1", "rmse{}_flow1")]


def load_run(folder):
    paths = [os.path.join(folder, name) for name in ("metrics.json", "params.json")]
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"{folder} is not a finished run folder: {path} is missing")
    with open(paths[0]) as f, open(paths[1]) as g:
        return json.load(f), json.load(g)


def differing_settings(configs):
    """Settings (other than seed, folders and verbosity) whose values differ between runs. A key
    that a run from an older version lacks had the value in params.BEFORE_IT_EXISTED, else
    params.py's default; a null value was resolved later and is skipped."""
    skip = {"seed", "out_dir", "data_dir", "verbose", "threads", "resume"}
    keys = sorted(set().union(*configs) - skip)

    def values(k):
        known = [c.get(k, params.BEFORE_IT_EXISTED.get(k, getattr(params, k, None)))
                 for c in configs]
        return {json.dumps(v) for v in known if v is not None}
    return {k: sorted(values(k)) for k in keys if len(values(k)) > 1}


def mean_std(values):
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def ensemble_scores(folders, paper_factor):
    """RMSE, paper-convention RMSE and MAE of the mean of the runs' test predictions."""
    preds, truth, dates = [], None, None
    for folder in folders:
        path = os.path.join(folder, "test_predictions.h5")
        if not os.path.isfile(path):
            return None  # written by main.py since predictions are kept; older runs lack it
        with h5py.File(path, "r") as f:
            preds.append(f["data"][()])
            if dates is None:
                truth, dates = f["truth"][()], f["date"][()]
            elif not np.array_equal(dates, f["date"][()]):
                raise ValueError(f"{path}: its test slots differ from {folders[0]}'s")
    err = np.mean(preds, axis=0) - truth
    rmse = float(np.sqrt(np.mean(err ** 2)))
    return {"rmse": rmse, "rmse_paper": rmse * paper_factor, "mae": float(np.mean(np.abs(err)))}


def summary_table(metrics):
    lines = [f"{'':22}" + "".join(f"{name:>20}" for name, _ in COLUMNS)]
    for label, suffix in ROWS:
        if all(key.format(suffix) in m for m in metrics for _, key in COLUMNS):
            lines.append(f"{label:22}" + "".join(
                f"{mean_std([m[key.format(suffix)] for m in metrics]):>20}" for _, key in COLUMNS))
    minutes = [m["train_seconds"] / 60 for m in metrics]
    lines.append(f"{len(metrics)} runs (mean ± sample std); training time {mean_std(minutes)} min")
    return "\n".join(lines)


def main(argv):
    mixed = "--mixed" in argv
    folders = [a for a in argv if a != "--mixed"]
    if not folders:
        raise ValueError("usage: python summarize.py [--mixed] RUN_FOLDER [RUN_FOLDER ...]")
    runs = [load_run(folder) for folder in folders]
    metrics, configs = [r[0] for r in runs], [r[1] for r in runs]
    differ = differing_settings(configs)
    if differ and not mixed:
        raise ValueError(f"the runs differ in more than the seed: {differ}; pass --mixed to "
                         f"summarize them anyway")
    # The same seed with the same settings is the same model; with other settings (--mixed) it
    # is another model, which an ensemble may average.
    members = [m.get("member_seeds", [c["seed"]]) for m, c in zip(metrics, configs)]
    shared = sorted({s for i, a in enumerate(members) for b in members[i + 1:] for s in a
                     if s in b})
    if shared and not differ:
        raise ValueError(f"the runs share ensemble members (seeds {shared}): an ensemble of k "
                         f"trains seeds seed .. seed+k-1, so give the runs seeds k apart")
    print(f"{configs[0]['dataset']}: seeds {sorted(c['seed'] for c in configs)}" + (
        f"; ensemble members' seeds {members}" if any(len(m) > 1 for m in members) else ""))
    print(summary_table(metrics))
    ensemble = ensemble_scores(folders, metrics[0].get("paper_factor", 1.0))
    if ensemble is not None:
        print(f"ensemble (mean prediction of the {len(folders)} runs): RMSE {ensemble['rmse']:.3f}, "
              f"paper conv. {ensemble['rmse_paper']:.3f}, MAE {ensemble['mae']:.3f}")
    if differ:
        print(f"settings that differ: {differ}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except ValueError as err:
        sys.exit(f"error: {err}")
