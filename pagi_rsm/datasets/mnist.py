"""MNIST: the original IDX files, tensorflow-datasets, and the shipped first exemplars.

Three entry points:

- `load_idx(directory, split)` reads the four original IDX files (gzipped or not) and checks them.
- `load_mnist(data_dir=None, split=..., source=..., download=False)` picks IDX files from a
  directory (argument or the `PAGI_RSM_MNIST_DIR` environment variable) or a prepared
  tensorflow-datasets copy. It never downloads unless asked, and on an offline machine without the
  files it fails at once with a message that says how to provide them.
- `load_glyphs()` returns the first training exemplar of each digit 0..9, shipped with the package
  (`pagi_rsm/data/mnist_first_exemplars.npz`), so the grammar task's default rendering needs no
  download. `write_glyph_file(mnist_dir)` regenerates that file from the IDX files
  (a maintenance step, not a command:
  ``python -c "from pagi_rsm.datasets import mnist; print(mnist.write_glyph_file('DIR'))"``).

MNIST is by Yann LeCun and Corinna Cortes (with Christopher J.C. Burges), CC BY-SA 3.0.
"""
import gzip
import importlib.resources
import io
import os
import pathlib
import zipfile
import zlib

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGE_SIZE = 28
NUM_CLASSES = 10
ENV_VAR = "PAGI_RSM_MNIST_DIR"
GLYPHS_FILE = "mnist_first_exemplars.npz"
SPLITS = ("train", "test")
SOURCES = ("auto", "idx", "tfds")

_PREFIX = {"train": "train", "test": "t10k"}
_GZIP_MAGIC = b"\x1f\x8b"


class MnistNotFoundError(FileNotFoundError):
    """MNIST is not available locally (no IDX directory, no prepared tensorflow-datasets copy)."""


class IdxFormatError(ValueError):
    """An IDX file is malformed: wrong magic number, dimensions, size, or corrupt gzip data."""


def _how_to_provide(extra=""):
    return (
        "MNIST is not available on this machine." + (f" {extra}" if extra else "") + "\n"
        "Provide it in one of two ways:\n"
        "  1. the four original IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,\n"
        "     t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; gzipped '.gz' or not) in a directory,\n"
        f"     passed as data_dir=... (mnist_dir=... for the grammar data) or set in {ENV_VAR};\n"
        "  2. a tensorflow-datasets copy: load_mnist(source='tfds', download=True) on a machine\n"
        "     with network access (or `tfds build mnist`), then point TFDS_DATA_DIR / tfds_data_dir\n"
        "     at it.")


def _idx_path(directory, split, kind):
    """The existing file for `kind` ('images'/'labels') of `split`, in any accepted spelling."""
    dim = "idx3" if kind == "images" else "idx1"
    stem = f"{_PREFIX[split]}-{kind}"
    names = [f"{stem}-{dim}-ubyte", f"{stem}.{dim}-ubyte"]
    candidates = [directory / (n + ext) for n in names for ext in ("", ".gz")]
    for path in candidates:
        if path.is_file():
            return path
    raise MnistNotFoundError(
        f"no MNIST {split} {kind} file in {directory} (looked for "
        + ", ".join(p.name for p in candidates) + ").\n" + _how_to_provide())


def _read_bytes(path):
    """File content, gunzipped if it is gzip data (detected from the content, not the name)."""
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise IdxFormatError(f"{path}: corrupt or truncated gzip data ({err})") from err


def _parse_idx(path, magic, shape_tail):
    """Parses an IDX file of unsigned bytes; returns a uint8 array of shape [N, *shape_tail]."""
    data = _read_bytes(path)
    ndim = 1 + len(shape_tail)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(
            f"{path}: truncated header ({len(data)} bytes, an IDX file with {ndim} "
            f"dimension(s) needs {header})")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise IdxFormatError(
            f"{path}: bad magic number {found} (expected {magic}: "
            f"{'images' if magic == IMAGES_MAGIC else 'labels'}, unsigned bytes, {ndim}-D); "
            "not an MNIST IDX file of this kind")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if dims[1:] != tuple(shape_tail):
        raise IdxFormatError(f"{path}: dimensions {dims}, expected (N, "
                             + ", ".join(str(d) for d in shape_tail) + ")")
    expected = int(np.prod(dims))
    body = len(data) - header
    if body != expected:
        state = "truncated" if body < expected else "too long"
        raise IdxFormatError(
            f"{path}: {state}: the header says {dims} = {expected} bytes of data, "
            f"the file holds {body}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_idx(directory, split="train"):
    """Reads MNIST from the four original IDX files in `directory`.

    Accepted names: `train-images-idx3-ubyte` and `train-images.idx3-ubyte` (likewise labels and
    the `t10k-` test files), each optionally gzipped (`.gz`). Checks the magic numbers (2051 for
    images, 2049 for labels), the 28x28 image size, that the byte count matches the header and
    that images and labels agree in number; errors name the file and what is wrong.

    Args:
      directory: folder holding the files.
      split: "train" (60,000 examples) or "test" (10,000).

    Returns:
      `(images, labels)`: uint8 arrays of shapes [N, 28, 28] and [N].

    Raises:
      MnistNotFoundError: the directory or a file is missing.
      IdxFormatError: a file is malformed.

    Example:
      >>> images, labels = load_idx("../shared/data/mnist", "train")  # doctest: +SKIP
      >>> images.shape, labels[:3]                                      # doctest: +SKIP
      ((60000, 28, 28), array([5, 0, 4], dtype=uint8))
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    directory = pathlib.Path(directory).expanduser()
    if not directory.is_dir():
        raise MnistNotFoundError(f"MNIST directory {directory} does not exist.\n"
                                 + _how_to_provide())
    images_path = _idx_path(directory, split, "images")
    labels_path = _idx_path(directory, split, "labels")
    images = _parse_idx(images_path, IMAGES_MAGIC, (IMAGE_SIZE, IMAGE_SIZE))
    labels = _parse_idx(labels_path, LABELS_MAGIC, ())
    if len(images) != len(labels):
        raise IdxFormatError(f"{images_path} holds {len(images)} images but {labels_path} "
                             f"holds {len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise IdxFormatError(f"{labels_path}: label {int(labels.max())} out of range 0..9")
    return images, labels


def _tfds_data_dir(tfds_data_dir):
    if tfds_data_dir is not None:
        return str(tfds_data_dir)
    return os.environ.get("TFDS_DATA_DIR") or None


def _load_tfds(split, download, tfds_data_dir):
    """MNIST through tensorflow-datasets; refuses to touch the network unless `download`."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:  # pragma: no cover - it is an install requirement
        raise MnistNotFoundError(_how_to_provide("tensorflow-datasets is not installed.")) from err
    # Building the builder only reads local metadata; `is_prepared` is a local file check. Only
    # `download_and_prepare` may reach the network, and only when the user asks for it.
    builder = tfds.builder("mnist", data_dir=_tfds_data_dir(tfds_data_dir))
    if not builder.is_prepared():
        if not download:
            raise MnistNotFoundError(_how_to_provide(
                f"No prepared tensorflow-datasets copy at {builder.data_dir}, and "
                "download=False."))
        builder.download_and_prepare()
    # Batches of fixed size rather than `batch_size=-1`, which needs the split size up front.
    dataset = builder.as_dataset(split=split, as_supervised=True).batch(8192)
    batches = list(tfds.as_numpy(dataset))
    images = np.concatenate([b[0] for b in batches]).astype(np.uint8)
    labels = np.concatenate([b[1] for b in batches]).astype(np.uint8)
    return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), labels


