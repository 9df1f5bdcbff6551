"""Embedded Reber grammar streams: validity, flags, stagger, determinism, resume, rendering."""
import copy
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import yaml

from pagi_rsm.datasets import grammar as gr
from pagi_rsm.datasets import mnist

REPO = pathlib.Path(__file__).resolve().parents[1]

# The inner Reber automaton written from docs/rsm.md#embedded-reber-grammar, independently of
# the module:
# node -> {symbol: next node}, None = the inner string's end.
REBER = {1: {"T": 2, "P": 3}, 2: {"S": 2, "X": 4}, 3: {"T": 3, "V": 5},
         4: {"X": 3, "S": 6}, 5: {"P": 4, "V": 6}, 6: {"E": None}}
SYMBOLS = "BEPSTVX"   # sorted; class id = index


def is_embedded_reber(s):
    """B (T|P) B <Reber string> E (same T|P) E."""
    if len(s) < 9 or s[0] != "B" or s[1] not in "TP" or s[2] != "B":
        return False
    node, i = 1, 3
    while node is not None:
        if i >= len(s) or s[i] not in REBER[node]:
            return False
        node, i = REBER[node][s[i]], i + 1
    return s[i:] == s[1] + "E"


def collect(dataset, chunks):
    """Numpy arrays of `chunks` elements concatenated along time."""
    parts = [{k: v.numpy() for k, v in el.items()} for el in dataset.take(chunks)]
    return {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}


def split_strings(labels, reset, symbols=SYMBOLS):
    """Per stream, the complete strings between resets (drops the partial first/last pieces)."""
    out = []
    for row, flags in zip(labels, reset):
        starts = np.flatnonzero(flags)
        for a, b in zip(starts[1:-1], starts[2:]):
            out.append("".join(symbols[c] for c in row[a:b]))
    return out


def onehot(batch_size=8, chunk_length=12, **kw):
    return gr.make_grammar_dataset(batch_size=batch_size, chunk_length=chunk_length,
                                   render="onehot", **kw)[0]


# --- grammar tables ---------------------------------------------------------------------------

def test_default_grammar_tables():
    g = gr.as_grammar(None)
    assert g.symbols == tuple(SYMBOLS) and g.num_classes == 7
    assert g.test_states == ("S3", "S4") and g.end_states == ("S5",)
    assert g.to_symbols([g.state_names.index(s) for s in ("S3", "S4", "S5", "S0")]) == "TPEB"
    # Hand-derived: the inner Reber string from node T1 has 7 symbols on average; with
    # B, T|P, B before it and T|P, E after it the mean is 12.
    assert g.mean_length() == pytest.approx(12.0)


def test_custom_grammar_distribution_and_mean_length():
    # "A B^k E" with P(k) = 2^-(k+1): mean length 1 + 2 = 3; `next: null` also ends a string.
    config = {"states": {"a": {"symbol": "A"}, "b": {"symbol": "B"},
                         "e": {"symbol": "E", "end": True}},
              "transitions": {"START": [{"state": "a", "next": "N"}],
                              "N": [{"state": "b", "next": "N"}, {"state": "e", "next": None}]}}
    assert gr.Grammar.from_config(config).mean_length() == pytest.approx(3.0)
    ds, meta = gr.make_grammar_dataset(config, batch_size=16, chunk_length=50, render="onehot",
                                       seed=3)
    assert meta.symbols == ("A", "B", "E") and meta.input_dim == 3
    data = collect(ds, 20)
    strings = split_strings(data["labels"], data["reset"], "ABE")
    assert len(strings) > 2000
    assert all(s[0] == "A" and s[-1] == "E" and set(s[1:-1]) <= {"B"} for s in strings)
    ks = np.array([len(s) - 2 for s in strings])
    for k in range(4):
        assert np.mean(ks == k) == pytest.approx(2.0 ** -(k + 1), abs=0.025)
    assert data["test"].sum() == 0


# --- generated strings ------------------------------------------------------------------------

