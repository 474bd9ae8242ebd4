"""One ST-ResNet run: load data, build, train (the paper's two stages), evaluate against the
baselines, plot and save everything in a new run folder.

    python main.py                                  # built-in synthetic city, a few minutes on CPU
    python main.py --dataset=bikenyc                # the paper's BikeNYC setting
    python main.py --dataset=taxibj --batch_norm=True
Any global of params.py can be overridden as --key=value.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide TensorFlow C++ logs (Python errors still raise)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import ast  # noqa: E402
import csv  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

import backend  # noqa: E402
import datasets  # noqa: E402
import evaluation  # noqa: E402
import params  # noqa: E402
import training  # noqa: E402

# The paper's rows (RMSE) to print beside a run. BikeNYC's use the official script's convention
# (RMSE x sqrt(cells / cells with a station)), TaxiBJ's plain RMSE: PAPER_COLUMN says which of
# this run's columns each compares with.
PAPER_COLUMN = {"bikenyc": "rmse_paper", "taxibj": "rmse"}
PAPER_ROWS = {
    "bikenyc": [("ARIMA", 10.07), ("SARIMA", 10.56), ("VAR", 9.92), ("DeepST-C", 8.39),
                ("DeepST-CP", 7.64), ("DeepST-CPT", 7.56), ("DeepST-CPTM", 7.43),
                ("ST-ResNet (L=4)", 6.33)],
    "taxibj": [("HA", 57.69), ("ARIMA", 22.78), ("DeepST", 18.18), ("ST-ResNet L12-E", 16.89),
               ("ST-ResNet L12-E-BN", 16.69)],
}


GIVEN = set()  # the params set on the command line: they win over a preset


class ConfigError(ValueError):
    """A bad command-line override or an impossible combination of params."""


# ---- configuration -------------------------------------------------------------------------------

def settable_params():
    return {k: v for k, v in vars(params).items()
            if not k.startswith("_") and k.islower() and not callable(v)
            and not isinstance(v, type(params))}


def expected_type(key):
    """The type a param takes: its default's, or for None the type of its per-dataset defaults."""
    default = getattr(params, key)
    if default is not None:
        return type(default)
    if key == "jit_compile":  # None: the backend's default
        return bool
    return type(params.DATASET_DEFAULTS["bikenyc"][key])


def apply_overrides(argv):
    """Set params from --key=value arguments, checking each key and the value's type."""
    known = settable_params()
    GIVEN.clear()
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__ + "\nparams (see params.py for what each means):\n" + "\n".join(
            f"  --{k}={v!r}" for k, v in sorted(known.items())))
        sys.exit(0)
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"arguments must look like --key=value, got {arg!r}")
        key, text = arg[2:].split("=", 1)
        if key not in known:
            raise ConfigError(f"unknown param {key!r}; known params: {', '.join(sorted(known))}")
        want = expected_type(key)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word is a string
        if want is float and type(value) is int:
            value = float(value)
        if type(value) is not want and not (value is None and getattr(params, key) is None):
            raise ConfigError(f"--{key} expects a value of type {want.__name__}, got {text!r}")
        setattr(params, key, value)
        GIVEN.add(key)


