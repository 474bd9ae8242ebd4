"""What a run reports: the baselines' and the model's test predictions, their scores in both
RMSE conventions, the results table beside the paper's rows, the multi-step scores and the
plots (main.py calls it after training).
"""
import os

import numpy as np

import evaluation
import flowfiles
import pipeline
import run_folder
import timestamps

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


def baseline_predictions(ds):
    """HA and last-frame predictions for the test targets (original scale); computed before
    training so that data too short for them is reported first."""
    slots = ds.target_slots[ds.n_train:]
    return {"_ha": evaluation.historical_average(ds.frames, ds.slot_ids, ds.T, slots,
                                                 ds.first_test_frame),
            "_last": evaluation.last_frame(ds.frames, ds.slot_ids, slots)}


def validation_baselines(ds, val_rows):
    """RMSE and MAE of HA and the last frame on stage 1's validation samples (original scale),
    HA from the frames before the first validation target, as the test's from those before the
    test: {'rmse_val_ha': ..., 'mae_val_ha': ..., 'rmse_val_last': ..., ...}. A period too short
    for HA leaves HA out."""
    slots, y_true = ds.target_slots[val_rows], ds.targets(val_rows)
    first = int(ds.index["target"][val_rows[0]])
    preds = {"_last": evaluation.last_frame(ds.frames, ds.slot_ids, slots)}
    try:
        preds["_ha"] = evaluation.historical_average(ds.frames, ds.slot_ids, ds.T, slots, first)
    except flowfiles.DataError:
        pass
    out = {}
    for suffix, pred in preds.items():
        out[f"rmse_val{suffix}"] = evaluation.rmse(y_true, pred)
        out[f"mae_val{suffix}"] = evaluation.mae(y_true, pred)
    return out


def validation_verdict(m):
    """Lines on the model against the baselines on validation data, naming what to try when the
    model is not better than one of them; [] for a run without validation scores."""
    if "rmse_val_stage1" not in m:
        return []
    names = {"_ha": "HA", "_last": "the last frame"}
    base = {s: m[f"rmse_val{s}"] for s in names if f"rmse_val{s}" in m}
    lines = [f"validation ({m['n_val']} samples, the end of the training period): ST-ResNet after "
             f"stage 1 {m['rmse_val_stage1']:.3f}, " +
             ", ".join(f"{names[s]} {v:.3f}" for s, v in base.items()) + " (RMSE)"]
    beaten_by = [names[s] for s, v in base.items() if v <= m["rmse_val_stage1"]]
    if beaten_by:
        lines.append(
            f"WARNING: on validation the model is not better than {' or '.join(beaten_by)}: "
            f"do not use it before comparing. Try more epochs (--epochs, if stage 1 used them "
            f"all), stage 1 alone (--epochs_cont=0: stage 2 made sparse, noisy flows worse on "
            f"Jersey City's trips), a longer training period, or for trip records a coarser "
            f"grid or longer slots (trips_to_flows.py --grid, --minutes): less sparse flows")
    return lines


def predict_test(model, ds):
    """The model's test predictions on the original scale, (n_test, H, W, F)."""
    rows = np.arange(ds.n_train, ds.n_samples)
    return ds.scaler.inverse_transform(
        pipeline.predict(model, pipeline.batches(ds, rows, 256)))


def test_metrics(ds, y_true, y_pred, baselines, mape_threshold=10.0):
    """Scores of the model (no suffix) and of the other predictions (their suffix: baselines,
    the model after stage 1), in both RMSE conventions, with MAPE over the test values above
    mape_threshold."""
    factor = evaluation.paper_factor(ds.frames[:ds.first_test_frame])
    metrics = {"dataset": ds.name, "n_train": int(ds.n_train), "n_test": int(ds.n_test),
               "paper_factor": factor, "flow_names": list(flowfiles.flow_names(ds.name)),
               "mape_threshold": mape_threshold,
               "mape_values": int(np.count_nonzero(y_true > mape_threshold))}
    for suffix, pred in {"": y_pred, **baselines}.items():
        metrics.update(evaluation.scores(y_true, pred, suffix, mape_threshold))
        metrics[f"rmse_paper{suffix}"] = metrics[f"rmse{suffix}"] * factor
    return metrics


