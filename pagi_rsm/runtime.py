"""Run-time set-up shared by workflows: seeds and determinism, XLA, tf.distribute, versions.

Reproducibility. The same seed gives the same metrics when three things hold, and
`seed_everything` does all three:

1. `keras.utils.set_random_seed(seed)` seeds Python's `random`, NumPy and TensorFlow's global
   generator (and so Keras initialisers and `keras.random` seed generators created afterwards);
2. `tf.config.experimental.enable_op_determinism()` makes ops choose deterministic kernels (and
   `tf.data` keep its order), so reductions are summed in the same order every time;
3. the data pipeline draws its randomness from the seed (the datasets of this package do).

Op determinism is process-wide; it costs little on CPU, but Keras compiles without XLA while
it is on, so a GPU run that wants XLA passes ``deterministic: false`` (``--nodeterministic``).
Runs on different hardware, thread counts or TensorFlow versions may still differ in the last
bits.

Distribution. `make_strategy("mirrored")` mirrors the model on every GPU, or on every logical CPU
device when there is no GPU (configure several with `configure_logical_cpus` to test on a CPU).
`make_strategy("multi_worker")` builds `tf.distribute.MultiWorkerMirroredStrategy`, which reads
the cluster from the `TF_CONFIG` environment variable; see docs/running.md ("Distribution").
"""
import datetime
import json
import os
import platform
import sys

STRATEGIES = ("default", "mirrored", "multi_worker")
_MULTI_WORKER = None
_MIRRORED = {}


def import_tensorflow_quietly():
    """Imports TensorFlow with the lines its native code writes to stderr during import hidden.

    TF_CPP_MIN_LOG_LEVEL does not reach them (CUDA probing on a CPU-only machine, printed
    before TensorFlow's own logging starts). A Python exception raised by the import is not
    affected: it propagates once stderr is restored.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow


def configure_logical_cpus(count):
    """Splits the first physical CPU into `count` logical devices (call before TF runs anything).

    Raises:
      ValueError: `count` < 1, or TensorFlow's runtime is already initialised.
    """
    import tensorflow as tf
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as e:
        if len(tf.config.list_logical_devices("CPU")) == count:
            return
        raise ValueError(f"cannot create {count} logical CPU devices: TensorFlow is already "
                         f"initialised ({e})") from None


def seed_everything(seed, deterministic=True):
    """Seeds Python, NumPy, TensorFlow and Keras; switches TF op determinism on or off.

    Note: Keras compiles without XLA while op determinism is on (`jit_compile=True` is then
    ignored with a warning), since XLA does not support every op deterministically.
    """
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        try:  # no public API switches it off; an earlier run in this process may have set it
            from tensorflow.python.framework import config as tf_config
            if tf_config.is_op_determinism_enabled():
                tf_config.disable_op_determinism()
        except (ImportError, AttributeError):
            pass


def has_accelerator():
    """True when TensorFlow sees a GPU or TPU."""
    import tensorflow as tf
    return any(d.device_type in ("GPU", "TPU") for d in tf.config.list_physical_devices())


def resolve_jit_compile(value):
    """Maps the `jit_compile` option ("auto", "true", "false" or a bool) to a bool.

    "auto" means XLA on GPU/TPU only: on a CPU, XLA compilation of these small recurrent steps
    costs more than it saves.
    """
    if isinstance(value, bool):
        return value
    if value == "auto":
        return has_accelerator()
    if value in ("true", "false"):
        return value == "true"
    raise ValueError(f"jit_compile must be one of auto, true, false, got {value!r}")


def make_strategy(kind):
    """Returns the tf.distribute strategy for `kind` in `STRATEGIES`."""
    import tensorflow as tf
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = tuple(d.name for d in (gpus or tf.config.list_logical_devices("CPU")))
        # One strategy per device set and process: every MirroredStrategy numbers its
        # collective instances from the same start, so a second one over the same devices
        # clashes with the first one's collectives ("Shape mismatch in the collective
        # instance"). Reusing it is also what a user running several workflows in one
        # process needs.
        if devices not in _MIRRORED:
            _MIRRORED[devices] = tf.distribute.MirroredStrategy(devices=list(devices))
        return _MIRRORED[devices]
    if kind == "multi_worker":
        # Collective ops can be configured once per process, before TensorFlow's runtime
        # starts: the first call (the CLI makes it before anything else) creates the strategy,
        # later calls reuse it.
        global _MULTI_WORKER
        if _MULTI_WORKER is None:
            if "TF_CONFIG" not in os.environ:
                raise ValueError("distribution=multi_worker needs the TF_CONFIG environment "
                                 "variable describing the cluster (see docs/running.md)")
            _MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy()
        return _MULTI_WORKER
    raise ValueError(f"distribution must be one of {', '.join(STRATEGIES)}, got {kind!r}")


def task_info():
    """(task_type, task_index) of this process from TF_CONFIG, or (None, 0) without one."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    except json.JSONDecodeError:
        return None, 0
    return task.get("type"), int(task.get("index", 0))


def is_chief():
    """True for the process that writes summaries, checkpoints and results.

    That is every single-process run, the `chief` task of a cluster, or worker 0 of a cluster
    without a chief (the convention of MultiWorkerMirroredStrategy).
    """
    task_type, index = task_info()
    if task_type is None or task_type == "chief":
        return True
    if task_type == "worker" and index == 0:
        try:
            cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        except json.JSONDecodeError:
            cluster = {}
        return "chief" not in cluster
    return False


def versions():
    """Versions of everything that changes the numbers of a run."""
    import keras
    import numpy
    import tensorflow as tf
    import pagi_rsm
    return {
        "pagi_rsm": pagi_rsm.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def timestamp():
    """Local time as YYYYmmdd-HHMMSS, for default run directory names."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
