"""The model compiled for training, and the paper's two training stages as one resumable loop
over epochs (main.py calls build_and_compile, split_rows and train).

Stage 1 fits the first 90% of the training samples and stops early on the validation RMSE,
keeping the best weights (as Keras' EarlyStopping with restore_best_weights; a loss or validation
RMSE that is not finite stops the run with a clear error). Stage 2 continues on all training
samples for epochs_cont epochs, at a constant rate (paper) or a cosine one, and optionally
averages the weights of its last epochs. A tuning run (tune_days > 0) scores its scored period
after every stage-2 epoch, as stage 2's val_loss and val_rmse.

After every epoch the whole state is saved in the run folder's checkpoint/ (checkpoint.py): the
weights with the optimizer's moments, the epoch, the history, and the early-stopping and
averaging state. A run that diverges or collapses to a constant prediction is stopped with a
message naming the remedy. Each epoch's sample order depends only on (seed, stage, epoch), so a
run killed at any moment continues from its last completed epoch (python main.py ...
--resume=<run folder>) and ends with the same weights as an uninterrupted run.
"""
import functools
import time

import numpy as np

import checkpoint
import pipeline
from flowfiles import DataError


class Diverged(RuntimeError):
    """The loss or the validation RMSE stopped being a finite number."""


class Collapsed(Diverged):
    """Training stopped learning: the validation RMSE no longer moves (a constant prediction)."""


def epoch_order(rows, seed, stage, epoch):
    """The training rows of one epoch in their shuffled order: a function of its arguments only."""
    return np.random.default_rng([seed, stage, epoch]).permutation(np.asarray(rows))


def stage2_lr(cfg, epoch):
    """Stage 2's learning rate in epoch (0-based): constant, or a half cosine from lr_cont
    that would reach 0 one epoch after the last."""
    lr = cfg["lr_cont"] or cfg["lr"]
    if cfg["lr_schedule"] == "cosine":
        return lr * 0.5 * (1 + np.cos(np.pi * epoch / cfg["epochs_cont"]))
    return lr


def stage1_lr(cfg, cuts):
    """Stage 1's rate after `cuts` plateau cuts (plateau_factor): lr x plateau_factor^cuts."""
    return cfg["lr"] * cfg["plateau_factor"] ** cuts


def plateau_epochs_left(cfg, wait, cuts):
    """Epochs until stage 1 ends if val_rmse never improves again: the rest of this plateau's
    patience, and a whole patience after each cut still allowed."""
    cuts_left = cfg["plateau_cuts"] - cuts if cfg["plateau_factor"] else 0
    return cfg["patience"] - wait + max(0, cuts_left) * cfg["patience"]


def fresh_state():
    return {"stage": 1, "epoch": 0, "best_val": float("inf"), "best_epoch": 0, "wait": 0,
            "cuts": 0, "average_count": 0, "seconds": 0.0, "spreads": [],
            "history": {"stage": [], "loss": [], "rmse": [], "val_loss": [], "val_rmse": []}}


def check_finite(loss, val_rmse, stage, epoch, cfg):
    if not (np.isfinite(loss) and np.isfinite(val_rmse)):
        raise Diverged(f"training diverged in stage {stage}, epoch {epoch}: loss {loss}, "
                       f"validation RMSE {val_rmse}. Lower the learning rate (lr={cfg['lr']}, "
                       f"lr_cont={cfg['lr_cont']}) and start a new run")


def remedy(cfg):
    """What starts a new run out of a collapse (each measured: RESULTS.md)."""
    if not cfg.get("output_bias"):
        return ("Start a new run with the output started at the data's mean (--output_bias=True) "
                "or the rate warmed up (--warmup_epochs=1)")
    return f"Start a new run with the rate warmed up (--warmup_epochs=1) or lower (lr={cfg['lr']})"


