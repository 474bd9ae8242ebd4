"""The one seam to the framework under Keras: which backend runs (KERAS_BACKEND: tensorflow,
jax or torch; tensorflow unless set), its import, threads, GPUs, distribution and, under
TensorFlow, the tf.data pipelines of pipeline.py. Everything else in the project speaks Keras;
this module is the only one that imports TensorFlow, JAX or PyTorch by name, and only the one
that runs.
"""
import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile

BACKENDS = ("tensorflow", "jax", "torch")
# What each backend's install line is (docs/backends.md).
INSTALL = {"tensorflow": "pip install -r requirements.txt",
           "jax": "pip install -r requirements-jax.txt",
           "torch": "pip install -r requirements-torch.txt"}
# jit_compile's default per backend. TensorFlow: off, XLA measured slower on CPU
# (docs/speed.md). JAX: on, the only fast path (off, every operation is dispatched on its own).
# PyTorch: off, eager PyTorch (on would be torch.compile, not measured here).
JIT_COMPILE = {"tensorflow": False, "jax": True, "torch": False}


class BackendError(ValueError):
    """A backend that is unknown, not installed, or cannot do a setting."""


def name():
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def check(distribute="none", threads=0):
    """Refuses, before any training, a backend that is unknown or not installed, and settings the
    backend cannot do."""
    b = name()
    if b not in BACKENDS:
        raise BackendError(f"KERAS_BACKEND={b!r} is not one of {', '.join(BACKENDS)}")
    if importlib.util.find_spec(b) is None:
        raise BackendError(f"KERAS_BACKEND={b}, but {b} is not installed: {INSTALL[b]}")
    if b == "torch" and distribute != "none":
        raise BackendError(f"distribute={distribute} is not available under KERAS_BACKEND=torch: "
                           f"Keras' distribution API covers TensorFlow and JAX only. Use "
                           f"KERAS_BACKEND=jax (distribute=mirrored) or tensorflow")
    if b == "jax" and distribute == "multiworker":
        raise BackendError("distribute=multiworker is TensorFlow's (TF_CONFIG) and not available "
                           "under KERAS_BACKEND=jax; use KERAS_BACKEND=tensorflow for several "
                           "machines, or distribute=mirrored for one machine's devices")
    if b == "jax" and threads:
        raise BackendError("threads is not available under KERAS_BACKEND=jax: XLA's CPU thread "
                           "pool has no setting; leave threads=0 (or limit the process's cores "
                           "with taskset)")


def import_keras(threads=0):
    """Imports Keras on the chosen backend and sets the framework's threads (0: its choice).
    TensorFlow's C++ start-up notices (oneDNN, CUDA stub), printed before its log level applies,
    are hidden, and shown if the import fails. Under JAX or PyTorch, an installed TensorFlow is
    imported the same quiet way: keras.utils.set_random_seed would import it to seed it."""
    if name() == "tensorflow" or importlib.util.find_spec("tensorflow") is not None:
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                importlib.import_module("tensorflow")
            except BaseException as err:
                os.dup2(saved, 2)
                if name() != "tensorflow" and isinstance(err, ImportError):
                    pass  # a broken or blocked TensorFlow: Keras goes on without it
                else:
                    captured.seek(0)
                    sys.stderr.write(captured.read().decode(errors="replace"))
                    raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    keras = importlib.import_module("keras")
    if threads:
        set_threads(threads)
    return keras


def set_threads(n):
    """The framework's thread pools get n threads each. TensorFlow's can be set only before its
    runtime starts, PyTorch's inter-op pool only before its first parallel work."""
    try:
        if name() == "tensorflow":
            import tensorflow as tf
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        elif name() == "torch":
            import torch
            torch.set_num_threads(n)
            torch.set_num_interop_threads(n)
    except RuntimeError:  # main() called again in one process (as the tests do)
        print(f"threads={n} not applied: the {name()} runtime already started in this process")
        return
    print(f"threads: {n} intra-op, {n} inter-op")


def gpu_capabilities():
    """The compute capability (major, minor) of each visible NVIDIA GPU ((0, 0) where unknown)."""
    b = name()
    if b == "tensorflow":
        import tensorflow as tf
        return [tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability")
                      or (0, 0)) for gpu in tf.config.list_physical_devices("GPU")]
    if b == "jax":
        import jax
        return [tuple(int(p) for p in str(getattr(d, "compute_capability", "0.0")).split(".")[:2])
                for d in jax.devices() if d.platform == "gpu"]
    import torch
    return [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. on macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].split() for line in f
                         if line.startswith("flags")), [])
    except OSError:
        return []


def resolve_precision(choice):
    """(Keras dtype policy, why) for params.precision; "auto" picks mixed_bfloat16 only where the
    hardware computes bfloat16 natively, since emulated bfloat16 is slower than float32."""
    if choice != "auto":
        return choice, "as set"
    gpus = gpu_capabilities()
    for capability in gpus:
        if tuple(capability) >= (8, 0):
            return "mixed_bfloat16", ("auto: the GPU has compute capability "
                                      f"{capability[0]}.{capability[1]}")
    if gpus:
        return "float32", "auto: the GPU has no native bfloat16 (compute capability < 8.0)"
    native = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in cpu_flags()]
    if native and name() == "jax":  # docs/backends.md: speed table
        return "float32", (f"auto: the CPU has {' and '.join(native)}, but JAX's CPU compiler "
                           f"trains slower in bfloat16 than in float32")
    if native:
        return "mixed_bfloat16", f"auto: the CPU has {' and '.join(native)}"
    return "float32", "auto: no native bfloat16 found on this CPU"