def test_strings_are_valid_embedded_reber_strings():
    data = collect(onehot(batch_size=32, seed=7), 40)
    strings = split_strings(data["labels"], data["reset"])
    assert len(strings) > 1000
    bad = [s for s in strings if not is_embedded_reber(s)]
    assert not bad, bad[:5]
    # The scored symbol (second-to-last) repeats the second one.
    assert all(s[-2] == s[1] for s in strings)
    # Uniform choices: both outer branches, both first inner branches, mean length 12.
    assert np.mean([s[1] == "T" for s in strings]) == pytest.approx(0.5, abs=0.04)
    assert np.mean([s[3] == "T" for s in strings]) == pytest.approx(0.5, abs=0.04)
    assert np.mean([len(s) for s in strings]) == pytest.approx(12.0, abs=0.4)
    # The loops: after "BTBT" the inner node T2 repeats S or leaves with X, each half the time.
    after = [s[4] for s in strings if s[3] == "T"]
    assert np.mean([c == "S" for c in after]) == pytest.approx(0.5, abs=0.05)


def test_reset_and_test_flags():
    ds, meta = gr.make_grammar_dataset(batch_size=16, chunk_length=10, render="onehot", seed=2,
                                       include_state_ids=True)
    data = collect(ds, 15)
    labels, reset, test, state = data["labels"], data["reset"], data["test"], data["state"]
    assert reset.dtype == np.float32 and test.dtype == np.float32 and labels.dtype == np.int32
    assert set(np.unique(reset)) == {0.0, 1.0} and set(np.unique(test)) == {0.0, 1.0}
    names = np.array(meta.states)[state]
    # The very first step of every stream is a reset.
    assert (reset[:, 0] == 1).all()
    # Later, a reset exactly where the previous state ended a string (S5, the final E).
    np.testing.assert_array_equal(reset[:, 1:] == 1, names[:, :-1] == "S5")
    # test = 1 exactly on the current states S3/S4 ...
    np.testing.assert_array_equal(test == 1, np.isin(names, ["S3", "S4"]))
    # ... which are the second-to-last symbols: two steps before each later reset.
    np.testing.assert_array_equal(test[:, :-2] == 1, reset[:, 2:] == 1)
    # Labels are the class ids of the states' symbols.
    g = gr.as_grammar(None)
    np.testing.assert_array_equal(labels, g.state_class[state])
    # The scored symbol is the string's second one.
    for b in range(labels.shape[0]):
        starts = np.flatnonzero(reset[b])[1:]
        for t in np.flatnonzero(test[b]):
            start = starts[starts <= t]
            if start.size:
                assert labels[b, t] == labels[b, start[-1] + 1]


def test_stagger_offsets():
    streams = gr.GrammarStreams(None, batch_size=24, seed=11)
    data = collect(onehot(batch_size=24, chunk_length=40, seed=11), 1)
    for b in range(24):
        first = streams.string(b, 0)
        offset = b % len(first)
        assert streams.offsets[b] == offset
        tail = gr.as_grammar(None).state_class[first[offset:]]
        np.testing.assert_array_equal(data["labels"][b, :len(tail)], tail)
        # The next string starts right after the tail.
        assert np.flatnonzero(data["reset"][b])[1] == len(first) - offset
    # Every string has >= 9 symbols, so streams 0..8 start at position b: B, T|P, B, ...
    assert SYMBOLS[data["labels"][0, 0]] == "B" and SYMBOLS[data["labels"][2, 0]] == "B"
    assert SYMBOLS[data["labels"][1, 0]] in "TP" and SYMBOLS[data["labels"][3, 0]] in "TP"


# --- determinism and resume -------------------------------------------------------------------

def test_determinism_from_seed_and_batch_independence():
    a = collect(onehot(batch_size=8, seed=5), 4)
    b = collect(onehot(batch_size=8, seed=5), 4)
    c = collect(onehot(batch_size=8, seed=6), 4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["labels"], c["labels"])
    # Stream b is the same whatever the batch size and the chunk length.
    wide = collect(onehot(batch_size=16, chunk_length=8, seed=5), 6)
    np.testing.assert_array_equal(wide["labels"][:8], a["labels"])
    np.testing.assert_array_equal(wide["reset"][:8], a["reset"])


