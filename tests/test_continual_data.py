"""Continual benchmarks: permuted / split MNIST on the real IDX files, split CIFAR-100 from a tiny
original-format archive written here and from tensorflow-datasets' mock data, and bad input."""
import io
import pickle
import tarfile

import numpy as np
import pytest

from pagi_rsm.datasets import continual as data
from pagi_rsm.datasets import mnist


@pytest.fixture(scope="module")
def mnist_dir():
    from tests.conftest import SHARED_DATA
    directory = SHARED_DATA / "mnist"
    if not directory.is_dir():
        pytest.skip(f"MNIST not found at {directory}")
    return directory


def _first(dataset):
    inputs, labels = next(iter(dataset))
    return inputs["inputs"].numpy(), inputs["task"].numpy(), labels.numpy()


def test_permutations_are_seeded_identity_first_and_do_not_depend_on_the_task_count():
    p = data.permutations(4, 20, seed=3)
    np.testing.assert_array_equal(p[0], np.arange(20))
    assert all(sorted(row) == list(range(20)) for row in p)
    assert not np.array_equal(p[1], p[2])
    np.testing.assert_array_equal(data.permutations(2, 20, seed=3), p[:2])
    q = data.permutations(4, 20, seed=3, permute_first=True)
    assert not np.array_equal(q[0], np.arange(20))
    np.testing.assert_array_equal(q[1:], p[1:])
    assert not np.array_equal(data.permutations(4, 20, seed=4)[1], p[1])


def test_permuted_mnist_applies_each_tasks_permutation(mnist_dir):
    bench = data.load_benchmark("permuted_mnist", 3, seed=5, mnist_dir=mnist_dir)
    raw, labels = mnist.load_idx(mnist_dir, "test")
    assert bench.num_tasks == 3 and bench.classes_per_head == 10 and not bench.multi_head
    for task in range(3):
        x, t, y = _first(bench.dataset(task, "test", batch_size=4))
        expected = (raw[:4].reshape(4, -1) / 255.0 - bench.mean[0]) / bench.std[0]
        expected = expected[:, bench.permutations[task]]
        np.testing.assert_allclose(x.reshape(4, -1), expected, atol=1e-5)
        np.testing.assert_array_equal(t, [task] * 4)
        np.testing.assert_array_equal(y, labels[:4])
    # By default the pixels are in [0, 1], as the sparse-dynamic-synapses project fed them.
    assert bench.mean[0] == 0.0 and bench.std[0] == 1.0
    x, _, _ = _first(bench.dataset(0, "test", batch_size=4))
    np.testing.assert_allclose(x.reshape(4, -1), raw[:4].reshape(4, -1) / 255.0, atol=1e-6)


def test_standardize_uses_the_training_sets_statistics(mnist_dir):
    bench = data.load_benchmark("permuted_mnist", 2, seed=5, mnist_dir=mnist_dir,
                                input_scaling="standardize")
    raw, _ = mnist.load_idx(mnist_dir, "test")
    # The published MNIST mean and std.
    assert bench.mean[0] == pytest.approx(0.1307, abs=1e-4)
    assert bench.std[0] == pytest.approx(0.3081, abs=1e-4)
    x, _, _ = _first(bench.dataset(1, "test", batch_size=4))
    expected = (raw[:4].reshape(4, -1) / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(x.reshape(4, -1), expected[:, bench.permutations[1]], atol=1e-3)
    with pytest.raises(ValueError, match="input_scaling must be one of unit, standardize"):
        data.load_benchmark("permuted_mnist", 2, mnist_dir=mnist_dir, input_scaling="zscore")


def test_cumulative_union_and_seeded_shuffles(mnist_dir):
    bench = data.load_benchmark("permuted_mnist", 3, seed=0, mnist_dir=mnist_dir)
    union = bench.dataset([0, 1, 2], "train", batch_size=60, limit=20, shuffle_seed=(7, 0))
    assert bench.num_examples([0, 1, 2], "train", limit=20) == 60
    tasks = np.concatenate([b[0]["task"].numpy() for b in union])
    assert sorted(np.bincount(tasks)) == [20, 20, 20]       # every task's 20 examples, once
    assert not (np.diff(tasks) >= 0).all()                  # mixed, not task after task
    again = bench.dataset([0, 1, 2], "train", batch_size=60, limit=20, shuffle_seed=(7, 0))
    np.testing.assert_array_equal(_first(again)[2], _first(union)[2])   # same seed, same order
    other = bench.dataset([0, 1, 2], "train", batch_size=60, limit=20, shuffle_seed=(7, 1))
    labels = [_first(d)[2] for d in (union, other)]
    assert not np.array_equal(*labels) and sorted(labels[0]) == sorted(labels[1])


@pytest.mark.parametrize("multi_head", [True, False])
def test_split_mnist_tasks_hold_two_digits(mnist_dir, multi_head):
    bench = data.load_benchmark("split_mnist", multi_head=multi_head, mnist_dir=mnist_dir)
    _, labels = mnist.load_idx(mnist_dir, "test")
    assert bench.num_tasks == 5
    assert bench.classes_per_head == (2 if multi_head else 10)
    for task in range(5):
        rows = bench.task_rows["test"][task]
        assert set(labels[rows]) == {2 * task, 2 * task + 1}
        _, t, y = _first(bench.dataset(task, "test", batch_size=len(rows)))
        assert (t == task).all()
        expected = labels[rows] - 2 * task if multi_head else labels[rows]
        np.testing.assert_array_equal(y, expected)
    assert sum(len(r) for r in bench.task_rows["train"]) == 60000


def _cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n) % 100
    # The original layout: rows of 3072 bytes, 1024 red, then green, then blue.
    payload = {b"data": images.transpose(0, 3, 1, 2).reshape(n, 3072),
               b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist()}
    return images, labels, pickle.dumps(payload, protocol=2)


