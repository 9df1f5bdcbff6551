"""Partially observable MNIST image sequences: digit sequences shown one MNIST image per step.

The memory sees one image per time step and its predictor names the next digit. Two things hide
the sequence from a single image: the image is an exemplar of its digit (the class must be
inferred), and in higher-order or stochastic sequences the successor depends on more than the
current digit. docs/image_sequence.md describes the task, its ceilings and measured results.

Sources (one model, `sequences`): a set of fixed digit sequences. At every sequence end the next
one is chosen uniformly from the set, the memory is never reset. With one sequence that is the
same sequence cycled forever:

- a digit string, e.g. ``"0123456789"`` or the higher-order ``"012340123404321"`` (the successor
  of 0 or 4 depends on up to six digits back);
- a list of sequences (digit strings or lists of ints), e.g. `PAGI9`, the 8 x 9 stochastic set
  (name ``"pagi9"``);
- a file (`sequence_file`): one sequence per line, digits only (spaces and commas ignored).

Stream b starts at offset ``b mod len`` of its first sequence (the first sequence is drawn at
random when the set has several). Everything is a function of the seed: the streams and the
exemplar draws are `pagi_rsm.datasets.grammar.GrammarStreams` of a grammar of the set (one state
per sequence position), rendered by the grammar data's shared functions, so chunk i is the same
whether the stream started at 0 or was resumed at i.

Exemplars: ``"random"`` (per step a fresh random image of the digit, a function of (seed, stream,
step)) or ``"same"`` (one fixed image per digit: the split's first exemplar), from the MNIST
training split (training streams) or the test split (held-out streams, ``split="test"``).

Ceilings: `bayes_ceiling` is the best long-run accuracy any predictor can reach knowing the set
and the whole history (8/9 for `PAGI9`, 1 for any single cycled sequence); `first_order_ceiling`
is the best for a predictor that sees only the current digit (2/3 for "012340123404321").
"""
import dataclasses
import pathlib

import numpy as np

from pagi_rsm import checks
from pagi_rsm.datasets import grammar as grammar_data

NUM_CLASSES = 10
EXEMPLARS = ("random", "same")
SPLITS = ("train", "test")

# The 8 x 9 stochastic set of the bRSM experiments ("stochastic sequential MNIST"): 7 of the 9
# transitions of a sequence are determined, the second digit is right 5/8 of the time at best, the
# first digit of the next sequence 3/8, so the Bayes ceiling is 8/9.
PAGI9 = (
    (2, 4, 0, 7, 8, 1, 6, 1, 8),
    (2, 7, 4, 9, 5, 9, 3, 1, 0),
    (5, 7, 3, 4, 1, 3, 1, 6, 4),
    (1, 3, 7, 5, 2, 5, 5, 3, 4),
    (2, 9, 1, 9, 2, 8, 3, 2, 7),
    (1, 2, 6, 4, 8, 3, 5, 0, 3),
    (3, 8, 0, 5, 6, 4, 1, 3, 9),
    (4, 7, 5, 3, 7, 6, 7, 2, 4),
)
NAMED_SETS = {"pagi9": PAGI9}
DEFAULT_SEQUENCE = "0123456789"
MAX_BELIEFS = 50000


# --- sequences ---------------------------------------------------------------------------------

def _digits(text, where):
    """Digits of a string (spaces and commas ignored); ValueError naming `where` otherwise."""
    digits = []
    for position, char in enumerate(text):
        if char in " \t,":
            continue
        if not ("0" <= char <= "9"):
            raise ValueError(f"{where}: {char!r} at position {position} is not a digit; a "
                             f"sequence holds only the digits 0-9")
        digits.append(int(char))
    if not digits:
        raise ValueError(f"{where} is empty; give at least one digit")
    return tuple(digits)


def read_sequence_file(path):
    """The sequences of a text file: one per line, digits only; blank and #-lines skipped.

    Raises:
      FileNotFoundError: no such file.
      ValueError: a line with a character other than a digit, space or comma, or no sequence.
    """
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"sequence_file {str(path)!r} does not exist")
    sequences = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            sequences.append(_digits(line, f"sequence_file {str(path)!r} line {number}"))
    if not sequences:
        raise ValueError(f"sequence_file {str(path)!r} holds no sequence (one line of digits "
                         f"per sequence)")
    return tuple(sequences)


