"""Penn Treebank (Mikolov's word-level split) as token ids, and word streams for `model.fit`.

Files: ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt`` in one directory, each plain or
gzipped (``.txt.gz``). Nothing is ever downloaded. Each line is split on whitespace and an
end-of-sentence token ``<eos>`` is appended at its end (docs/language.md#data). The vocabulary
is the set of training tokens (10,000 for PTB, `<eos>` and `<unk>` included), ordered by
decreasing training frequency (ties: first occurrence), so id 0 is the most frequent word.

Streams (docs/language.md#streams), both deterministic functions of the seed and the chunk index,
so a run resumed at chunk i sees exactly the chunks an uninterrupted run sees:

- training (`TrainingStreams`): B streams at random offsets of the training file; a stream
  jumps to a new random offset (with a reset of its memory) after at most `max_length` tokens
  (the original's 3000) and wraps to token 0 (with a reset) at the end of the file. The jumps
  of the streams are staggered (stream b's first segment is shorter by a random amount), so
  they do not all reset at the same step.
- evaluation (`EvaluationStripes`): stream b reads the tokens [b·N/B, (b+1)·N/B) of the file,
  without a cap; `score` marks each token of the file exactly once.
"""
import dataclasses
import gzip
import os
import zlib

import numpy as np

from pagi_rsm import checks
from pagi_rsm.datasets.indexed_stream import indexed_stream

EOS = "<eos>"
SPLITS = ("train", "valid", "test")
MAX_LENGTH = 3000  # the original's train_max_sequence_length


