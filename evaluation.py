"""Errors on the original scale and the two baselines, computed on the same test targets."""
import numpy as np

import datasets


def rmse(y_true, y_pred):
    return float(np.sqrt(np.mean(np.square(y_true - y_pred))))


def mae(y_true, y_pred):
    return float(np.mean(np.abs(y_true - y_pred)))


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
    key = datasets.weekday(history, T) * T + history % T
    sums = np.zeros((7 * T,) + frames.shape[1:])
    np.add.at(sums, key, frames[:before])
    counts = np.bincount(key, minlength=7 * T)
    target_key = datasets.weekday(target_slots, T) * T + np.asarray(target_slots) % T
    if np.any(counts[target_key] == 0):
        raise datasets.DataError("historical average: some test slots have no earlier frame on "
                                 "the same weekday and slot of day; the training period needs at "
                                 "least one full week")
    return sums[target_key] / counts[target_key][:, None, None, None]


def last_frame(frames, slot_ids, target_slots):
    """Predict each target by the latest frame before it (X_{t-1} where it exists)."""
    pos = np.searchsorted(slot_ids, target_slots) - 1
    if np.any(pos < 0):
        raise datasets.DataError("last-frame baseline: a test target has no earlier frame")
    return frames[pos]


def scores(y_true, y_pred, prefix=""):
    """RMSE and MAE over all values and per flow, as flat keys."""
    out = {f"rmse{prefix}": rmse(y_true, y_pred), f"mae{prefix}": mae(y_true, y_pred)}
    for k in range(y_true.shape[-1]):
        out[f"rmse{prefix}_flow{k}"] = rmse(y_true[..., k], y_pred[..., k])
        out[f"mae{prefix}_flow{k}"] = mae(y_true[..., k], y_pred[..., k])
    return out
