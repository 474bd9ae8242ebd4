"""Errors on the original scale and the two baselines, computed on the same test targets."""
import numpy as np

import datasets
import flowfiles
import pipeline
import timestamps


def rmse(y_true, y_pred):
    return float(np.sqrt(np.mean(np.square(y_true - y_pred))))


def mae(y_true, y_pred):
    return float(np.mean(np.abs(y_true - y_pred)))


def mape(y_true, y_pred, threshold):
    """Mean absolute percentage error as a fraction, over the values whose truth is above
    `threshold` (MAPE is undefined at 0 and explodes near it); None when no value is above."""
    above = y_true > threshold
    if not above.any():
        return None
    return float(np.mean(np.abs(y_true[above] - y_pred[above]) / y_true[above]))


def paper_factor(frames):
    """sqrt(cells / cells with any flow): the official BikeNYC script's RMSE convention, which
    averages over the cells holding a station only (81 of 128 for BikeNYC)."""
    cells = frames.shape[1] * frames.shape[2]
    active = int(np.count_nonzero(np.any(frames != 0, axis=(0, 3))))
    return float(np.sqrt(cells / max(active, 1)))


def historical_average(frames, slot_ids, T, target_slots, before):
    """The paper's HA: for each target, the mean of all frames before position `before` with the
    same weekday and slot of day. (len(target_slots), H, W, F)"""
    history = slot_ids[:before]
    key = timestamps.weekday(history, T) * T + history % T
    sums = np.zeros((7 * T,) + frames.shape[1:])
    np.add.at(sums, key, frames[:before])
    counts = np.bincount(key, minlength=7 * T)
    target_key = timestamps.weekday(target_slots, T) * T + np.asarray(target_slots) % T
    if np.any(counts[target_key] == 0):
        raise flowfiles.DataError("historical average: some test slots have no earlier frame on "
                                 "the same weekday and slot of day; the training period needs at "
                                 "least one full week")
    return sums[target_key] / counts[target_key][:, None, None, None]


def last_frame(frames, slot_ids, target_slots):
    """Predict each target by the latest frame before it (X_{t-1} where it exists)."""
    pos = np.searchsorted(slot_ids, target_slots) - 1
    if np.any(pos < 0):
        raise flowfiles.DataError("last-frame baseline: a test target has no earlier frame")
    return frames[pos]


def scores(y_true, y_pred, prefix="", mape_threshold=None):
    """RMSE and MAE over all values and per flow, as flat keys; with mape_threshold also MAPE
    over the values above it (mape{prefix}, mape{prefix}_flow{k})."""
    out = {f"rmse{prefix}": rmse(y_true, y_pred), f"mae{prefix}": mae(y_true, y_pred)}
    if mape_threshold is not None:
        out[f"mape{prefix}"] = mape(y_true, y_pred, mape_threshold)
    for k in range(y_true.shape[-1]):
        out[f"rmse{prefix}_flow{k}"] = rmse(y_true[..., k], y_pred[..., k])
        out[f"mae{prefix}_flow{k}"] = mae(y_true[..., k], y_pred[..., k])
        if mape_threshold is not None:
            out[f"mape{prefix}_flow{k}"] = mape(y_true[..., k], y_pred[..., k],
                                                mape_threshold)
    return out


def recursive_forecast(model, frames, slot_ids, T, lengths, scaler, features, starts, horizon):
    """Predict slots start .. start + horizon - 1 of each start slot from the frames before it,
    feeding each step's predictions back in as the later steps' recent frames (the journal
    version's multi-step prediction). Weather stays that of the last known slot.
    -> predictions (horizon, n, H, W, F) on the original scale, valid (horizon, n): every real
    frame that step needed exists."""
    starts = np.asarray(starts)
    wants_external = "external" in [x.name for x in model.inputs]
    preds, masks, valid = [], [], np.ones(len(starts), bool)
    for step in range(1, horizon + 1):
        x, ok = datasets.recursive_inputs(frames, slot_ids, T, lengths, starts, step, preds)
        valid = valid & ok
        x = {k: scaler.transform(v).astype(np.float32) for k, v in x.items()}
        if wants_external:
            x["external"] = features(starts + step - 1, known_before=starts)
        preds.append(scaler.inverse_transform(
            pipeline.predict(model, pipeline.array_batches(x, 256))))
        masks.append(valid)
    return np.stack(preds), np.stack(masks)


def horizon_scores(model, ds, lengths, horizon):
    """RMSE and MAE per step ahead on the test period, with HA and the last known frame on the
    same targets: step k starts from each test target t and predicts t + k - 1 (step 1 is the
    ordinary one-step test). -> list of dicts"""
    starts = ds.target_slots[ds.n_train:]
    preds, masks = recursive_forecast(model, ds.frames, ds.slot_ids, ds.T, lengths, ds.scaler,
                                      ds.features, starts, horizon)
    position = datasets.slot_positions(ds.slot_ids)
    last_known = last_frame(ds.frames, ds.slot_ids, starts)
    rows = []
    for i in range(horizon):
        keep = masks[i] & np.isin(starts + i, starts)  # the target lies in the test period
        if not keep.any():
            break
        targets = starts[keep] + i
        truth = ds.frames[position(targets)]
        ha = historical_average(ds.frames, ds.slot_ids, ds.T, targets, ds.first_test_frame)
        rows.append({"step": i + 1, "n": int(keep.sum()),
                     "rmse": rmse(truth, preds[i][keep]), "mae": mae(truth, preds[i][keep]),
                     "rmse_ha": rmse(truth, ha), "mae_ha": mae(truth, ha),
                     "rmse_last": rmse(truth, last_known[keep]),
                     "mae_last": mae(truth, last_known[keep])})
    return rows