def resolve_config():
    """All params as a dict, None replaced by the chosen data set's default, then validated."""
    cfg = settable_params()
    if cfg["preset"] not in params.PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(params.PRESETS)}; got "
                          f"{cfg['preset']!r}")
    cfg.update({k: v for k, v in params.PRESETS[cfg["preset"]].items() if k not in GIVEN})
    named = [k for k in params.DATASET_DEFAULTS if k != "file"]
    kind = cfg["dataset"] if cfg["dataset"] in named else "file"
    paths = [p.strip() for p in cfg["dataset"].split(",")]
    if kind == "file" and not (all(p.endswith((".h5", ".hdf5")) for p in paths)
                               or all(p.endswith(".grid") for p in paths)):
        raise ConfigError(f"dataset must be one of {named}, or the path of an HDF5 flow file "
                          f"(.h5) or of a LibCity grid file (.grid), or several of one kind "
                          f"separated by commas; got {cfg['dataset']!r}")
    defaults = params.DATASET_DEFAULTS[kind]
    if kind != "file" and cfg["slots_per_day"] not in (None, defaults["slots_per_day"]):
        raise ConfigError(f"{kind} has {defaults['slots_per_day']} slots a day; leave "
                          f"slots_per_day unset for it")
    for key, value in cfg.items():
        if value is None and key in defaults:
            cfg[key] = defaults[key]
    for use, path in (("use_holiday", "holiday_file"), ("use_meteorology", "meteorology_file")):
        if cfg[use] is None:  # a file's side features follow from the side files given
            cfg[use] = bool(cfg[path])
    cfg["T"] = cfg["slots_per_day"]  # None for a file until it is read
    lengths = [cfg["len_closeness"], cfg["len_period"], cfg["len_trend"]]
    for key in ("len_closeness", "len_period", "len_trend", "nb_residual_unit", "epochs_cont",
                "lr_cont", "weight_decay", "average_last", "warmup_epochs"):
        if cfg[key] < 0:
            raise ConfigError(f"{key} must be >= 0, got {cfg[key]}")
    for key in ("days_test", "nb_filters", "batch_size", "epochs", "patience", "horizon",
                "ensemble"):
        if cfg[key] < 1:
            raise ConfigError(f"{key} must be >= 1, got {cfg[key]}")
    if not any(lengths):
        raise ConfigError("len_closeness, len_period and len_trend are all 0: switch on at least "
                          "one branch")
    if not (cfg["lr"] > 0 and 0 < cfg["validation_fraction"] < 1):
        raise ConfigError("lr must be > 0 and validation_fraction in (0, 1)")
    for key, allowed in (("loss", ("mse", "mae", "huber")), ("lr_schedule", ("constant", "cosine")),
                         ("output_activation", ("tanh", "linear")),
                         ("duplicates", ("error", "first", "last")),
                         ("empty_slots", ("keep", "missing")),
                         ("precision", ("float32", "mixed_bfloat16", "auto"))):
        if cfg[key] not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {cfg[key]!r}")
    if cfg["distribute"] not in ("none", "mirrored", "multiworker"):
        raise ConfigError(f"distribute must be one of none, mirrored, multiworker; got "
                          f"{cfg['distribute']!r}")
    try:
        backend.check(cfg["distribute"], cfg["threads"])
    except backend.BackendError as err:
        raise ConfigError(str(err)) from None
    cfg["backend"] = backend.name()
    if cfg["jit_compile"] is None:
        cfg["jit_compile"] = backend.JIT_COMPILE[cfg["backend"]]
    if cfg["distribute"] == "multiworker":
        tf_config_task()
        if cfg["resume"]:
            raise ConfigError("--resume is not available with distribute=multiworker: only the "
                              "chief keeps a checkpoint")
    if not cfg["huber_delta"] > 0:
        raise ConfigError(f"huber_delta must be > 0, got {cfg['huber_delta']}")
    if cfg["seed"] < 0 or cfg["threads"] < 0:
        raise ConfigError(f"seed and threads must be >= 0, got {cfg['seed']} and "
                          f"{cfg['threads']}")
    return cfg


def tf_config_task():
    """TF_CONFIG's (task type, task index, is chief), checked before training."""
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        raise ConfigError(f"distribute=multiworker needs the TF_CONFIG environment variable on "
                          f"every worker, e.g. TF_CONFIG='{example}' (README, \"Many GPUs or "
                          f"machines\")")
    try:
        conf = json.loads(text)
        cluster, kind, index = conf["cluster"], conf["task"]["type"], int(conf["task"]["index"])
        hosts = cluster[kind]
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"TF_CONFIG is not valid ({type(err).__name__}: {err}); expected JSON "
                          f"like {example}") from None
    if not 0 <= index < len(hosts):
        raise ConfigError(f"TF_CONFIG's task index {index} is not one of the {len(hosts)} "
                          f"{kind} addresses")
    return kind, index, kind == "chief" or (kind == "worker" and index == 0
                                             and "chief" not in cluster)


