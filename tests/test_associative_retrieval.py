"""Associative-retrieval data (format, determinism, splits, encoding, tf.data) and workflow."""
import csv
import pathlib

import numpy as np
import pytest

from pagi_rsm.datasets import associative_retrieval as ar


def _check_rows(tokens, targets, pairs):
    """Hand check of every row: distinct letter keys, digit values, '??', a key as query."""
    assert tokens.shape == (len(targets), 2 * pairs + 3)
    for row, target in zip(tokens, targets):
        text = ar.decode(row)
        keys, values = text[0:2 * pairs:2], text[1:2 * pairs:2]
        assert all(k.isalpha() for k in keys) and len(set(keys)) == pairs, text
        assert all(v.isdigit() for v in values), text
        assert text[2 * pairs:2 * pairs + 2] == "??", text
        query = text[-1]
        assert query in keys, text
        assert values[keys.index(query)] == str(target), text


@pytest.mark.parametrize("pairs", [1, 3, 4, 26])
def test_generate_format(pairs):
    tokens, targets = ar.generate(500, pairs=pairs, seed=3)
    assert tokens.dtype == np.int32 and targets.dtype == np.int32
    assert ar.sequence_length(pairs) == 2 * pairs + 3
    _check_rows(tokens, targets, pairs)


def test_paper_example_round_trip():
    tokens = ar.encode("c9k8j3f1??c")
    assert tokens.tolist() == [2, 35, 10, 34, 9, 29, 5, 27, 36, 36, 2]
    assert ar.decode(tokens) == "c9k8j3f1??c"
    assert ar.decode(ar.one_hot(tokens)) == "c9k8j3f1??c"
    assert ar.decode(ar.encode(["a1??a", "b2??b"])) == ["a1??a", "b2??b"]
    assert ar.decode_target(9) == "9"
    with pytest.raises(ValueError, match="symbol 'C'"):
        ar.encode("C9??C")


def test_distributions_are_uniform():
    tokens, targets = ar.generate(40_000, pairs=4, seed=1)
    # Targets: 10 digits, each ~10%.
    counts = np.bincount(targets, minlength=10) / len(targets)
    np.testing.assert_allclose(counts, 0.1, atol=0.01)
    # The query picks each of the 4 positions ~25% of the time.
    positions = (tokens[:, 0:8:2] == tokens[:, -1:]).argmax(1)
    np.testing.assert_allclose(np.bincount(positions, minlength=4) / len(tokens), 0.25,
                               atol=0.015)
    # Keys: every letter ~equally likely at the first position.
    letters = np.bincount(tokens[:, 0], minlength=26) / len(tokens)
    np.testing.assert_allclose(letters, 1 / 26, atol=0.006)
    # Values are drawn with replacement: repeated digits occur (P(all distinct) = 0.504).
    values = tokens[:, 1:8:2]
    repeated = np.mean([len(set(v)) < 4 for v in values[:2000]])
    assert 0.4 < repeated < 0.6


def test_one_hot():
    tokens, _ = ar.generate(4, seed=0)
    x = ar.one_hot(tokens)
    assert x.shape == (4, 11, 37) and x.dtype == np.float32
    np.testing.assert_array_equal(x.sum(-1), 1.0)
    np.testing.assert_array_equal(x.argmax(-1), tokens)


def test_splits_deterministic_and_sized():
    a = ar.load_splits(pairs=4, seed=7, train_size=1000, validation_size=200, test_size=300)
    b = ar.load_splits(pairs=4, seed=7, train_size=1000, validation_size=200, test_size=300)
    assert {k: len(v[0]) for k, v in a.items()} == {"train": 1000, "validation": 200,
                                                   "test": 300}
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0])
        np.testing.assert_array_equal(a[name][1], b[name][1])
        _check_rows(*a[name], pairs=4)
    # Independent streams: the splits differ, and one split's size does not move another.
    assert not np.array_equal(a["train"][0][:200], a["validation"][0])
    c = ar.load_splits(pairs=4, seed=7, train_size=50, validation_size=200, test_size=300)
    np.testing.assert_array_equal(c["test"][0], a["test"][0])
    d = ar.load_splits(pairs=4, seed=8, train_size=1000, validation_size=200, test_size=300)
    assert not np.array_equal(d["train"][0], a["train"][0])