def split_path(data_dir, split):
    """The path of `split`'s file in `data_dir`: ``ptb.<split>.txt`` or, else, ``.txt.gz``.

    Raises:
      FileNotFoundError: neither exists (the message names both and the option data_dir).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    plain = os.path.join(data_dir, f"ptb.{split}.txt")
    for path in (plain, plain + ".gz"):
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"PTB {split} file not found: neither {plain} nor {plain}.gz exists "
                            f"(set workflow-options.data_dir to the directory holding "
                            f"ptb.train.txt[.gz], ptb.valid.txt[.gz], ptb.test.txt[.gz]; "
                            f"docs/data.md)")


def read_lines(path):
    """The lines of a PTB file (plain or gzipped), checked.

    Raises:
      ValueError: the file is empty, a truncated or corrupt gzip stream, not UTF-8, or a plain
        file whose last line has no newline (a file cut off while copying).
    """
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{path} is truncated or not a valid gzip file ({e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e})") from None
    if not text.split():
        raise ValueError(f"{path} is empty (no tokens)")
    if not text.endswith("\n"):
        raise ValueError(f"{path} looks truncated: its last line has no newline")
    return text.splitlines()


def tokenize(lines):
    """The tokens of `lines`, with `EOS` after each line."""
    tokens = []
    for line in lines:
        tokens.extend(line.split())
        tokens.append(EOS)
    return tokens


def build_vocabulary(tokens):
    """Distinct tokens by decreasing count (ties: first occurrence)."""
    counts, first = {}, {}
    for i, token in enumerate(tokens):
        if token not in counts:
            counts[token] = 0
            first[token] = i
        counts[token] += 1
    return sorted(counts, key=lambda w: (-counts[w], first[w]))


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The three splits as int32 token ids over one vocabulary.

    Attributes:
      vocabulary: list of K tokens; id i is `vocabulary[i]`.
      train, valid, test: int32 arrays of token ids (EOS included).
      paths: the file read for each split.
    """
    vocabulary: list
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    paths: dict

    @property
    def vocab_size(self):
        return len(self.vocabulary)

    def split(self, name):
        """The ids of split `name` (train, valid or test)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def unigram(self):
        """Training-set frequencies, float64 [K], summing to 1."""
        counts = np.bincount(self.train, minlength=self.vocab_size).astype(np.float64)
        return counts / counts.sum()


def load_ptb(data_dir):
    """Reads the three PTB files of `data_dir` (see the module docstring).

    Raises:
      FileNotFoundError: a file is missing.
      ValueError: a file is empty, truncated or corrupt, or valid/test hold a token that the
        training vocabulary lacks (the message names the file, the line and the token).

    Example:
      >>> corpus = load_ptb("../shared/data/ptb")  # doctest: +SKIP
      >>> corpus.vocab_size, len(corpus.train)      # doctest: +SKIP
      (10000, 929589)
    """
    if not isinstance(data_dir, (str, os.PathLike)) or not os.path.isdir(data_dir):
        raise FileNotFoundError(f"PTB directory not found: {data_dir!r} (set "
                                f"workflow-options.data_dir; docs/data.md)")
    data_dir = os.fspath(data_dir)
    paths = {split: split_path(data_dir, split) for split in SPLITS}
    train_tokens = tokenize(read_lines(paths["train"]))
    vocabulary = build_vocabulary(train_tokens)
    index = {w: i for i, w in enumerate(vocabulary)}
    ids = {"train": np.fromiter((index[w] for w in train_tokens), np.int32, len(train_tokens))}
    for split in ("valid", "test"):
        lines = read_lines(paths[split])
        out = []
        for number, line in enumerate(lines, 1):
            for token in line.split():
                i = index.get(token)
                if i is None:
                    raise ValueError(f"{paths[split]} line {number}: token {token!r} is not in "
                                     f"the training vocabulary ({len(vocabulary)} tokens of "
                                     f"{paths['train']})")
                out.append(i)
            out.append(index[EOS])
        ids[split] = np.asarray(out, np.int32)
    return Corpus(vocabulary=vocabulary, paths=paths, **ids)


# --- streams -------------------------------------------------------------------------------------

class TrainingStreams:
    """Positions of B training streams over a file of N tokens (numpy; docs/language.md#streams).

    Stream b reads segments of at most `max_length` consecutive tokens, each from a random
    offset; its first segment is shorter by a random phase, so the streams jump at different
    steps. Position of stream b at time step s: the segment j holding s and the offset o_{b,j}
    give (o_{b,j} + s − start_j) mod N. `reset` is 1 at the first token of a segment and where
    the position wraps to 0. Offsets are drawn from (seed, b, j), so any step is computed
    directly (no replay), and stream b does not depend on B.
    """

    def __init__(self, num_tokens, batch_size, seed, max_length=MAX_LENGTH):
        self.num_tokens = checks.check_int("num_tokens", num_tokens, low=2)
        self.batch_size = checks.check_int("batch_size", batch_size, low=1)
        self.seed = checks.check_int("seed", seed, 0, 2 ** 63 - 1)
        self.max_length = checks.check_int("max_length", max_length, low=1)
        self.phase = np.array([self._draw(b, -1) % self.max_length
                               for b in range(self.batch_size)], np.int64)
        self._offsets = {}

    def _draw(self, stream, segment):
        return int(np.random.default_rng([self.seed, stream, segment + 1]).integers(2 ** 62))

    def _offset(self, stream, segment):
        key = (stream, segment)
        value = self._offsets.get(key)
        if value is None:
            if len(self._offsets) > 8 * self.batch_size:
                self._offsets.clear()
            value = self._offsets[key] = self._draw(stream, segment) % self.num_tokens
        return value

    def positions(self, start, length):
        """(positions int64 [B, length], reset bool [B, length]) of steps [start, start+length)."""
        steps = np.arange(start, start + length, dtype=np.int64)[None, :] + self.phase[:, None]
        segment = steps // self.max_length
        within = steps % self.max_length
        offsets = np.empty_like(segment)
        for b in range(self.batch_size):
            for j in np.unique(segment[b]):
                offsets[b, segment[b] == j] = self._offset(b, int(j))
        positions = (offsets + within) % self.num_tokens
        reset = (within == 0) | (positions == 0)
        reset[:, 0] |= start == 0
        return positions, reset


class EvaluationStripes:
    """B evaluation streams striped over a file of N tokens (numpy; docs/language.md#streams).

    Stream b starts at token ⌊b·N/B⌋ and reads on without a cap (wrapping at the end); its
    tokens up to the next stream's start are `score`d, so every token of the file is scored
    exactly once in `num_chunks(T)` chunks. Only the first step of each stream is a reset.
    """

    def __init__(self, num_tokens, batch_size):
        self.num_tokens = checks.check_int("num_tokens", num_tokens, low=1)
        self.batch_size = checks.check_int("batch_size", batch_size, low=1)
        if self.batch_size > self.num_tokens:
            raise ValueError(f"batch_size ({batch_size}) must be <= the tokens of the file "
                             f"({num_tokens})")
        bounds = np.arange(self.batch_size + 1, dtype=np.int64) * self.num_tokens
        bounds //= self.batch_size
        self.starts, self.lengths = bounds[:-1], np.diff(bounds)

    def num_chunks(self, chunk_length):
        """Chunks of `chunk_length` steps that score the whole file."""
        return -(-int(self.lengths.max()) // chunk_length)

    def positions(self, start, length):
        """(positions [B, length], reset [B, length], score [B, length]) of steps
        [start, start+length)."""
        steps = np.arange(start, start + length, dtype=np.int64)[None, :]
        positions = (self.starts[:, None] + steps) % self.num_tokens
        reset = np.broadcast_to(steps == 0, positions.shape)
        score = steps < self.lengths[:, None]
        return positions, reset, score


def make_language_dataset(ids, embedding, batch_size, chunk_length, *, mode="train", seed=0,
                          start_chunk=0, max_length=MAX_LENGTH):
    """A tf.data.Dataset of word streams in chunks (element i: steps [i·T, (i+1)·T)).

    Element: a dict with `inputs` float32 [B, T, D] (the token's embedding, flattened),
    `labels` int32 [B, T] (its id), `reset` float32 [B, T] (1: clear the memory of that stream
    before this step), `test` float32 [B, T] (0; the stack's grammar test-state flag) and
    `score` float32 [B, T] (1 where the token counts towards a metric).

    Args:
      ids: int array of token ids (one split of a `Corpus`).
      embedding: float array [K, ...]: row k is the input of token k.
      batch_size: B streams.
      chunk_length: T steps per element.
      mode: "train" (`TrainingStreams`, endless, every token scored) or "eval"
        (`EvaluationStripes`, `num_chunks(T)` elements, then the dataset ends).
      seed: seed of the training offsets.
      start_chunk: first element produced (resume).
      max_length: longest training segment between jumps.
    """
    import tensorflow as tf
    ids = np.asarray(ids, np.int32)
    if ids.ndim != 1 or ids.size < 2:
        raise ValueError(f"ids must be a 1-D array of at least 2 token ids, got shape "
                         f"{ids.shape}")
    embedding = np.asarray(embedding, np.float32)
    embedding = embedding.reshape(embedding.shape[0], -1)
    if int(ids.max()) >= embedding.shape[0]:
        raise ValueError(f"the embedding has {embedding.shape[0]} rows but the token ids reach "
                         f"{int(ids.max())}")
    batch_size = checks.check_int("batch_size", batch_size, low=1)
    chunk_length = checks.check_int("chunk_length", chunk_length, low=1)
    start_chunk = checks.check_int("start_chunk", start_chunk, low=0)
    checks.check_choice("mode", mode, ("train", "eval"))
    shape = (batch_size, chunk_length)
    if mode == "train":
        streams = TrainingStreams(ids.size, batch_size, seed, max_length)
        stop = None

        def produce(index):
            positions, reset = streams.positions(index * chunk_length, chunk_length)
            return ids[positions], reset, np.ones(shape, bool)
    else:
        streams = EvaluationStripes(ids.size, batch_size)
        stop = streams.num_chunks(chunk_length)

        def produce(index):
            positions, reset, score = streams.positions(index * chunk_length, chunk_length)
            return ids[positions], reset, score
    dataset = indexed_stream(produce, [tf.TensorSpec(shape, d) for d in
                                       (tf.int32, tf.bool, tf.bool)],
                             start=start_chunk, stop=stop)
    table = tf.constant(embedding)

    def element(labels, reset, score):
        return {"inputs": tf.gather(table, labels), "labels": labels,
                "reset": tf.cast(reset, tf.float32), "test": tf.zeros(shape, tf.float32),
                "score": tf.cast(score, tf.float32)}

    dataset = dataset.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