def weights_fingerprint(model):
    """A short hash of all weights: equal on every worker of a multi-worker run."""
    return training.arrays_sha256(model.get_weights())[:16]


# ---- output folder -------------------------------------------------------------------------------

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
                datasets.format_timestamps(np.array(sorted(ds.features.holidays)) * ds.T,
                                           ds.T).astype("U8")) + "\n")


def check_resumable(run_dir, cfg, scaler, data_id=None):
    """run_dir, if it is an unfinished run of the same settings and data; else a ConfigError."""
    if not os.path.isfile(os.path.join(run_dir, "params.json")):
        raise ConfigError(f"--resume={run_dir}: not a run folder of main.py (no params.json)")
    if os.path.isfile(os.path.join(run_dir, "metrics.json")):
        raise ConfigError(f"--resume={run_dir}: that run has finished (metrics.json exists); "
                          f"its results stay as they are. Start a new run without --resume")
    states = training.checkpoint_states(run_dir)
    if not states:
        raise ConfigError(f"--resume={run_dir}: the run stopped before its first epoch ended, "
                          f"so there is nothing to resume; start it again without --resume")
    with open(os.path.join(run_dir, "params.json")) as f:
        saved = json.load(f)
    free = {"resume", "out_dir", "data_dir", "verbose", "threads", "holiday_file",
            "meteorology_file"}
    # a setting the folder lacks: see params.BEFORE_IT_EXISTED; any other one matches nothing
    saved = {k: saved.get(k, params.BEFORE_IT_EXISTED.get(k)) for k in cfg}
    differ = [f"{k}={saved[k]!r} there, {cfg[k]!r} now" for k in cfg
              if k not in free and saved[k] != cfg[k]]
    if differ:
        raise ConfigError(f"--resume={run_dir} was started with other settings: "
                          f"{'; '.join(differ)}. Resume with the command that started it")
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


def resume_hint():
    """The command that continues the interrupted run, when it can be continued."""
    if not CURRENT_RUN or params.distribute == "multiworker" or \
            os.path.isfile(os.path.join(CURRENT_RUN, "metrics.json")) or \
            not training.checkpoint_states(CURRENT_RUN):
        return ""
    args = [a for a in sys.argv[1:] if not a.startswith("--resume=")]
    return ("\ncontinue from the last completed epoch with:\n  " +
            shlex.join(["python", "main.py", *args, f"--resume={CURRENT_RUN}"]))


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
        f.create_dataset("date", data=np.char.encode(datasets.format_timestamps(slots, T), "ascii"))
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


# ---- training ------------------------------------------------------------------------------------

def build_and_compile(cfg, ds, name=None):
    import keras
    import st_resnet
    model = st_resnet.build_model(name=name or "st_resnet",
        map_height=ds.frames.shape[1], map_width=ds.frames.shape[2], nb_flow=ds.frames.shape[3],
        len_closeness=cfg["len_closeness"], len_period=cfg["len_period"],
        len_trend=cfg["len_trend"], external_dim=ds.external.shape[1],
        nb_residual_unit=cfg["nb_residual_unit"], nb_filters=cfg["nb_filters"],
        batch_norm=cfg["batch_norm"], output_activation=cfg["output_activation"],
        output_bias=cfg["output_bias"])
    if cfg["output_bias"]:
        model.get_layer("output_bias").set_weights([training.output_bias_start(
            ds, cfg["output_activation"])])
    if cfg["weight_decay"]:
        optimizer = keras.optimizers.AdamW(learning_rate=cfg["lr"],
                                           weight_decay=cfg["weight_decay"])
    else:
        optimizer = keras.optimizers.Adam(learning_rate=cfg["lr"])
    # With padded batches (datasets.PAD_TO) a loss is the mean over the real samples' cells.
    reduction = "mean_with_sample_weight" if datasets.PAD_TO > 1 else "sum_over_batch_size"
    if cfg["loss"] == "huber" or datasets.PAD_TO > 1:
        kinds = {"mse": keras.losses.MeanSquaredError, "mae": keras.losses.MeanAbsoluteError,
                 "huber": functools.partial(keras.losses.Huber, delta=cfg["huber_delta"])}
        loss = kinds[cfg["loss"]](reduction=reduction)
    else:
        loss = cfg["loss"]
    rmse = [keras.metrics.RootMeanSquaredError(name="rmse")]  # padding: only samples weighted 1
    model.compile(optimizer=optimizer, loss=loss, jit_compile=cfg["jit_compile"],
                  **{"weighted_metrics" if datasets.PAD_TO > 1 else "metrics": rmse})
    return model


