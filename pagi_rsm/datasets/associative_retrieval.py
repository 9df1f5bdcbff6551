"""Associative retrieval task of Ba et al. (2016), generated with numpy (no download).

A sequence shows K (key, value) pairs, then ``??``, then one of the keys; the answer is the value
stored with that key. The paper's example with K = 4: ``c9k8j3f1??c`` -> ``9``.

* Keys are K DISTINCT lower-case letters (sampled without replacement); values are digits 0-9
  (sampled with replacement); the query is one of the K keys, uniformly.
* Sequence length ``2 K + 3`` (11 for K = 4). Symbols are one-hot over 37 classes: letters
  ``a``-``z`` are 0-25, digits ``0``-``9`` are 26-35 and ``?`` is 36 (`SYMBOLS`).
* The target is the queried VALUE as a digit class 0-9 (10-way softmax), not its symbol index
  among the 37 (some peers use a 37-way softmax; the 27 extra classes can never be right).

Splits: `load_splits` draws train / validation / test (100,000 / 10,000 / 20,000 by default, the
paper's protocol as restated by public ports, docs/fast_weights.md#associative-retrieval) from
independent random streams
derived from one seed (``numpy.random.SeedSequence(seed).spawn(3)``), so each split is a pure
function of (seed, K, size) and of its own position: changing the size of one split does not
change the others. The splits are NOT de-duplicated against each other. With K = 4 there are
``26*25*24*23 * 10^4 * 4 ≈ 1.4e10`` distinct sequences, so the expected number of test sequences
that also occur in a 100,000-sample training set is about ``20,000 * 100,000 / 1.4e10 ≈ 0.14``;
`overlap_fraction` measures it. For small K (e.g. K = 1: 260 sequences) the splits overlap almost
entirely, which is inherent to the task.

Example:
  >>> tokens, targets = generate(3, pairs=4, seed=0)
  >>> tokens.shape, targets.shape
  ((3, 11), (3,))
  >>> decode(encode("c9k8j3f1??c"))
  'c9k8j3f1??c'
  >>> text = decode(tokens[0]); answer = text[text.index(text[-1]) + 1]
  >>> answer == decode_target(targets[0])
  True
"""
import numpy as np

from pagi_rsm import checks
from pagi_rsm.datasets.indexed_stream import indexed_stream

__all__ = ["SYMBOLS", "NUM_SYMBOLS", "NUM_CLASSES", "QUERY_SYMBOL", "DEFAULT_PAIRS",
           "SPLIT_SIZES", "sequence_length", "generate", "load_splits", "encode", "decode",
           "one_hot", "decode_target", "overlap_fraction", "make_tf_dataset",
           "make_training_stream", "make_dataset"]

SYMBOLS = "abcdefghijklmnopqrstuvwxyz0123456789?"
"""The 37 symbols; a symbol's index is its one-hot position."""
NUM_SYMBOLS = len(SYMBOLS)
NUM_CLASSES = 10
"""Targets are the digits 0-9."""
QUERY_SYMBOL = "?"
DEFAULT_PAIRS = 4
MAX_PAIRS = 26
SPLIT_SIZES = {"train": 100_000, "validation": 10_000, "test": 20_000}
"""Default split sizes (the paper's protocol)."""

_LETTERS = 26
_DIGIT_OFFSET = 26
_QUERY_INDEX = 36
_INDEX = {c: i for i, c in enumerate(SYMBOLS)}


def _check_pairs(pairs):
    """K must be in [1, 26]: the keys are distinct letters."""
    checks.check_int("pairs", pairs, 1, MAX_PAIRS)


def _check_size(name, size):
    checks.check_int(name, size, low=1)


def sequence_length(pairs=DEFAULT_PAIRS):
    """``2 * pairs + 3``: the pairs, ``??`` and the query key."""
    _check_pairs(pairs)
    return 2 * pairs + 3


