"""Continual-learning benchmarks as `tf.data`: permuted MNIST, split MNIST, split CIFAR-100.

A benchmark is a sequence of tasks over one image set. `load_benchmark(name, num_tasks, ...)`
returns a `ContinualBenchmark`; its `dataset(tasks, split, batch_size, ...)` yields batches
``({"inputs": float32 [B, H, W, C], "task": int32 [B]}, labels int32 [B])`` of the union of
`tasks` (one task for the usual sequence, tasks 0..t for the cumulative baseline). docs/continual.md
describes the benchmarks and the figures measured on them.

- ``permuted_mnist``: every task is all of MNIST under a fixed pixel permutation drawn from the
  seed (task 0 unpermuted unless ``permute_first``); one head of 10 classes.
- ``split_mnist``: 5 tasks of 2 digits each ({0,1}, {2,3}, ...). Multi-head (one head of 2
  classes per task, labels 0/1 within the task) or, with ``multi_head=False``, class-incremental
  (one head of 10 classes, labels are the digits).
- ``split_cifar100``: CIFAR-100 split into `num_tasks` tasks of ``100 / num_tasks`` consecutive
  fine classes (10 tasks of 10 by default); multi-head or single-head like split MNIST.

Inputs are scaled to [0, 1] (``input_scaling="unit"``, what the sparse-dynamic-synapses
project fed its networks) or, with ``input_scaling="standardize"``, further standardised with
the training set's per-channel mean and standard deviation. Standardised MNIST has about nine
times the squared norm of [0, 1] MNIST (the background becomes -0.42 everywhere), which at
SGD lr 0.1 with Nesterov momentum makes the first layer's effective step that much larger: the
dense MLP of the permuted-MNIST setting then diverges from task to task (docs/continual.md). Data: MNIST through `pagi_rsm.datasets.mnist.load_mnist` (IDX files or a
prepared tensorflow-datasets copy); CIFAR-100 through `load_cifar100` (the original
``cifar-100-python`` archive or directory, or a prepared tensorflow-datasets copy). Nothing is
ever downloaded.
"""
import dataclasses
import io
import os
import pathlib
import pickle
import tarfile

import numpy as np

from pagi_rsm.checks import check_bool, check_int
from pagi_rsm.datasets import mnist

BENCHMARKS = ("permuted_mnist", "split_mnist", "split_cifar100")
SPLIT_MNIST_TASKS = 5
CIFAR100_CLASSES = 100
CIFAR100_DIR = "cifar-100-python"
CIFAR100_ARCHIVE = "cifar-100-python.tar.gz"
CIFAR100_SOURCES = ("auto", "python", "tfds")


class Cifar100NotFoundError(FileNotFoundError):
    """CIFAR-100 is not available locally (no archive/directory, no prepared tfds copy)."""