def check_collapse(val_rmses, cfg, epochs=3):
    """Stops a stage 1 whose last `epochs` validation RMSEs agree to 1e-6: its output's tanh has
    saturated, every gradient is 0, and it would stay at that constant prediction for good.
    Learning moves the validation RMSE far more than that."""
    last = val_rmses[-epochs:]
    if len(last) == epochs and 0 < max(last) and max(last) - min(last) <= 1e-6 * max(last):
        raise Collapsed(
            f"training collapsed in stage 1: the validation RMSE stayed at {last[-1]:.4f} for "
            f"{epochs} epochs (epochs {len(val_rmses) - epochs + 1}-{len(val_rmses)}), a constant "
            f"prediction whose gradients are all 0. {remedy(cfg)}")


def spread(y):
    """How much values vary across samples: the mean over cells and flows of their standard
    deviation over the samples (axis 0)."""
    return float(np.mean(np.std(np.asarray(y, dtype=np.float64), axis=0)))


def spread_ratio(y_pred, y_true):
    """The predictions' spread across samples as a fraction of the targets' (inf for constant
    targets, where it says nothing)."""
    true = spread(y_true)
    return spread(y_pred) / true if true > 0 else float("inf")


# A prediction varying across samples by less than this fraction of the targets' variation is
# constant: a collapsed network's outputs vary by about 1e-3 of it or less (tanh saturated), a
# learning one by a large fraction of it.
CONSTANT_SPREAD = 0.01
DECIDE_FROM_EPOCH = 5


def check_constant(ratios, cfg):
    """Stops stage 1 when, at epoch 5 or later, the spread ratios (spread_ratio of the validation
    predictions after each epoch) of the last three epochs are all below CONSTANT_SPREAD and not
    growing (the last at most twice the first): a constant prediction, however slowly its RMSE
    still creeps down. Networks that pass near that state leave it with ratios growing about
    tenfold an epoch (BikeNYC, improved preset: 0.0002, 0.0004, 0.0037, 0.054), and are spared."""
    last = ratios[-3:]
    if len(ratios) >= DECIDE_FROM_EPOCH and max(last) < CONSTANT_SPREAD and last[-1] <= 2 * last[0]:
        raise Collapsed(
            f"training collapsed in stage 1: after {len(ratios)} epochs the model predicts the "
            f"same frame for every validation sample (their spread across samples is "
            f"{last[-1]:.2g} of the targets' over the last three epochs at most {max(last):.2g}); "
            f"the validation RMSE would only creep down. {remedy(cfg)}")


def predict_eagerly(model, ds, rows):
    """The model's scaled predictions for the rows, by plain calls: model.predict would trace its
    function for this batch shape and change the later predictions' rounding (and so a resumed
    run's metrics)."""
    import keras
    data = pipeline.batches(ds, rows, 256)
    out = np.concatenate([keras.ops.convert_to_numpy(model(x, training=False))
                          for x, *_ in data])
    return data.unpad(out) if hasattr(data, "unpad") else out


def output_bias_start(ds, activation):
    """The output bias that makes an untrained network predict each cell's mean training frame:
    (H, W, F), the mean itself for a linear output, its atanh under tanh (a cell never used, at
    -1, starts at atanh(-0.999) = -3.8)."""
    mean = ds.scaler.transform(ds.frames[:ds.first_test_frame].mean(axis=0, dtype=np.float64))
    if activation == "tanh":
        mean = np.arctanh(np.clip(mean, -0.999, 0.999))
    return mean.astype(np.float32)


def warmup_steps(cfg, steps_per_epoch):
    """n, the number of stage-1 optimizer steps over which warmup_epochs ramps the rate (0: off)."""
    return max(1, round(cfg["warmup_epochs"] * steps_per_epoch)) if cfg["warmup_epochs"] else 0


