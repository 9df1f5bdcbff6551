"""The video workflow end to end on a tiny memory: the chain (train the memory, train the
rectifier on it frozen, prime and self-loop the test set) writes its metrics and pictures,
resumes after an interruption in the gan phase with the numbers of an uninterrupted run, gives
the numbers of one device under MirroredStrategy, and refuses a checkpoint of another memory
before anything starts."""
import json

import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm import definitions
from pagi_rsm.workflows.workflow import DataError
from tests.toy_workflow import restore_op_determinism  # noqa: F401 (autouse)

TINY_HPARAMS = {"batch_size": 2, "groups": [4, 4], "cells_per_group": [2, 2],
                "active_groups": [1, 1]}
TINY_OPTIONS = {"chunk_length": 3, "gan_batches": 2, "test_sequences": 4, "test_batch": 2,
                "prime": 3, "steps": 4, "pictures": 2, "checkpoint_interval": 1,
                "image_interval": 1, "progress": False,
                "rectifier": {"encoder_filters": [2, 2, 2], "decoder_filters": [2, 2],
                              "kernel_size": 3, "hidden_units": 4, "condition_units": 4}}


def _config(tmp_path, name, options=None, hparams=None, **experiment):
    experiment.setdefault("summary_dir", str(tmp_path / name))
    experiment.setdefault("batches", 2)
    [config] = definitions.resolve(
        workflow="video", experiment_overrides=experiment,
        hparams_overrides={**TINY_HPARAMS, **(hparams or {})},
        workflow_option_overrides={**TINY_OPTIONS, **(options or {})})
    return config


def _run(tmp_path, name, **kwargs):
    config = _config(tmp_path, name, **kwargs)
    return config.workflow_class(config).run()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("video")
    return tmp_path, _run(tmp_path, "full")


def test_chain_writes_metrics_pictures_and_results(full):
    tmp_path, results = full
    run = tmp_path / "full"
    assert results["status"] == "completed"
    assert results["phases"]["rsm"]["batches"] == 2 and results["phases"]["gan"]["batches"] == 2
    frames = TINY_OPTIONS["prime"] + TINY_OPTIONS["steps"] - 1
    for key in ("error_output", "error_prediction", "error_copy_last", "mass_ratio"):
        assert len(results[key]) == frames and np.all(np.isfinite(results[key])), key
    assert results["priming_error_copy_last"] > 0
    assert results["output_over_copy_last"] == pytest.approx(
        results["priming_error_output"] / results["priming_error_copy_last"])
    assert json.loads((run / "results.json").read_text())["headline"] == results["headline"]
    for name in ("generated.gif", "strip_0.png", "strip_1.png"):
        assert (run / name).stat().st_size > 100, name
    tags = set()
    for path in run.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    assert {"test/strip_0", "test/error_per_frame", "memory_0/truth_prediction_difference",
            "gan/truth_prediction_rectified_difference"} <= tags


def test_chain_resumes_in_the_gan_phase_with_the_same_numbers(full, tmp_path):
    _, reference = full
    _run(tmp_path, "cut", options={"gan_batches": 1})         # "killed" after gan batch 1
    resumed = _run(tmp_path, "cut")
    assert resumed["phases"]["gan"]["batches"] == 2
    np.testing.assert_allclose(resumed["error_output"], reference["error_output"], rtol=1e-5)
    np.testing.assert_allclose(resumed["error_prediction"], reference["error_prediction"],
                               rtol=1e-5)


def test_mirrored_chain_equals_one_device(full, tmp_path):
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs 2 logical CPU devices (tests/conftest.py)")
    _, reference = full
    two = _run(tmp_path, "two", distribution="mirrored")
    np.testing.assert_allclose(two["error_prediction"], reference["error_prediction"],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(two["error_output"], reference["error_output"],
                               rtol=1e-4, atol=1e-5)


def test_a_checkpoint_of_another_memory_stops_before_anything_starts(full, tmp_path):
    root, _ = full
    options = {"phase": "gan", "rsm_checkpoint": str(root / "full" / "checkpoints" / "rsm")}
    config = _config(tmp_path, "other", options=options, hparams={"groups": [5, 4]})
    with pytest.raises(DataError, match="rsm_checkpoint: the checkpoint .* does not match"):
        config.workflow_class(config).run()
    assert not (tmp_path / "other").exists()
    config = _config(tmp_path, "empty", options={**options, "rsm_checkpoint": str(tmp_path)})
    with pytest.raises(DataError, match="rsm_checkpoint: no checkpoint in"):
        config.workflow_class(config).run()
    assert not (tmp_path / "empty").exists()
