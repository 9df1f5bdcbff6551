"""Grammar streams: strings of a stochastic state machine as continuing, chunked batches.

The default grammar is the embedded Reber grammar of the RSM paper
(docs/rsm.md#embedded-reber-grammar):

    B (T|P) B <Reber string> E (the same T|P) E

A grammar is a mapping, in the format of the original `embedded_reber_grammar.json`:

- `states`: state name -> `{symbol: str, test: bool, end: bool}`. Symbols, sorted, are the class
  ids (B, E, P, S, T, V, X -> 0..6). `test` marks the states that are scored (the second-to-last
  T/P, fully determined by the second symbol); `end` marks the last state of a string.
- `transitions`: node -> list of `{state, next}`. Generation starts at node `START` (or the
  mapping's `start`), picks one transition of the current node uniformly at random, emits its
  state and moves to `next`; `next: -1` (or null) ends the string.

Streams (`GrammarStreams`, numpy): B independent, continuing streams. Stream b starts at offset
`b mod len(first string)` of its first string (stagger), and every finished string is followed by
a freshly generated one. All randomness is a counter-based hash of (seed, stream, string index,
step), so the streams are deterministic from the seed, stream b does not depend on the batch size,
and starting at any time step only needs the string *lengths* before it (cheap, vectorised).

Chunks (`make_grammar_dataset`, tf.data): chunk i holds time steps [i*T, (i+1)*T) of every stream;
row b is always stream b and chunk i+1 continues chunk i. The Python side produces small int
arrays; rendering (one-hot or MNIST glyphs) is a `tf.gather` in the graph.
"""
import dataclasses
import threading
from collections.abc import Mapping

import numpy as np

from pagi_rsm import checks
from pagi_rsm.datasets.indexed_stream import indexed_stream

START = "START"
END_OF_STRING = -1
RENDERS = ("onehot", "same", "random")


def _inner_reber(prefix, node_prefix, exit_node):
    """States and transitions of one copy of the inner Reber grammar (B ... E)."""
    symbols = ["B", "T", "P", "X", "S", "V", "T", "X", "S", "P", "V", "E"]
    states = {f"{prefix}{i}": {"symbol": s, "test": False, "end": False}
              for i, s in enumerate(symbols)}
    n = node_prefix
    edges = {  # node -> [(state index, next node)]
        0: [(0, 1)],
        1: [(1, 2), (2, 3)],
        2: [(3, 4), (4, 2)],
        3: [(5, 5), (6, 3)],
        4: [(7, 3), (8, 6)],
        5: [(9, 4), (10, 6)],
        6: [(11, None)],
    }
    transitions = {
        f"{n}{node}": [{"state": f"{prefix}{i}", "next": exit_node if nxt is None else f"{n}{nxt}"}
                       for i, nxt in out]
        for node, out in edges.items()}
    return states, transitions


def _embedded_reber():
    states = {"S0": {"symbol": "B", "test": False, "end": False},
              "S1": {"symbol": "T", "test": False, "end": False},
              "S2": {"symbol": "P", "test": False, "end": False}}
    transitions = {START: [{"state": "S0", "next": "IN"}],
                   "IN": [{"state": "S1", "next": "T0"}, {"state": "S2", "next": "P0"}]}
    for prefix, exit_node in (("T", "OUT_1"), ("P", "OUT_2")):
        inner_states, inner_transitions = _inner_reber(f"S{prefix}", prefix, exit_node)
        states.update(inner_states)
        transitions.update(inner_transitions)
    states.update({"S3": {"symbol": "T", "test": True, "end": False},
                   "S4": {"symbol": "P", "test": True, "end": False},
                   "S5": {"symbol": "E", "test": False, "end": True}})
    transitions.update({"OUT_1": [{"state": "S3", "next": "END"}],
                        "OUT_2": [{"state": "S4", "next": "END"}],
                        "END": [{"state": "S5", "next": END_OF_STRING}]})
    return {"states": states, "transitions": transitions}


# The embedded Reber grammar: the same tables as the original definition
# (`definitions/grammars/embedded_reber_grammar.json`) and definitions/grammar/embedded_reber.yaml.
EMBEDDED_REBER = _embedded_reber()


def _is_end_of_string(nxt):
    return nxt is None or (isinstance(nxt, int) and not isinstance(nxt, bool)
                           and nxt == END_OF_STRING)