class OneDevice:
    """The strategy of a run on one device, or under keras.distribution (JAX): nothing to enter."""

    def __init__(self, replicas=1):
        self.num_replicas_in_sync = replicas

    def scope(self):
        return contextlib.nullcontext()


def distribution(distribute, batch_size):
    """-> (strategy with .scope() and .num_replicas_in_sync, description or None). TensorFlow:
    MirroredStrategy over the local GPUs (or every logical CPU device), MultiWorkerMirrored
    over TF_CONFIG's workers. JAX: keras.distribution.DataParallel over all local devices.
    The global batch must divide evenly among the replicas."""
    if distribute == "none":
        return OneDevice(), None
    if name() == "jax":
        import keras
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        strategy = OneDevice(len(devices))
    else:
        strategy = tf_strategy(distribute)
    n = strategy.num_replicas_in_sync
    if batch_size % n:
        raise BackendError(f"batch_size={batch_size} is the global batch and must divide evenly "
                           f"among the {n} replicas of distribute={distribute}")
    return strategy, (f"distribute={distribute}: {n} replicas, {batch_size // n} samples each "
                      f"per step")


def tf_strategy(distribute):
    import tensorflow as tf
    if distribute == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])

    class MultiWorker(tf.distribute.MultiWorkerMirroredStrategy):
        """Works around two gaps of Keras 3's fit under this strategy (keras-team/keras #20585):
        it reduces a whole (inputs dict, target) batch at once, and it reduces scalar metrics
        along an axis 0 they do not have. Values are reduced one by one, scalars over the
        replicas only."""
        def reduce(self, reduce_op, value, axis):
            parent = super()

            def one(v):
                rank = self.experimental_local_results(v)[0].shape.rank
                return parent.reduce(reduce_op, v, None if rank == 0 else axis)
            return tf.nest.map_structure(one, value)

    return MultiWorker()


def scope(model):
    """The scope in which the model's variables (and its optimizer's) are made."""
    if name() == "tensorflow":
        return model.distribute_strategy.scope()
    return contextlib.nullcontext()


def replicas_agree(model):
    """Whether each weight has the same value on every local device of the run."""
    import numpy as np
    if name() == "torch":
        return True  # one device
    for w in model.weights:
        if name() == "tensorflow":
            local = model.distribute_strategy.experimental_local_results(w.value)
        else:
            local = [s.data for s in w.value.addressable_shards]
        local = [np.asarray(x) for x in local]
        if any(not np.array_equal(local[0], x) for x in local[1:]):
            return False
    return True


# ---- tf.data (pipeline.py's batches under TensorFlow) -----------------------------------------

def tf_constants(arrays):
    """{name: array} -> {name: tf.constant}: one copy in TensorFlow for all pipelines."""
    import tensorflow as tf
    return {k: tf.constant(v) for k, v in arrays.items()}


def tf_gather(arrays, gather):
    """A data set's arrays as TensorFlow constants (one copy for all of its pipelines) and a
    tf.function that makes the batch of a vector of rows: gather(tensors, rows, take, transpose,
    reshape) with TensorFlow's ops. Traced once: each pipeline's map then only calls it (every
    fit, evaluate and predict makes a new pipeline, and tracing the gather anew took 80 ms)."""
    import tensorflow as tf
    tensors = tf_constants(arrays)
    return tf.function(lambda rows: gather(tensors, rows, tf.gather, tf.transpose, tf.reshape),
                       input_signature=[tf.TensorSpec([None], tf.int64)])


def tf_batches(gather, rows, batch_size):
    """A tf.data pipeline of the rows in batches, each made by gather (tf_gather's)."""
    import tensorflow as tf
    data = tf.data.Dataset.from_tensor_slices(rows)
    # One thread gathers the next batches while the model computes: the gather is 50-200x faster
    # than a training step (bench.py prints both), so more parallelism would buy nothing.
    return data.batch(batch_size).map(gather).prefetch(2).with_options(tf_pipeline_options())


def tf_array_batches(arrays, batch_size):
    """A tf.data pipeline of in-memory arrays ({input name: (n, ...)}) in batches, in order."""
    import tensorflow as tf
    return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size).with_options(
        tf_pipeline_options())


def tf_pipeline_options():
    """The tf.data options of every pipeline (bench.py's in-memory reference too).

    Autotuning is off. Its background thread sleeps for periods that double from 10 ms up to
    10 s, and the end of an iterator waits for that thread to wake up, so every fit, evaluate and
    predict call lasted until the next of 0.01, 0.03, ... 5.11, 10.23, 20.47 s after it began,
    whatever its work: a 7-second BikeNYC epoch took 10.2 s (docs/speed.md).
    Under a multi-worker strategy each worker takes its part of every batch (DATA sharding)."""
    import tensorflow as tf
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options
