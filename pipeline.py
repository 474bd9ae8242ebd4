"""The input pipeline: batches of sample rows, each gathered from the one frame array and scaled
on the fly, for fit, evaluate and predict. Under TensorFlow a tf.data pipeline (built in
backend.py), under JAX and PyTorch a keras.utils.PyDataset; both make each batch with
gather_batch. training.py, report.py and evaluation.py call it.
"""
import functools

import numpy as np

import backend

def gather_batch(ds, arrays, rows, take, transpose, reshape):
    """One batch of sample rows: each branch's frames gathered from the one frame array and
    scaled to [-1, 1] -> ({closeness, period, trend, external}, target). The arrays (frames,
    external and the index, as in ds) and the three functions come from one array library: numpy
    (PyDataset) or TensorFlow (tf.data)."""
    h, w, f = ds.frames.shape[1:]
    inputs = {}
    for k in ("closeness", "period", "trend"):
        if ds.index[k].shape[1]:
            x = take(arrays["frames"], take(arrays[k], rows))   # (B, len, H, W, F)
            x = transpose(x, [0, 2, 3, 1, 4])                  # (B, H, W, len, F)
            inputs[k] = ds.scaler.transform(reshape(x, [-1, h, w, f * ds.index[k].shape[1]]))
    if ds.external.shape[1]:
        inputs["external"] = take(arrays["external"], rows)
    return inputs, ds.scaler.transform(take(arrays["frames"], take(arrays["target"], rows)))


# Under JAX's data parallelism every batch must split evenly among the devices: batches are then
# padded to a multiple of PAD_TO (main sets it) with copies of their last sample, weighted 0.
PAD_TO = 1


def batches(ds, rows, batch_size):
    """The batches of the sample rows, in their order, for fit, evaluate and predict (predict
    through `predict`). Training shuffles the rows it passes (training.epoch_order). Under
    TensorFlow a tf.data pipeline, under JAX and PyTorch a keras.utils.PyDataset; both gather
    each batch by gather_batch."""
    import keras  # imported here so that errors in settings and data come first
    rows = np.asarray(rows, dtype=np.int64)
    arrays = {"frames": ds.frames, "external": ds.external, **ds.index}
    if keras.backend.backend() == "tensorflow":
        if ds._tf_gather is None:  # one copy of the arrays and one traced gather, for all
            ds._tf_gather = backend.tf_gather(arrays, functools.partial(gather_batch, ds))
        return backend.tf_batches(ds._tf_gather, rows, batch_size)  # of its pipelines
    take = functools.partial(np.take, axis=0)
    return py_dataset(rows, batch_size, lambda part: gather_batch(
        ds, arrays, part, take, np.transpose, np.reshape))


def array_batches(arrays, batch_size):
    """Batches of in-memory arrays ({input name: (n, ...)}), in order, for `predict`."""
    import keras
    if keras.backend.backend() == "tensorflow":
        return backend.tf_array_batches(arrays, batch_size)
    n = len(next(iter(arrays.values())))
    return py_dataset(np.arange(n), batch_size,
                      lambda part: ({k: v[part] for k, v in arrays.items()},))


def predict(model, data):
    """model.predict over batches or array_batches, without any padding."""
    out = model.predict(data, verbose=0)
    return data.unpad(out) if hasattr(data, "unpad") else out


_PY_DATASET = None


def py_dataset(rows, batch_size, batch):
    """A keras.utils.PyDataset of the rows in batches of batch_size; batch(rows of one batch)
    makes one. Batches are made on the training thread (workers=1): a gather is 50-200x faster than a
    training step (bench.py prints both), so a worker thread would buy nothing."""
    global _PY_DATASET
    if _PY_DATASET is None:
        import keras

        class Batches(keras.utils.PyDataset):
            def __init__(self, rows, batch_size, batch):
                super().__init__(workers=1, use_multiprocessing=False)
                self.rows, self.batch_size, self.batch = rows, batch_size, batch
                self.n = len(rows)
                self.pad_to = PAD_TO

            def __len__(self):
                return -(-self.n // self.batch_size)

            def unpad(self, out):
                """The rows of the batches' concatenated outputs that are not padding."""
                sizes = [min(self.batch_size, self.n - i * self.batch_size)
                         for i in range(len(self))]
                return out[np.concatenate([np.arange(k + -k % self.pad_to) < k for k in sizes])]

            def __getitem__(self, i):
                if not 0 <= i < len(self):
                    raise IndexError(i)
                part = self.rows[i * self.batch_size:(i + 1) * self.batch_size]
                if self.pad_to == 1:
                    return self.batch(part)
                pad = -len(part) % self.pad_to
                out = self.batch(np.r_[part, np.repeat(part[-1:], pad)])
                if len(out) == 1:  # inputs alone: predict
                    return out
                weights = np.ones(out[1].shape[:-1], np.float32)  # a loss value is per cell
                weights[len(part):] = 0
                return (*out, weights)
        _PY_DATASET = Batches
    return _PY_DATASET(rows, batch_size, batch)