def generate(size, pairs=DEFAULT_PAIRS, seed=0):
    """Draws `size` sequences as symbol indices (vectorised, no Python loop over samples).

    Args:
      size: number of sequences, >= 1.
      pairs: K, the number of (key, value) pairs, in [1, 26].
      seed: anything `numpy.random.default_rng` accepts (int, SeedSequence, Generator).

    Returns:
      ``(tokens, targets)``: `tokens` int32 `[size, 2K+3]` with symbol indices (see `SYMBOLS`),
      `targets` int32 `[size]` with the queried value as a digit 0-9.
    """
    _check_size("size", size)
    _check_pairs(pairs)
    rng = np.random.default_rng(seed)
    # K distinct letters per row: the first K columns of a random permutation of the 26 letters.
    keys = np.argsort(rng.random((size, _LETTERS)), axis=1)[:, :pairs]
    values = rng.integers(0, 10, size=(size, pairs))
    query = rng.integers(0, pairs, size=size)
    tokens = np.empty((size, 2 * pairs + 3), dtype=np.int32)
    tokens[:, 0:2 * pairs:2] = keys
    tokens[:, 1:2 * pairs:2] = values + _DIGIT_OFFSET
    tokens[:, 2 * pairs:2 * pairs + 2] = _QUERY_INDEX
    rows = np.arange(size)
    tokens[:, -1] = keys[rows, query]
    targets = values[rows, query].astype(np.int32)
    return tokens, targets


def load_splits(pairs=DEFAULT_PAIRS, seed=0, train_size=SPLIT_SIZES["train"],
                validation_size=SPLIT_SIZES["validation"], test_size=SPLIT_SIZES["test"]):
    """Deterministic train / validation / test splits from one seed.

    Each split comes from its own child of ``SeedSequence(seed)`` (see the module docstring: no
    de-duplication between splits).

    Returns:
      dict ``{"train": (tokens, targets), "validation": ..., "test": ...}`` as from `generate`.
    """
    _check_pairs(pairs)
    sizes = {"train": train_size, "validation": validation_size, "test": test_size}
    for name, size in sizes.items():
        _check_size(f"{name}_size", size)
    children = np.random.SeedSequence(seed).spawn(3)
    return {name: generate(size, pairs, child)
            for (name, size), child in zip(sizes.items(), children)}


def encode(text):
    """Text form -> symbol indices, e.g. ``"c9k8j3f1??c"`` -> int32 array of length 11.

    Accepts one string or a list of equal-length strings (then returns `[n, length]`).
    """
    if isinstance(text, str):
        try:
            return np.array([_INDEX[c] for c in text], dtype=np.int32)
        except KeyError as err:
            raise ValueError(f"symbol {err.args[0]!r} is not one of {SYMBOLS!r}") from None
    return np.stack([encode(t) for t in text])


def decode(tokens):
    """Symbol indices (or one-hot `[..., 37]`) -> text form; `[n, T]` gives a list of strings."""
    tokens = np.asarray(tokens)
    if tokens.ndim >= 2 and tokens.shape[-1] == NUM_SYMBOLS and tokens.dtype.kind == "f":
        tokens = tokens.argmax(-1)
    if tokens.ndim == 1:
        return "".join(SYMBOLS[int(i)] for i in tokens)
    return [decode(t) for t in tokens]


def decode_target(target):
    """Target class (0-9) -> its digit character."""
    return str(int(target))


def one_hot(tokens, dtype="float32"):
    """Symbol indices `[..., T]` -> one-hot `[..., T, 37]` (numpy)."""
    return np.eye(NUM_SYMBOLS, dtype=dtype)[np.asarray(tokens)]


def overlap_fraction(tokens_a, tokens_b):
    """Fraction of the rows of `tokens_b` that also occur in `tokens_a` (exact sequence match)."""
    a = np.ascontiguousarray(tokens_a, dtype=np.int32)
    b = np.ascontiguousarray(tokens_b, dtype=np.int32)
    row = np.dtype((np.void, a.dtype.itemsize * a.shape[1]))
    return float(np.isin(b.view(row).ravel(), a.view(row).ravel()).mean())


