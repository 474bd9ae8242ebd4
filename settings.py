"""The settings of a run: params.py's globals, overridden from the command line, laid over a
preset and the data set's defaults, then checked, all before any data is read.

    apply_overrides(argv)  --key=value arguments -> params, each key and type checked
    resolve_config()       -> the dict of every setting a run uses

main.py calls both. main.py and this module are the only readers of params.py; everything else
takes arguments.
"""
import ast
import json
import os
import sys

import backend
import params


GIVEN = set()  # the params set on the command line: they win over a preset


class ConfigError(ValueError):
    """A bad command-line override or an impossible combination of params."""


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


def apply_overrides(argv, usage=""):
    """Set params from --key=value arguments, checking each key and the value's type; --help
    prints `usage` and every param with its value."""
    known = settable_params()
    GIVEN.clear()
    if any(arg in ("-h", "--help") for arg in argv):
        print(usage + "\nparams (see params.py for what each means):\n" + "\n".join(
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
    if cfg["preset"] not in ("auto", *params.PRESETS):
        raise ConfigError(f"preset must be one of auto, {', '.join(params.PRESETS)}; got "
                          f"{cfg['preset']!r}")
    named = [k for k in params.DATASET_DEFAULTS if k != "file"]
    kind = cfg["dataset"] if cfg["dataset"] in named else "file"
    if cfg["preset"] == "auto":  # the paper's protocol for its data sets, fast for your own files
        cfg["preset"] = "fast" if kind == "file" else "paper"
    cfg.update({k: v for k, v in params.PRESETS[cfg["preset"]].items() if k not in GIVEN})
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
    check_values(cfg)
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
    return cfg


def check_values(cfg):
    """Every numeric setting in its range and every named choice one of its names."""
    for key in ("len_closeness", "len_period", "len_trend", "nb_residual_unit", "epochs_cont",
                "lr_cont", "weight_decay", "average_last", "warmup_epochs", "seed", "threads",
                "tune_days"):
        if cfg[key] < 0:
            raise ConfigError(f"{key} must be >= 0, got {cfg[key]}")
    for key in ("days_test", "nb_filters", "batch_size", "epochs", "patience", "horizon",
                "ensemble"):
        if cfg[key] < 1:
            raise ConfigError(f"{key} must be >= 1, got {cfg[key]}")
    if not 0 <= cfg["plateau_factor"] < 1 or cfg["plateau_cuts"] < 0:
        raise ConfigError(f"plateau_factor must be in [0, 1) (0: off; 0.5 halves stage 1's rate "
                          f"at each plateau) and plateau_cuts >= 0; got {cfg['plateau_factor']} "
                          f"and {cfg['plateau_cuts']}")
    if not cfg["mape_threshold"] >= 0:
        raise ConfigError(f"mape_threshold must be >= 0 (MAPE counts the test values above "
                          f"it), got {cfg['mape_threshold']}")
    if not any([cfg["len_closeness"], cfg["len_period"], cfg["len_trend"]]):
        raise ConfigError("len_closeness, len_period and len_trend are all 0: switch on at least "
                          "one branch")
    if not (cfg["lr"] > 0 and 0 < cfg["validation_fraction"] < 1 and cfg["huber_delta"] > 0):
        raise ConfigError(f"lr and huber_delta must be > 0 and validation_fraction in (0, 1); "
                          f"got {cfg['lr']}, {cfg['huber_delta']} and "
                          f"{cfg['validation_fraction']}")
    for key, allowed in (("loss", ("mse", "mae", "huber")), ("lr_schedule", ("constant", "cosine")),
                         ("output_activation", ("tanh", "linear")),
                         ("duplicates", ("error", "first", "last")),
                         ("empty_slots", ("keep", "missing")),
                         ("precision", ("float32", "mixed_bfloat16", "auto")),
                         ("distribute", ("none", "mirrored", "multiworker"))):
        if cfg[key] not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {cfg[key]!r}")


def tf_config_task():
    """TF_CONFIG's (task type, task index, is chief), checked before training."""
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        raise ConfigError(f"distribute=multiworker needs the TF_CONFIG environment variable on "
                          f"every worker, e.g. TF_CONFIG='{example}' (docs/distributed.md)")
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


def older_defaults(saved):
    """A saved run's settings (its params.json), completed with the value each setting newer
    than the run had before it existed (params.BEFORE_IT_EXISTED)."""
    return {**params.BEFORE_IT_EXISTED, **saved}