class Grammar:
    """A validated grammar: a stochastic state machine that generates strings of states.

    Args:
      states: mapping state name -> `{symbol: str, test: bool, end: bool}` (`test`, `end` default
        false).
      transitions: mapping node -> non-empty list of `{state: <state name>, next: <node> | -1}`.
      start: the node where every string starts.

    Raises:
      ValueError: naming the offending key, for unknown state or node names, malformed entries,
        no end state, an end state that does not end the string (or a string ending on a state
        that is not an end state), or a node from which no end state can be reached.

    Example:
      >>> g = Grammar.from_config(EMBEDDED_REBER)
      >>> g.symbols, g.num_classes
      (('B', 'E', 'P', 'S', 'T', 'V', 'X'), 7)
    """

    _CONFIG_KEYS = ("states", "transitions", "start")
    _STATE_KEYS = ("symbol", "test", "end")

    def __init__(self, states, transitions, start=START):
        self._config = {"states": states, "transitions": transitions, "start": start}
        self._parse_states(states)
        self._parse_transitions(transitions, start)
        self._check_termination()

    @classmethod
    def from_config(cls, config):
        """Builds a grammar from a mapping with `states`, `transitions` and optional `start`."""
        if isinstance(config, Grammar):
            return config
        if not isinstance(config, Mapping):
            raise ValueError("grammar must be a mapping with keys 'states' and 'transitions', "
                             f"got {type(config).__name__}")
        for key in config:
            if key not in cls._CONFIG_KEYS:
                raise ValueError(f"unknown grammar key {key!r}; valid keys: "
                                 + ", ".join(cls._CONFIG_KEYS))
        for key in ("states", "transitions"):
            if key not in config:
                raise ValueError(f"grammar is missing {key!r}")
        return cls(config["states"], config["transitions"], config.get("start", START))

    def get_config(self):
        """The mapping this grammar was built from (plain dicts and lists)."""
        states = {name: dict(spec) for name, spec in self._config["states"].items()}
        transitions = {node: [dict(t) for t in out]
                       for node, out in self._config["transitions"].items()}
        return {"states": states, "transitions": transitions, "start": self._config["start"]}

    # --- validation and tables --------------------------------------------------------------

    def _parse_states(self, states):
        if not isinstance(states, Mapping) or not states:
            raise ValueError("grammar 'states' must be a non-empty mapping of state name -> "
                             "{symbol, test, end}")
        names, symbols, tests, ends = [], [], [], []
        for name, spec in states.items():
            where = f"states[{name!r}]"
            if not isinstance(name, str):
                raise ValueError(f"{where}: state names must be strings")
            if not isinstance(spec, Mapping):
                raise ValueError(f"{where} must be a mapping with keys symbol, test, end")
            for key in spec:
                if key not in self._STATE_KEYS:
                    raise ValueError(f"{where}: unknown key {key!r}; valid keys: "
                                     + ", ".join(self._STATE_KEYS))
            symbol = spec.get("symbol")
            if not isinstance(symbol, str) or not symbol:
                raise ValueError(f"{where}['symbol'] must be a non-empty string, got {symbol!r}")
            for key in ("test", "end"):
                if not isinstance(spec.get(key, False), bool):
                    raise ValueError(f"{where}[{key!r}] must be true or false, "
                                     f"got {spec[key]!r}")
            names.append(name)
            symbols.append(symbol)
            tests.append(spec.get("test", False))
            ends.append(spec.get("end", False))
        if not any(ends):
            raise ValueError("grammar 'states' has no end state: mark the last state of a "
                             "string with end: true")
        self.state_names = tuple(names)
        self.symbols = tuple(sorted(set(symbols)))
        class_of = {s: i for i, s in enumerate(self.symbols)}
        self.state_class = np.array([class_of[s] for s in symbols], dtype=np.int32)
        self.state_test = np.array(tests, dtype=bool)
        self.state_end = np.array(ends, dtype=bool)
        self._state_index = {n: i for i, n in enumerate(names)}

    def _parse_transitions(self, transitions, start):
        if not isinstance(transitions, Mapping) or not transitions:
            raise ValueError("grammar 'transitions' must be a non-empty mapping of node -> "
                             "list of {state, next}")
        nodes = list(transitions)
        if start not in transitions:
            raise ValueError(f"grammar 'transitions' has no start node {start!r}")
        node_index = {n: i for i, n in enumerate(nodes)}
        width = max(len(v) if isinstance(v, (list, tuple)) else 0 for v in transitions.values())
        out_state = np.zeros((len(nodes), max(width, 1)), dtype=np.int64)
        out_next = np.zeros_like(out_state)
        num_out = np.zeros(len(nodes), dtype=np.int64)
        for node, out in transitions.items():
            where = f"transitions[{node!r}]"
            if not isinstance(out, (list, tuple)) or not out:
                raise ValueError(f"{where} must be a non-empty list of {{state, next}}")
            for i, t in enumerate(out):
                w = f"{where}[{i}]"
                if not isinstance(t, Mapping) or set(t) != {"state", "next"}:
                    raise ValueError(f"{w} must be a mapping with exactly the keys state, next; "
                                     f"got {t!r}")
                state, nxt = t["state"], t["next"]
                if state not in self._state_index:
                    raise ValueError(f"{w}['state']: unknown state {state!r}; known states: "
                                     + ", ".join(self.state_names))
                s = self._state_index[state]
                if _is_end_of_string(nxt):
                    if not self.state_end[s]:
                        raise ValueError(
                            f"{w} ends the string (next: {nxt!r}) but state {state!r} is not an "
                            "end state (end: true)")
                    n = END_OF_STRING
                else:
                    if not isinstance(nxt, str) or nxt not in node_index:
                        raise ValueError(f"{w}['next']: unknown node {nxt!r} (use -1 to end the "
                                         "string); known nodes: " + ", ".join(nodes))
                    if self.state_end[s]:
                        raise ValueError(
                            f"{w}: state {state!r} is an end state (end: true) but next is "
                            f"{nxt!r}; an end state must end the string (next: -1)")
                    n = node_index[nxt]
                out_state[node_index[node], i] = s
                out_next[node_index[node], i] = n
            num_out[node_index[node]] = len(out)
        self.nodes = tuple(nodes)
        self.start = node_index[start]
        self._num_out = num_out
        self._out_state = out_state
        self._out_next = out_next

    def _check_termination(self):
        """Every node reachable from the start must be able to reach the end of a string."""
        reachable, frontier = {self.start}, [self.start]
        while frontier:
            node = frontier.pop()
            for nxt in self._out_next[node, :self._num_out[node]]:
                if nxt != END_OF_STRING and nxt not in reachable:
                    reachable.add(int(nxt))
                    frontier.append(int(nxt))
        finishing, changed = set(), True
        while changed:
            changed = False
            for node in range(len(self.nodes)):
                if node in finishing:
                    continue
                nxt = self._out_next[node, :self._num_out[node]]
                if any(n == END_OF_STRING or n in finishing for n in nxt):
                    finishing.add(node)
                    changed = True
        for node in sorted(reachable):
            if node not in finishing:
                raise ValueError(
                    f"transitions[{self.nodes[node]!r}]: no path from node "
                    f"{self.nodes[node]!r} (reachable from {self.nodes[self.start]!r}) reaches an "
                    "end state, so a string could never end")
        self._reachable = np.array(sorted(reachable))

    # --- properties -------------------------------------------------------------------------

    @property
    def num_classes(self):
        return len(self.symbols)

    @property
    def test_states(self):
        return tuple(n for n, t in zip(self.state_names, self.state_test) if t)

    @property
    def end_states(self):
        return tuple(n for n, e in zip(self.state_names, self.state_end) if e)

    def mean_length(self):
        """Expected number of states in a string (solves the Markov chain's linear system)."""
        nodes = self._reachable
        pos = {int(n): i for i, n in enumerate(nodes)}
        a = np.eye(len(nodes))
        for n in nodes:
            k = self._num_out[n]
            for nxt in self._out_next[n, :k]:
                if nxt != END_OF_STRING:
                    a[pos[int(n)], pos[int(nxt)]] -= 1.0 / k
        return float(np.linalg.solve(a, np.ones(len(nodes)))[pos[self.start]])

    def to_symbols(self, state_ids):
        """The symbol string of a sequence of state ids, e.g. 'BTBPVVETE'."""
        return "".join(self.symbols[self.state_class[s]] for s in np.asarray(state_ids).ravel())

    # --- generation -------------------------------------------------------------------------

    def walk(self, keys, record=True):
        """Generates one string per 64-bit key (vectorised over the keys).

        Step k of the string with key h uses the draw `mix64(h + (k+1)·φ)` (splitmix64), and
        picks transition `floor(u · n_out)` with u the draw's top 32 bits / 2³².

        Args:
          keys: uint64 array [n].
          record: also return the states (otherwise only the lengths).

        Returns:
          `(states, lengths)`: int32 [n, L] padded with -1 (None if not `record`), int64 [n].
        """
        keys = np.asarray(keys, dtype=np.uint64).ravel()
        n = keys.shape[0]
        lengths = np.zeros(n, dtype=np.int64)
        width = self._out_state.shape[1]
        flat_state, flat_next = self._out_state.ravel(), self._out_next.ravel()
        num_out = self._num_out.astype(np.uint64)
        lane = np.arange(n)          # which string each still-running lane generates
        node = np.full(n, self.start, dtype=np.int64)
        columns = []
        step = 0
        while lane.size:
            step += 1
            draw = _mix64(keys + _times_golden(step))
            choice = ((draw >> _U32) * num_out[node]) >> _U32
            flat = node * width + choice.astype(np.int64)
            nxt = flat_next[flat]
            if record:
                column = np.full(n, -1, dtype=np.int32)
                column[lane] = flat_state[flat]
                columns.append(column)
            ended = nxt == END_OF_STRING
            if ended.any():
                lengths[lane[ended]] = step
                going = ~ended
                lane, keys, nxt = lane[going], keys[going], nxt[going]
            node = nxt
        states = np.stack(columns, axis=1) if record else None
        return states, lengths