def split_rows(ds, validation_fraction):
    """Stage 1's rows: the first (1 - validation_fraction) of the training samples fit, the rest
    validate (as Keras' validation_split, which the official code used)."""
    n_fit = int(ds.n_train * (1 - validation_fraction))
    if n_fit < 1 or n_fit >= ds.n_train:
        raise datasets.DataError(f"{ds.n_train} training samples cannot be split into training "
                                 f"and validation by validation_fraction={validation_fraction}")
    return np.arange(n_fit), np.arange(n_fit, ds.n_train)


# ---- evaluation and report -----------------------------------------------------------------------

def baseline_predictions(ds):
    """HA and last-frame predictions for the test targets (original scale); computed before
    training so that data too short for them is reported first."""
    slots = ds.target_slots[ds.n_train:]
    return {"_ha": evaluation.historical_average(ds.frames, ds.slot_ids, ds.T, slots,
                                                 ds.first_test_frame),
            "_last": evaluation.last_frame(ds.frames, ds.slot_ids, slots)}


def predict_test(model, ds):
    """The model's test predictions on the original scale, (n_test, H, W, F)."""
    rows = np.arange(ds.n_train, ds.n_samples)
    return ds.scaler.inverse_transform(
        datasets.predict(model, datasets.batches(ds, rows, 256)))


def test_metrics(ds, y_true, y_pred, baselines):
    """Scores of the model (no suffix) and of the other predictions (their suffix: baselines,
    the model after stage 1), in both RMSE conventions."""
    factor = evaluation.paper_factor(ds.frames[:ds.first_test_frame])
    metrics = {"dataset": ds.name, "n_train": int(ds.n_train), "n_test": int(ds.n_test),
               "paper_factor": factor, "flow_names": list(datasets.flow_names(ds.name))}
    for suffix, pred in {"": y_pred, **baselines}.items():
        metrics.update(evaluation.scores(y_true, pred, suffix))
        metrics[f"rmse_paper{suffix}"] = metrics[f"rmse{suffix}"] * factor
    return metrics


def results_table(m, dataset):
    rows = [("ST-ResNet (this run)", ""), ("  after stage 1 only", "_stage1"),
            *[(f"  member {i + 1} alone (seed {seed})", f"_member{i + 1}")
              for i, seed in enumerate(m.get("member_seeds", []))],
            ("HA (same weekday and slot)", "_ha"), ("last frame", "_last")]
    rows = [(label, s) for label, s in rows if f"rmse{s}" in m]
    lines = [f"{'':32}{'RMSE':>8}{'MAE':>8}{'RMSE flow0':>12}{'RMSE flow1':>12}"
             f"{'RMSE paper conv.':>18}"]
    for label, s in rows:
        lines.append(f"{label:32}{m['rmse' + s]:8.3f}{m['mae' + s]:8.3f}"
                     f"{m['rmse' + s + '_flow0']:12.3f}{m['rmse' + s + '_flow1']:12.3f}"
                     f"{m['rmse_paper' + s]:18.3f}")
    for label, value in PAPER_ROWS.get(dataset, []):
        if PAPER_COLUMN[dataset] == "rmse":
            lines.append(f"{'paper: ' + label:32}{value:8.2f}")
        else:
            lines.append(f"{'paper: ' + label:32}{'':40}{value:18.2f}")
    lines.append(f"flow0 = {m['flow_names'][0]}, flow1 = {m['flow_names'][1]}; paper convention = "
                 f"RMSE x sqrt(cells / cells with any flow) = x {m['paper_factor']:.4f}")
    return "\n".join(lines)