def test_iterating_again_restarts_the_streams():
    ds = onehot(batch_size=4, seed=9)
    first = [el["labels"].numpy() for el in ds.take(3)]
    again = [el["labels"].numpy() for el in ds.take(3)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))


@pytest.mark.parametrize("start_chunk,chunk_length", [(1, 12), (7, 5), (30, 1)])
def test_start_chunk_equals_skipping_chunks(start_chunk, chunk_length):
    full = onehot(batch_size=12, chunk_length=chunk_length, seed=4, include_state_ids=True)
    resumed = onehot(batch_size=12, chunk_length=chunk_length, seed=4, start_chunk=start_chunk,
                     include_state_ids=True)
    a = collect(full.skip(start_chunk), 4)
    b = collect(resumed, 4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_fast_forward_far_matches_uninterrupted_streams():
    uninterrupted = gr.GrammarStreams(None, batch_size=20, seed=8)
    for _ in range(3001):
        uninterrupted.take(7)
    resumed = gr.GrammarStreams(None, batch_size=20, seed=8, start_step=3001 * 7)
    for _ in range(30):
        (sa, ra), (sb, rb) = uninterrupted.take(7), resumed.take(7)
        np.testing.assert_array_equal(sa, sb)
        np.testing.assert_array_equal(ra, rb)


# --- rendering --------------------------------------------------------------------------------

def test_render_onehot_and_meta():
    ds, meta = gr.make_grammar_dataset(batch_size=4, chunk_length=6, render="onehot")
    el = next(iter(ds))
    assert el["inputs"].shape == (4, 6, 7) and el["inputs"].dtype == tf.float32
    np.testing.assert_array_equal(el["inputs"].numpy(), np.eye(7)[el["labels"].numpy()])
    assert set(el) == {"inputs", "labels", "reset", "test"}
    assert (meta.num_classes, meta.input_dim, meta.symbols) == (7, 7, tuple(SYMBOLS))
    assert meta.states[:3] == ("S0", "S1", "S2") and len(meta.states) == 30
    assert (meta.batch_size, meta.chunk_length, meta.render) == (4, 6, "onehot")


def test_render_same_uses_shipped_first_exemplars():
    ds, meta = gr.make_grammar_dataset(batch_size=6, chunk_length=12, render="same", seed=3)
    el = next(iter(ds))
    assert meta.input_dim == 784 and el["inputs"].shape == (6, 12, 784)
    expected = mnist.load_glyphs().reshape(10, 784)[el["labels"].numpy()] / np.float32(255.0)
    np.testing.assert_allclose(el["inputs"].numpy(), expected, rtol=0, atol=1e-7)
    assert el["inputs"].numpy().max() <= 1.0


def test_render_random_draws_exemplars_of_the_right_digit(shared_data):
    images, labels = mnist.load_idx(shared_data / "mnist", "train")
    kwargs = dict(batch_size=8, chunk_length=12, render="random", seed=21,
                  mnist_dir=shared_data / "mnist")
    ds, meta = gr.make_grammar_dataset(**kwargs)
    data = collect(ds, 3)
    assert meta.input_dim == 784
    pixels = np.rint(data["inputs"] * 255).astype(np.uint8).reshape(-1, 784)
    classes = data["labels"].reshape(-1)
    flat = images.reshape(len(images), -1)
    by_class = {c: {flat[i].tobytes() for i in np.flatnonzero(labels == c)} for c in range(7)}
    assert all(p.tobytes() in by_class[c] for p, c in zip(pixels, classes))
    # Different occurrences of a symbol get different exemplars.
    for c in np.unique(classes):
        assert len({p.tobytes() for p in pixels[classes == c]}) > 1
    # Deterministic from the seed, and consistent on resume.
    again = collect(gr.make_grammar_dataset(**kwargs)[0], 3)
    np.testing.assert_array_equal(again["inputs"], data["inputs"])
    resumed = collect(gr.make_grammar_dataset(start_chunk=2, **kwargs)[0], 1)
    np.testing.assert_array_equal(resumed["inputs"], data["inputs"][:, 24:])
    # Picks belong to (stream, time step), not to the chunking.
    kwargs["chunk_length"] = 9
    rechunked = collect(gr.make_grammar_dataset(**kwargs)[0], 4)
    np.testing.assert_array_equal(rechunked["inputs"][:, :36], data["inputs"])


def test_rows_split_across_replicas_in_order(strategies):
    strategy = strategies[1]
    ds = onehot(batch_size=8, chunk_length=4, seed=1)
    reference = next(iter(ds))["labels"].numpy()
    dist = next(iter(strategy.experimental_distribute_dataset(ds)))
    parts = [t.numpy() for t in strategy.experimental_local_results(dist["labels"])]
    np.testing.assert_array_equal(np.concatenate(parts), reference)


# --- validation -------------------------------------------------------------------------------

def _mutate(fn):
    config = copy.deepcopy(gr.EMBEDDED_REBER)
    fn(config)
    return config


BAD_GRAMMARS = {
    "unknown state": (lambda c: c["transitions"]["T1"][0].update(state="ST99"),
                      r"transitions\['T1'\]\[0\]\['state'\]: unknown state 'ST99'"),
    "unknown node": (lambda c: c["transitions"]["T2"][1].update(next="T9"),
                     r"transitions\['T2'\]\[1\]\['next'\]: unknown node 'T9'"),
    "no end state": (lambda c: c["states"]["S5"].update(end=False),
                     r"no end state"),
    "unreachable end": (lambda c: c["transitions"].update(T6=[{"state": "ST11", "next": "T6"}]),
                        r"transitions\['T0'\]: no path from node 'T0'.*reaches an end state"),
    "end not on an end state": (lambda c: c["transitions"]["OUT_1"][0].update(next=-1),
                                r"transitions\['OUT_1'\]\[0\] ends the string.*'S3' is not an "
                                r"end state"),
    "end state mid-string": (lambda c: c["transitions"]["T6"][0].update(state="S5"),
                             r"transitions\['T6'\]\[0\]: state 'S5' is an end state"),
    "no start": (lambda c: c["transitions"].pop("START"), r"no start node 'START'"),
    "unknown top key": (lambda c: c.update(grammar_fixed_set=False),
                        r"unknown grammar key 'grammar_fixed_set'"),
    "missing states": (lambda c: c.pop("states"), r"missing 'states'"),
    "unknown state key": (lambda c: c["states"]["S0"].update(colour="red"),
                          r"states\['S0'\]: unknown key 'colour'"),
    "symbol not a string": (lambda c: c["states"]["S0"].update(symbol=3),
                            r"states\['S0'\]\['symbol'\] must be a non-empty string"),
    "test not a bool": (lambda c: c["states"]["S3"].update(test="yes"),
                        r"states\['S3'\]\['test'\] must be true or false"),
    "empty transition list": (lambda c: c["transitions"].update(IN=[]),
                              r"transitions\['IN'\] must be a non-empty list"),
    "extra transition key": (lambda c: c["transitions"]["IN"][0].update(p=0.5),
                             r"transitions\['IN'\]\[0\] must be a mapping with exactly the keys"),
    "bad next value": (lambda c: c["transitions"]["END"][0].update(next=-2),
                       r"transitions\['END'\]\[0\]\['next'\]: unknown node -2"),
}


@pytest.mark.parametrize("case", sorted(BAD_GRAMMARS))
def test_bad_grammar_definitions(case):
    mutate, message = BAD_GRAMMARS[case]
    with pytest.raises(ValueError, match=message):
        gr.Grammar.from_config(_mutate(mutate))
    with pytest.raises(ValueError, match=message):
        gr.make_grammar_dataset(_mutate(mutate), render="onehot")


def test_grammar_must_be_a_mapping():
    with pytest.raises(ValueError, match="grammar must be a mapping"):
        gr.as_grammar([1, 2])


def test_glyph_render_needs_at_most_ten_symbols():
    states = {f"s{i}": {"symbol": chr(65 + i)} for i in range(11)}
    states["s10"]["end"] = True
    transitions = {"START": [{"state": f"s{i}", "next": "LAST"} for i in range(10)],
                   "LAST": [{"state": "s10", "next": -1}]}
    config = {"states": states, "transitions": transitions}
    assert gr.make_grammar_dataset(config, render="onehot")[1].num_classes == 11
    with pytest.raises(ValueError, match="at most 10 symbols; this grammar has 11"):
        gr.make_grammar_dataset(config, render="same")


@pytest.mark.parametrize("kwargs,message", [
    (dict(batch_size=0), r"batch_size must be an integer >= 1, got 0"),
    (dict(chunk_length=0), r"chunk_length must be an integer >= 1"),
    (dict(chunk_length=2.5), r"chunk_length must be an integer"),
    (dict(render="gif"), r"render must be one of \('onehot', 'same', 'random'\)"),
    (dict(seed=-1), r"seed must be an integer in \[0, "),
    (dict(start_chunk=-3), r"start_chunk must be an integer >= 0"),
    (dict(batch_size=True), r"batch_size must be an integer"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gr.make_grammar_dataset(**kwargs)


# --- definitions ------------------------------------------------------------------------------

def _definition(name):
    return yaml.safe_load((REPO / "definitions" / "grammar" / name).read_text())


def test_definition_tables_equal_the_shipped_grammar():
    for name in ("embedded_reber.yaml", "embedded_reber_original.yaml"):
        options = _definition(name)["workflow-options"]
        assert options["grammar"] == gr.EMBEDDED_REBER, name
        assert gr.Grammar.from_config(options["grammar"]).symbols == tuple(SYMBOLS)


def test_definition_paper_and_original_values():
    paper = _definition("embedded_reber.yaml")["experiment-options"]
    assert paper["workflow"] == "grammar"
    assert paper["hparams_override"] == {
        "batch_size": 400, "groups": 200, "cells_per_group": 6, "active_groups": 25,
        "inhibition_decay": 0.98, "recurrent_decay": 0.0, "predictor_hidden_size": [500],
        "learning_rate": 0.0005, "memory_training_interval": [0, 2000],
        "predictor_nonlinearity": ["leaky_relu", "none"], "predictor_norm": None,
        "predictor_input_decay": 0.95, "predictor_input_reset": True,
        "predictor_learning_rate": 0.002}
    assert _definition("embedded_reber.yaml")["workflow-options"]["render"] == "same"
    original = _definition("embedded_reber_original.yaml")
    opts = original["experiment-options"]
    assert (opts["batches"], opts["seed"]) == (40000, 1234)
    h = opts["hparams_override"]
    assert (h["cells_per_group"], h["groups"], h["active_groups"], h["batch_size"]) == (8, 200, 25, 400)
    assert h["duty_cycle_interval"] == 40 and h["predictor_nonlinearity"] == ["none", "none"]
    # the original's predictor, not the grammar workflow's defaults
    assert (h["predictor_norm"], h["predictor_input_decay"], h["predictor_learning_rate"]) == (
        "sum", 0.0, None)
    assert original["workflow-options"]["render"] == "same"


def test_definitions_resolve_with_the_framework_parser():
    from pagi_rsm import definitions
    for name, cells, chunk in (("embedded_reber.yaml", 6, None), ("embedded_reber_original.yaml",
                                                                    8, 1)):
        path = REPO / "definitions" / "grammar" / name
        [config] = definitions.resolve(definitions.load(str(path)), source=str(path))
        assert config.hparams["cells_per_group"] in (cells, [cells])
        assert (config.hparams["input_dim"], config.hparams["num_classes"]) == (784, 7)
        if chunk is not None:
            assert config.workflow_options["chunk_length"] == chunk


def test_two_iterators_at_once_each_get_the_whole_stream():
    ds = onehot(batch_size=4, chunk_length=5, seed=12)
    a, b = iter(ds), iter(ds)
    first = [next(a)["labels"].numpy() for _ in range(2)]
    mixed = []
    for _ in range(4):
        mixed.append((next(a)["labels"].numpy(), next(b)["labels"].numpy()))
    reference = [el["labels"].numpy() for el in ds.take(6)]
    np.testing.assert_array_equal(np.stack(first + [m[0] for m in mixed]), np.stack(reference))
    np.testing.assert_array_equal(np.stack([m[1] for m in mixed]), np.stack(reference[:4]))
