"""Whole grammar strings in padded batches, for models trained by BPTT over entire sequences.

`make_grammar_dataset` (pagi_rsm.datasets.grammar) yields *continuing streams* for models that
carry their state across batches (RSM, BPTT = 1). A baseline trained by backpropagation through
time over *whole strings* (an LSTM fitted with `model.fit`) needs each string as one sample
instead: this module draws fresh, independent strings of the same grammar, pads every batch to
its longest string and marks what to score.

Next-symbol prediction over a string s_0 … s_{L−1} (state ids):

- `inputs[t]`  = rendered symbol of s_t,        t = 0 … L−2
- `labels[t]`  = class id of s_{t+1}             (the symbol to predict after seeing s_0 … s_t)
- `mask[t]`    = 1 for t ≤ L−2, 0 on padding     (padding inputs are all-zero vectors)
- `test[t]`    = 1 where s_{t+1} is a test state (embedded Reber: the second-to-last symbol,
  which only s_1 determines)

so `inputs` and `labels` have L_b − 1 positions, L_b the longest string of the batch. This is the
time convention of the RSM stack (its predictor at step t has seen x_0 … x_{t−1} and predicts
the class of x_t), without the trivial first prediction (every string starts with the same
symbol).

The strings of batch i are `Grammar.walk` of 64-bit keys drawn from
`numpy.random.default_rng([seed, i])`, so a dataset is a deterministic function of its seed (and
batch i of (seed, i) alone); use different seeds for training and evaluation strings.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from pagi_rsm import checks
from pagi_rsm.datasets.grammar import RENDERS, _glyph_table, as_grammar
from pagi_rsm.datasets.indexed_stream import indexed_stream


def sample_strings(grammar, count, rng):
    """`count` fresh strings of `grammar`.

    Args:
      grammar: a `Grammar`, a grammar mapping, or None (the embedded Reber grammar).
      count: number of strings (>= 1).
      rng: a `numpy.random.Generator` (its state advances) or an integer seed.

    Returns:
      `(states, lengths)`: int32 [count, L] state ids padded with −1 (L the longest string),
      int64 [count] string lengths.

    Example:
      >>> states, lengths = sample_strings(None, 3, rng=0)
      >>> states.shape[0], int(lengths.min()) >= 9
      (3, True)
    """
    grammar = as_grammar(grammar)
    count = checks.check_int("count", count, low=1)
    rng = np.random.default_rng(rng)
    keys = rng.integers(0, 2 ** 64 - 1, size=count, dtype=np.uint64, endpoint=True)
    states, lengths = grammar.walk(keys)
    return states[:, :int(lengths.max())].astype(np.int32), lengths


def next_symbol_arrays(grammar, states):
    """Numpy next-symbol arrays of padded strings (see the module docstring).

    Args:
      grammar: a `Grammar` (or mapping / None).
      states: int [N, L] state ids padded with −1 (as from `sample_strings`).

    Returns:
      dict of numpy arrays over N × (L − 1) positions: `symbols` int32 (class id of the input
      symbol s_t; −1 on padding and at the string's last symbol, which is no input), `labels`
      int32 (class id of s_{t+1}, 0 on padding), `mask` float32, `test` float32.
    """
    grammar = as_grammar(grammar)
    states = np.asarray(states)
    if states.ndim != 2 or states.shape[1] < 2:
        raise ValueError(f"states must be [N, L] with L >= 2, got shape {states.shape}")
    current, following = states[:, :-1], states[:, 1:]
    mask = following >= 0
    classes = grammar.state_class
    symbols = np.where(mask, classes[np.maximum(current, 0)], -1)   # the last symbol is no input
    labels = np.where(mask, classes[np.maximum(following, 0)], 0)
    test = mask & grammar.state_test[np.maximum(following, 0)]
    return {"symbols": symbols.astype(np.int32), "labels": labels.astype(np.int32),
            "mask": mask.astype(np.float32), "test": test.astype(np.float32)}


@dataclasses.dataclass(frozen=True)
class StringsMeta:
    """What a model needs to know about a whole-string dataset.

    Attributes:
      num_classes: number of symbols (classes of `labels`).
      input_dim: D of `inputs` (num_classes for one-hot, 784 for glyphs).
      symbols: the sorted symbols; class c is `symbols[c]`.
      mean_length: expected string length (the padded length of a batch is its longest string).
      batch_size, render, seed: the dataset's settings.
    """
    num_classes: int
    input_dim: int
    symbols: tuple
    mean_length: float
    batch_size: int
    render: str
    seed: int


def make_string_dataset(grammar=None, batch_size=32, render="same", seed=0, num_batches=None,
                        mnist_dir=None):
    """A tf.data.Dataset of padded batches of fresh, whole grammar strings.

    Each element is a dict (L_b = the longest string of the batch, see the module docstring):

    - `inputs` float32 [B, L_b − 1, D]: rendered symbols s_0 … s_{L−2}; zeros on padding (so a
      `keras.layers.Masking(0.0)` recovers the mask: no glyph or one-hot vector is all zero).
    - `labels` int32 [B, L_b − 1]: class id of the next symbol (0 on padding).
    - `mask` float32 [B, L_b − 1]: 1 on real positions (use as `sample_weight`).
    - `test` float32 [B, L_b − 1]: 1 where the next symbol is a test state.

    Args:
      grammar: None (the embedded Reber grammar), a `Grammar`, or a mapping {states, transitions}.
      batch_size: B, strings per batch.
      render: "onehot"; "same" (the shipped first MNIST training exemplar of each digit, digit =
        class id); or "random" (per occurrence a random training exemplar of that digit; needs
        MNIST, see `pagi_rsm.datasets.grammar.make_grammar_dataset`).
      seed: non-negative integer; the strings (and random exemplars) are a function of it.
      num_batches: number of batches; None = infinite (every batch freshly generated).
      mnist_dir: directory of the MNIST IDX files (render="random").

    Returns:
      `(dataset, meta)`: the dataset and a `StringsMeta`.

    Example:
      >>> ds, meta = make_string_dataset(batch_size=4, render="onehot", num_batches=1)
      >>> batch = next(iter(ds))
      >>> batch["inputs"].shape[0], batch["inputs"].shape[2], meta.num_classes
      (4, 7, 7)
    """
    grammar = as_grammar(grammar)
    batch_size = checks.check_int("batch_size", batch_size, low=1)
    seed = checks.check_int("seed", seed, 0, 2 ** 64 - 1)
    if num_batches is not None:
        num_batches = checks.check_int("num_batches", num_batches, low=1)
    if render not in RENDERS:
        raise ValueError(f"render must be one of {RENDERS}, got {render!r}")
    table, offsets, counts = _glyph_table(grammar, render, mnist_dir)

    def batch(index):   # batch i is a function of (seed, i) alone
        rng = np.random.default_rng([seed, index])
        states, _ = sample_strings(grammar, batch_size, rng)
        arrays = next_symbol_arrays(grammar, states)
        symbols = arrays["symbols"]
        if render == "random":   # row of the exemplar table; padding: row 0 (masked below)
            classes = np.maximum(symbols, 0)
            pick = (rng.random(symbols.shape) * counts[classes]).astype(np.int64)
            symbols = np.where(symbols >= 0, offsets[classes] + pick, -1).astype(np.int32)
        return symbols, arrays["labels"], arrays["mask"], arrays["test"]

    shape = (batch_size, None)
    signature = (tf.TensorSpec(shape, tf.int32), tf.TensorSpec(shape, tf.int32),
                 tf.TensorSpec(shape, tf.float32), tf.TensorSpec(shape, tf.float32))
    dataset = indexed_stream(batch, signature, stop=num_batches)
    lookup = None if table is None else tf.constant(table)
    num_classes = grammar.num_classes

    def element(symbols, labels, mask, test):
        rows = tf.maximum(symbols, 0)
        if render == "onehot":
            inputs = tf.one_hot(rows, num_classes, dtype=tf.float32)
        else:
            inputs = tf.cast(tf.gather(lookup, rows), tf.float32)
            if render == "random":
                inputs = inputs * (1.0 / 255.0)
        inputs = inputs * mask[:, :, None]
        return {"inputs": inputs, "labels": labels, "mask": mask, "test": test}

    dataset = dataset.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    meta = StringsMeta(num_classes=num_classes,
                       input_dim=num_classes if render == "onehot" else 28 * 28,
                       symbols=grammar.symbols, mean_length=grammar.mean_length(),
                       batch_size=batch_size, render=render, seed=seed)
    return dataset, meta
