"""`pagi_rsm.load_run`: a run's options and its component restored from the latest checkpoint;
model.keras beside results.json; the README's snippet on a tiny grammar run."""
import contextlib
import io
import json
import pathlib
import re
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

import pagi_rsm
from pagi_rsm import definitions
from tests.toy_workflow import TOY, run_pagi
from tests.toy_workflow import restore_op_determinism  # noqa: F401 (autouse)

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
GRAMMAR_TINY = {"batch_size": 8, "groups": [12], "cells_per_group": [3], "sparsity": [2],
                "predictor_hidden_size": [16], "memory_training_interval": [0, -1]}


def _readme_snippet():
    text = README.read_text()
    marker = text.index("<!-- tests/test_load_run.py runs this block -->")
    return re.search(r"```python\n(.*?)```", text[marker:], re.S).group(1)


@pytest.fixture(scope="module")
def grammar_run(tmp_path_factory):
    """A tiny grammar run (4 batches, checkpoints every 2) and its in-process model."""
    directory = tmp_path_factory.mktemp("grammar") / "run"
    [config] = definitions.resolve(
        workflow="grammar", hparams_overrides=GRAMMAR_TINY,
        experiment_overrides={"batches": 4, "summary_dir": str(directory)},
        workflow_option_overrides={"checkpoint_interval": 2, "probe_interval": 0,
                                   "image_interval": 0, "progress": False, "render": "onehot"})
    workflow = config.workflow_class(config)
    built = {}
    build = workflow.build_component
    workflow.build_component = lambda dataset: built.setdefault("model", build(dataset))
    results = workflow.run()
    return directory, built["model"], results, workflow


def test_load_run_gives_the_in_process_model(grammar_run):
    directory, trained, results, workflow = grammar_run
    assert results["model_file"] == str((directory / "model.keras").resolve())
    batch = next(iter(workflow.build_dataset(start_batch=4)))
    expected = trained.unroll(batch)[0]["logits"].numpy()   # from the trained stream state
    run = pagi_rsm.load_run(str(directory))
    assert run.batch == 4 and run.checkpoint.endswith("ckpt-4")
    assert run.results["status"] == "completed"
    assert run.config.hparams["groups"] == [12] and run.config.batches == 4
    assert run.config.as_definition()["workflow-options"]["checkpoint_interval"] == 2
    assert type(run.model).__name__ == "SequenceMemoryStack"
    for a, b in zip(run.model.weights, trained.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # Same predictions, stream state included (unroll from the stored states).
    np.testing.assert_array_equal(run.model.unroll(batch)[0]["logits"].numpy(), expected)
    # model.keras is the same model.
    saved = keras.saving.load_model(directory / "model.keras")
    np.testing.assert_array_equal(saved.unroll(batch)[0]["logits"].numpy(), expected)


def test_readme_snippet_runs(grammar_run):
    directory = grammar_run[0]
    code = _readme_snippet().replace('"runs/grammar-main"', repr(str(directory)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert [line.split(" -> ")[0] for line in lines] == ["BTBTSXSE", "BPBTSXSE"]
    assert all(re.fullmatch(r"\w+ -> [BEPSTVX] \(p = [01]\.\d{3}\)", line) for line in lines)


def test_load_run_restores_the_latest_checkpoint_after_kill_and_resume(tmp_path):
    from pagi_rsm import cli
    directory = tmp_path / "cut"
    killed = run_pagi("run", f"--workflow={TOY}", "--batches=18", f"--summary_dir={directory}",
                      "--workflow_options={kill_at_batch: 13}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = pagi_rsm.load_run(str(directory))   # killed: the latest checkpoint is batch 10
    assert run.results is None and run.batch == 10 and run.checkpoint.endswith("ckpt-10")
    reader = tf.train.load_checkpoint(run.checkpoint)
    # Every variable is saved by its path (pagi_rsm/checkpointing.py).
    key = run.model.state.path.replace("/", "..")       # "." is written ".." in the keys
    state = reader.get_tensor(f"weights/{key}/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(run.model.state.numpy(), state)   # the stream state
    assert cli.main(["pagi", "run", f"--workflow={TOY}", "--batches=18",
                     f"--checkpoint={directory / 'checkpoints'}"]) == 0
    run = pagi_rsm.load_run(str(directory))
    assert run.batch == 18 and run.checkpoint.endswith("ckpt-18")
    assert run.results["resumed_from"] == 10
    assert run.results["last_checkpoint"] == run.checkpoint
    saved = keras.saving.load_model(directory / "model.keras")
    for a, b in zip(run.model.weights, saved.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert not np.array_equal(run.model.state.numpy(), state)


def test_load_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no definition.yaml"):
        pagi_rsm.load_run(str(tmp_path))
    (tmp_path / "definition.yaml").write_text(json.dumps(
        {"experiment-options": {"workflow": TOY}}))
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        pagi_rsm.load_run(str(tmp_path))