def save_plots(run_dir, ds, history, y_true, y_pred):
    import plots
    names = datasets.flow_names(ds.name)
    stamps = datasets.format_timestamps(ds.target_slots[ds.n_train:], ds.T)
    plots.learning_curves(history, os.path.join(run_dir, "learning_curves.png"))
    busy = int(np.argmax(y_true.sum(axis=(1, 2, 3))))
    plots.error_maps(y_true[busy], y_pred[busy], names, f"busiest test slot {stamps[busy]}",
                     os.path.join(run_dir, "maps_busiest_slot.png"))
    r, c = np.unravel_index(np.argmax(y_true.sum(axis=(0, 3))), y_true.shape[1:3])
    plots.region_series(y_true[:, r, c], y_pred[:, r, c], stamps, names,
                        f"busiest region (row {r}, column {c}) over the test period",
                        os.path.join(run_dir, "series_busiest_region.png"))


FORECAST_KEYS = {"forecast_from", "horizon", "dataset", "data_dir", "holiday_file",
                 "meteorology_file", "duplicates", "empty_slots"}


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
    for key, value in params.BEFORE_IT_EXISTED.items():  # options newer than the folder
        run.setdefault(key, value)
    return run, saved_scaler


def forecast(run_dir, given, cfg):
    """Forecast the `horizon` slots after the last one of the data with a saved run's model,
    scaler and settings; the data set, folders and side files may be given anew. Writes
    forecast-<first slot>-<k>.h5 and a map of the first slot (.png) into the run folder."""
    if given - FORECAST_KEYS:
        raise ConfigError(f"with --forecast_from only {sorted(FORECAST_KEYS)} may be given; the "
                          f"other settings are the run's: {sorted(given - FORECAST_KEYS)}")
    run, saved_scaler = load_run(run_dir)
    for key in ("dataset", "data_dir", "holiday_file", "meteorology_file", "duplicates",
                "empty_slots"):
        if key in given:
            run[key] = cfg[key]
    if "holiday_file" not in given and os.path.isfile(os.path.join(run_dir, "holidays.txt")):
        run["holiday_file"] = os.path.join(run_dir, "holidays.txt")  # the run's own copy
    frames, slot_ids, features = datasets.load_for_forecast(
        run["dataset"], run["data_dir"], run["T"], run["use_meta"], run["use_holiday"],
        run["use_meteorology"], run["holiday_file"], run["meteorology_file"],
        saved_scaler["external"], run["use_time_of_day"], run["duplicates"], run["empty_slots"])
    start, T = slot_ids[-1] + 1, run["T"]
    lengths = (run["len_closeness"], run["len_period"], run["len_trend"])
    missing = datasets.missing_history(slot_ids, T, lengths, start, cfg["horizon"])
    if missing:
        raise datasets.DataError(
            f"{run['dataset']} lacks {len(missing)} slot(s) that forecasting {cfg['horizon']} "
            f"step(s) after its last slot needs: {', '.join(datasets.format_timestamps(missing[:5], T))}"
            f"{' ...' if len(missing) > 5 else ''}")
    keras = backend.import_keras()
    import modules  # noqa: F401  (registers the fusion layer for loading)
    import plots
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    if tuple(model.output.shape[1:]) != frames.shape[1:]:
        raise datasets.DataError(f"{run['dataset']} has frames of {frames.shape[1:]} but the "
                                 f"model of {run_dir} predicts {tuple(model.output.shape[1:])}")
    preds, _ = evaluation.recursive_forecast(
        model, frames, slot_ids, T, lengths, datasets.MinMaxScaler.from_dict(saved_scaler),
        features, [start], cfg["horizon"])
    slots = start + np.arange(cfg["horizon"])
    stamps = datasets.format_timestamps(slots, T)
    path = os.path.join(run_dir, f"forecast-{stamps[0]}-{cfg['horizon']}")
    k = 1
    while os.path.exists(path + ".h5"):  # never overwrite an earlier forecast
        k += 1
        path = os.path.join(run_dir, f"forecast-{stamps[0]}-{cfg['horizon']}-{k}")
    write_predictions(path + ".h5", preds[:, 0], None, slots, T)
    plots.forecast_maps(preds[0, 0], datasets.flow_names(run["dataset"]),
                        f"forecast for {stamps[0]}", path + ".png")
    print(f"forecast of {stamps[0]} .. {stamps[-1]}: {path}.h5 and {path}.png")
    return path + ".h5"


