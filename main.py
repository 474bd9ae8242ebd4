"""One ST-ResNet run: load data, build, train (the paper's two stages), evaluate against the
baselines, plot and save everything in a new run folder.

    python main.py                                  # built-in synthetic city, a few minutes on CPU
    python main.py --dataset=bikenyc                # the paper's BikeNYC setting
    python main.py --dataset=taxibj --batch_norm=True
    python main.py --forecast_from=<run folder>     # forecast with a saved run (forecast.py)
Any global of params.py can be overridden as --key=value.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide TensorFlow C++ logs (Python errors still raise)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import backend  # noqa: E402
import checkpoint  # noqa: E402
import datasets  # noqa: E402
import flowfiles  # noqa: E402
import forecast  # noqa: E402
import params  # noqa: E402
import pipeline  # noqa: E402
import report  # noqa: E402
import run_folder  # noqa: E402
import settings  # noqa: E402
import timestamps  # noqa: E402
import training  # noqa: E402

CURRENT_RUN = None  # the run folder of the run in progress, for the message on interruption


def load_data(cfg):
    """The data set of the settings, its samples split; what loading did is printed."""
    ds = datasets.load_dataset(
        cfg["dataset"], cfg["data_dir"], cfg["len_closeness"], cfg["len_period"],
        cfg["len_trend"], cfg["days_test"], cfg["use_meta"], cfg["use_holiday"],
        cfg["use_meteorology"], cfg["slots_per_day"], cfg["holiday_file"],
        cfg["meteorology_file"], cfg["use_time_of_day"], cfg["duplicates"], cfg["empty_slots"],
        cfg["tune_days"])
    cfg["T"] = cfg["slots_per_day"] = ds.T
    print("\n".join(ds.notes))
    first_test = timestamps.format_timestamps([ds.slot_ids[ds.first_test_frame]], ds.T)[0]
    print(f"{cfg['dataset']}: {len(ds.frames)} frames of {ds.frames.shape[1:]}, {ds.n_samples} "
          f"samples ({ds.n_train} train, {ds.n_test} {'tuning' if cfg['tune_days'] else 'test'}"
          f" from {first_test}), "
          f"{ds.external.shape[1]} external features")
    return ds


def open_run_folder(cfg, chief, scaler, data_id):
    """The run folder: the interrupted one to resume, or a new one. Only the chief of a
    multi-worker run writes one; the other workers' copies go to a temporary folder."""
    global CURRENT_RUN
    if cfg["resume"]:
        run_dir = run_folder.check_resumable(cfg["resume"], cfg, scaler, data_id)
        print(f"run folder: {run_dir} (resumed)")
    else:
        name = os.path.splitext(os.path.basename(cfg["dataset"].split(",")[0].strip()))[0]
        run_dir = run_folder.new_run_dir(cfg["out_dir"] if chief else tempfile.mkdtemp(), name)
        print(f"run folder: {run_dir}" + ("" if chief else " (a worker's copy, deleted at the end)"))
    CURRENT_RUN = run_dir
    return run_dir


def train_members(keras, cfg, ds, rows, strategy, run_dir, scaler, data_id):
    """Builds and trains each member of the ensemble (one model unless ensemble > 1) through
    both stages, seed after seed, on stage 1's (fit, validation) rows.
    -> (models, histories, stage-1 test predictions, seconds)"""
    k, members, histories, stage1_preds, seconds = cfg["ensemble"], [], [], [], 0.0
    for i in range(k):
        member_cfg = dict(cfg, seed=cfg["seed"] + i, members_after=k - i - 1)
        keras.utils.set_random_seed(member_cfg["seed"])
        with strategy.scope():
            model = training.build_and_compile(member_cfg, ds,
                                               name=f"member{i + 1}" if k > 1 else None)
        if i == 0:
            print(f"ST-ResNet: {model.count_params():,} parameters" + (
                f"; an ensemble of {k} trained in turn (seeds {cfg['seed']}..{cfg['seed'] + k - 1})"
                f" whose outputs are averaged" if k > 1 else ""))
            run_folder.start_run_folder(run_dir, cfg, ds, scaler, model.count_params() * k)
        member_dir = checkpoint.member_dir(run_dir, i, k)
        if k > 1:
            os.makedirs(member_dir, exist_ok=True)
            print(f"ensemble member {i + 1}/{k}: seed {member_cfg['seed']}, in {member_dir}")
        # The test error of stage 1's best weights is kept too, to show what stage 2 adds (it is
        # not used to choose anything).
        history, stage1_pred, took = training.train(
            model, ds, member_cfg, *rows, member_dir, lambda m: report.predict_test(m, ds),
            data_id)
        run_folder.write_history(os.path.join(member_dir, "history.csv"), history)
        members.append(model)
        histories.append(history)
        stage1_preds.append(stage1_pred)
        seconds += took
    return members, histories, stage1_preds, seconds


def combine(keras, members, histories, cfg, strategy, run_dir):
    """The model to evaluate and save, and its history: the one member, or the ensemble that
    averages the members' outputs with their histories one after the other."""
    if len(members) == 1:
        return members[0], histories[0]
    import st_resnet
    with strategy.scope():
        model = st_resnet.ensemble(members)
        # never trained as a whole; compiled so that model.keras keeps the run's jit_compile
        # (uncompiled, Keras would pick XLA on a GPU). Plain SGD has no state to save.
        model.compile(optimizer=keras.optimizers.SGD(), loss=members[0].loss,
                      jit_compile=cfg["jit_compile"])
    history = {"member": [i + 1 for i, h in enumerate(histories) for _ in h["stage"]],
               **{key: [v for h in histories for v in h[key]] for key in histories[0]}}
    run_folder.write_history(os.path.join(run_dir, "history.csv"), history)
    return model, history


