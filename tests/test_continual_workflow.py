"""The continual workflow: accuracy matrix and transfer metrics, the table, named experiments,
bad input failing before anything runs, resume after SIGKILL, MirroredStrategy == one device,
split CIFAR-100 end to end on mock data."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pagi_rsm import definitions
from pagi_rsm.workflows import continual
from tests.conftest import REPO, SHARED_DATA

DEFINITION = str(REPO / "definitions" / "continual" / "experiments.yaml")
TINY_HPARAMS = {"hidden_units": 32, "dropout": 0.5, "learning_rate": 0.2}


def tiny_options(**extra):
    options = {"num_tasks": 3, "train_examples_per_task": 256, "test_examples_per_task": 200,
               "batch_size": 32, "epochs_first_task": 1, "epochs_per_task": 1,
               "eval_batch_size": 100, "activity_examples": 50, "progress": False,
               "mnist_dir": str(SHARED_DATA / "mnist")}
    options.update(extra)
    return options


def resolve_tiny(summary_dir, hparams=None, definition=None, **options):
    raw = definitions.load(definition) if definition else None
    if raw is not None:
        raw["parameter-sweeps"] = {}
    [config] = definitions.resolve(
        raw, source=definition, workflow="continual",
        experiment_overrides={"seed": 3, "summary_dir": str(summary_dir)},
        hparams_overrides={**TINY_HPARAMS, **(hparams or {})},
        workflow_option_overrides=tiny_options(**options))
    return config


@pytest.fixture(scope="module")
def mnist_present():
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("MNIST not found in ../shared/data")


def test_transfer_metrics_by_hand():
    r = np.array([[0.9, np.nan, np.nan],
                  [0.6, 0.8, np.nan],
                  [0.5, 0.7, 0.95]])
    m = continual.transfer_metrics(r)
    assert m["average_accuracy"] == pytest.approx((0.5 + 0.7 + 0.95) / 3)
    assert m["backward_transfer"] == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert m["forgetting"] == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    assert m["average_accuracy_per_task"] == pytest.approx([0.9, 0.7, 2.15 / 3])
    one = continual.transfer_metrics([[0.7]])
    assert one["backward_transfer"] == 0.0 and one["forgetting"] == 0.0


def test_heat_map_colours_measured_cells_and_greys_the_rest():
    image = continual.heat_map([[1.0, 0.0], [0.0, 1.0]], cell=3)
    assert image.shape == (6, 6, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, 0], [250, 230, 40])     # accuracy 1
    np.testing.assert_array_equal(image[3, 0], [30, 30, 120])      # accuracy 0
    np.testing.assert_array_equal(image[0, 3], [128, 128, 128])    # above the diagonal


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mnist_present):
    """An uninterrupted tiny sparse run (3 tasks), shared by the tests below."""
    directory = tmp_path_factory.mktemp("reference")
    config = resolve_tiny(directory, hparams={"sparse": True, "percent_on": 0.125})
    return directory, config.workflow_class(config).run()


def test_run_reports_the_accuracy_matrix_table_and_summaries(reference):
    directory, results = reference
    evaluation = results["evaluation"]
    matrix = evaluation["accuracy_matrix"]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert [sum(v is not None for v in row) for row in matrix] == [1, 2, 3]
    measured = np.array([[np.nan if v is None else v for v in row] for row in matrix])
    assert evaluation == {**evaluation, **continual.transfer_metrics(measured)}
    assert results["headline"]["value"] == pytest.approx(np.mean(matrix[2]))
    assert measured[0, 0] > 0.25           # it learnt the first task (chance: 0.1)
    assert 0 < evaluation["active_fraction"][0] <= 0.125 * 1.5 + 1e-6
    assert len(evaluation["duty_cycle_entropy"]) == 1
    on_disk = json.loads((directory / "results.json").read_text())
    assert on_disk["evaluation"]["accuracy_matrix"] == matrix
    assert "| MLP 1x32 sparse (k 0.125, w 0)" in (directory / "table.md").read_text()
    assert (directory / "table.csv").read_text().startswith("experiment,benchmark,tasks")
    checkpoints = sorted(p.name for p in (directory / "checkpoints").glob("ckpt-*.index"))
    assert checkpoints == ["ckpt-1.index", "ckpt-2.index", "ckpt-3.index"]
    import tensorflow as tf
    tags = set()
    for path in directory.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(v.tag for v in event.summary.value)
    assert {"accuracy_matrix", "task_accuracy/task_0", "task_accuracy/task_2",
            "average_accuracy", "sparsity/active_fraction_0", "sparsity/duty_cycle_entropy_0",
            "train/loss", "eval/backward_transfer"} <= tags


_KILL_AFTER_TASK_1 = """
import json, os, signal, sys
from pagi_rsm import definitions
from pagi_rsm.workflows import continual
write = continual.ContinualWorkflow._write_task_summaries
def write_then_die(self, task, matrix, activity):
    write(self, task, matrix, activity)
    if task == 1:
        os.kill(os.getpid(), signal.SIGKILL)