def main(argv):
    apply_overrides(argv)
    cfg = resolve_config()
    if cfg["forecast_from"]:
        return forecast(cfg["forecast_from"], {a[2:].split("=", 1)[0] for a in argv}, cfg)
    ds = datasets.load_dataset(
        cfg["dataset"], cfg["data_dir"], cfg["len_closeness"], cfg["len_period"],
        cfg["len_trend"], cfg["days_test"], cfg["use_meta"], cfg["use_holiday"],
        cfg["use_meteorology"], cfg["slots_per_day"], cfg["holiday_file"],
        cfg["meteorology_file"], cfg["use_time_of_day"], cfg["duplicates"], cfg["empty_slots"])
    cfg["T"] = cfg["slots_per_day"] = ds.T
    print("\n".join(ds.notes))
    first_test = datasets.format_timestamps([ds.slot_ids[ds.first_test_frame]], ds.T)[0]
    print(f"{cfg['dataset']}: {len(ds.frames)} frames of {ds.frames.shape[1:]}, {ds.n_samples} "
          f"samples ({ds.n_train} train, {ds.n_test} test from {first_test}), "
          f"{ds.external.shape[1]} external features")
    baselines = baseline_predictions(ds)
    fit_rows, val_rows = split_rows(ds, cfg["validation_fraction"])

    keras = backend.import_keras(cfg["threads"])  # only now: errors in settings and data come first
    strategy, described = backend.distribution(cfg["distribute"], cfg["batch_size"])
    if described:
        print(described)
    # under JAX every batch must split evenly among the devices
    datasets.PAD_TO = strategy.num_replicas_in_sync if backend.name() == "jax" else 1
    run_name = os.path.splitext(os.path.basename(cfg["dataset"].split(",")[0].strip()))[0]
    chief = cfg["distribute"] != "multiworker" or tf_config_task()[2]
    scaler = {**ds.scaler.to_dict(), "external": ds.external_scaling}
    data_id = training.data_fingerprint(ds)  # kept in the checkpoint; a resume compares it
    if cfg["resume"]:
        run_dir = check_resumable(cfg["resume"], cfg, scaler, data_id)
        print(f"run folder: {run_dir} (resumed)")
    else:
        # Only the chief writes a run folder; the other workers' copies go to a temporary folder.
        run_dir = new_run_dir(cfg["out_dir"] if chief else tempfile.mkdtemp(), run_name)
        print(f"run folder: {run_dir}" + ("" if chief else " (a worker's copy, deleted at the end)"))
    global CURRENT_RUN
    CURRENT_RUN = run_dir

    policy, why = backend.resolve_precision(cfg["precision"])
    keras.mixed_precision.set_global_policy(policy)
    print(f"precision: {policy} ({why})")
    k = cfg["ensemble"]
    members, histories, stage1_preds, train_seconds = [], [], [], 0.0
    for i in range(k):
        member_cfg = dict(cfg, seed=cfg["seed"] + i)
        keras.utils.set_random_seed(member_cfg["seed"])
        with strategy.scope():
            model = build_and_compile(member_cfg, ds, name=f"member{i + 1}" if k > 1 else None)
        if i == 0:
            print(f"ST-ResNet: {model.count_params():,} parameters" + (
                f"; an ensemble of {k} trained in turn (seeds {cfg['seed']}..{cfg['seed'] + k - 1})"
                f" whose outputs are averaged" if k > 1 else ""))
            start_run_folder(run_dir, cfg, ds, scaler, model.count_params() * k)
        member_dir = training.member_dir(run_dir, i, k)
        if k > 1:
            os.makedirs(member_dir, exist_ok=True)
            print(f"ensemble member {i + 1}/{k}: seed {member_cfg['seed']}, in {member_dir}")
        # The test error of stage 1's best weights is kept too, to show what stage 2 adds (it is
        # not used to choose anything).
        history, stage1_pred, seconds = training.train(
            model, ds, member_cfg, fit_rows, val_rows, member_dir,
            lambda m: predict_test(m, ds), data_id)
        write_history(os.path.join(member_dir, "history.csv"), history)
        members.append(model)
        histories.append(history)
        stage1_preds.append(stage1_pred)
        train_seconds += seconds
    if k > 1:
        import st_resnet
        with strategy.scope():
            model = st_resnet.ensemble(members)
            # never trained as a whole; compiled so that model.keras keeps the run's jit_compile
            # (uncompiled, Keras would pick XLA on a GPU). Plain SGD has no state to save.
            model.compile(optimizer=keras.optimizers.SGD(), loss=members[0].loss,
                          jit_compile=cfg["jit_compile"])
        history = {"member": [i + 1 for i, h in enumerate(histories) for _ in h["stage"]],
                   **{key: [v for h in histories for v in h[key]] for key in histories[0]}}
        write_history(os.path.join(run_dir, "history.csv"), history)
    model.save(os.path.join(run_dir, "model.tmp.keras"))
    os.replace(os.path.join(run_dir, "model.tmp.keras"), os.path.join(run_dir, "model.keras"))

    y_true = ds.targets(np.arange(ds.n_train, ds.n_samples))
    y_pred = predict_test(model, ds)
    others = dict(baselines)
    if all(p is not None for p in stage1_preds):  # an ensemble's: the mean of its members'
        others["_stage1"] = np.mean(stage1_preds, axis=0)
    if k > 1:
        others.update({f"_member{i + 1}": predict_test(m, ds) for i, m in enumerate(members)})
    metrics = test_metrics(ds, y_true, y_pred, others)
    metrics.update(train_seconds=train_seconds, epochs_stage1=history["stage"].count(1),
                   epochs_stage2=history["stage"].count(2), n_params=model.count_params(),
                   precision=policy, member_seeds=[cfg["seed"] + i for i in range(k)])
    if k > 1:  # the totals above are over all members; each member's own:
        metrics.update(epochs_stage1_members=[h["stage"].count(1) for h in histories],
                       epochs_stage2_members=[h["stage"].count(2) for h in histories])
    write_predictions(os.path.join(run_dir, "test_predictions.h5"), y_pred, y_true,
                      ds.target_slots[ds.n_train:], ds.T)
    if cfg["horizon"] > 1:
        import plots
        lengths = (cfg["len_closeness"], cfg["len_period"], cfg["len_trend"])
        rows = evaluation.horizon_scores(model, ds, lengths, cfg["horizon"])
        if len(rows) < cfg["horizon"]:
            print(f"only {len(rows)} steps ahead fit in the test period and are scored")
        write_rows(os.path.join(run_dir, "horizon.csv"), rows)
        plots.error_vs_horizon(rows, os.path.join(run_dir, "error_vs_horizon.png"))
        print("steps ahead: " + ", ".join(f"{r['step']}: RMSE {r['rmse']:.3f} (HA {r['rmse_ha']:.3f},"
                                          f" last {r['rmse_last']:.3f})" for r in rows))
    save_plots(run_dir, ds, history, y_true, y_pred)
    write_json(os.path.join(run_dir, "metrics.json"), metrics)  # last: it marks a finished run
    training.remove_checkpoint(run_dir)
    print(results_table(metrics, cfg["dataset"]))
    if cfg["distribute"] != "none":
        print(f"final weights fingerprint: {weights_fingerprint(model)}; every local replica "
              f"holds the same weights: {backend.replicas_agree(model)}")
    if not chief:
        shutil.rmtree(os.path.dirname(run_dir), ignore_errors=True)
        return None
    print(f"trained in {train_seconds:.0f} s; everything is in {run_dir}")
    return run_dir


CURRENT_RUN = None  # the run folder of the run in progress, for the message on interruption

if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ConfigError, backend.BackendError, datasets.DataError, training.Diverged) as err:
        sys.exit(f"error: {err}")
    except OSError as err:  # e.g. the disk filled up while writing
        sys.exit(f"error: {err}" + resume_hint())
    except KeyboardInterrupt:
        sys.exit("interrupted" + resume_hint())