# --- counter-based random numbers (splitmix64) -----------------------------------------------

_GOLDEN = 0x9E3779B97F4A7C15
_U32 = np.uint64(32)
_MASK64 = (1 << 64) - 1
_STRINGS_PURPOSE = 0x5354524E47530001   # keys of the strings
_GLYPHS_PURPOSE = 0x474C595048530002    # keys of the random glyph picks


def _times_golden(k):
    return np.uint64((k * _GOLDEN) & _MASK64)


def _mix64(x):
    """splitmix64 finaliser on a uint64 array (wrap-around arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _stream_keys(seed, purpose, streams):
    """One 64-bit key per stream for a purpose (strings or glyph picks)."""
    base = _mix64(np.array([(seed ^ purpose) & _MASK64], dtype=np.uint64))
    streams = np.asarray(streams, dtype=np.uint64)
    return _mix64(base + streams * np.uint64(_GOLDEN))


def _uniform_below(keys, steps, counts):
    """Per element an integer in [0, counts) from the draws keys + steps·φ."""
    draw = _mix64(keys + np.asarray(steps, dtype=np.uint64) * np.uint64(_GOLDEN))
    return ((draw >> _U32) * np.asarray(counts, dtype=np.uint64)) >> _U32


class GrammarStreams:
    """B continuing streams of grammar strings, deterministic from a seed (numpy).

    String j of stream b is `grammar.walk` of the key `mix64(key_b + (j+1)·φ)`, with key_b a
    function of (seed, b) only, so a stream is the same whatever the batch size or chunking.
    Stream b starts at offset `b mod len(string 0)` of its first string; each finished string is
    followed by the next one. `start_step=t` starts every stream at its time step t after
    computing only the lengths of the strings before it.

    Args:
      grammar: a `Grammar` or a grammar mapping (default: the embedded Reber grammar).
      batch_size: number of streams B.
      seed: integer in [0, 2**64).
      start_step: absolute time step of the first `take`.

    Example:
      >>> streams = GrammarStreams(None, batch_size=4, seed=1)
      >>> states, reset = streams.take(12)
      >>> states.shape, bool(reset[:, 0].all())
      ((4, 12), True)
    """

    _LOCATE_BLOCK = 1 << 16   # strings per vectorised length computation while fast-forwarding

    def __init__(self, grammar=None, batch_size=400, seed=0, start_step=0):
        self.grammar = as_grammar(grammar)
        self.batch_size = checks.check_int("batch_size", batch_size, low=1)
        self.seed = checks.check_int("seed", seed, 0, 2 ** 64 - 1)
        self.step = checks.check_int("start_step", start_step, low=0)
        self._mean = self.grammar.mean_length()
        self._keys = _stream_keys(self.seed, _STRINGS_PURPOSE, np.arange(self.batch_size))
        streams = np.arange(self.batch_size)
        _, first_lengths = self.grammar.walk(self._string_keys(streams, np.zeros_like(streams)),
                                             record=False)
        self.offsets = streams % first_lengths     # stagger: where each stream starts
        self._index, position = self._locate(self.offsets + self.step)
        # Buffer of upcoming states per stream, starting with the current string at `position`.
        states, lengths = self.grammar.walk(self._string_keys(streams, self._index))
        cols = np.minimum(np.arange(states.shape[1])[None, :] + position[:, None],
                          states.shape[1] - 1)
        self._fill = lengths - position
        self._states = np.where(np.arange(states.shape[1])[None, :] < self._fill[:, None],
                                np.take_along_axis(states, cols, axis=1), -1).astype(np.int32)
        self._first = np.zeros(self._states.shape, dtype=bool)
        self._first[:, 0] = (position == 0) | (self.step == 0)  # very first step starts afresh

    def _string_keys(self, streams, index):
        index = np.asarray(index, dtype=np.uint64) + np.uint64(1)
        return _mix64(self._keys[streams] + index * np.uint64(_GOLDEN))

    def string(self, stream, index):
        """State ids of string `index` of stream `stream` (whole, before any stagger offset)."""
        states, lengths = self.grammar.walk(self._string_keys(np.array([stream]),
                                                              np.array([index])))
        return states[0, :lengths[0]]

    def _locate(self, positions):
        """Per stream, (string index, offset in it) of a position in its sequence of strings."""
        index = np.zeros(self.batch_size, dtype=np.int64)
        remaining = np.asarray(positions, dtype=np.int64).copy()
        active = np.arange(self.batch_size)
        while active.size:
            block = int(remaining[active].max() / self._mean * 1.05) + 4
            block = max(1, min(block, self._LOCATE_BLOCK // active.size))
            strings = index[active, None] + np.arange(block)[None, :]
            streams = np.broadcast_to(active[:, None], strings.shape)
            _, lengths = self.grammar.walk(self._string_keys(streams.ravel(), strings.ravel()),
                                           record=False)
            ends = np.cumsum(lengths.reshape(strings.shape), axis=1)
            passed = (ends <= remaining[active, None]).sum(axis=1)   # whole strings passed
            rows = np.arange(active.size)
            consumed = np.where(passed > 0, ends[rows, np.maximum(passed, 1) - 1], 0)
            index[active] += passed
            remaining[active] -= consumed
            active = active[passed == block]
        return index, remaining

    def _refill(self, length):
        """Appends fresh strings to the streams holding fewer than `length` upcoming states.

        Several strings per stream at once (about `horizon` steps), so that the vectorised walk
        runs rarely and on many strings.
        """
        horizon = length + max(8 * length, 256)
        while (self._fill < length).any():
            # Top up every stream that is below half the horizon, not only the ones that ran
            # out, so that streams do not trigger walks one chunk after the other.
            need = np.flatnonzero(self._fill < max(length, horizon // 2))
            counts = np.maximum(1, np.ceil((horizon - self._fill[need]) / self._mean)
                                ).astype(np.int64)
            rows = np.repeat(need, counts)
            group = np.repeat(np.cumsum(counts) - counts, counts)  # first string of each stream
            within = np.arange(rows.size) - group
            states, lengths = self.grammar.walk(
                self._string_keys(rows, self._index[rows] + 1 + within))
            before = np.cumsum(lengths) - lengths                   # exclusive prefix sum
            starts = self._fill[rows] + before - before[group]
            ends = starts + lengths
            if ends.max() > self._states.shape[1]:
                self._grow(int(ends.max()))
            pos = np.arange(states.shape[1])[None, :]
            valid = pos < lengths[:, None]
            r = np.broadcast_to(rows[:, None], states.shape)[valid]
            c = (starts[:, None] + pos)[valid]
            self._states[r, c] = states[valid]
            self._first[r, c] = np.broadcast_to(pos == 0, states.shape)[valid]
            self._index[need] += counts
            self._fill[need] = ends[np.cumsum(counts) - 1]

    def _grow(self, width):
        width = max(width, 2 * self._states.shape[1])
        states = np.full((self.batch_size, width), -1, dtype=np.int32)
        first = np.zeros((self.batch_size, width), dtype=bool)
        states[:, :self._states.shape[1]] = self._states
        first[:, :self._first.shape[1]] = self._first
        self._states, self._first = states, first

    def take(self, length):
        """The next `length` time steps of every stream.

        Returns:
          `(states, reset)`: int32 [B, length] state ids, and bool [B, length], true at the first
          state of a string (and at the very first step of every stream).
        """
        self._refill(length)
        states = self._states[:, :length].copy()
        reset = self._first[:, :length].copy()
        self._states = self._states[:, length:]
        self._first = self._first[:, length:]
        self._fill -= length
        self.step += length
        return states, reset


def as_grammar(grammar):
    """A `Grammar` from None (the embedded Reber grammar), a `Grammar` or a mapping."""
    if grammar is None:
        return Grammar.from_config(EMBEDDED_REBER)
    return Grammar.from_config(grammar)


@dataclasses.dataclass(frozen=True)
class GrammarMeta:
    """What a model needs to know about a grammar dataset.

    Attributes:
      num_classes: number of symbols (classes of `labels`).
      input_dim: D of `inputs` (num_classes for one-hot, 784 for glyphs).
      symbols: the sorted symbols; `labels` value c is `symbols[c]`.
      states: state names; state id s (the optional `state` key) is `states[s]`.
      test_states: names of the scored states.
      end_states: names of the states that end a string.
      batch_size, chunk_length, render, seed: the dataset's settings.
    """
    num_classes: int
    input_dim: int
    symbols: tuple
    states: tuple
    test_states: tuple
    end_states: tuple
    batch_size: int
    chunk_length: int
    render: str
    seed: int


def _glyph_table(grammar, render, mnist_dir):
    """(table, offsets, counts): the rendering lookup table and, for 'random', per-class rows."""
    c = grammar.num_classes
    if render == "onehot":
        return None, None, None
    if c > 10:
        raise ValueError(f"render={render!r} draws symbol class c as MNIST digit c, so it "
                         f"supports at most 10 symbols; this grammar has {c}")
    from pagi_rsm.datasets import mnist
    if render == "same":
        glyphs = mnist.load_glyphs()[:c].reshape(c, -1).astype(np.float32) / 255.0
        return glyphs, None, None
    images, labels = mnist.load_mnist(mnist_dir, split="train")
    order = np.argsort(labels, kind="stable")
    order = order[labels[order] < c]
    counts = np.bincount(labels[order], minlength=c)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return images[order].reshape(len(order), -1), offsets, counts


class _ChunkSource:
    """Chunk `i` of the streams as small int arrays (the Python side of the dataset).

    Keeps the `GrammarStreams` of every live iterator, keyed by the next step each one can
    produce, so chunks asked for in order (the normal case, also with several iterators at once)
    just advance a stream; any other index (a new iterator, a resume) fast-forwards a fresh one.
    With `random_rows = (offsets, counts)` it also picks, per (stream, time step), a row of the
    class-sorted MNIST table: offsets[c] + uniform integer below counts[c].
    """

    _MAX_CACHED = 8

    def __init__(self, grammar, batch_size, chunk_length, seed, random_rows=None):
        self._args = (grammar, batch_size, seed)
        self._chunk_length = chunk_length
        self._random_rows = random_rows
        self._glyph_keys = _stream_keys(seed, _GLYPHS_PURPOSE, np.arange(batch_size))[:, None]
        self._cache = []   # GrammarStreams, oldest first
        self._lock = threading.Lock()

    def _streams_at(self, step):
        with self._lock:
            for i, streams in enumerate(self._cache):
                if streams.step == step:
                    return self._cache.pop(i)
        return GrammarStreams(*self._args, start_step=step)

    def __call__(self, index):
        step = int(index) * self._chunk_length
        streams = self._streams_at(step)
        states, reset = streams.take(self._chunk_length)
        with self._lock:
            self._cache = (self._cache + [streams])[-self._MAX_CACHED:]
        if self._random_rows is None:
            return states, reset
        offsets, counts = self._random_rows
        classes = self._args[0].state_class[states]
        steps = step + np.arange(self._chunk_length)[None, :]
        pick = _uniform_below(self._glyph_keys, steps, counts[classes])
        return states, reset, (offsets[classes] + pick).astype(np.int32)


def make_grammar_dataset(grammar=None, batch_size=400, chunk_length=12, render="same", seed=1234,
                         start_chunk=0, mnist_dir=None, include_state_ids=False):
    """An infinite tf.data.Dataset of chunked grammar streams, for `model.fit`.

    Element i (chunk i) is a dict, row b always stream b, chunk i+1 continuing chunk i:

    - `inputs` float32 [B, T, D]: the rendered symbol: one-hot (D = num_classes), or an MNIST
      glyph of digit = class id, 784 pixels / 255.
    - `labels` int32 [B, T]: class id of the symbol at that step.
    - `reset` float32 [B, T]: 1.0 at the first symbol of a new string (the model zeroes that
      sample's state before computing that step), and at the very first step of every stream.
    - `test` float32 [B, T]: 1.0 where the current state is a test state.
    - `state` int32 [B, T] (only with `include_state_ids`): state id, see `meta.states`.

    Args:
      grammar: None (the embedded Reber grammar), a `Grammar`, or a mapping {states, transitions}.
      batch_size: B, number of parallel streams.
      chunk_length: T, time steps per element.
      render: "onehot"; "same" (the shipped first training exemplar of each digit); or "random"
        (per occurrence a training exemplar of that digit drawn from MNIST, deterministic from
        the seed; needs MNIST: `mnist_dir`, `$PAGI_RSM_MNIST_DIR` or a prepared tfds copy).
      seed: non-negative integer; the whole stream is a function of it.
      start_chunk: first chunk produced: `start_chunk=i` gives exactly chunks i, i+1, ... of the
        uninterrupted stream (for resuming), computing only string lengths for the skipped part.
      mnist_dir: directory of the MNIST IDX files (render="random").
      include_state_ids: add the `state` key.

    Returns:
      `(dataset, meta)`: the infinite dataset and a `GrammarMeta`.

    Example:
      >>> ds, meta = make_grammar_dataset(batch_size=4, chunk_length=6, render="onehot")
      >>> batch = next(iter(ds))
      >>> batch["inputs"].shape, meta.num_classes, meta.symbols[0]
      (TensorShape([4, 6, 7]), 7, 'B')
    """
    grammar = as_grammar(grammar)
    batch_size = checks.check_int("batch_size", batch_size, low=1)
    chunk_length = checks.check_int("chunk_length", chunk_length, low=1)
    seed = checks.check_int("seed", seed, 0, 2 ** 64 - 1)
    start_chunk = checks.check_int("start_chunk", start_chunk, low=0)
    if render not in RENDERS:
        raise ValueError(f"render must be one of {RENDERS}, got {render!r}")
    table, offsets, counts = _glyph_table(grammar, render, mnist_dir)
    shape = (batch_size, chunk_length)
    source = _ChunkSource(grammar, batch_size, chunk_length, seed,
                          None if render != "random" else (offsets, counts))
    import tensorflow as tf  # here, so that checking a definition needs no TensorFlow
    outputs = [tf.int32, tf.bool] + ([tf.int32] if render == "random" else [])
    dataset = indexed_stream(source, [tf.TensorSpec(shape, dtype) for dtype in outputs],
                             start=start_chunk)

    class_of_state = tf.constant(grammar.state_class, tf.int32)
    test_of_state = tf.constant(grammar.state_test, tf.float32)
    glyphs = None if table is None else tf.constant(table)

    def element(states, reset, rows=None):
        labels = tf.gather(class_of_state, states)
        if render == "onehot":
            inputs = tf.one_hot(labels, grammar.num_classes, dtype=tf.float32)
        elif render == "same":
            inputs = tf.gather(glyphs, labels)
        else:
            inputs = tf.cast(tf.gather(glyphs, rows), tf.float32) * (1.0 / 255.0)
        out = {"inputs": inputs, "labels": labels, "reset": tf.cast(reset, tf.float32),
               "test": tf.gather(test_of_state, states)}
        if include_state_ids:
            out["state"] = states
        return out

    dataset = dataset.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    input_dim = grammar.num_classes if render == "onehot" else 28 * 28
    meta = GrammarMeta(num_classes=grammar.num_classes, input_dim=input_dim,
                       symbols=grammar.symbols, states=grammar.state_names,
                       test_states=grammar.test_states, end_states=grammar.end_states,
                       batch_size=batch_size, chunk_length=chunk_length, render=render,
                       seed=seed)
    return dataset, meta