def parse_sequences(sequences=None, sequence_file=None):
    """The set of sequences as a tuple of tuples of ints 0..9 (see the module docstring).

    Args:
      sequences: a digit string, the name of a shipped set ("pagi9"), or a non-empty list of
        sequences (digit strings or lists of ints); None: "0123456789" (or the file's).
      sequence_file: path of a file of sequences (one per line); exclusive with `sequences`.

    Raises:
      ValueError: naming the argument and the offending entry.
    """
    if sequence_file:
        if sequences is not None:
            raise ValueError("give sequences or sequence_file, not both")
        return read_sequence_file(sequence_file)
    if sequences is None:
        sequences = DEFAULT_SEQUENCE
    if isinstance(sequences, str):
        if sequences.lower() in NAMED_SETS:
            return NAMED_SETS[sequences.lower()]
        return (_digits(sequences, "sequences"),)
    if not isinstance(sequences, (list, tuple)) or not sequences:
        raise ValueError(f"sequences must be a digit string, one of {sorted(NAMED_SETS)}, or a "
                         f"non-empty list of sequences; got {sequences!r}")
    parsed = []
    for i, seq in enumerate(sequences):
        where = f"sequences[{i}]"
        if isinstance(seq, str):
            parsed.append(_digits(seq, where))
            continue
        if not isinstance(seq, (list, tuple)) or not seq:
            raise ValueError(f"{where} must be a digit string or a non-empty list of digits, "
                             f"got {seq!r}")
        for j, d in enumerate(seq):
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d <= 9:
                raise ValueError(f"{where}[{j}] must be a digit 0-9, got {d!r}")
        parsed.append(tuple(int(d) for d in seq))
    return tuple(parsed)


def sequence_grammar(sequences):
    """A `Grammar` that generates the sequences of the set, each string one whole sequence.

    State ``q<i>_<j>`` is position j of sequence i (symbol: its digit, class id = the digit);
    its `test` flag marks the positions whose digit the sequence's earlier digits determine
    (`determined_positions`). Node ``n<i>_<j>`` emits position j; START picks a sequence
    uniformly.
    """
    sequences = parse_sequences(sequences)
    determined = determined_positions(sequences)
    states, transitions = {}, {"START": []}
    for i, seq in enumerate(sequences):
        for j, digit in enumerate(seq):
            last = j == len(seq) - 1
            states[f"q{i}_{j}"] = {"symbol": str(digit), "test": bool(determined[i][j]),
                                   "end": last}
            edge = {"state": f"q{i}_{j}", "next": -1 if last else f"n{i}_{j + 1}"}
            if j == 0:
                transitions["START"].append(edge)
            else:
                transitions[f"n{i}_{j}"] = [edge]
    return grammar_data.Grammar(states, transitions,
                                symbols=[str(d) for d in range(NUM_CLASSES)])


def determined_positions(sequences):
    """Per sequence, per position: is the digit there certain given the sequence's earlier digits?

    True at position j of sequence i when every sequence of the set that starts with the same j
    digits has the same digit at j (so with one sequence, everywhere). This is "determined once
    the start of the current sequence is known"; `bayes_ceiling` needs no such assumption.
    """
    sequences = parse_sequences(sequences)
    result = []
    for seq in sequences:
        flags = []
        for j, digit in enumerate(seq):
            nexts = {other[j] for other in sequences
                     if len(other) > j and other[:j] == seq[:j]}
            flags.append(nexts == {digit})
        result.append(tuple(flags))
    return tuple(result)


# --- ceilings ----------------------------------------------------------------------------------

def _hidden_chain(sequences):
    """Hidden states (i, j) flattened: digits, successor lists, stationary distribution."""
    starts = np.cumsum([0] + [len(s) for s in sequences])
    digit = np.array([d for s in sequences for d in s], dtype=np.int64)
    firsts = starts[:-1]
    successors = []
    for i, seq in enumerate(sequences):
        for j in range(len(seq)):
            if j + 1 < len(seq):
                successors.append((np.array([starts[i] + j + 1]), np.ones(1)))
            else:
                successors.append((firsts, np.full(len(sequences), 1.0 / len(sequences))))
    # Each sequence is chosen with probability 1/N and visits each of its positions once.
    stationary = np.full(len(digit), 1.0 / len(digit))
    return digit, successors, stationary