continual.ContinualWorkflow._write_task_summaries = write_then_die
args = json.loads(sys.argv[1])
[config] = definitions.resolve(workflow="continual", **args)
config.workflow_class(config).run()
"""


def test_resume_after_sigkill_matches_uninterrupted_run(reference, tmp_path):
    _, expected = reference
    summary = tmp_path / "cut"
    args = {"experiment_overrides": {"seed": 3, "summary_dir": str(summary)},
            "hparams_overrides": {**TINY_HPARAMS, "sparse": True, "percent_on": 0.125},
            "workflow_option_overrides": tiny_options()}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    killed = subprocess.run([sys.executable, "-c", _KILL_AFTER_TASK_1, json.dumps(args)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (summary / "results.json").exists()
    config = resolve_tiny(summary, hparams={"sparse": True, "percent_on": 0.125})
    resumed = config.workflow_class(config).run()
    assert resumed["resumed_from"] > 0
    assert resumed["evaluation"]["accuracy_matrix"] == expected["evaluation"]["accuracy_matrix"]
    assert resumed["evaluation"]["average_accuracy"] == expected["evaluation"][
        "average_accuracy"]


def test_mirrored_matches_one_device(tmp_path, strategies, mnist_present):
    matrices = []
    for distribution in ("default", "mirrored"):
        config = resolve_tiny(tmp_path / distribution, hparams={"sparse": True,
                                                                "percent_on": 0.125,
                                                                "dropout": 0.0})
        config.experiment["distribution"] = distribution
        results = config.workflow_class(config).run()
        assert results["replicas"] == (2 if distribution == "mirrored" else 1)
        matrices.append(np.array([[np.nan if v is None else v for v in row]
                                  for row in results["evaluation"]["accuracy_matrix"]]))
    # Same batches, gradients summed over the replicas: equal up to float rounding, which may
    # flip at most a prediction or two of the 200 test examples.
    np.testing.assert_allclose(matrices[1], matrices[0], atol=2 / 200 + 1e-9)


def test_named_experiments_of_the_definition_resolve(mnist_present):
    raw = definitions.load(DEFINITION)
    configs = definitions.resolve(raw, source=DEFINITION)
    assert len(configs) == len(raw["parameter-sweeps"]["workflow-options"]["experiment"])
    by_name = {c.workflow_options["experiment"]: c for c in configs}
    sparse = by_name["pmnist_mlp1_sparse"]
    assert sparse.hparams["sparse"] and sparse.hparams["percent_on"] == 0.001
    assert sparse.hparams["hidden_units"] == 4000 and sparse.hparams["num_heads"] == 1
    split = by_name["splitmnist_mlp_sparse"]
    assert split.workflow_options["benchmark"] == "split_mnist"
    assert (split.hparams["num_heads"], split.hparams["classes_per_head"]) == (5, 2)
    cifar = by_name["cifar100_cnn_dense"]
    assert cifar.hparams["input_shape"] == [32, 32, 3] and cifar.hparams["num_heads"] == 10


@pytest.mark.parametrize("options, hparams, match", [
    ({"benchmark": "rotated_mnist"}, {}, "workflow-options.benchmark must be one of"),
    ({"benchmark": "split_mnist", "num_tasks": 4}, {},
     "workflow-options.num_tasks must be 5 for split_mnist"),
    ({"benchmark": "split_cifar100", "num_tasks": 3}, {},
     "workflow-options.num_tasks must divide 100"),
    ({}, {"percent_on": 1.5}, r"percent_on must be a number in \(0, 1\)"),
    ({"experiment": "nope", "experiments": {"a": {"sparse": True}}}, {},
     "workflow-options.experiment 'nope' is not one of the named experiments: a"),
    ({"experiment": "a", "experiments": {"a": {"sparsity": 0.5}}}, {},
     "unknown key 'sparsity' in workflow-options.experiments.a"),
    ({"experiment": "a", "experiments": {"a": {"percent_on": 2.0}}}, {},
     "percent_on must be a number in"),
])
def test_bad_input_fails_before_anything_runs(tmp_path, options, hparams, match):
    with pytest.raises(definitions.DefinitionError, match=match):
        resolve_tiny(tmp_path / "never", hparams=hparams, **options)
    assert not (tmp_path / "never").exists()


def test_cli_bad_benchmark_exits_2_naming_the_option(tmp_path, capsys):
    from pagi_rsm import cli
    status = cli.main(["pagi", "run", "--workflow=continual", f"--summary_dir={tmp_path / 'x'}",
                       "--workflow_options={benchmark: split_cifar100, num_tasks: 7}"])
    assert status == 2
    assert "workflow-options.num_tasks must divide 100" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_split_cifar100_end_to_end_on_mock_data(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    with tfds.testing.mock_data(num_examples=200):
        monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
        [config] = definitions.resolve(
            workflow="continual", experiment_overrides={"seed": 0,
                                                        "summary_dir": str(tmp_path / "c")},
            hparams_overrides={"architecture": "cnn", "conv_filters": [4, 8], "sparse": True,
                               "hidden_units": 16, "percent_on": 0.25,
                               "conv_percent_on": 0.25, "conv_weight_sparsity": 0.5},
            workflow_option_overrides={"benchmark": "split_cifar100", "num_tasks": 10,
                                       "batch_size": 4, "epochs_first_task": 1,
                                       "epochs_per_task": 1, "progress": False,
                                       "cifar100_source": "tfds"})
        results = config.workflow_class(config).run()
    evaluation = results["evaluation"]
    assert config.hparams["num_heads"] == 10 and config.hparams["classes_per_head"] == 10
    assert evaluation["tasks_done"] == 10 and len(evaluation["final_accuracies"]) == 10
    assert len(evaluation["active_fraction"]) == 3
