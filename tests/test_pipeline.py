"""Tests of pipeline.py: the batches a model is fed (tf.data through batches(); keras.PyDataset
through py_dataset() and gather_batch()), checked against frames taken by hand, and the padding of
uneven batches (PAD_TO) that changes neither the steps, the RMSE nor the predictions."""
from datetime import date

import numpy as np
import pytest

import datasets
import pipeline
from conftest import sid

pytestmark = pytest.mark.smoke


def small_flow_dataset(lc=3, lp=2, lq=1, ext_cols=3, n_test=4):
    """A hand-built FlowDataset: T=4, 16 days, 3x2 grid, 2 flows, a few missing slots."""
    T = 4
    rng = np.random.default_rng(11)
    start = sid(date(2014, 4, 7), 1, T)
    rel = np.array([r for r in range(64) if r not in (5, 33, 41)])
    slots = start + rel
    frames = rng.integers(0, 50, size=(len(slots), 3, 2, 2)).astype(np.float32)
    index = datasets.build_index(slots, T, lc, lp, lq)
    n = len(index["target"])
    if ext_cols:
        external = np.column_stack([np.arange(n), rng.random((n, ext_cols - 1))]).astype(np.float32)
    else:
        external = np.zeros((n, 0), dtype=np.float32)
    ds = datasets.FlowDataset(frames, slots, T, index, external, n_test, "small")
    return ds, dict(zip(slots.tolist(), frames))


def collect(tf_data):
    xs, ys = [], []
    for x, y in tf_data:
        xs.append({k: v.numpy() for k, v in x.items()})
        ys.append(y.numpy())
    keys = xs[0].keys()
    return {k: np.concatenate([x[k] for x in xs]) for k in keys}, np.concatenate(ys)


def test_make_tf_dataset_matches_manual_construction():
    ds, by_slot = small_flow_dataset()
    T = ds.T
    n = ds.n_samples
    assert n > 8
    first_test_slot = ds.slot_ids[ds.index["target"][n - 4]]
    train = np.stack([v for s, v in by_slot.items() if s < first_test_slot])
    lo, hi = train.min(), train.max()

    def scaled(x):
        return 2.0 * (x - lo) / (hi - lo) - 1.0

    rows = [0, 3, n - 1, 5, n - 4]
    x, y = collect(pipeline.batches(ds, rows, batch_size=2))
    assert set(x) == {"closeness", "period", "trend", "external"}
    assert x["closeness"].shape == (5, 3, 2, 6)
    assert x["period"].shape == (5, 3, 2, 4)
    assert x["trend"].shape == (5, 3, 2, 2)
    assert y.shape == (5, 3, 2, 2)
    for i, r in enumerate(rows):
        t = int(ds.slot_ids[ds.index["target"][r]])
        np.testing.assert_allclose(y[i], scaled(by_slot[t]), atol=1e-5)
        for name, step, length in (("closeness", 1, 3), ("period", T, 2), ("trend", 7 * T, 1)):
            for j in range(length):
                frame = by_slot[t - (j + 1) * step]
                for f in range(2):
                    np.testing.assert_allclose(x[name][i, :, :, 2 * j + f],
                                               scaled(frame[:, :, f]), atol=1e-5)
        np.testing.assert_array_equal(x["external"][i], ds.external[r])
        assert x["external"][i, 0] == r


def test_make_tf_dataset_zero_length_branch_and_no_external():
    ds, by_slot = small_flow_dataset(lc=2, lp=0, lq=1, ext_cols=0)
    x, y = collect(pipeline.batches(ds, [0, 1, 2], batch_size=8))
    assert set(x) == {"closeness", "trend"}
    assert x["closeness"].shape == (3, 3, 2, 4) and x["trend"].shape == (3, 3, 2, 2)
    lo, hi = ds.scaler.min, ds.scaler.max
    t = int(ds.slot_ids[ds.index["target"][2]])
    np.testing.assert_allclose(x["closeness"][2, :, :, 2:4],
                               2 * (by_slot[t - 2] - lo) / (hi - lo) - 1, atol=1e-5)
    np.testing.assert_allclose(x["trend"][2], 2 * (by_slot[t - 28] - lo) / (hi - lo) - 1,
                               atol=1e-5)


def test_make_tf_dataset_keeps_the_order_of_the_rows_given():
    ds, _ = small_flow_dataset()
    rows = np.random.default_rng(0).permutation(ds.n_samples)  # as training.epoch_order gives
    x, y = collect(pipeline.batches(ds, rows, batch_size=3))
    np.testing.assert_array_equal(x["external"][:, 0].astype(int), rows)
    np.testing.assert_allclose(y, ds.scaler.transform(ds.targets(rows)), atol=1e-5)


def test_pipelines_run_without_tf_data_autotuning():
    # With autotuning on, the end of each iterator waited for the tuner's thread to wake (periods
    # doubling up to 10 s), which stretched every fit/evaluate/predict call
    # (backend.tf_pipeline_options).
    ds, _ = small_flow_dataset()
    data = pipeline.batches(ds, np.arange(ds.n_samples), batch_size=4)
    assert data.options().autotune.enabled is False
    import tensorflow as tf
    policy = data.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA


def test_padded_batches_give_the_unpadded_loss_and_metric():
    """The padding of uneven batches (copies of the last sample, weighted 0) changes neither the
    training steps, the RMSE nor the predictions: checked on one device, the same rows both ways.
    (Keras' running mean of the loss, a report only, weights a padded batch by its padded size.)"""
    import keras
    ds, _ = small_flow_dataset()
    arrays = {"frames": ds.frames, "external": ds.external, **ds.index}

    def batch(part):
        return pipeline.gather_batch(ds, arrays, part, lambda a, i: a[i], np.transpose,
                                     np.reshape)
    inputs = {k: keras.Input(shape=v.shape[1:], name=k) for k, v in batch(np.arange(2))[0].items()}
    x = keras.layers.Concatenate()([keras.layers.Flatten()(v) for v in inputs.values()])
    out = keras.layers.Reshape(ds.frames.shape[1:])(keras.layers.Dense(
        int(np.prod(ds.frames.shape[1:])), activation="tanh")(x))
    model = keras.Model(inputs, out)
    model.compile(optimizer="sgd",
                  loss=keras.losses.MeanSquaredError(reduction="mean_with_sample_weight"),
                  weighted_metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
    start = model.get_weights()
    rows = np.arange(ds.n_samples)
    found = []
    for pad_to in (1, 4):
        pipeline.PAD_TO = pad_to
        try:
            data = pipeline.py_dataset(rows, 5, batch)
            if pad_to > 1:
                assert len(data[0][0]["closeness"]) == 8 and data[0][2][5:].sum() == 0
            found.append((model.evaluate(data, verbose=0, return_dict=True)["rmse"],
                          pipeline.predict(model, data)))
            model.fit(data, epochs=1, shuffle=False, verbose=0)  # SGD steps, the same batches
            found[-1] += (model.get_weights(),)
            model.set_weights(start)
        finally:
            pipeline.PAD_TO = 1
    (rmse, pred, weights), (rmse_padded, pred_padded, weights_padded) = found
    assert rmse_padded == pytest.approx(rmse, rel=1e-6)
    assert pred.shape == pred_padded.shape == (ds.n_samples, *ds.frames.shape[1:])
    np.testing.assert_allclose(pred_padded, pred, rtol=1e-6)
    for w, w_padded in zip(weights, weights_padded):  # each step's loss: the real samples'
        np.testing.assert_allclose(w_padded, w, rtol=1e-5, atol=1e-7)