@dataclasses.dataclass
class ContinualBenchmark:
    """A sequence of classification tasks over one image set (see the module docstring).

    Attributes:
      name: the benchmark's name (one of `BENCHMARKS`).
      num_tasks: number of tasks.
      multi_head: one output head per task (True) or one shared head (False).
      classes_per_head: output units of each head.
      image_shape: (H, W, C) of the inputs.
      images: {"train": uint8 [N, H, W, C], "test": ...}.
      labels: {"train": int32 [N] the label seen by the model (within-task class for
        multi-head), "test": ...}.
      task_rows: {"train": [int64 array of row indices of task t], "test": [...]}.
      permutations: int32 [num_tasks, H*W*C] pixel permutation of each task (None: none).
      task_classes: the original classes of each task (lists of ints).
      mean, std: per-channel standardisation (float32 [C]).
    """
    name: str
    num_tasks: int
    multi_head: bool
    classes_per_head: int
    image_shape: tuple
    images: dict
    labels: dict
    task_rows: dict
    permutations: object
    task_classes: list
    mean: np.ndarray
    std: np.ndarray

    def num_examples(self, tasks, split="train", limit=None):
        """Number of examples of the union of `tasks` (at most `limit` per task)."""
        return sum(len(self._rows(t, split, limit)) for t in _as_tasks(tasks, self.num_tasks))

    def _rows(self, task, split, limit):
        rows = self.task_rows[split][task]
        return rows if limit is None else rows[:limit]

    def dataset(self, tasks, split="train", batch_size=128, shuffle_seed=None, limit=None,
                drop_remainder=False):
        """Batches of the union of `tasks`.

        Args:
          tasks: a task index or a list of them (the cumulative baseline trains on 0..t).
          split: "train" or "test".
          batch_size: examples per batch (integer >= 1).
          shuffle_seed: None: the stored order (tasks one after the other); an int (or a
            sequence of ints): the examples in a random order drawn from it with numpy, fixed
            for the dataset (pass a new seed for each epoch). The order is made before tf.data
            sees it, so it is the same under any tf.distribute strategy.
          limit: use only the first `limit` examples of each task (None: all).
          drop_remainder: drop the last partial batch.

        Returns:
          A `tf.data.Dataset` of ``({"inputs": float32 [B, H, W, C], "task": int32 [B]},
          labels int32 [B])``.
        """
        import tensorflow as tf
        if split not in ("train", "test"):
            raise ValueError(f"split must be train or test, got {split!r}")
        check_int("batch_size", batch_size, 1)
        if limit is not None:
            check_int("limit", limit, 1)
        tasks = _as_tasks(tasks, self.num_tasks)
        rows = np.concatenate([self._rows(t, split, limit) for t in tasks]).astype(np.int64)
        task_ids = np.concatenate([np.full(len(self._rows(t, split, limit)), t, np.int32)
                                   for t in tasks])
        images = tf.constant(self.images[split])
        labels = tf.constant(self.labels[split].astype(np.int32))
        perms = None if self.permutations is None else tf.constant(self.permutations)
        shape = tuple(self.image_shape)
        mean = tf.constant(self.mean, tf.float32)
        std = tf.constant(self.std, tf.float32)

        def gather(row, task):
            x = tf.cast(tf.gather(images, row), tf.float32) / 255.0
            x = (x - mean) / std
            if perms is not None:
                flat = tf.reshape(x, [-1, int(np.prod(shape))])
                flat = tf.gather(flat, tf.gather(perms, task), batch_dims=1)
                x = tf.reshape(flat, (-1,) + shape)
            return {"inputs": x, "task": task}, tf.gather(labels, row)

        if shuffle_seed is not None:
            order = np.random.default_rng(shuffle_seed).permutation(len(rows))
            rows, task_ids = rows[order], task_ids[order]
        data = tf.data.Dataset.from_tensor_slices((rows, task_ids))
        data = data.batch(batch_size, drop_remainder=drop_remainder)
        return data.map(gather, num_parallel_calls=1, deterministic=True).prefetch(2)


def _as_tasks(tasks, num_tasks):
    tasks = [tasks] if isinstance(tasks, (int, np.integer)) else list(tasks)
    if not tasks:
        raise ValueError("tasks must name at least one task")
    for t in tasks:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < num_tasks:
            raise ValueError(f"tasks must be integers in [0, {num_tasks}), got {t!r}")
    return [int(t) for t in tasks]


def check_benchmark_args(name, num_tasks, multi_head, prefix=""):
    """Raises ValueError (naming `prefix` + the argument) if the benchmark cannot give this.

    - `name` must be one of `BENCHMARKS`;
    - permuted_mnist: `num_tasks` >= 1 and `multi_head` False (every task has the same 10
      classes, so one head);
    - split_mnist: exactly 5 tasks (of 2 digits);
    - split_cifar100: `num_tasks` divides 100.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"{prefix}benchmark must be one of {', '.join(BENCHMARKS)}, "
                         f"got {name!r}")
    check_int(f"{prefix}num_tasks", num_tasks, 1)
    check_bool(f"{prefix}multi_head", multi_head)
    if name == "permuted_mnist" and multi_head:
        raise ValueError(f"{prefix}multi_head must be false for permuted_mnist (every task "
                         "has the same 10 classes: one head)")
    if name == "split_mnist" and num_tasks != SPLIT_MNIST_TASKS:
        raise ValueError(f"{prefix}num_tasks must be {SPLIT_MNIST_TASKS} for split_mnist "
                         f"(5 tasks of 2 digits), got {num_tasks}")
    if name == "split_cifar100" and CIFAR100_CLASSES % num_tasks:
        raise ValueError(f"{prefix}num_tasks must divide 100 for split_cifar100 (tasks of "
                         f"equally many classes, e.g. 10 tasks of 10), got {num_tasks}")


INPUT_SCALINGS = ("unit", "standardize")
"""Values of `input_scaling`: [0, 1], or [0, 1] then per-channel standardisation."""


def _standardisation(images, input_scaling):
    """(mean, std) per channel that the inputs in [0, 1] are standardised with: the training
    images' for "standardize", (0, 1) (no change) for "unit"."""
    channels = images.shape[-1]
    if input_scaling == "unit":
        return np.zeros(channels, np.float32), np.ones(channels, np.float32)
    x = images.astype(np.float64) / 255.0
    axes = tuple(range(x.ndim - 1))
    return x.mean(axis=axes).astype(np.float32), x.std(axis=axes).astype(np.float32)


