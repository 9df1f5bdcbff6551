"""Image-sequence streams (pagi_rsm.datasets.image_sequence): sources, exemplars, ceilings,
determinism and resume, bad input; the held-out callback; the LSTM baseline; the workflow
(resume, mirrored) with a tiny stack."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm import definitions
from pagi_rsm.datasets import image_sequence as seq
from pagi_rsm.datasets import mnist


def batches(ds, n):
    it = iter(ds)
    return [{k: v.numpy() for k, v in next(it).items()} for _ in range(n)]


# --- ceilings ----------------------------------------------------------------------------------

def filtered_accuracy(sequences, steps, rng):
    """Independent reference: simulate a stream and run the exact forward filter over (i, j)."""
    states = [(i, j) for i, s in enumerate(sequences) for j in range(len(s))]
    index = {s: k for k, s in enumerate(states)}
    n = len(states)
    trans = np.zeros((n, n))
    for (i, j), k in index.items():
        if j + 1 < len(sequences[i]):
            trans[k, index[(i, j + 1)]] = 1.0
        else:
            for i2 in range(len(sequences)):
                trans[k, index[(i2, 0)]] += 1.0 / len(sequences)
    digit = np.array([sequences[i][j] for i, j in states])
    i, j = rng.integers(len(sequences)), 0
    belief = np.full(n, 1.0 / n)   # over the state just shown, before any observation
    first = True
    scores = []
    for _ in range(steps):
        predicted = belief @ trans if not first else belief
        per_digit = np.bincount(digit, weights=predicted, minlength=10)
        if not first:
            scores.append(per_digit.max())
        first = False
        j += 1
        if j == len(sequences[i]):
            i, j = rng.integers(len(sequences)), 0
        shown = sequences[i][j]
        belief = predicted * (digit == shown)
        belief /= belief.sum()
    return float(np.mean(scores[200:]))


def test_ceiling_of_pagi9_is_eight_ninths():
    assert seq.bayes_ceiling("pagi9") == pytest.approx(8 / 9, abs=1e-9)
    assert seq.bayes_ceiling(seq.PAGI9) == pytest.approx(8 / 9, abs=1e-9)


@pytest.mark.parametrize("sequences, expected", [
    ("0123456789", 1.0), ("012340123404321", 1.0), ("0", 1.0), ("0101", 1.0),
    (["7"], 1.0),                          # a set of one sequence: cycled, fully determined
    (["12", "13"], 0.75),                  # 1 -> 2|3 (1/2), then 2|3 -> 1 (1)
    ([[1, 2, 3], [1, 2, 4]], 5 / 6),       # 1 -> 2, 2 -> 3|4 (1/2), 3|4 -> 1
    ([[5, 5], [5, 5, 5]], 1.0),            # ambiguous segmentation, every digit 5
])
def test_ceiling_hand_derived(sequences, expected):
    assert seq.bayes_ceiling(sequences) == pytest.approx(expected, abs=1e-9)


def test_ceiling_matches_a_simulated_forward_filter():
    rng = np.random.default_rng(3)
    for sequences in (seq.PAGI9, ((1, 2, 3, 4), (1, 2, 4, 3), (2, 1)), ((0, 1, 0, 2),)):
        reference = filtered_accuracy(sequences, 20000, rng)
        assert seq.bayes_ceiling(sequences) == pytest.approx(reference, abs=0.01), sequences


def test_first_order_ceiling():
    # each digit of the higher-order string has successors {a, a, b}: 2/3 at best
    assert seq.first_order_ceiling("012340123404321") == pytest.approx(2 / 3)
    assert seq.first_order_ceiling("0123456789") == pytest.approx(1.0)
    assert seq.first_order_ceiling(["12", "13"]) == pytest.approx(0.75)


def test_determined_positions():
    flags = seq.determined_positions(seq.PAGI9)
    # position 0 never (the next sequence is random); position 1 only after a unique first
    # digit (5, 3, 4: sequences 2, 6, 7); positions 2..8 always
    assert [f[0] for f in flags] == [False] * 8
    assert [i for i, f in enumerate(flags) if f[1]] == [2, 6, 7]
    assert all(all(f[2:]) for f in flags)
    assert seq.determined_positions("012340123404321") == ((True,) * 15,)


def test_too_many_beliefs_is_a_clear_error():
    with pytest.raises(ValueError, match="more than 5 belief states"):
        seq.bayes_ceiling("0123456789", max_beliefs=5)


# --- sources and bad input ---------------------------------------------------------------------

def test_parse_sources(tmp_path):
    assert seq.parse_sequences() == (tuple(range(10)),)
    assert seq.parse_sequences("01 2,3") == ((0, 1, 2, 3),)
    assert seq.parse_sequences("PAGI9") == seq.PAGI9
    assert seq.parse_sequences(["12", [3, 4]]) == ((1, 2), (3, 4))
    path = tmp_path / "set.txt"
    path.write_text("# two sequences\n0123\n\n4 5 6\n")
    assert seq.parse_sequences(sequence_file=path) == ((0, 1, 2, 3), (4, 5, 6))


@pytest.mark.parametrize("sequences, message", [
    ("01a3", r"sequences: 'a' at position 2 is not a digit"),
    ("", "sequences is empty"),
    ([], "non-empty list"),
    (["12", "x"], r"sequences\[1\]: 'x' at position 0 is not a digit"),
    ([[1, 10]], r"sequences\[0\]\[1\] must be a digit 0-9, got 10"),
    ([[1, True]], r"sequences\[0\]\[1\] must be a digit"),
    ([[]], r"sequences\[0\] must be a digit string or a non-empty list"),
    (3, "sequences must be a digit string"),
])
def test_bad_sequences(sequences, message):
    with pytest.raises(ValueError, match=message):
        seq.parse_sequences(sequences)


def test_bad_sequence_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    with pytest.raises(ValueError, match="empty.txt' holds no sequence"):
        seq.parse_sequences(sequence_file=empty)
    bad = tmp_path / "bad.txt"
    bad.write_text("0123\n01-2\n")
    with pytest.raises(ValueError, match="line 2: '-' at position 2 is not a digit"):
        seq.parse_sequences(sequence_file=bad)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        seq.parse_sequences(sequence_file=tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="not both"):
        seq.parse_sequences("12", sequence_file=bad)


def test_bad_dataset_arguments():
    with pytest.raises(ValueError, match="exemplars must be one of"):
        seq.make_image_sequence_dataset(exemplars="first")
    with pytest.raises(ValueError, match="split must be one of"):
        seq.make_image_sequence_dataset(exemplars="same", split="valid")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        seq.make_image_sequence_dataset(exemplars="same", batch_size=0)
    with pytest.raises(ValueError, match="seed"):
        seq.make_image_sequence_dataset(exemplars="same", seed=-1)


def test_missing_mnist_says_where_to_put_it(tmp_path):
    for exemplars, split in (("random", "train"), ("same", "test")):
        with pytest.raises(mnist.MnistNotFoundError) as info:
            seq.make_image_sequence_dataset(exemplars=exemplars, split=split,
                                            mnist_dir=str(tmp_path / "nowhere"))
        text = str(info.value)
        assert "nowhere" in text and "t10k-images-idx3-ubyte" in text
        assert "PAGI_RSM_MNIST_DIR" in text


# --- streams -----------------------------------------------------------------------------------

def test_cycled_string_streams_start_at_b_mod_length_and_never_reset():
    ds, meta = seq.make_image_sequence_dataset("012340123404321", batch_size=17,
                                               chunk_length=7, exemplars="same")
    chunks = batches(ds, 5)
    labels = np.concatenate([c["labels"] for c in chunks], axis=1)
    string = np.array([int(c) for c in "012340123404321"])
    for b in range(17):
        np.testing.assert_array_equal(labels[b], string[(b % 15 + np.arange(35)) % 15])
    for c in chunks:
        assert not c["reset"].any() and c["test"].all() and c["determined"].all()
    assert meta.ceiling == pytest.approx(1.0) and meta.num_classes == 10
    assert meta.first_order_ceiling == pytest.approx(2 / 3)


def test_stochastic_streams_walk_whole_sequences():
    ds, meta = seq.make_image_sequence_dataset("pagi9", batch_size=20, chunk_length=9,
                                               exemplars="same", seed=5)
    chunks = batches(ds, 30)
    labels = np.concatenate([c["labels"] for c in chunks], axis=1)
    determined = np.concatenate([c["determined"] for c in chunks], axis=1)
    flags = seq.determined_positions(seq.PAGI9)
    chosen = []
    for b in range(20):
        start = (9 - b % 9) % 9       # stream b starts at position b mod 9 of its first sequence
        for k in range(start, labels.shape[1] - 8, 9):
            segment = tuple(labels[b, k:k + 9])
            assert segment in seq.PAGI9
            chosen.append(seq.PAGI9.index(segment))
            np.testing.assert_array_equal(determined[b, k:k + 9], flags[chosen[-1]])
    counts = np.bincount(chosen, minlength=8)
    assert counts.min() > 0.6 * len(chosen) / 8          # drawn uniformly (about 65 each)
    assert meta.ceiling == pytest.approx(8 / 9)


def test_same_exemplars_are_the_first_of_each_digit(shared_data):
    mnist_dir = str(shared_data / "mnist")
    for split in ("train", "test"):
        images, labels = mnist.load_idx(mnist_dir, split)
        first, _ = mnist.first_exemplars(images, labels)
        ds, _ = seq.make_image_sequence_dataset("0123456789", batch_size=3, chunk_length=10,
                                                exemplars="same", split=split,
                                                mnist_dir=mnist_dir)
        chunk = batches(ds, 1)[0]
        for b in range(3):
            for t in range(10):
                np.testing.assert_allclose(chunk["inputs"][b, t] * 255.0,
                                           first[chunk["labels"][b, t]].reshape(-1), atol=1e-3)


def test_random_exemplars_come_from_the_split_and_vary(shared_data):
    mnist_dir = str(shared_data / "mnist")
    seen = {}
    for split in ("train", "test"):
        images, labels = mnist.load_idx(mnist_dir, split)
        lookup = {img.tobytes(): int(lab) for img, lab in zip(images, labels)}
        ds, _ = seq.make_image_sequence_dataset("pagi9", batch_size=6, chunk_length=9,
                                                split=split, seed=2, mnist_dir=mnist_dir)
        chunk = batches(ds, 2)[1]
        pixels = np.rint(chunk["inputs"] * 255.0).astype(np.uint8).reshape(-1, 28, 28)
        found = [lookup.get(p.tobytes()) for p in pixels]
        assert found == chunk["labels"].reshape(-1).tolist()   # an image of that digit, of split
        seen[split] = {p.tobytes() for p in pixels}
        assert len(seen[split]) > 0.9 * len(pixels)            # fresh exemplars, not one per digit
    assert not seen["train"] & seen["test"]


def test_deterministic_by_seed_and_resumable():
    kwargs = dict(sequences="pagi9", batch_size=5, chunk_length=9, exemplars="same")
    a = batches(seq.make_image_sequence_dataset(seed=11, **kwargs)[0], 6)
    b = batches(seq.make_image_sequence_dataset(seed=11, **kwargs)[0], 6)
    c = batches(seq.make_image_sequence_dataset(seed=12, **kwargs)[0], 6)
    resumed = batches(seq.make_image_sequence_dataset(seed=11, start_chunk=4, **kwargs)[0], 2)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert any(not np.array_equal(x["labels"], y["labels"]) for x, y in zip(a, c))
    for x, y in zip(a[4:], resumed):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_random_exemplar_draws_resume_exactly(shared_data):
    kwargs = dict(sequences="0123456789", batch_size=4, chunk_length=5, seed=3,
                  mnist_dir=str(shared_data / "mnist"))
    full = batches(seq.make_image_sequence_dataset(**kwargs)[0], 4)
    resumed = batches(seq.make_image_sequence_dataset(start_chunk=3, **kwargs)[0], 1)
    np.testing.assert_array_equal(full[3]["inputs"], resumed[0]["inputs"])


def test_long_sequence_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "long.txt"
    path.write_text("".join(map(str, rng.integers(0, 10, 1000))) + "\n")
    ds, meta = seq.make_image_sequence_dataset(sequence_file=str(path), batch_size=2,
                                               chunk_length=4, exemplars="same",
                                               start_chunk=600)
    labels = batches(ds, 1)[0]["labels"]
    digits = np.array([int(c) for c in path.read_text().strip()])
    np.testing.assert_array_equal(labels[1], digits[(1 + 2400 + np.arange(4)) % 1000])
    assert meta.ceiling == pytest.approx(1.0)


# --- held-out callback and LSTM baseline -------------------------------------------------------

def tiny_lstm(**kwargs):
    from pagi_rsm.components.stream_lstm import StreamLSTM
    model = StreamLSTM(units=8, input_dim=784, num_classes=10, batch_size=4, **kwargs)
    model.compile()
    return model


def test_heldout_accuracy_leaves_the_training_streams_alone(tmp_path):
    from pagi_rsm.callbacks.heldout_accuracy import HeldOutAccuracy, confusion_image
    from pagi_rsm.callbacks.run_clock import RunClock
    model = tiny_lstm()
    train, _ = seq.make_image_sequence_dataset("0123", batch_size=4, chunk_length=5,
                                               exemplars="same")
    model.fit(train, steps_per_epoch=3, verbose=0)
    before = [v.numpy().copy() for v in model.weights]
    held = HeldOutAccuracy(
        tf.summary.create_noop_writer(), RunClock(), 1,
        lambda: seq.make_image_sequence_dataset("0123", batch_size=3, chunk_length=5,
                                                exemplars="same", seed=9)[0],
        num_classes=10, chunks=2, warmup_chunks=1, masks=("determined",), ceiling=1.0)
    values = held.evaluate(model)
    for b, a in zip(before, model.weights):
        np.testing.assert_array_equal(b, a.numpy())      # weights and stream state untouched
    assert held.confusion.sum() == 2 * 3 * 5
    assert values["accuracy"] == pytest.approx(np.trace(held.confusion) / 30)
    assert values["determined_accuracy"] == pytest.approx(values["accuracy"])
    assert values["fraction_of_ceiling"] == pytest.approx(values["accuracy"])
    image = confusion_image(np.eye(10) * 3, cell=4)
    assert image.shape == (1, 40, 40, 1) and image.max() == 1.0 and image.sum() == 160


def test_lstm_learns_a_cycled_string_and_carries_state():
    keras.utils.set_random_seed(3)   # the initial weights must not depend on the tests before
    model = tiny_lstm(learning_rate=0.02)
    ds, _ = seq.make_image_sequence_dataset("0123", batch_size=4, chunk_length=6,
                                            exemplars="same")
    history = model.fit(ds, steps_per_epoch=60, verbose=0).history
    assert history["test_state_accuracy"][-1] > 0.9
    # the carried state matters: from a zero state the first step cannot be predicted
    chunk = next(iter(ds))
    own = model.unroll(chunk)[0]["logits"]
    fresh = model.unroll(chunk, model.zero_states(4))[0]["logits"]
    assert not np.allclose(own[:, 0], fresh[:, 0])
    np.testing.assert_allclose(own[:, 3:], fresh[:, 3:], atol=0.2)


def test_lstm_mirrored_equals_one_device(strategies):
    one, mirrored = strategies
    ds, _ = seq.make_image_sequence_dataset("0123", batch_size=4, chunk_length=5,
                                            exemplars="same")
    results = []
    for strategy in (one, mirrored):
        tf.keras.utils.set_random_seed(4)
        with strategy.scope():
            model = tiny_lstm()
        history = model.fit(ds, steps_per_epoch=3, verbose=0).history
        results.append((history["loss"][-1], [w.numpy() for w in model.trainable_weights]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-4)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# --- the workflow ------------------------------------------------------------------------------

TINY = {"batch_size": 8, "groups": [12], "cells_per_group": [3], "active_groups": [2],
        "predictor_hidden_size": [16], "accuracy_window": 40}


def run_workflow(tmp_path, name, batches, shared_data, **options):
    options = {"checkpoint_interval": 2, "image_interval": 2, "chunk_length": 5,
               "eval_interval": 2, "eval_streams": 4, "eval_warmup_chunks": 1,
               "eval_chunks": 1, "sequences": "pagi9", "mnist_dir": str(shared_data / "mnist"),
               **options}
    experiment = {"batches": batches, "summary_dir": str(tmp_path / name)}
    if "distribution" in options:
        experiment["distribution"] = options.pop("distribution")
    [config] = definitions.resolve(workflow="image_sequence", hparams_overrides=TINY,
                                   experiment_overrides=experiment,
                                   workflow_option_overrides=options)
    return config.workflow_class(config).run()


def test_workflow_options_are_checked():
    for options, message in (({"sequences": "01x"}, "'x' at position 2 is not a digit"),
                             ({"exemplars": "all"}, "exemplars must be one of"),
                             ({"model": "gru"}, "model must be one of"),
                             ({"sequence_file": "/nonexistent/seq.txt"}, "does not exist")):
        with pytest.raises(definitions.DefinitionError, match=message):
            definitions.resolve(workflow="image_sequence", workflow_option_overrides=options)
    [config] = definitions.resolve(workflow="image_sequence")
    assert config.hparams["input_dim"] == 784 and config.hparams["num_classes"] == 10
    assert config.hparams["batch_size"] == 300 and config.hparams["predictor_hidden_size"] == [1200]


@pytest.mark.slow
def test_workflow_resumes_exactly_and_reports_heldout(tmp_path, shared_data):
    full = run_workflow(tmp_path, "full", 4, shared_data)
    run_workflow(tmp_path, "cut", 2, shared_data)
    resumed = run_workflow(tmp_path, "cut", 4, shared_data)
    assert resumed["resumed_from"] == 2 and resumed["metrics"] == full["metrics"]
    assert resumed["evaluation"] == full["evaluation"]
    assert full["headline"]["metric"] == "heldout_accuracy"
    assert full["evaluation"]["ceiling"] == pytest.approx(8 / 9)
    from tensorboard.backend.event_processing import event_accumulator as ea
    acc = ea.EventAccumulator(str(tmp_path / "full"), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    plugin = {t: acc.SummaryMetadata(t).plugin_data.plugin_name for t in acc.Tags()["tensors"]}
    assert plugin["heldout/accuracy"] == plugin["train/ceiling"] == "scalars"
    assert plugin["heldout/confusion"] == "images"
    assert [e.step for e in acc.Tensors("heldout/accuracy")] == [2, 4, 4]


@pytest.mark.slow
def test_workflow_mirrored_equals_one_device(tmp_path, shared_data):
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs 2 logical CPU devices (tests/conftest.py)")
    one = run_workflow(tmp_path, "one", 2, shared_data)
    two = run_workflow(tmp_path, "two", 2, shared_data, distribution="mirrored")
    assert two["replicas"] == 2
    for key, value in one["metrics"].items():
        np.testing.assert_allclose(two["metrics"][key], value, rtol=1e-3, atol=1e-4,
                                   err_msg=key)


@pytest.mark.slow
def test_workflow_trains_the_lstm_baseline(tmp_path, shared_data):
    lstm = run_workflow(tmp_path, "lstm", 2, shared_data, model="lstm", lstm_units=8)
    assert lstm["status"] == "completed" and 0.0 <= lstm["evaluation"]["heldout_accuracy"] <= 1
    assert lstm["metrics"]["test_state_count"] == 40      # accuracy_window from the hparams
