"""Bouncing balls: the video data of the RSM video-prediction experiment (docs/video.md).

The simulator is the classic one of the RTRBM bouncing-balls benchmark, which the RSM video
experiment uses unchanged: n balls of radius r and equal mass in an S x S box (defaults 3,
1.2 and 10), rendered to R x R pixels (default 30).

- Initial state: velocities N(0, I) of shape [n, 2], scaled so that the norm of the whole
  [n, 2] matrix is `speed` (0.5); positions ``0.2·S + 0.8·S·U(0, 1)`` per coordinate (2 + 8·U
  for S = 10), drawn again until every ball lies inside the box and no two balls overlap.
- Each frame is `substeps` (2) sub-steps of length 1/substeps: move (x += v/substeps), reflect
  at the walls (a ball past a wall gets the velocity component that points back inside),
  then elastic collisions of every overlapping pair, in the order (1, 0), (2, 0), (2, 1), ...
  (equal masses: the two balls swap their velocity components along the line of centres).
  Frame t shows the positions before its sub-steps, so frame 0 shows the initial state.
- Rendering: pixel (row i, column j) has centre ``c = ((i + 0.5)·S/R, (j + 0.5)·S/R)``; the
  column follows coordinate 0 of a position, the row coordinate 1. Its value is
  ``min(1, sum over balls of exp(-(d²/r²)⁴))``, d the distance from the pixel centre to the
  ball centre (terms below e^-87 taken as 0).
- Padding (default 2 pixels of value 0.5 on every side) makes 34 x 34 frames.

Randomness: the initial state of a sequence is drawn by a numpy Generator seeded from
(seed, split, index), so sequence `index` of a split is a function of those three numbers
alone, and training and test sequences never share a seed.

Streams (`make_bouncing_balls_dataset`, tf.data): B parallel streams of fresh training
sequences. Stream b starts at frame ``b mod L`` of its first sequence (stagger); its j-th
sequence is training sequence ``j·B + b``. Chunk i holds time steps [i·T, (i+1)·T) of every
stream, so a dataset started at ``start_chunk=i`` yields exactly the chunks i, i+1, ... of an
uninterrupted one. The test set (`make_bouncing_balls_test_dataset`) is N fixed test sequences,
one per stream, all starting at frame 0 together, replayed from the start when they end.
"""
import dataclasses
import threading

import numpy as np
import tensorflow as tf

from pagi_rsm.checks import check_int, check_number
from pagi_rsm.datasets.indexed_stream import indexed_stream

SPLITS = {"train": 0, "test": 1}   # split tag in the seed of every sequence
_MAX_PLACEMENT_ATTEMPTS = 10_000
_NEGLIGIBLE_EXPONENT = 87.0