def interrupted(err):
    """Whether err is, or was raised from, a KeyboardInterrupt: Ctrl-C that lands inside a C
    function (numpy's __array__, called by TensorFlow while setting the learning rate) comes out
    as 'SystemError: ... returned a result with an exception set', caused by the interrupt."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def main(argv):
    # settings: the command line over params.py, checked before any data is read
    settings.apply_overrides(argv, __doc__)
    cfg = settings.resolve_config()
    if cfg["forecast_from"]:
        return forecast.forecast(cfg["forecast_from"], {a[2:].split("=", 1)[0] for a in argv},
                                 cfg)

    # data: samples, the split and the baselines (so that too little data is reported first)
    ds = load_data(cfg)
    baselines = report.baseline_predictions(ds)
    rows = training.split_rows(ds, cfg["validation_fraction"])

    # the framework, devices and the run folder
    keras = backend.import_keras(cfg["threads"])  # only now: errors in settings and data come first
    strategy, described = backend.distribution(cfg["distribute"], cfg["batch_size"])
    if described:
        print(described)
    # under JAX every batch must split evenly among the devices
    pipeline.PAD_TO = strategy.num_replicas_in_sync if backend.name() == "jax" else 1
    chief = cfg["distribute"] != "multiworker" or settings.tf_config_task()[2]
    scaler = {**ds.scaler.to_dict(), "external": ds.external_scaling}
    data_id = checkpoint.data_fingerprint(ds)  # kept in the checkpoint; a resume compares it
    run_dir = open_run_folder(cfg, chief, scaler, data_id)
    policy, why = backend.resolve_precision(cfg["precision"])
    keras.mixed_precision.set_global_policy(policy)
    print(f"precision: {policy} ({why})")
    if "preset" not in settings.GIVEN:
        laid = ", ".join(f"{k}={v}" for k, v in params.PRESETS[cfg["preset"]].items())
        print(f"preset: {cfg['preset']}, the default for " + (
            f"your own files ({laid}; --preset=paper runs the paper's protocol)" if laid
            else "this data set (the paper's protocol)"))

    # model and the two training stages, for each member of the ensemble
    members, histories, stage1_preds, train_seconds = train_members(
        keras, cfg, ds, rows, strategy, run_dir, scaler, data_id)
    model, history = combine(keras, members, histories, cfg, strategy, run_dir)
    model.save(os.path.join(run_dir, "model.tmp.keras"))
    os.replace(os.path.join(run_dir, "model.tmp.keras"), os.path.join(run_dir, "model.keras"))

    # evaluation on the test days
    y_true, y_pred, metrics = report.evaluate(model, ds, baselines, members, stage1_preds,
                                              cfg["mape_threshold"])
    # on validation, before stage 2 trains on it: stage 1's best weights against the baselines
    # (an ensemble's: its members' mean)
    scale = (ds.scaler.max - ds.scaler.min) / 2   # from the [-1, 1] scale to the original
    best = [min(v for s, v in zip(h["stage"], h["val_rmse"]) if s == 1) for h in histories]
    metrics.update(report.validation_baselines(ds, rows[1]), n_val=len(rows[1]),
                   rmse_val_stage1=sum(best) / len(best) * scale)
    k = cfg["ensemble"]
    metrics.update(tune_days=cfg["tune_days"], train_seconds=train_seconds,
                   epochs_stage1=history["stage"].count(1),
                   epochs_stage2=history["stage"].count(2), n_params=model.count_params(),
                   precision=policy, member_seeds=[cfg["seed"] + i for i in range(k)])
    if k > 1:  # the totals above are over all members; each member's own:
        metrics.update(epochs_stage1_members=[h["stage"].count(1) for h in histories],
                       epochs_stage2_members=[h["stage"].count(2) for h in histories])

    # saving: predictions, multi-step scores, plots, then the metrics that mark a finished run
    run_folder.write_predictions(os.path.join(run_dir, "test_predictions.h5"), y_pred, y_true,
                                 ds.target_slots[ds.n_train:], ds.T)
    if cfg["horizon"] > 1:
        report.horizon_report(run_dir, model, ds,
                              (cfg["len_closeness"], cfg["len_period"], cfg["len_trend"]),
                              cfg["horizon"])
    report.save_plots(run_dir, ds, history, y_true, y_pred)
    run_folder.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    checkpoint.remove_checkpoint(run_dir)
    print(report.results_table(metrics, cfg["dataset"]))
    print("\n".join(report.validation_verdict(metrics)))
    if cfg["distribute"] != "none":
        print(f"final weights fingerprint: {checkpoint.weights_fingerprint(model)}; every local "
              f"replica holds the same weights: {backend.replicas_agree(model)}")
    if not chief:
        shutil.rmtree(os.path.dirname(run_dir), ignore_errors=True)
        return None
    print(f"trained in {train_seconds:.0f} s; everything is in {run_dir}")
    return run_dir


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (settings.ConfigError, backend.BackendError, flowfiles.DataError,
            training.Diverged) as err:
        sys.exit(f"error: {err}")
    except OSError as err:  # e.g. the disk filled up while writing
        sys.exit(f"error: {err}" + run_folder.resume_hint(CURRENT_RUN, sys.argv[1:],
                                                          params.distribute))
    except (KeyboardInterrupt, Exception) as err:  # Ctrl-C, also when another error carries it
        if not interrupted(err):
            raise
        sys.exit("interrupted" + run_folder.resume_hint(CURRENT_RUN, sys.argv[1:],
                                                        params.distribute))
