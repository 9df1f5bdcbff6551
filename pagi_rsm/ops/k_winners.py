"""k-winners-take-all: stateless maths (boosting, winner selection, duty-cycle update).

These are the pure functions behind `pagi_rsm.layers.KWinners` and `KWinners2D`, with the
semantics of nupic.torch (`functions/k_winners.py`, `modules/k_winners.py`; docs/sparse.md):

* Winners are ranked on the *boosted* input ``x * exp(-boost_strength * duty_cycle)``
  (boosting favours units that were rarely active); the output keeps the *unboosted* ``x`` at
  the winners and 0 elsewhere, so the gradient is the identity at winners and 0 at losers.
* ``break_ties=False``: the threshold is the k-th largest boosted value of each sample and every
  unit at or above it wins, so ties at the threshold all survive (more than k winners possible).
  ``break_ties=True``: exactly k winners; among units tied at the threshold the lowest indices
  win (the order `tf.math.top_k` uses).
* ``relu=True`` mimics a ReLU before the k-WTA: with ``break_ties=False`` the threshold is
  clamped to >= 0; with ``break_ties=True`` units whose boosted value is <= 0 are also turned off.
* ``k == 0`` gives all zeros.

Everything is vectorised (one selection op per call for the threshold, no sort, no Python loops
over data, no host syncs) and compiles under XLA.
"""
import tensorflow as tf


def boost(x, duty_cycles, boost_strength):
    """Boosted activity ``x * exp(-boost_strength * duty_cycles)`` used to rank the units.

    Args:
      x: float tensor `[..., n]` (any float dtype).
      duty_cycles: float tensor broadcastable to `x` (e.g. `[n]`), usually float32.
      boost_strength: non-negative scalar (Python float or tensor). 0 leaves `x` unchanged
        (``exp(0) == 1``), which is the same ranking as skipping boosting.

    Returns:
      Tensor of `x`'s shape and dtype. The factor is computed in float32 and then cast to
      `x.dtype`, so duty cycles keep full precision under mixed precision.
    """
    x = tf.convert_to_tensor(x)
    factor = tf.exp(-tf.cast(boost_strength, tf.float32) * tf.cast(duty_cycles, tf.float32))
    return x * tf.cast(factor, x.dtype)


