"""Whole grammar strings for BPTT: validity, next-symbol targets, masks, test positions,
padding, determinism and rendering (pagi_rsm.datasets.grammar_strings)."""
import numpy as np
import pytest

import keras

from pagi_rsm.datasets import grammar_strings as gs
from pagi_rsm.datasets import mnist

CLASSES = "BEPSTVX"   # the sorted symbols: class id = index

# The Reber automaton as (node, symbol) -> next node, written from
# docs/rsm.md#embedded-reber-grammar;
# node 7 is the end of the inner string.
EDGES = {(1, "T"): 2, (1, "P"): 3, (2, "S"): 2, (2, "X"): 4, (3, "T"): 3, (3, "V"): 5,
         (4, "X"): 3, (4, "S"): 6, (5, "P"): 4, (5, "V"): 6, (6, "E"): 7}


def embedded_reber(s):
    """True iff s = B (T|P) B <Reber string> E (same T|P) E."""
    if not (s.startswith("B") and s[1:2] in ("T", "P") and s[2:3] == "B"):
        return False
    node = 1
    for i in range(3, len(s)):
        node = EDGES.get((node, s[i]))
        if node is None:
            return False
        if node == 7:
            return s[i + 1:] == s[1] + "E"
    return False


def text(symbol_ids):
    return "".join(CLASSES[c] for c in symbol_ids)


def batches(n, **kwargs):
    ds, meta = gs.make_string_dataset(num_batches=n, **kwargs)
    return [{k: v.numpy() for k, v in b.items()} for b in ds], meta


def whole(batch, row):
    """The full string of `row`: its input symbols then the last label."""
    m = batch["mask"][row].astype(bool)
    inputs = batch["inputs"][row][m].argmax(-1)
    return text(inputs) + CLASSES[batch["labels"][row][m][-1]]


def test_strings_are_embedded_reber_and_targets_are_next_symbols():
    data, meta = batches(20, batch_size=16, render="onehot", seed=5)
    assert meta.num_classes == 7 and meta.input_dim == 7 and meta.symbols == tuple(CLASSES)
    lengths = []
    for b in data:
        assert b["inputs"].shape[:2] == b["labels"].shape == b["mask"].shape == b["test"].shape
        for row in range(16):
            m = b["mask"][row].astype(bool)
            n = int(m.sum())
            assert m[:n].all() and not m[n:].any()          # padding only at the end
            s = whole(b, row)
            assert embedded_reber(s), s
            lengths.append(len(s))
            # label t is symbol t+1 of the string
            assert text(b["labels"][row][:n]) == s[1:]
            # exactly one scored position: the one whose next symbol is the second-to-last,
            # equal to the second symbol
            assert np.flatnonzero(b["test"][row]).tolist() == [len(s) - 3]
            assert CLASSES[b["labels"][row][len(s) - 3]] == s[1]
        # the batch is padded to its longest string (inputs/labels have L_b - 1 positions)
        assert b["mask"].sum(axis=1).max() == b["mask"].shape[1]
    assert np.mean(lengths) == pytest.approx(meta.mean_length, abs=0.6)  # 12 (hand-derived)


def test_padding_is_zero_and_masking_recovers_the_mask():
    [b], _ = batches(1, batch_size=32, render="same", seed=2)
    pad = b["mask"] == 0
    assert pad.any()
    assert not b["inputs"][pad].any()
    assert (b["labels"][pad] == 0).all() and (b["test"][pad] == 0).all()
    mask = keras.layers.Masking(0.0).compute_mask(b["inputs"])
    np.testing.assert_array_equal(np.asarray(mask), b["mask"].astype(bool))


def test_same_render_is_the_shipped_first_exemplar():
    [b], meta = batches(1, batch_size=8, render="same", seed=3)
    assert meta.input_dim == 784
    glyphs = mnist.load_glyphs().reshape(10, 784).astype(np.float32) / 255.0
    [onehot], _ = batches(1, batch_size=8, render="onehot", seed=3)   # same strings
    m = b["mask"].astype(bool)
    classes = onehot["inputs"].argmax(-1)
    np.testing.assert_array_equal(b["inputs"][m], glyphs[classes[m]])


def test_random_render_draws_exemplars_of_the_right_digit(shared_data):
    images, labels = mnist.load_idx(shared_data / "mnist", "train")
    images = images.reshape(len(images), -1)
    [b], _ = batches(1, batch_size=16, render="random", seed=4, mnist_dir=shared_data / "mnist")
    [onehot], _ = batches(1, batch_size=16, render="onehot", seed=4)
    m = b["mask"].astype(bool)
    classes = onehot["inputs"].argmax(-1)[m]
    pixels = np.rint(b["inputs"][m] * 255).astype(np.uint8)
    lookup = {img.tobytes(): lab for img, lab in zip(images, labels)}
    found = [lookup.get(p.tobytes()) for p in pixels]
    assert None not in found
    np.testing.assert_array_equal(found, classes)
    assert len({p.tobytes() for p in pixels}) > 7   # not one exemplar per symbol


def test_deterministic_from_the_seed():
    a, _ = batches(3, batch_size=8, render="onehot", seed=11)
    b, _ = batches(3, batch_size=8, render="onehot", seed=11)
    c, _ = batches(3, batch_size=8, render="onehot", seed=12)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert [whole(x, 0) for x in a] != [whole(x, 0) for x in c]


def test_infinite_when_num_batches_is_none():
    ds, _ = gs.make_string_dataset(batch_size=2, render="onehot")
    assert len(list(ds.take(50))) == 50


def test_sample_strings_and_next_symbol_arrays_by_hand():
    g = gs.as_grammar(None)
    states, lengths = gs.sample_strings(g, 200, rng=7)
    assert states.shape == (200, lengths.max())
    for row, n in zip(states, lengths):
        assert (row[:n] >= 0).all() and (row[n:] == -1).all()
        assert g.state_end[row[n - 1]] and g.state_test[row[n - 2]]
    # a hand-made pair of strings: BTBTXSETE (9) and BPBPVVEPE padded to 10 with an extra -1
    idx = {n: i for i, n in enumerate(g.state_names)}
    one = ["S0", "S1", "ST0", "ST1", "ST3", "ST8", "ST11", "S3", "S5"]
    two = ["S0", "S2", "SP0", "SP2", "SP5", "SP10", "SP11", "S4", "S5"]
    arr = np.array([[idx[s] for s in one] + [-1], [idx[s] for s in two] + [-1]])
    out = gs.next_symbol_arrays(g, arr)
    assert text(out["symbols"][0][:8]) == "BTBTXSET" and out["symbols"][0][8] == -1
    assert text(out["labels"][0][:8]) == "TBTXSETE" and text(out["labels"][1][:8]) == "PBPVVEPE"
    np.testing.assert_array_equal(out["mask"], [[1] * 8 + [0]] * 2)
    np.testing.assert_array_equal(out["test"], [[0] * 6 + [1, 0, 0]] * 2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), r"batch_size must be an integer >= 1, got 0"),
    (dict(render="gif"), r"render must be one of"),
    (dict(seed=-1), r"seed must be an integer in \[0, "),
    (dict(num_batches=0), r"num_batches must be an integer >= 1, got 0"),
])
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gs.make_string_dataset(**kwargs)


def test_bad_states_and_count():
    with pytest.raises(ValueError, match="count must be an integer >= 1"):
        gs.sample_strings(None, 0, rng=0)
    with pytest.raises(ValueError, match=r"states must be \[N, L\] with L >= 2"):
        gs.next_symbol_arrays(None, np.zeros((3,), int))