def _split_by_classes(name, num_tasks, multi_head, train, test, num_classes, image_shape,
                      input_scaling):
    """A benchmark whose task t holds the classes [t*c, (t+1)*c), c = num_classes / num_tasks."""
    per_task = num_classes // num_tasks
    task_classes = [list(range(t * per_task, (t + 1) * per_task)) for t in range(num_tasks)]
    images, labels, rows = {}, {}, {}
    for split, (x, y) in (("train", train), ("test", test)):
        y = np.asarray(y).astype(np.int64)
        images[split] = np.ascontiguousarray(x.reshape((-1,) + image_shape))
        labels[split] = (y % per_task if multi_head else y).astype(np.int32)
        rows[split] = [np.flatnonzero(y // per_task == t) for t in range(num_tasks)]
    mean, std = _standardisation(images["train"], input_scaling)
    return ContinualBenchmark(
        name=name, num_tasks=num_tasks, multi_head=multi_head,
        classes_per_head=per_task if multi_head else num_classes, image_shape=image_shape,
        images=images, labels=labels, task_rows=rows, permutations=None,
        task_classes=task_classes, mean=mean, std=std)


def permutations(num_tasks, size, seed, permute_first=False):
    """int32 [num_tasks, size]: task t's pixel permutation, drawn from `seed`.

    Row 0 is the identity unless `permute_first`. The same (seed, size) give the same rows
    whatever `num_tasks` is (task t's permutation does not depend on how many tasks follow).
    """
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(size) for _ in range(num_tasks)]
    if not permute_first:
        perms[0] = np.arange(size)
    return np.stack(perms).astype(np.int32)


def load_benchmark(name, num_tasks=None, seed=0, multi_head=None, permute_first=False,
                   mnist_dir=None, cifar100_dir=None, source="auto", tfds_data_dir=None,
                   input_scaling="unit"):
    """Loads a continual-learning benchmark.

    Args:
      name: "permuted_mnist", "split_mnist" or "split_cifar100".
      num_tasks: number of tasks (default: 10, 5, 10 respectively).
      seed: seed of the permutations (permuted_mnist).
      multi_head: one head per task (default: False for permuted_mnist, True otherwise).
      permute_first: permute task 0 too (permuted_mnist).
      mnist_dir: MNIST IDX directory (None: `$PAGI_RSM_MNIST_DIR` or tensorflow-datasets).
      cifar100_dir: directory holding ``cifar-100-python.tar.gz`` or ``cifar-100-python/``
        (None: tensorflow-datasets).
      source: CIFAR-100 source, "auto", "python" (the archive) or "tfds".
      tfds_data_dir: tensorflow-datasets data directory.
      input_scaling: "unit" (pixels / 255) or "standardize" (then per-channel standardised
        with the training images' mean and standard deviation).

    Returns:
      A `ContinualBenchmark`.

    Raises:
      ValueError: an unknown benchmark or a task count / head layout it cannot give.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {', '.join(BENCHMARKS)}, got {name!r}")
    if num_tasks is None:
        num_tasks = SPLIT_MNIST_TASKS if name == "split_mnist" else 10
    if multi_head is None:
        multi_head = name != "permuted_mnist"
    check_benchmark_args(name, num_tasks, multi_head)
    if input_scaling not in INPUT_SCALINGS:
        raise ValueError(f"input_scaling must be one of {', '.join(INPUT_SCALINGS)}, got "
                         f"{input_scaling!r}")
    if name == "split_cifar100":
        train = load_cifar100(cifar100_dir, "train", source, tfds_data_dir)
        test = load_cifar100(cifar100_dir, "test", source, tfds_data_dir)
        return _split_by_classes(name, num_tasks, multi_head, train, test, CIFAR100_CLASSES,
                                 (32, 32, 3), input_scaling)
    shape = (mnist.IMAGE_SIZE, mnist.IMAGE_SIZE, 1)
    train = mnist.load_mnist(mnist_dir, "train", tfds_data_dir=tfds_data_dir)
    test = mnist.load_mnist(mnist_dir, "test", tfds_data_dir=tfds_data_dir)
    if name == "split_mnist":
        return _split_by_classes(name, num_tasks, multi_head, train, test, mnist.NUM_CLASSES,
                                 shape, input_scaling)
    images = {"train": train[0].reshape((-1,) + shape), "test": test[0].reshape((-1,) + shape)}
    labels = {"train": train[1].astype(np.int32), "test": test[1].astype(np.int32)}
    rows = {split: [np.arange(len(labels[split]))] * num_tasks for split in labels}
    mean, std = _standardisation(images["train"], input_scaling)
    return ContinualBenchmark(
        name=name, num_tasks=num_tasks, multi_head=False, classes_per_head=mnist.NUM_CLASSES,
        image_shape=shape, images=images, labels=labels, task_rows=rows,
        permutations=permutations(num_tasks, int(np.prod(shape)), seed, permute_first),
        task_classes=[list(range(mnist.NUM_CLASSES))] * num_tasks, mean=mean, std=std)


# --- CIFAR-100 -----------------------------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of bytes, lists and numpy arrays) and nothing else:
    a pickle that names any other class is refused instead of executed."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray",
                                                           "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def _cifar_batch(raw, where):
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a format error
        raise ValueError(f"{where}: not a CIFAR-100 python batch ({err})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{where}: not a CIFAR-100 python batch (a {type(batch).__name__})")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "fine_labels" not in batch:
        raise ValueError(f"{where}: a CIFAR-100 batch has 'data' and 'fine_labels', found "
                         f"{sorted(batch)}")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["fine_labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ValueError(f"{where}: data of shape {data.shape} with {len(labels)} labels "
                         "(expected [N, 3072] and N labels)")
    if labels.size and not 0 <= labels.min() <= labels.max() < CIFAR100_CLASSES:
        raise ValueError(f"{where}: fine label out of range 0..99")
    # Rows are channel-major (1024 red, 1024 green, 1024 blue) 32x32 images.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_cifar_python(directory, split):
    directory = pathlib.Path(directory).expanduser()
    for folder in (directory / CIFAR100_DIR, directory):
        if (folder / split).is_file():
            path = folder / split
            return _cifar_batch(path.read_bytes(), str(path))
    archive = directory / CIFAR100_ARCHIVE
    if archive.is_file():
        with tarfile.open(archive, "r:*") as tar:
            member = f"{CIFAR100_DIR}/{split}"
            try:
                raw = tar.extractfile(member).read()
            except (KeyError, AttributeError):
                raise ValueError(f"{archive}: no member {member}") from None
        return _cifar_batch(raw, f"{archive}:{member}")
    raise Cifar100NotFoundError(
        f"no CIFAR-100 in {directory}: looked for {CIFAR100_ARCHIVE}, {CIFAR100_DIR}/{split} "
        f"and {split}. Put the original python archive there, or use a prepared "
        "tensorflow-datasets copy (source='tfds').")


def _read_cifar_tfds(split, tfds_data_dir):
    import tensorflow_datasets as tfds
    data_dir = tfds_data_dir or os.environ.get("TFDS_DATA_DIR") or None
    builder = tfds.builder("cifar100", data_dir=data_dir)
    if not builder.is_prepared():
        raise Cifar100NotFoundError(
            f"no prepared tensorflow-datasets cifar100 at {builder.data_dir} (nothing is "
            "downloaded): pass the directory of the original cifar-100-python archive as "
            "cifar100_dir, or prepare it with `tfds build cifar100` on a machine with network")
    dataset = builder.as_dataset(split=split, as_supervised=True).batch(10000)
    batches = list(tfds.as_numpy(dataset))
    if not batches:
        raise Cifar100NotFoundError(f"tensorflow-datasets cifar100 {split} split is empty")
    images = np.concatenate([b[0] for b in batches]).astype(np.uint8)
    labels = np.concatenate([b[1] for b in batches]).astype(np.int64)
    return images.reshape(-1, 32, 32, 3), labels


def load_cifar100(data_dir=None, split="train", source="auto", tfds_data_dir=None):
    """CIFAR-100 images and fine labels, without downloads.

    Sources: "python": the original ``cifar-100-python.tar.gz`` (or its extracted
    ``cifar-100-python/`` directory) in `data_dir`; "tfds": tensorflow-datasets' ``cifar100``
    (must be prepared already); "auto": "python" when `data_dir` is given, else "tfds".

    Returns:
      `(images, labels)`: uint8 [N, 32, 32, 3] and int64 [N] (fine labels 0..99).

    Raises:
      Cifar100NotFoundError: nothing there. ValueError: a malformed batch (the pickles are
      read with an unpickler that accepts numpy arrays and plain containers only).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    if source not in CIFAR100_SOURCES:
        raise ValueError(f"source must be one of {', '.join(CIFAR100_SOURCES)}, got {source!r}")
    if source == "python" or (source == "auto" and data_dir):
        if not data_dir:
            raise Cifar100NotFoundError("source='python' needs data_dir (the directory of "
                                        f"{CIFAR100_ARCHIVE})")
        return _read_cifar_python(data_dir, split)
    return _read_cifar_tfds(split, tfds_data_dir)