def test_default_split_sizes_and_overlap():
    splits = ar.load_splits()
    assert {k: len(v[0]) for k, v in splits.items()} == ar.SPLIT_SIZES == {
        "train": 100_000, "validation": 10_000, "test": 20_000}
    # Documented: K=4 splits are not de-duplicated but essentially never collide.
    assert ar.overlap_fraction(splits["train"][0], splits["test"][0]) < 1e-3
    assert ar.overlap_fraction(splits["train"][0], splits["train"][0][:10]) == 1.0
    # K=1 has only 260 distinct sequences: the test split is all seen in training.
    small = ar.load_splits(pairs=1, seed=0, train_size=5000, validation_size=10, test_size=100)
    assert ar.overlap_fraction(small["train"][0], small["test"][0]) == 1.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(size=10, pairs=27), r"pairs must be an integer in \[1, 26\]"),
    (dict(size=10, pairs=0), r"pairs must be an integer in \[1, 26\]"),
    (dict(size=0), "size must be an integer >= 1"),
    (dict(size=-3), "size must be an integer >= 1"),
])
def test_generate_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ar.generate(**kwargs)


@pytest.mark.parametrize("name", ["train_size", "validation_size", "test_size"])
def test_split_size_validation(name):
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1"):
        ar.load_splits(**{name: 0})


def test_tf_dataset():
    tokens, targets = ar.generate(10, seed=2)
    ds = ar.make_tf_dataset(tokens, targets, batch_size=4)
    batches = list(ds.as_numpy_iterator())
    assert [b[0].shape for b in batches] == [(4, 11, 37), (4, 11, 37), (2, 11, 37)]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(x, ar.one_hot(tokens))
    np.testing.assert_array_equal(y, targets)
    shuffled = ar.make_tf_dataset(tokens, targets, 4, shuffle=True, seed=1, repeat=True,
                                  drop_remainder=True)
    xs, ys = next(iter(shuffled.take(1).as_numpy_iterator()))
    assert xs.shape == (4, 11, 37)
    for row, target in zip(xs.argmax(-1), ys):  # pairs stay aligned after shuffling
        i = int(np.flatnonzero((tokens == row).all(1))[0])
        assert targets[i] == target
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        ar.make_tf_dataset(tokens, targets, 0)


def test_training_stream_is_shuffled_epochs_and_resumable():
    tokens, targets = ar.generate(10, seed=3)
    stream = ar.make_training_stream(tokens, targets, batch_size=3, seed=5)
    batches = list(stream.take(7).as_numpy_iterator())
    assert all(x.shape == (3, 11, 37) for x, _ in batches)
    rows = [ar.decode(x) for x, _ in batches]
    # Epoch = 3 batches (10 // 3, the last partial batch dropped); no repeats within an epoch.
    for epoch in (rows[0:3], rows[3:6]):
        flat = [r for batch in epoch for r in batch]
        assert len(set(flat)) == 9
    assert rows[0:3] != rows[3:6]  # each epoch has its own order
    first = np.random.default_rng([5, 0]).permutation(10)[:3]
    assert rows[0] == ar.decode(tokens[first])
    np.testing.assert_array_equal(batches[0][1], targets[first])
    # Starting at batch 4 gives exactly batches 4, 5, 6.
    resumed = list(ar.make_training_stream(tokens, targets, 3, seed=5, start_batch=4)
                   .take(3).as_numpy_iterator())
    for (x, y), (x2, y2) in zip(batches[4:], resumed):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    with pytest.raises(ValueError, match="batch_size must be <= the split size 10"):
        ar.make_training_stream(tokens, targets, 11)
    with pytest.raises(ValueError, match="start_batch must be an integer >= 0"):
        ar.make_training_stream(tokens, targets, 2, start_batch=-1)


# ---- the pagi workflow ----

WORKFLOW = "associative_retrieval"
DEFINITIONS = pathlib.Path(__file__).resolve().parents[1] / "definitions" / "fast_weights"


def _tiny(**sweeps):
    raw = {"experiment-options": {"workflow": WORKFLOW, "batches": 8, "seed": 3,
                                  "hparams_override": {"units": 4, "unroll": False}},
           "workflow-options": {"checkpoint_interval": 4, "train_size": 200,
                                "validation_size": 50, "test_size": 60, "batch_size": 16,
                                "progress": False, "summary_interval": 1}}
    if sweeps:
        raw["parameter-sweeps"] = {"hparams": sweeps}
    return raw