def make_tf_dataset(tokens, targets, batch_size, shuffle=False, seed=None, repeat=False,
                    drop_remainder=False):
    """A `tf.data.Dataset` of ``(one_hot_inputs [B, T, 37] float32, targets [B] int32)``.

    The one-hot encoding is done per batch inside the pipeline, so only the int tokens are held
    in memory (100,000 x 11 x 37 floats would be 163 MB).

    Args:
      tokens: int `[N, T]` from `generate` / `load_splits`.
      targets: int `[N]`.
      batch_size: int >= 1.
      shuffle: reshuffle the whole split every epoch (seeded by `seed`).
      seed: shuffle seed (int or None).
      repeat: repeat forever (for step-based training).
      drop_remainder: drop a last partial batch.
    """
    import tensorflow as tf

    _check_size("batch_size", batch_size)
    tokens = np.asarray(tokens, dtype=np.int32)
    targets = np.asarray(targets, dtype=np.int32)
    if tokens.ndim != 2 or targets.shape != tokens.shape[:1]:
        raise ValueError(f"tokens must be [N, T] and targets [N], got {tokens.shape} and "
                         f"{targets.shape}")
    ds = tf.data.Dataset.from_tensor_slices((tokens, targets))
    if shuffle:
        ds = ds.shuffle(len(tokens), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda t, y: (tf.one_hot(t, NUM_SYMBOLS, dtype=tf.float32), y),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def make_training_stream(tokens, targets, batch_size, seed=0, start_batch=0):
    """Endless `tf.data.Dataset` of shuffled training minibatches, resumable at any batch.

    Epoch e visits the split in the order ``numpy.random.default_rng([seed, e]).permutation``
    in consecutive batches of `batch_size` (the last partial batch of an epoch is dropped), so
    batch i depends only on (seed, i): `start_batch` fast-forwards exactly, and a run resumed
    from a checkpoint at batch i sees the batches an uninterrupted run sees.

    Args:
      tokens: int `[N, T]` (the training split).
      targets: int `[N]`.
      batch_size: int in [1, N].
      seed: int >= 0.
      start_batch: int >= 0, index of the first batch.

    Returns:
      Dataset of ``(one_hot_inputs [B, T, 37] float32, targets [B] int32)``.
    """
    import tensorflow as tf

    tokens = np.asarray(tokens, dtype=np.int32)
    targets = np.asarray(targets, dtype=np.int32)
    _check_size("batch_size", batch_size)
    if batch_size > len(tokens):
        raise ValueError(f"batch_size must be <= the split size {len(tokens)}, got {batch_size}")
    if isinstance(start_batch, bool) or not isinstance(start_batch, (int, np.integer)) \
            or start_batch < 0:
        raise ValueError(f"start_batch must be an integer >= 0, got {start_batch!r}")
    per_epoch = len(tokens) // batch_size

    orders = {}   # the permutation of the epoch being read (one cached)

    def batch(index):   # batch i is a function of (seed, i) alone
        epoch, j = divmod(index, per_epoch)
        order = orders.get(epoch)
        if order is None:
            order = np.random.default_rng([seed, epoch]).permutation(len(tokens))
            orders.clear()
            orders[epoch] = order
        rows = order[j * batch_size:(j + 1) * batch_size]
        return tokens[rows], targets[rows]

    ds = indexed_stream(batch, (tf.TensorSpec((batch_size, tokens.shape[1]), tf.int32),
                                tf.TensorSpec((batch_size,), tf.int32)), start=start_batch)
    ds = ds.map(lambda t, y: (tf.one_hot(t, NUM_SYMBOLS, dtype=tf.float32), y))
    return ds.prefetch(2)


def make_dataset(pairs=DEFAULT_PAIRS, batch_size=128, seed=0, start_batch=0,
                 train_size=SPLIT_SIZES["train"], validation_size=SPLIT_SIZES["validation"],
                 test_size=SPLIT_SIZES["test"]):
    """The workflow's data: the training stream and the held-out splits, from one seed.

    Returns:
      ``(stream, splits)``: `make_training_stream` over the training split (starting at
      `start_batch`) and the dict of `load_splits` (``splits["validation"]``,
      ``splits["test"]`` for evaluation).
    """
    splits = load_splits(pairs, seed, train_size, validation_size, test_size)
    stream = make_training_stream(*splits["train"], batch_size, seed=seed,
                                  start_batch=start_batch)
    return stream, splits