def load_mnist(data_dir=None, split="train", source="auto", download=False, tfds_data_dir=None):
    """Loads MNIST from IDX files or tensorflow-datasets, without surprise downloads.

    Sources:
      - "idx": the IDX files in `data_dir`, or in `$PAGI_RSM_MNIST_DIR` when `data_dir` is None.
      - "tfds": tensorflow-datasets' "mnist". With `download=False` (default) a dataset that is not
        already prepared is an immediate error, so an offline machine never waits on the network.
      - "auto": "idx" when a directory is given (argument or environment variable), else "tfds".

    Args:
      data_dir: directory of the IDX files, or None.
      split: "train" or "test".
      source: "auto", "idx" or "tfds".
      download: let tensorflow-datasets download and prepare MNIST if it is missing.
      tfds_data_dir: tensorflow-datasets data directory (default: `$TFDS_DATA_DIR` or
        `~/tensorflow_datasets`).

    Returns:
      `(images, labels)`: uint8 arrays [N, 28, 28] and [N].

    Raises:
      MnistNotFoundError: MNIST is not available; the message says how to provide it.

    Example:
      >>> images, labels = load_mnist("../shared/data/mnist", split="test")  # doctest: +SKIP
      >>> labels[:5]                                                            # doctest: +SKIP
      array([7, 2, 1, 0, 4], dtype=uint8)
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    directory = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    if source == "idx" or (source == "auto" and directory is not None):
        if directory is None:
            raise MnistNotFoundError(_how_to_provide(
                f"source='idx' needs data_dir or the {ENV_VAR} environment variable."))
        return load_idx(directory, split)
    return _load_tfds(split, download, tfds_data_dir)


def first_exemplars(images, labels, num_classes=NUM_CLASSES):
    """The first image of each class 0..num_classes-1, in class order.

    Args:
      images: [N, ...] array.
      labels: [N] integer array.
      num_classes: number of classes to take.

    Returns:
      `(glyphs, indices)`: glyphs [num_classes, ...] (dtype of `images`) and the index of each in
      `images` (int64 [num_classes]).
    """
    labels = np.asarray(labels)
    indices = []
    for c in range(num_classes):
        hits = np.flatnonzero(labels == c)
        if hits.size == 0:
            raise ValueError(f"no example of class {c} in labels")
        indices.append(hits[0])
    indices = np.asarray(indices, dtype=np.int64)
    return np.asarray(images)[indices], indices


def glyph_path():
    """Path of the shipped glyph file (a Traversable; use `.open('rb')` to read)."""
    return importlib.resources.files("pagi_rsm").joinpath("data", GLYPHS_FILE)


def load_glyphs():
    """The shipped first training exemplar of each digit 0..9.

    Returns:
      uint8 array [10, 28, 28]; row c is the first training image whose label is c.

    Example:
      >>> load_glyphs().shape
      (10, 28, 28)
    """
    with glyph_path().open("rb") as f:
        with np.load(f, allow_pickle=False) as npz:
            return np.array(npz["glyphs"])


def write_glyph_file(mnist_dir, path=None):
    """Regenerates the glyph file from the training IDX files in `mnist_dir`.

    The file is a `.npz` (zip of `.npy`) holding `glyphs` uint8 [10, 28, 28] and `indices` (the
    training-set index of each glyph). Zip entries carry a fixed timestamp, so the same input
    gives the same bytes.

    Args:
      mnist_dir: directory of the MNIST IDX files.
      path: output file; default the package's `pagi_rsm/data/mnist_first_exemplars.npz`.

    Returns:
      The path written.
    """
    images, labels = load_idx(mnist_dir, "train")
    glyphs, indices = first_exemplars(images, labels)
    if path is None:
        path = pathlib.Path(__file__).resolve().parents[1] / "data" / GLYPHS_FILE
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in (("glyphs", glyphs), ("indices", indices)):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
    return path