def _in_xla_context():
    """True while tracing a function that XLA will compile (`jit_compile=True`)."""
    if tf.executing_eagerly():
        return False
    # TF's own ops use this to pick XLA-compatible kernels; there is no public equivalent.
    from tensorflow.python.ops import control_flow_util  # pylint: disable=import-outside-toplevel
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def kth_largest(values, k):
    """The k-th largest entry along the last axis (keepdims), counting repeats, ``1 <= k <= n``.

    Outside XLA this is one `NthElement` op (selection in linear time per row, faster than
    `tf.math.top_k` on a CPU: docs/sparse.md#performance-notes). XLA has no `NthElement`
    kernel, so inside `jit_compile=True` functions it is `tf.math.top_k` (unsorted) on whichever
    side is shorter: the min of the k largest, or minus the min of the ``n - k + 1`` largest of
    ``-values``. Both give exactly the same value.

    Args:
      values: real tensor `[..., n]` with a static last dimension.
      k: Python int in `[1, n]`.

    Returns:
      Tensor `[..., 1]`.
    """
    n = values.shape[-1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    if not _in_xla_context():
        return tf.raw_ops.NthElement(input=values, n=k - 1, reverse=True)[..., None]
    if k <= n - k + 1:
        top = tf.math.top_k(values, k=k, sorted=False).values
        return tf.reduce_min(top, axis=-1, keepdims=True)
    top = tf.math.top_k(-values, k=n - k + 1, sorted=False).values
    return -tf.reduce_min(top, axis=-1, keepdims=True)


def k_winners_mask(boosted, k, break_ties=False, relu=False):
    """Boolean mask of the winners along the last axis.

    Args:
      boosted: float tensor `[..., n]` (the ranking values, usually `boost(x, ...)`), static n.
      k: Python int, number of winners per row (`0 <= k`; values above n are clamped to n).
      break_ties: exactly k winners (lowest indices win among ties at the threshold) instead
        of keeping every unit tied at the k-th value.
      relu: turn off units below 0 (``break_ties=False``: threshold clamped to >= 0;
        ``break_ties=True``: units with boosted value <= 0 are off).

    Returns:
      bool tensor of `boosted`'s shape.
    """
    n = boosted.shape[-1]
    if n is None:
        raise ValueError("the last axis of `boosted` must have a static size")
    k = min(int(k), n)
    if k <= 0:
        return tf.zeros_like(boosted, dtype=tf.bool)
    threshold = kth_largest(boosted, k)
    if not break_ties:
        if relu:
            threshold = tf.maximum(threshold, tf.zeros_like(threshold))
        return boosted >= threshold
    above = boosted > threshold
    tied = boosted == threshold
    # Units tied at the threshold fill the slots left after the strictly larger ones, in index
    # order: the i-th tied unit (1-based) wins iff i <= k - #above.
    free = k - tf.reduce_sum(tf.cast(above, tf.int32), axis=-1, keepdims=True)
    tie_rank = tf.cumsum(tf.cast(tied, tf.int32), axis=-1)
    mask = above | (tied & (tie_rank <= free))
    if relu:
        mask &= boosted > tf.zeros((), boosted.dtype)
    return mask


def k_winners(x, duty_cycles, k, boost_strength, break_ties=False, relu=False):
    """k-winners-take-all along the last axis of `x` (nupic.torch `kwinners`).

    Args:
      x: float tensor `[..., n]`; each row (all leading axes) is ranked independently.
      duty_cycles: tensor broadcastable to `x`, usually `[n]` float32.
      k: Python int, winners per row (0 gives zeros; clamped to n).
      boost_strength: scalar >= 0 (0 means no boosting).
      break_ties: see `k_winners_mask`.
      relu: see `k_winners_mask`.

    Returns:
      Tensor like `x`: `x` at the winners, 0 elsewhere. Gradient: identity at winners, 0 at
      losers (the ranking is computed on `stop_gradient(x)`).

    Example:
      >>> x = tf.constant([[1.0, 3.0, 2.0, 3.0]])
      >>> k_winners(x, tf.zeros([4]), k=1, boost_strength=0.0).numpy()
      array([[0., 3., 0., 3.]], dtype=float32)
    """
    x = tf.convert_to_tensor(x)
    boosted = boost(tf.stop_gradient(x), duty_cycles, boost_strength)
    mask = k_winners_mask(boosted, k, break_ties=break_ties, relu=relu)
    return tf.where(mask, x, tf.zeros((), x.dtype))


def k_winners2d(x, duty_cycles, k, boost_strength, local=False, break_ties=False, relu=False):
    """k-winners-take-all on channels-last feature maps (nupic.torch `kwinners2d`).

    Args:
      x: float tensor `[batch, height, width, channels]` (static H, W, C when `local=False`).
      duty_cycles: per-channel duty cycles `[channels]`.
      k: Python int. `local=True`: winners among the channels at each (h, w);
        `local=False`: winners among all H*W*C units of each sample.
      boost_strength: scalar >= 0.
      local: see `k`.
      break_ties: see `k_winners_mask`.
      relu: see `k_winners_mask`.

    Returns:
      Tensor like `x` (`x` at winners, 0 elsewhere).
    """
    x = tf.convert_to_tensor(x)
    if local:
        return k_winners(x, duty_cycles, k, boost_strength, break_ties=break_ties, relu=relu)
    _, h, w, c = x.shape
    # Flatten (h, w, c) in row-major order so tie order follows (h, w, c) index order.
    flat = tf.reshape(x, [-1, h * w * c])
    flat_duty = tf.reshape(tf.broadcast_to(tf.cast(duty_cycles, tf.float32), [h, w, c]), [-1])
    out = k_winners(flat, flat_duty, k, boost_strength, break_ties=break_ties, relu=relu)
    return tf.reshape(out, tf.shape(x))


def update_duty_cycles(duty_cycles, learning_iterations, active_count, batch_size, period):
    """One duty-cycle update (nupic.torch `update_duty_cycle`).

    ``learning_iterations += batch_size``; ``p = min(period, learning_iterations)``;
    ``duty = (duty * (p - batch_size) + active_count) / p``. Early in training this is the exact
    running mean of activity; after `period` samples it is an exponential-style moving average.

    Args:
      duty_cycles: float32 tensor, e.g. `[n]`.
      learning_iterations: int64 scalar, samples seen so far.
      active_count: float32 tensor like `duty_cycles`: per unit, the number of samples in this
        batch with output > 0 (2-D: summed over batch, H, W and divided by H*W).
      batch_size: scalar, samples in this batch (global batch under distribution).
      period: Python int >= 1, `duty_cycle_period`.

    Returns:
      `(new_duty_cycles, new_learning_iterations)`.
    """
    new_iterations = learning_iterations + tf.cast(batch_size, learning_iterations.dtype)
    p = tf.cast(tf.minimum(new_iterations, tf.cast(period, new_iterations.dtype)), tf.float32)
    p = tf.maximum(p, 1.0)  # only matters for an empty first batch: keeps duty finite (no 0/0)
    b = tf.cast(batch_size, tf.float32)
    new_duty = (duty_cycles * (p - b) + tf.cast(active_count, tf.float32)) / p
    return new_duty, new_iterations
