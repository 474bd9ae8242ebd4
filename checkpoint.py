"""The per-epoch checkpoint that makes every run resumable, and the fingerprints that check a
resumed run continues on the same data and that every worker holds the same weights.

A run folder's checkpoint/ (each ensemble member's, in member<i>/checkpoint/) holds the weights
with the optimizer's moments, the epoch, the history, the early-stopping and averaging state
(training.py decides what goes in and calls it every epoch). main.py removes it once the run's
results are written.
"""
import hashlib
import json
import os
import shutil

import numpy as np

import backend

CHECKPOINT = "checkpoint"


class Checkpoint:
    """run_dir/checkpoint: state.json names the files of the last completed epoch. Files get new
    names each time and state.json is replaced last, so a kill at any moment leaves either the
    old or the new state whole."""

    def __init__(self, run_dir):
        self.dir = os.path.join(run_dir, CHECKPOINT)
        self.count = 0

    def exists(self):
        return os.path.isfile(os.path.join(self.dir, "state.json"))

    def load(self, model):
        """The saved state, with the model's weights and optimizer restored; arrays it names
        (best weights, average sum, stage-1 predictions) are loaded into it."""
        with open(os.path.join(self.dir, "state.json")) as f:
            state = json.load(f)
        with backend.scope(model):  # the optimizer's slots must exist to be loaded
            model.optimizer.build(model.trainable_variables)
        path = os.path.join(self.dir, state["files"]["model"])
        if path.endswith(".weights.h5"):   # a checkpoint written before the .npz format
            model.load_weights(path)
        else:
            with np.load(path) as z:
                model.set_weights([z[f"w{i}"] for i in range(state["n_weights"])])
                for i, variable in enumerate(model.optimizer.variables):
                    variable.assign(z[f"o{i}"])
        for key, name in state["files"].items():
            if key != "model":
                with np.load(os.path.join(self.dir, name)) as z:
                    state[key] = [z[f"a{i}"] for i in range(len(z.files))]
        self.count = state["count"]
        return state

    def save(self, model, state, arrays):
        """Saves the model's weights and the optimizer's variables (one .npz: Keras' own
        save_weights took 0.35 s an epoch for the tests' tiny models, this a few ms) and the
        named lists of arrays, then state.json."""
        os.makedirs(self.dir, exist_ok=True)
        self.count += 1
        import keras
        files = {"model": f"model-{self.count}.npz"}
        weights = model.get_weights()
        np.savez(os.path.join(self.dir, files["model"]),
                 **{f"w{i}": w for i, w in enumerate(weights)},
                 **{f"o{i}": keras.ops.convert_to_numpy(v)
                    for i, v in enumerate(model.optimizer.variables)})
        for key, values in arrays.items():
            files[key] = f"{key}-{self.count}.npz"
            np.savez(os.path.join(self.dir, files[key]),
                     **{f"a{i}": v for i, v in enumerate(values)})
        saved = {k: v for k, v in state.items() if k not in arrays}
        tmp = os.path.join(self.dir, "state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(dict(saved, files=files, count=self.count, n_weights=len(weights)), f)
        for name in [*files.values(), "state.json.tmp"]:  # on disk before the commit point,
            with open(os.path.join(self.dir, name), "rb+") as f:  # power loss included
                os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.dir, "state.json"))  # the commit point
        folder = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        keep = set(files.values()) | {"state.json"}
        for name in os.listdir(self.dir):
            if name not in keep:
                os.remove(os.path.join(self.dir, name))


def arrays_sha256(arrays):
    """The SHA-256 (hex) of a sequence of arrays' bytes, in order."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def data_fingerprint(ds):
    """A hash of everything training reads: frames, slots, sample index, external features."""
    return arrays_sha256([ds.frames, ds.slot_ids, ds.external,
                          *(ds.index[k] for k in sorted(ds.index))])


def weights_fingerprint(model):
    """A short hash of all weights: equal on every worker of a multi-worker run."""
    return arrays_sha256(model.get_weights())[:16]


def member_dir(run_dir, i, k):
    """Where member i (from 0) of an ensemble of k keeps its checkpoint and history: the run
    folder itself for a single model, else its subfolder member<i+1>."""
    return run_dir if k == 1 else os.path.join(run_dir, f"member{i + 1}")


def checkpoint_states(run_dir):
    """The state.json files of the run's checkpoints (its own, or its ensemble members')."""
    paths = [os.path.join(run_dir, CHECKPOINT, "state.json")]
    if os.path.isdir(run_dir):
        paths += [os.path.join(run_dir, name, CHECKPOINT, "state.json")
                  for name in sorted(os.listdir(run_dir)) if name.startswith("member")]
    return [p for p in paths if os.path.isfile(p)]


def remove_checkpoint(run_dir):
    """Called once the run's results are written."""
    for state in checkpoint_states(run_dir):
        shutil.rmtree(os.path.dirname(state), ignore_errors=True)