def test_workflow_derives_max_length_and_checks_options():
    from pagi_rsm import definitions
    raw = _tiny()
    raw["workflow-options"]["pairs"] = 3
    [config] = definitions.resolve(raw, source="tiny")
    assert config.hparams["max_length"] == 9 and config.hparams["kind"] == "fast_weights"
    raw["experiment-options"]["hparams_override"]["max_length"] = 5
    with pytest.raises(definitions.DefinitionError, match="max_length .5. is shorter"):
        definitions.resolve(raw, source="tiny")
    raw = _tiny()
    raw["workflow-options"]["pairs"] = 27
    with pytest.raises(definitions.DefinitionError, match=r"pairs must be an integer in \[1, 26\]"):
        definitions.resolve(raw, source="tiny")
    raw = _tiny()
    raw["experiment-options"]["hparams_override"]["kind"] = "gru"
    with pytest.raises(definitions.DefinitionError, match="kind must be one of"):
        definitions.resolve(raw, source="tiny")


def test_workflow_sweep_writes_table(tmp_path):
    import tensorflow as tf

    from pagi_rsm import definitions
    from pagi_rsm.workflows.workflow import run_all
    configs = definitions.resolve(_tiny(kind=["fast_weights", "lstm"]), source="tiny")
    results = run_all(configs, summary_dir=str(tmp_path / "sweep"))
    assert [r["status"] for r in results] == ["completed", "completed"]
    for r in results:
        evaluation = r["evaluation"]
        assert set(evaluation) >= {"test_error", "validation_error", "final_test_error",
                                   "best_batch"}
        assert 0.0 <= evaluation["test_error"] <= 1.0
        assert (r["headline"]["metric"], r["headline"]["value"]) == (
            "test_error", evaluation["test_error"])
        assert evaluation["best_batch"] in (4, 8)
    table = (tmp_path / "sweep" / "table.md").read_text()
    assert "| Fast weights (RNN-LN-FW) |" in table and "| LSTM |" in table
    assert f"{100 * results[1]['evaluation']['test_error']:.2f}%" in table
    with open(tmp_path / "sweep" / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["kind"], r["units"]) for r in rows] == [("fast_weights", "4"), ("lstm", "4")]
    # TensorBoard: validation error during training, eval scalars at the end.
    tags = set()
    for path in (tmp_path / "sweep" / "trial_000").glob("events.out.tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(v.tag for v in event.summary.value)
    assert {"validation/error", "eval/test_error", "train/grad_norm"} <= tags


@pytest.mark.parametrize("name", ["r20.yaml", "r50.yaml", "r100.yaml", "table1.yaml"])
def test_definitions_resolve(name):
    from pagi_rsm import definitions
    raw = definitions.load(str(DEFINITIONS / name))
    configs = definitions.resolve(raw, source=name)
    for config in configs:
        assert config.hparams["max_length"] == 11
        assert config.workflow_options["pairs"] == 4
    if name == "table1.yaml":
        grid = {(c.hparams["kind"], c.hparams["units"]) for c in configs}
        assert {("fast_weights", 20), ("lstm", 50), ("control", 100)} <= grid
    else:
        assert len(configs) == 1 and configs[0].hparams["units"] == int(name[1:-5])


def _scalars(directory, tag):
    import tensorflow as tf
    values = []
    for path in sorted(pathlib.Path(directory).glob("events.out.tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                if v.tag == tag:
                    values.append((event.step, float(tf.make_ndarray(v.tensor))))
    return values


def _run(raw, summary_dir):
    from pagi_rsm import definitions
    from pagi_rsm.workflows.workflow import run_all
    return run_all(definitions.resolve(raw, source="tiny"), summary_dir=str(summary_dir))


def test_best_validation_weights_and_tables(tmp_path):
    import json

    import keras

    from pagi_rsm.workflows import associative_retrieval as wf
    raw = _tiny()
    raw["experiment-options"].update(batches=20)
    raw["experiment-options"]["hparams_override"]["kind"] = "rnn_ln"
    raw["workflow-options"]["checkpoint_interval"] = 10
    [result] = _run(raw, tmp_path / "a")
    evaluation = result["evaluation"]
    history = _scalars(tmp_path / "a", "validation/error")
    assert [step for step, _ in history] == [10, 20]
    best_step, best_error = min(history, key=lambda h: h[1])
    assert evaluation["best_batch"] == best_step
    assert evaluation["validation_error"] == pytest.approx(best_error, abs=1e-6)  # float32
    # The reported test error is that of the best-validation weights, which model.keras holds.
    splits = ar.load_splits(4, seed=3, train_size=200, validation_size=50, test_size=60)
    model = keras.saving.load_model(tmp_path / "a" / "model.keras")
    assert evaluation["test_error"] == wf.error_rate(model, *splits["test"])
    assert 0.0 <= evaluation["test_error"] <= 1.0
    rows = wf._table_rows([str(tmp_path / "a")])
    assert [(r["kind"], r["units"], r["best_step"]) for r in rows] == [("rnn_ln", 4, best_step)]
    rows += [{"kind": "fast_weights", "units": 50, "test_error": 0.0123},
             {"kind": "fast_weights", "units": 4, "test_error": 0.5}]
    table = wf.format_table(rows)
    lines = table.splitlines()
    assert lines[0] == "| model | R=4 | R=50 |"
    assert lines[2] == "| Fast weights (RNN-LN-FW) | 50.00% | 1.23% (paper 0%) |"
    assert lines[3] == f"| RNN-LN | {100 * evaluation['test_error']:.2f}% | - |"
    # merge_tables: a run directory and a sweep directory (its trials' results.json).
    on_disk = json.loads((tmp_path / "a" / "results.json").read_text())
    for trial, row in (("trial_000", rows[1]), ("trial_001", rows[2])):
        (tmp_path / "b" / trial).mkdir(parents=True)
        on_disk["options"]["experiment-options"]["hparams_override"].update(
            kind=row["kind"], units=row["units"])
        on_disk["evaluation"]["test_error"] = row["test_error"]
        (tmp_path / "b" / trial / "results.json").write_text(json.dumps(on_disk))
    merged = wf.merge_tables([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "all"))
    assert len(merged) == 3
    assert (tmp_path / "all" / "table.md").read_text().endswith(table + "\n")
    with open(tmp_path / "all" / "table.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["test_error_percent"] for r in csv_rows[1:]] == ["1.23", "50.0"]


def test_validation_target_stops_the_run(tmp_path):
    # Any error is <= 1.0: the first validation (batch 4) meets the target and ends the run; the
    # base loop must not call fit again (it did, until a stop went through TargetStop).
    raw = _tiny()
    raw["experiment-options"]["batches"] = 12
    raw["workflow-options"]["target_validation_error"] = 1.0
    [result] = _run(raw, tmp_path / "run")
    assert result["status"] == "target_reached", result["message"]
    assert result["batches"] == 4
    assert "validation error reached" in result["message"] and "at batch 4" in result["message"]
    assert result["last_checkpoint"].endswith("ckpt-4")
    assert [s for s, _ in _scalars(tmp_path / "run", "validation/error")] == [4]


def test_best_weights_survive_a_resume(tmp_path):
    import keras
    import tensorflow as tf

    from pagi_rsm.callbacks.best_weights import BestWeights

    # Unit: the best weights come back from a checkpoint into a fresh holder.
    def model():   # same names, so the same weight paths
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="m")
    a = model()
    best = BestWeights(a)
    first = [w.numpy().copy() for w in a.weights]
    assert best.offer(0.3, 10, a) and not best.offer(0.5, 20, a) and not best.offer(
        float("nan"), 30, a)
    for w in a.weights:
        w.assign(w.numpy() + 1.0)
    path = tf.train.Checkpoint(best=best.checkpoint_items()).save(str(tmp_path / "ckpt"))
    b = model()
    again = BestWeights(b)
    tf.train.Checkpoint(best=again.checkpoint_items()).restore(path).assert_consumed()
    assert (again.score, again.batch) == (0.3, 10)
    assert again.restore_into(b)
    for w, value in zip(b.weights, first):
        np.testing.assert_array_equal(w.numpy(), value)
    assert not BestWeights(b).restore_into(b)   # nothing offered yet: nothing changes

    # The workflow: a run cut at batch 8 and extended to 16 reports what an uninterrupted one does.
    raw = _tiny()
    raw["experiment-options"]["batches"] = 16
    [full] = _run(raw, tmp_path / "full")
    raw["experiment-options"]["batches"] = 8
    _run(raw, tmp_path / "cut")
    reader = tf.train.load_checkpoint(str(tmp_path / "cut" / "checkpoints" / "ckpt-8"))
    assert reader.get_tensor("best_validation/batch/.ATTRIBUTES/VARIABLE_VALUE") in (4, 8)
    raw["experiment-options"]["batches"] = 16
    [resumed] = _run(raw, tmp_path / "cut")
    assert resumed["resumed_from"] == 8
    for key in ("best_batch", "validation_error", "test_error", "final_test_error"):
        assert resumed["evaluation"][key] == full["evaluation"][key], key