def _write_cifar_archive(directory, n_train=300, n_test=200):
    expected = {}
    with tarfile.open(directory / data.CIFAR100_ARCHIVE, "w:gz") as tar:
        for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
            images, labels, raw = _cifar_batch(n, seed)
            expected[split] = (images, labels)
            info = tarfile.TarInfo(f"{data.CIFAR100_DIR}/{split}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return expected


def test_split_cifar100_from_the_original_archive(tmp_path):
    expected = _write_cifar_archive(tmp_path)
    images, labels = data.load_cifar100(tmp_path, "train")
    np.testing.assert_array_equal(images, expected["train"][0])   # channel-major decoded
    np.testing.assert_array_equal(labels, expected["train"][1])
    bench = data.load_benchmark("split_cifar100", 10, cifar100_dir=tmp_path)
    assert bench.classes_per_head == 10 and bench.multi_head and bench.image_shape == (32, 32, 3)
    assert bench.task_classes[3] == list(range(30, 40))
    x, t, y = _first(bench.dataset(3, "test", batch_size=100))
    test_labels = expected["test"][1]
    assert len(y) == np.sum(test_labels // 10 == 3)
    np.testing.assert_array_equal(y, test_labels[test_labels // 10 == 3] - 30)
    assert x.shape[1:] == (32, 32, 3) and (t == 3).all()
    # 4 tasks of 25 classes, single head: labels are the fine classes.
    single = data.load_benchmark("split_cifar100", 4, multi_head=False, cifar100_dir=tmp_path)
    assert single.classes_per_head == 100
    assert set(single.labels["train"][single.task_rows["train"][1]]) == set(range(25, 50))


def test_cifar_reader_refuses_foreign_pickles(tmp_path):
    import os
    folder = tmp_path / data.CIFAR100_DIR
    folder.mkdir()
    (folder / "train").write_bytes(pickle.dumps({b"data": os.system}))
    with pytest.raises(ValueError, match="refusing to load"):
        data.load_cifar100(tmp_path, "train")
    with pytest.raises(data.Cifar100NotFoundError, match="no CIFAR-100"):
        data.load_cifar100(tmp_path / "nothing", "test")


def test_split_cifar100_through_tfds_mock_data(monkeypatch, tmp_path):
    import tensorflow_datasets as tfds
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    with pytest.raises(data.Cifar100NotFoundError, match="nothing is downloaded"):
        data.load_cifar100(split="test")
    with tfds.testing.mock_data(num_examples=150):
        monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
        bench = data.load_benchmark("split_cifar100", 10)
        assert bench.images["train"].shape == (150, 32, 32, 3)
        total = sum(len(r) for r in bench.task_rows["test"])
        assert total == 150 and bench.labels["test"].max() < 10


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "rotated_mnist", "num_tasks": 3}, "benchmark must be one of permuted_mnist"),
    ({"name": "split_mnist", "num_tasks": 4}, "num_tasks must be 5 for split_mnist"),
    ({"name": "split_cifar100", "num_tasks": 7}, "num_tasks must divide 100"),
    ({"name": "permuted_mnist", "num_tasks": 0}, "num_tasks must be an integer >= 1"),
    ({"name": "permuted_mnist", "num_tasks": 3, "multi_head": True},
     "multi_head must be false for permuted_mnist"),
])
def test_bad_benchmark_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load_benchmark(**kwargs)   # fails before reading any data