def warmup_callback(cfg, epoch, steps_per_epoch):
    """A callback setting stage 1's rate before each optimizer step s (0-based, counted over the
    stage) of its epoch `epoch` to lr x (s + 1) / n, the last one to lr; None when the warm-up is
    off or over. A function of the epoch alone, so a resumed run matches an uninterrupted one."""
    n = warmup_steps(cfg, steps_per_epoch)
    if epoch * steps_per_epoch >= n:
        return None
    import keras

    class Warmup(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            step = epoch * steps_per_epoch + batch
            self.model.optimizer.learning_rate = cfg["lr"] * min(1.0, (step + 1) / n)
    return Warmup()


def build_and_compile(cfg, ds, name=None):
    """The ST-ResNet of cfg for the data set's grid and features, compiled with its optimizer,
    loss and RMSE metric."""
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
        model.get_layer("output_bias").set_weights([output_bias_start(
            ds, cfg["output_activation"])])
    if cfg["weight_decay"]:
        optimizer = keras.optimizers.AdamW(learning_rate=cfg["lr"],
                                           weight_decay=cfg["weight_decay"])
    else:
        optimizer = keras.optimizers.Adam(learning_rate=cfg["lr"])
    # With padded batches (pipeline.PAD_TO) a loss is the mean over the real samples' cells.
    reduction = "mean_with_sample_weight" if pipeline.PAD_TO > 1 else "sum_over_batch_size"
    if cfg["loss"] == "huber" or pipeline.PAD_TO > 1:
        kinds = {"mse": keras.losses.MeanSquaredError, "mae": keras.losses.MeanAbsoluteError,
                 "huber": functools.partial(keras.losses.Huber, delta=cfg["huber_delta"])}
        loss = kinds[cfg["loss"]](reduction=reduction)
    else:
        loss = cfg["loss"]
    rmse = [keras.metrics.RootMeanSquaredError(name="rmse")]  # padding: only samples weighted 1
    model.compile(optimizer=optimizer, loss=loss, jit_compile=cfg["jit_compile"],
                  **{"weighted_metrics" if pipeline.PAD_TO > 1 else "metrics": rmse})
    # The optimizer's slots are made now, not by the first train step: TensorFlow traces a
    # function that creates variables twice, which doubled the first epoch's start-up time.
    model.optimizer.build(model.trainable_variables)
    return model


def split_rows(ds, validation_fraction):
    """Stage 1's rows: the first (1 - validation_fraction) of the training samples fit, the rest
    validate (as Keras' validation_split, which the official code used)."""
    n_fit = int(ds.n_train * (1 - validation_fraction))
    if n_fit < 1 or n_fit >= ds.n_train:
        raise DataError(f"{ds.n_train} training samples cannot be split into training "
                                 f"and validation by validation_fraction={validation_fraction}")
    return np.arange(n_fit), np.arange(n_fit, ds.n_train)


def duration(seconds):
    """Seconds in words for the epoch lines: 45 s, 12 min, 2 h 05 min."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"


def time_to_go(cfg, stage, epochs_done, wait, took, n_fit, n_train, cuts=0):
    """What the epoch line says of the time the run has to go, from the epochs timed so far in
    this process (took: {stage: [seconds]}). A stage-2 epoch is timed by stage 2's own epochs,
    or before them as a stage-1 epoch scaled to all n_train samples. Stage 1 ends when
    val_rmse has not improved for `patience` epochs (after each of the plateau cuts still
    allowed): its end is given as that bound. Members of
    an ensemble still to train are taken to last as long as this one."""
    epoch2 = (np.mean(took[2]) if took[2] else np.mean(took[1]) * n_train / max(n_fit, 1))
    stage2 = cfg["epochs_cont"] * epoch2
    if stage == 1:
        within = min(plateau_epochs_left(cfg, wait, cuts), cfg["epochs"] - epochs_done)
        parts = [f"stage 1 ends within {within} epoch{'s' * (within > 1)} "
                 f"({duration(within * np.mean(took[1]))}) unless val_rmse improves"
                 ] if within else []
        parts += [f"stage 2 {duration(stage2)}"] if cfg["epochs_cont"] else []
        text = "to go: " + (", then ".join(parts) or "the evaluation")
        member = (epochs_done + within) * np.mean(took[1]) + stage2
    else:
        left = (cfg["epochs_cont"] - epochs_done) * epoch2
        text = f"to go: {duration(left)}" if left else "to go: the evaluation"
        member = (np.sum(took[1]) if took[1] else 0.0) + stage2
    after = cfg.get("members_after", 0)
    if after:
        text += f", then {after} more member(s) of about {duration(member)} each"
    return text


def fit_one_epoch(model, ds, rows, cfg, stage, epoch):
    data = pipeline.batches(ds, epoch_order(rows, cfg["seed"], stage, epoch),
                                    cfg["batch_size"])
    steps = -(-len(rows) // cfg["batch_size"])
    warmup = warmup_callback(cfg, epoch, steps) if stage == 1 else None
    h = model.fit(data, epochs=1, shuffle=False, verbose=1 if cfg["verbose"] == 1 else 0,
                  callbacks=[warmup] if warmup else None).history
    return h["loss"][0], h["rmse"][0]


def train(model, ds, cfg, fit_rows, val_rows, run_dir, predict_test, data_id=""):
    """Both stages, resuming from run_dir's checkpoint if there is one.
    -> (history columns, test predictions after stage 1 or None, training seconds)"""
    ckpt = checkpoint.Checkpoint(run_dir)
    arrays = {}  # lists of arrays kept in the checkpoint: best, average, stage1_pred
    if ckpt.exists():
        state = dict(fresh_state(), **ckpt.load(model))  # older checkpoints lack newer keys
        arrays = {k: state.pop(k) for k in ("best", "average", "stage1_pred") if k in state}
        print("resuming from the checkpoint: " + (
            "both stages done" if state["stage"] == 3 else
            f"stage {state['stage']}, {state['epoch']} epoch(s) of it done"))
    else:
        state = dict(fresh_state(), data=data_id)
    hist = state["history"]
    say = print if cfg["verbose"] else (lambda *a: None)
    took = {1: [], 2: []}   # this process's epoch times, for the time to go

    def end_epoch(stage, loss, rmse, val_loss, val_rmse, started, note=""):
        for key, value in zip(("stage", "loss", "rmse", "val_loss", "val_rmse"),
                              (stage, loss, rmse, val_loss, val_rmse)):
            hist[key].append(value)
        state["epoch"] += 1
        state["seconds"] += time.time() - started
        val = (f" - val_rmse {val_rmse:.4f}" if stage == 1 else
               f" - tune_rmse {val_rmse:.4f}" if np.isfinite(val_rmse) else "")
        limit = cfg["epochs"] if stage == 1 else cfg["epochs_cont"]
        ckpt.save(model, state, arrays)  # before the line: a printed epoch is a saved one
        took[stage].append(time.time() - started)
        to_go = time_to_go(cfg, stage, state["epoch"], state["wait"], took, len(fit_rows),
                           ds.n_train, state["cuts"])
        say(f"stage {stage} epoch {state['epoch']}/{limit} - {took[stage][-1]:.0f}s - "
            f"loss {loss:.5f} - rmse {rmse:.4f}{val}{note} - {to_go}")

    if state["stage"] == 1:
        if state["epoch"] == 0:
            print(f"stage 1: {len(fit_rows)} training, {len(val_rows)} validation samples, "
                  f"at most {cfg['epochs']} epochs, patience {cfg['patience']}" +
                  (f"; at a plateau the rate is cut by {cfg['plateau_factor']:g} from the best "
                   f"weights, at most {cfg['plateau_cuts']} times"
                   if cfg["plateau_factor"] else ""))
        probe_rows = val_rows[:: -(-len(val_rows) // 512)]  # at most 512, spread over the period
        probe_targets = ds.scaler.transform(ds.targets(probe_rows))
        while state["epoch"] < cfg["epochs"] and state["wait"] < cfg["patience"]:
            started = time.time()
            if cfg["plateau_factor"]:
                model.optimizer.learning_rate = stage1_lr(cfg, state["cuts"])
            loss, rmse = fit_one_epoch(model, ds, fit_rows, cfg, 1, state["epoch"])
            val = model.evaluate(pipeline.batches(ds, val_rows, cfg["batch_size"]),
                                 verbose=0, return_dict=True)
            check_finite(loss, val["rmse"], 1, state["epoch"] + 1, cfg)
            check_collapse(hist["val_rmse"] + [val["rmse"]], cfg)  # all of stage 1 so far
            state["spreads"].append(spread_ratio(
                predict_eagerly(model, ds, probe_rows), probe_targets))
            check_constant(state["spreads"], cfg)
            if val["rmse"] < state["best_val"]:  # EarlyStopping's rule with min_delta=0
                state.update(best_val=val["rmse"], best_epoch=state["epoch"] + 1, wait=0)
                arrays["best"] = model.get_weights()
            else:
                state["wait"] += 1
            note = ""
            if (state["wait"] == cfg["patience"] and cfg["plateau_factor"]
                    and state["cuts"] < cfg["plateau_cuts"]):  # a plateau: cut the rate
                state.update(cuts=state["cuts"] + 1, wait=0)
                model.set_weights(arrays["best"])  # the optimizer keeps its moments
                note = (f" - plateau: back to epoch {state['best_epoch']}'s weights, rate "
                        f"{stage1_lr(cfg, state['cuts']):.3g}")
            end_epoch(1, loss, rmse, val["loss"], val["rmse"], started, note)
        model.set_weights(arrays.pop("best"))  # the optimizer keeps its last state, as Keras
        print(f"stage 1 ended after {state['epoch']} epochs; best validation RMSE "
              f"{state['best_val']:.4f} at epoch {state['best_epoch']}, whose weights go on" +
              (f" (the rate was cut {state['cuts']} times)" if cfg["plateau_factor"] else ""))
        if cfg["epochs_cont"]:
            arrays["stage1_pred"] = [predict_test(model)]
        state.update(stage=2, epoch=0)
        ckpt.save(model, state, arrays)

    if state["stage"] == 2:
        epochs, first_avg = cfg["epochs_cont"], cfg["epochs_cont"] - cfg["average_last"]
        if state["epoch"] == 0 and epochs:
            print(f"stage 2: {ds.n_train} samples, {epochs} epochs, learning rate "
                  f"{cfg['lr_cont'] or cfg['lr']:g} ({cfg['lr_schedule']})" +
                  (f", weights averaged over the last {min(cfg['average_last'], epochs)}"
                   if cfg["average_last"] else ""))
        while state["epoch"] < epochs:
            started = time.time()
            model.optimizer.learning_rate = stage2_lr(cfg, state["epoch"])
            loss, rmse = fit_one_epoch(model, ds, np.arange(ds.n_train), cfg, 2, state["epoch"])
            check_finite(loss, 0.0, 2, state["epoch"] + 1, cfg)
            tune = {"loss": float("nan"), "rmse": float("nan")}
            if cfg.get("tune_days"):  # a tuning run scores its scored period after every epoch
                tune = model.evaluate(pipeline.batches(ds, np.arange(ds.n_train, ds.n_samples),
                                                       cfg["batch_size"]),
                                      verbose=0, return_dict=True)
            note = ""
            if state["epoch"] >= first_avg:
                weights = [w.astype(np.float64) for w in model.get_weights()]
                arrays["average"] = (weights if "average" not in arrays else
                                     [s + w for s, w in zip(arrays["average"], weights)])
                state["average_count"] += 1
                note = f" - averaged: {state['average_count']}"
            end_epoch(2, loss, rmse, tune["loss"], tune["rmse"], started, note)
        if state["average_count"]:
            model.set_weights([(s / state["average_count"]).astype(np.float32)
                               for s in arrays.pop("average")])
        state.update(stage=3, epoch=0)  # done: the final weights are saved
        ckpt.save(model, state, arrays)
    stage1 = arrays.get("stage1_pred")
    return hist, (stage1[0] if stage1 else None), state["seconds"]