@dataclasses.dataclass(frozen=True)
class BouncingBalls:
    """The simulator's settings, and the simulation and rendering functions (numpy).

    Attributes:
      num_balls: n >= 1.
      radius: r > 0 (box units); every ball must fit in the box's sampling range.
      box_size: S > 0, the side of the square box.
      image_size: R >= 1, rendered frames are R x R before padding.
      num_frames: L >= 1, frames per sequence.
      speed: > 0, the norm of the [n, 2] matrix of initial velocities.
      substeps: >= 1 integration sub-steps per frame (each moves by v / substeps).
      padding: >= 0 pixels added on every side of a frame.
      padding_value: value of the padding pixels, in [0, 1].

    Raises:
      ValueError: naming the setting, for a bad value, or when `num_balls` balls of `radius`
        cannot be placed without overlap (tried 10000 times).

    Example:
      >>> balls = BouncingBalls(num_frames=5)
      >>> balls.sequences(seed=1, indices=[0, 1]).shape
      (2, 5, 34, 34)
    """
    num_balls: int = 3
    radius: float = 1.2
    box_size: float = 10.0
    image_size: int = 30
    num_frames: int = 100
    speed: float = 0.5
    substeps: int = 2
    padding: int = 2
    padding_value: float = 0.5

    def __post_init__(self):
        check_int("num_balls", self.num_balls, 1)
        check_number("radius", self.radius, 0.0, low_open=True)
        check_number("box_size", self.box_size, 0.0, low_open=True)
        check_int("image_size", self.image_size, 1)
        check_int("num_frames", self.num_frames, 1)
        check_number("speed", self.speed, 0.0, low_open=True)
        check_int("substeps", self.substeps, 1)
        check_int("padding", self.padding, 0)
        check_number("padding_value", self.padding_value, 0.0, 1.0)
        low, high = self._placement_range()
        if max(low, self.radius) > self.box_size - self.radius:
            raise ValueError(
                f"radius {self.radius} does not fit box_size {self.box_size}: ball centres are "
                f"drawn in [{low}, {high}] and must stay at least the radius from every wall")
        self._initial_state(np.random.default_rng(0))   # raises if the balls cannot be placed

    @classmethod
    def from_options(cls, options):
        """Settings from a mapping of field names (unknown names raise a ValueError)."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(f"unknown bouncing-balls option(s) {unknown}; valid: {names}")
        return cls(**options)

    @property
    def frame_size(self):
        """Side of a padded frame: image_size + 2·padding."""
        return self.image_size + 2 * self.padding

    # --- simulation ---------------------------------------------------------------------------

    def _placement_range(self):
        return 0.2 * self.box_size, self.box_size

    def _initial_state(self, rng):
        n, r, size = self.num_balls, self.radius, self.box_size
        velocities = rng.standard_normal((n, 2))
        velocities *= self.speed / np.sqrt(np.sum(velocities ** 2))
        low, high = self._placement_range()
        pairs = np.tril_indices(n, -1)
        for _ in range(_MAX_PLACEMENT_ATTEMPTS):
            positions = low + (high - low) * rng.random((n, 2))
            inside = np.all(positions - r >= 0) and np.all(positions + r <= size)
            gaps = np.linalg.norm(positions[pairs[0]] - positions[pairs[1]], axis=-1)
            if inside and np.all(gaps >= 2 * r):
                return positions, velocities
        raise ValueError(
            f"could not place num_balls={n} balls of radius {r} without overlap in a box of "
            f"size {size} ({_MAX_PLACEMENT_ATTEMPTS} attempts): use fewer or smaller balls")

    def initial_states(self, seed, indices, split="train"):
        """Initial positions and velocities of sequences `indices` of a split.

        Returns:
          `(positions, velocities)`, float64 [N, n, 2] each.
        """
        tag = _split_tag(split)
        check_int("seed", seed, 0)
        states = [self._initial_state(np.random.default_rng([int(seed), tag, int(i)]))
                  for i in np.asarray(indices, dtype=np.int64).ravel()]
        if not states:
            empty = np.zeros((0, self.num_balls, 2))
            return empty, empty.copy()
        positions, velocities = zip(*states)
        return np.stack(positions), np.stack(velocities)

    def substep(self, positions, velocities):
        """One integration sub-step of every ball of every sequence, in place.

        Args:
          positions, velocities: float64 [N, n, 2], updated in place.
        """
        r, size = self.radius, self.box_size
        positions += velocities / self.substeps
        velocities[:] = np.where(positions - r < 0, np.abs(velocities), velocities)
        velocities[:] = np.where(positions + r > size, -np.abs(velocities), velocities)
        for i in range(self.num_balls):
            for j in range(i):
                line = positions[:, i] - positions[:, j]
                dist = np.sqrt(np.sum(line ** 2, axis=-1, keepdims=True))
                unit = line / np.where(dist > 0, dist, 1.0)
                along_i = np.sum(unit * velocities[:, i], axis=-1, keepdims=True)
                along_j = np.sum(unit * velocities[:, j], axis=-1, keepdims=True)
                exchange = np.where(dist < 2 * r, along_j - along_i, 0.0) * unit
                velocities[:, i] += exchange
                velocities[:, j] -= exchange

    def simulate(self, positions, velocities, num_frames=None):
        """Trajectories from initial states (vectorised over sequences).

        Args:
          positions, velocities: [N, n, 2] initial states (not modified).
          num_frames: frames to simulate (default `self.num_frames`).

        Returns:
          `(positions, velocities)`, float64 [N, num_frames, n, 2]: the state shown in each
          frame, i.e. before that frame's sub-steps.
        """
        num_frames = self.num_frames if num_frames is None else check_int(
            "num_frames", num_frames, 1)
        x = np.array(positions, dtype=np.float64)
        v = np.array(velocities, dtype=np.float64)
        xs = np.empty((x.shape[0], num_frames) + x.shape[1:])
        vs = np.empty_like(xs)
        for t in range(num_frames):
            xs[:, t], vs[:, t] = x, v
            for _ in range(self.substeps):
                self.substep(x, v)
        return xs, vs

    # --- rendering ----------------------------------------------------------------------------

    def render(self, positions):
        """Unpadded frames of ball positions.

        Args:
          positions: [..., n, 2] ball centres (box units).

        Returns:
          float32 [..., R, R] in [0, 1].
        """
        positions = np.asarray(positions, dtype=np.float32)
        centres = ((np.arange(self.image_size, dtype=np.float32) + 0.5)
                   * np.float32(self.box_size / self.image_size))
        inverse_r2 = np.float32(1.0 / self.radius ** 2)
        frames = np.zeros(positions.shape[:-2] + (self.image_size,) * 2, dtype=np.float32)
        for ball in range(positions.shape[-2]):
            dx2 = (centres - positions[..., ball, 0, None]) ** 2      # [..., R] over columns
            dy2 = (centres - positions[..., ball, 1, None]) ** 2      # [..., R] over rows
            q = dy2[..., :, None] + dx2[..., None, :]                # d², then in place:
            q *= inverse_r2
            np.square(q, out=q)
            np.square(q, out=q)                                       # (d²/r²)⁴
            # Terms below e^-87 (2e-38, near float32's smallest normal) are exactly 0, so a
            # frame does not depend on whether the thread flushes denormals (TF's do).
            q[q > _NEGLIGIBLE_EXPONENT] = np.inf
            np.negative(q, out=q)
            frames += np.exp(q, out=q)
        return np.minimum(frames, np.float32(1.0), out=frames)

    def pad(self, frames):
        """Frames [..., R, R] with `padding` pixels of `padding_value` on every side."""
        p = self.padding
        if p == 0:
            return np.asarray(frames, dtype=np.float32)
        width = [(0, 0)] * (np.ndim(frames) - 2) + [(p, p), (p, p)]
        return np.pad(np.asarray(frames, dtype=np.float32), width,
                      constant_values=np.float32(self.padding_value))

    def crop(self, frames, channels_last=False):
        """The unpadded R x R centre of padded frames [..., H, W] (or [..., H, W, C])."""
        inside = slice(self.padding, self.padding + self.image_size)
        return frames[(Ellipsis, inside, inside) + ((slice(None),) if channels_last else ())]

    def sequences(self, seed, indices, split="train", num_frames=None):
        """Padded frames of whole sequences `indices` of a split.

        Returns:
          float32 [N, num_frames (default L), H, W], H = W = `frame_size`.
        """
        positions, _ = self.simulate(*self.initial_states(seed, indices, split), num_frames)
        return self.pad(self.render(positions))


def _split_tag(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    return SPLITS[split]


@dataclasses.dataclass(frozen=True)
class BouncingBallsMeta:
    """What a model needs to know about a bouncing-balls dataset.

    Attributes:
      balls: the `BouncingBalls` settings.
      batch_size: B, parallel streams (the number of sequences for the test set).
      chunk_length: T, frames per element.
      seed: the seed of every sequence.
      split: "train" or "test".
      num_chunks: chunks of a finite dataset (the test set's one pass), or None.
      frame_shape: (H, W, 1) of `inputs` per time step.
    """
    balls: BouncingBalls
    batch_size: int
    chunk_length: int
    seed: int
    split: str
    num_chunks: object = None

    @property
    def frame_shape(self):
        return (self.balls.frame_size, self.balls.frame_size, 1)


class _ChunkSource:
    """Chunk i of the streams as numpy arrays (the Python side of the dataset).

    Stream b at time step t shows frame ``(t + offset_b) mod L`` of sequence
    ``sequence_of(b, (t + offset_b) div L)``. Trajectories are memoised per sequence index
    (those of the latest chunk are kept), so in-order chunks simulate every sequence once; the
    output never depends on the memo, only on the chunk index.
    """

    def __init__(self, balls, batch_size, chunk_length, seed, split, offsets, sequence_of):
        self._balls = balls
        self._chunk_length = chunk_length
        self._seed = seed
        self._split = split
        self._offsets = offsets
        self._sequence_of = sequence_of
        self._streams = np.arange(batch_size)[:, None]
        self._memo = {}
        self._lock = threading.Lock()

    def _trajectories(self, indices):
        """Positions [len(indices), L, n, 2] of sequences `indices` (unique ints)."""
        with self._lock:
            memo = dict(self._memo)
        missing = [i for i in indices if i not in memo]
        if missing:
            positions, _ = self._balls.simulate(
                *self._balls.initial_states(self._seed, missing, self._split))
            memo.update(zip(missing, positions))
        kept = {i: memo[i] for i in indices}
        with self._lock:
            self._memo = kept
        return np.stack([kept[i] for i in indices])

    def __call__(self, index):
        length = self._balls.num_frames
        steps = index * self._chunk_length + np.arange(self._chunk_length)[None, :]
        position = steps + self._offsets[:, None]                    # [B, T]
        sequence = self._sequence_of(self._streams, position // length)
        frame = position % length
        unique, where = np.unique(sequence, return_inverse=True)
        trajectories = self._trajectories(unique.tolist())           # [U, L, n, 2]
        positions = trajectories[where.reshape(sequence.shape), frame]   # [B, T, n, 2]
        inputs = self._balls.pad(self._balls.render(positions))[..., None]
        reset = ((frame == 0) | (steps == 0)).astype(np.float32)
        return inputs, reset


def _dataset(source, meta, start_chunk, stop):
    shape = (meta.batch_size, meta.chunk_length)
    signature = [tf.TensorSpec(shape + meta.frame_shape, tf.float32),
                 tf.TensorSpec(shape, tf.float32)]
    dataset = indexed_stream(source, signature, start=start_chunk, stop=stop)
    dataset = dataset.map(lambda inputs, reset: {"inputs": inputs, "reset": reset})
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_bouncing_balls_dataset(batch_size=256, chunk_length=10, seed=1234, start_chunk=0,
                                **simulation):
    """An infinite tf.data.Dataset of B streams of fresh training sequences, for `model.fit`.

    Element i (chunk i) is a dict, row b always stream b, chunk i+1 continuing chunk i:

    - `inputs` float32 [B, T, H, W, 1]: the padded frames (H = W = 34 by default).
    - `reset` float32 [B, T]: 1.0 at the first frame of a sequence (the model zeroes that
      sample's state before computing that step) and at the very first step of every stream.

    Stream b starts at frame ``b mod L`` of its first sequence; its j-th sequence is training
    sequence ``j·B + b``.

    Args:
      batch_size: B, number of parallel streams.
      chunk_length: T, frames per element.
      seed: non-negative integer; the whole stream is a function of it.
      start_chunk: first chunk produced: `start_chunk=i` gives exactly the chunks i, i+1, ...
        of the uninterrupted stream (for resuming).
      **simulation: `BouncingBalls` settings (num_balls, radius, box_size, image_size,
        num_frames, speed, substeps, padding, padding_value).

    Returns:
      `(dataset, meta)`: the dataset and a `BouncingBallsMeta`.

    Example:
      >>> ds, meta = make_bouncing_balls_dataset(batch_size=4, chunk_length=3)
      >>> batch = next(iter(ds))
      >>> batch["inputs"].shape, meta.frame_shape
      (TensorShape([4, 3, 34, 34, 1]), (34, 34, 1))
    """
    balls = BouncingBalls.from_options(simulation)
    batch_size = check_int("batch_size", batch_size, 1)
    chunk_length = check_int("chunk_length", chunk_length, 1)
    seed = check_int("seed", seed, 0)
    start_chunk = check_int("start_chunk", start_chunk, 0)
    offsets = np.arange(batch_size) % balls.num_frames
    source = _ChunkSource(balls, batch_size, chunk_length, seed, "train", offsets,
                          lambda stream, j: j * batch_size + stream)
    meta = BouncingBallsMeta(balls, batch_size, chunk_length, seed, "train")
    return _dataset(source, meta, start_chunk, None), meta


def make_bouncing_balls_test_dataset(num_sequences=200, chunk_length=10, seed=1234,
                                     start_chunk=0, num_chunks=None, num_frames=201,
                                     **simulation):
    """The fixed test set as a tf.data.Dataset: N streams, stream b plays test sequence b.

    All streams start at frame 0 together; a stream replays its sequence from the start when
    it ends (`reset` 1.0 there). Elements are dicts like those of `make_bouncing_balls_dataset`
    with B = N. The default 201 frames allow 50 priming frames then 150 self-looping
    predictions scored against true frames.

    Args:
      num_sequences: N, the number of test sequences (default 200).
      chunk_length: T, frames per element.
      seed: non-negative integer. Test sequences are drawn from seeds of their own, disjoint
        from those of the training sequences of any seed.
      start_chunk: first chunk produced (for resuming).
      num_chunks: chunks in the dataset, counted from chunk 0 (default: one pass,
        ceil(num_frames / T); when T does not divide num_frames the last chunk ends with the
        first frames of the replay). A `start_chunk` >= `num_chunks` gives an empty dataset.
      num_frames: L, frames per test sequence.
      **simulation: the other `BouncingBalls` settings.

    Returns:
      `(dataset, meta)`.
    """
    balls = BouncingBalls.from_options(dict(simulation, num_frames=num_frames))
    num_sequences = check_int("num_sequences", num_sequences, 1)
    chunk_length = check_int("chunk_length", chunk_length, 1)
    seed = check_int("seed", seed, 0)
    start_chunk = check_int("start_chunk", start_chunk, 0)
    if num_chunks is None:
        num_chunks = -(-balls.num_frames // chunk_length)
    num_chunks = check_int("num_chunks", num_chunks, 1)
    source = _ChunkSource(balls, num_sequences, chunk_length, seed, "test",
                          np.zeros(num_sequences, dtype=np.int64),
                          lambda stream, j: np.broadcast_to(stream, j.shape))
    meta = BouncingBallsMeta(balls, num_sequences, chunk_length, seed, "test", num_chunks)
    return _dataset(source, meta, start_chunk, max(num_chunks, start_chunk)), meta


def make_test_sequences(num_sequences=200, seed=1234, num_frames=201, **simulation):
    """The frames of the fixed test set as one numpy array (what the test dataset streams).

    Returns:
      float32 [N, num_frames, H, W, 1].
    """
    balls = BouncingBalls.from_options(dict(simulation, num_frames=num_frames))
    num_sequences = check_int("num_sequences", num_sequences, 1)
    return balls.sequences(seed, np.arange(num_sequences), "test")[..., None]