def results_table(m, dataset):
    """The run's scores beside the baselines' and the paper's, as text to print."""
    rows = [("ST-ResNet (this run)", ""), ("  after stage 1 only", "_stage1"),
            *[(f"  member {i + 1} alone (seed {seed})", f"_member{i + 1}")
              for i, seed in enumerate(m.get("member_seeds", []))],
            ("HA (same weekday and slot)", "_ha"), ("last frame", "_last")]
    rows = [(label, s) for label, s in rows if f"rmse{s}" in m]
    mape = "mape_threshold" in m   # runs before MAPE have none

    def percent(value):
        return f"{100 * value:.1f}%" if value is not None else "-"
    lines = [f"{'':32}{'RMSE':>8}{'MAE':>8}{'RMSE flow0':>12}{'RMSE flow1':>12}"
             f"{'RMSE paper conv.':>18}" + (f"{'MAPE':>8}" if mape else "")]
    for label, s in rows:
        lines.append(f"{label:32}{m['rmse' + s]:8.3f}{m['mae' + s]:8.3f}"
                     f"{m['rmse' + s + '_flow0']:12.3f}{m['rmse' + s + '_flow1']:12.3f}"
                     f"{m['rmse_paper' + s]:18.3f}" +
                     (f"{percent(m.get('mape' + s)):>8}" if mape else ""))
    for label, value in [] if m.get("tune_days") else PAPER_ROWS.get(dataset, []):
        if PAPER_COLUMN[dataset] == "rmse":
            lines.append(f"{'paper: ' + label:32}{value:8.2f}")
        else:
            lines.append(f"{'paper: ' + label:32}{'':40}{value:18.2f}")
    lines.append(f"flow0 = {m['flow_names'][0]}, flow1 = {m['flow_names'][1]}; paper convention = "
                 f"RMSE x sqrt(cells / cells with any flow) = x {m['paper_factor']:.4f}")
    period = "test"
    if m.get("tune_days"):
        period = "tuning-period"
        lines.insert(0, f"a tuning run: scored on the {m['tune_days']} days before the test "
                        f"period, which was left out (--tune_days)")
    if mape:
        lines.append(f"MAPE over the {m['mape_values']:,} {period} values above "
                     f"{m['mape_threshold']:g} (--mape_threshold)")
    return "\n".join(lines)


def save_plots(run_dir, ds, history, y_true, y_pred):
    """The learning curves, the maps of the busiest test slot and the series of the busiest
    region, as PNG files in the run folder."""
    import plots
    names = flowfiles.flow_names(ds.name)
    stamps = timestamps.format_timestamps(ds.target_slots[ds.n_train:], ds.T)
    plots.learning_curves(history, os.path.join(run_dir, "learning_curves.png"))
    busy = int(np.argmax(y_true.sum(axis=(1, 2, 3))))
    plots.error_maps(y_true[busy], y_pred[busy], names, f"busiest test slot {stamps[busy]}",
                     os.path.join(run_dir, "maps_busiest_slot.png"))
    r, c = np.unravel_index(np.argmax(y_true.sum(axis=(0, 3))), y_true.shape[1:3])
    plots.region_series(y_true[:, r, c], y_pred[:, r, c], stamps, names,
                        f"busiest region (row {r}, column {c}) over the test period",
                        os.path.join(run_dir, "series_busiest_region.png"))


def evaluate(model, ds, baselines, members, stage1_preds, mape_threshold=10.0):
    """The test predictions, their truth and the scores of the model, of the baselines, of the
    model after stage 1 and (for an ensemble) of each member alone."""
    y_true = ds.targets(np.arange(ds.n_train, ds.n_samples))
    y_pred = predict_test(model, ds)
    others = dict(baselines)
    if all(p is not None for p in stage1_preds):  # an ensemble's: the mean of its members'
        others["_stage1"] = np.mean(stage1_preds, axis=0)
    if len(members) > 1:
        others.update({f"_member{i + 1}": predict_test(m, ds) for i, m in enumerate(members)})
    return y_true, y_pred, test_metrics(ds, y_true, y_pred, others, mape_threshold)


def horizon_report(run_dir, model, ds, lengths, horizon):
    """Scores of recursive forecasts 1..horizon steps ahead: horizon.csv, a plot and a line."""
    import plots
    rows = evaluation.horizon_scores(model, ds, lengths, horizon)
    if len(rows) < horizon:
        print(f"only {len(rows)} steps ahead fit in the test period and are scored")
    run_folder.write_rows(os.path.join(run_dir, "horizon.csv"), rows)
    plots.error_vs_horizon(rows, os.path.join(run_dir, "error_vs_horizon.png"))
    print("steps ahead: " + ", ".join(f"{r['step']}: RMSE {r['rmse']:.3f} (HA {r['rmse_ha']:.3f},"
                                      f" last {r['rmse_last']:.3f})" for r in rows))