def _strongly_connected(num_nodes, edges):
    """Component id of every node (iterative Tarjan); `edges[n]` lists n's successors."""
    index, low, on_stack, comp = {}, {}, set(), [-1] * num_nodes
    stack, counter, components = [], 0, 0
    for root in range(num_nodes):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            if child < len(edges[node]):
                work.append((node, child + 1))
                nxt = edges[node][child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp[member] = components
                    if member == node:
                        break
                components += 1
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return comp


def bayes_ceiling(sequences, max_beliefs=MAX_BELIEFS):
    """The best long-run next-digit accuracy of any predictor that knows the set and the history.

    Exact (up to float rounding): the Bayes predictor's belief over the hidden position (i, j) is
    itself a Markov chain; the ceiling is the long-run mean of max_d P(next = d | belief) over
    that chain, started from the stationary distribution (a stream that has run for ever). Its
    recurrent classes get their stationary distributions by a linear solve, the transient
    beliefs their absorption probabilities by propagation.

    Args:
      sequences: anything `parse_sequences` takes.
      max_beliefs: refuse sets whose belief chain has more states than this.

    Returns:
      float in (0, 1]; 8/9 for `PAGI9`, 1.0 for any single cycled sequence.

    Raises:
      ValueError: the belief chain has more than `max_beliefs` states.
    """
    sequences = parse_sequences(sequences)
    digit, successors, stationary = _hidden_chain(sequences)

    def predict(states, probs):
        """Next-state distribution of a belief, split by the digit it shows."""
        nxt = {}
        for s, p in zip(states, probs):
            for t, q in zip(*successors[s]):
                nxt[int(t)] = nxt.get(int(t), 0.0) + p * q
        by_digit = {}
        for t, p in nxt.items():
            by_digit.setdefault(int(digit[t]), []).append((t, p))
        return by_digit

    keys, beliefs, edges, scores = {}, [], [], []

    def node(entries):
        total = sum(p for _, p in entries)
        entries = sorted(entries)
        key = tuple((t, round(p / total, 12)) for t, p in entries)
        if key not in keys:
            if len(beliefs) >= max_beliefs:
                raise ValueError(f"the ceiling of these sequences needs more than {max_beliefs} "
                                 f"belief states; use a smaller set (or raise max_beliefs)")
            keys[key] = len(beliefs)
            beliefs.append(key)
        return keys[key], total

    start = {}
    for d in np.unique(digit):   # the first observed digit, at the stationary distribution
        members = [(int(s), float(stationary[s])) for s in np.flatnonzero(digit == d)]
        n, mass = node(members)
        start[n] = start.get(n, 0.0) + mass
    done = 0
    while done < len(beliefs):
        states, probs = zip(*beliefs[done])
        by_digit = predict(states, probs)
        out = []
        for entries in by_digit.values():
            n, mass = node(entries)
            out.append((n, mass))
        edges.append(out)
        scores.append(max(sum(p for _, p in e) for e in by_digit.values()))
        done += 1

    num = len(beliefs)
    comp = _strongly_connected(num, [[n for n, _ in out] for out in edges])
    closed = set(comp)
    for n, out in enumerate(edges):
        for m, _ in out:
            if comp[m] != comp[n]:
                closed.discard(comp[n])
    # Absorption: propagate the start mass through the transient beliefs.
    absorbed = np.zeros(max(comp) + 1)
    mass = dict(start)
    for _ in range(100000):
        transient = {}
        for n, p in mass.items():
            if comp[n] in closed:
                absorbed[comp[n]] += p
                continue
            for m, q in edges[n]:
                transient[m] = transient.get(m, 0.0) + p * q
        mass = transient
        if sum(mass.values()) < 1e-14:
            break
    ceiling = 0.0
    for c in closed:
        if absorbed[c] == 0.0:
            continue
        members = [n for n in range(num) if comp[n] == c]
        pos = {n: i for i, n in enumerate(members)}
        a = -np.eye(len(members))
        for n in members:
            for m, q in edges[n]:
                a[pos[m], pos[n]] += q   # column n: x = P^T x
        a[0, :] = 1.0
        rhs = np.zeros(len(members))
        rhs[0] = 1.0
        x = np.linalg.solve(a, rhs)
        ceiling += absorbed[c] * float(np.dot(x, [scores[n] for n in members]))
    return ceiling / absorbed[list(closed)].sum()


def first_order_ceiling(sequences):
    """The best long-run accuracy of a predictor that sees only the current digit.

    sum over digits a of max over b of P(current = a, next = b), at the stationary distribution.
    """
    sequences = parse_sequences(sequences)
    digit, successors, stationary = _hidden_chain(sequences)
    joint = np.zeros((NUM_CLASSES, NUM_CLASSES))
    for s, (nxt, probs) in enumerate(successors):
        np.add.at(joint[digit[s]], digit[nxt], stationary[s] * probs)
    return float(joint.max(axis=1).sum())


# --- dataset -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ImageSequenceMeta:
    """What a model and a workflow need to know about an image-sequence dataset.

    Attributes:
      num_classes: 10 (label = digit).
      input_dim: 784 (28 x 28 pixels / 255).
      sequences: the set, a tuple of tuples of digits.
      ceiling: `bayes_ceiling` of the set.
      first_order_ceiling: `first_order_ceiling` of the set.
      batch_size, chunk_length, exemplars, split, seed: the dataset's settings.
    """
    num_classes: int
    input_dim: int
    sequences: tuple
    ceiling: float
    first_order_ceiling: float
    batch_size: int
    chunk_length: int
    exemplars: str
    split: str
    seed: int


def make_image_sequence_dataset(sequences=None, sequence_file=None, batch_size=300,
                                chunk_length=10, exemplars="random", split="train", seed=1234,
                                start_chunk=0, mnist_dir=None):
    """An infinite tf.data.Dataset of chunked image-sequence streams, for `model.fit`.

    Element i (chunk i) is a dict, row b always stream b, chunk i+1 continuing chunk i:

    - `inputs` float32 [B, T, 784]: an MNIST image of the digit (pixels / 255);
    - `labels` int32 [B, T]: the digit shown at that step (the model predicts it from the
      earlier steps);
    - `reset` float32 [B, T]: all 0 (the streams are never reset);
    - `test` float32 [B, T]: all 1 (every step is scored);
    - `determined` float32 [B, T]: 1 where the digit is certain given the current sequence's
      earlier digits (`determined_positions`).

    Args:
      sequences, sequence_file: the set (see `parse_sequences`).
      batch_size: B, number of parallel streams.
      chunk_length: T, time steps per element.
      exemplars: "random" or "same" (see the module docstring).
      split: "train" (training streams) or "test" (held-out streams from MNIST test images).
      seed: integer in [0, 2**64); the streams and exemplar draws are a function of it.
      start_chunk: first chunk produced (`start_chunk=i` gives chunks i, i+1, ... exactly).
      mnist_dir: directory of the MNIST IDX files (default: `$PAGI_RSM_MNIST_DIR` or a prepared
        tensorflow-datasets copy); not needed for exemplars "same" of the training split.

    Returns:
      `(dataset, meta)`: the dataset and an `ImageSequenceMeta`.

    Raises:
      ValueError: a bad argument, naming it.
      MnistNotFoundError: MNIST is needed and missing (the message says where to put it).

    Example:
      >>> ds, meta = make_image_sequence_dataset("0123", batch_size=2, chunk_length=4,
      ...                                        exemplars="same")
      >>> next(iter(ds))["labels"].numpy().tolist(), float(meta.ceiling)
      ([[0, 1, 2, 3], [1, 2, 3, 0]], 1.0)
    """
    import tensorflow as tf  # here, so that checking a definition needs no TensorFlow
    parsed = parse_sequences(sequences, sequence_file)
    batch_size = checks.check_int("batch_size", batch_size, low=1)
    chunk_length = checks.check_int("chunk_length", chunk_length, low=1)
    start_chunk = checks.check_int("start_chunk", start_chunk, low=0)
    seed = checks.check_int("seed", seed, 0, 2 ** 64 - 1)
    checks.check_choice("exemplars", exemplars, EXEMPLARS)
    checks.check_choice("split", split, SPLITS)
    grammar = sequence_grammar(parsed)
    table, offsets, counts = grammar_data.glyph_table(NUM_CLASSES, exemplars, mnist_dir, split)
    dataset = grammar_data.chunk_stream(grammar, batch_size, chunk_length, seed, start_chunk,
                                        None if exemplars != "random" else (offsets, counts))
    digit_of_state = tf.constant(grammar.state_class, tf.int32)
    determined_of_state = tf.constant(grammar.state_test, tf.float32)
    glyphs = tf.constant(table)

    def element(states, reset, rows=None):
        labels = tf.gather(digit_of_state, states)
        ones = tf.ones(tf.shape(labels), tf.float32)
        return {"inputs": grammar_data.render_inputs(exemplars, glyphs, labels, rows),
                "labels": labels, "reset": tf.zeros_like(ones), "test": ones,
                "determined": tf.gather(determined_of_state, states)}

    dataset = dataset.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    meta = ImageSequenceMeta(
        num_classes=NUM_CLASSES, input_dim=28 * 28, sequences=parsed,
        ceiling=bayes_ceiling(parsed), first_order_ceiling=first_order_ceiling(parsed),
        batch_size=batch_size, chunk_length=chunk_length, exemplars=exemplars, split=split,
        seed=int(seed))
    return dataset, meta
