"""Stateless maths of Recurrent Sparse Memory (docs/rsm.md), shared by `RSMCell`.

All functions take and return tensors of the compute dtype; none holds state.
"""
import tensorflow as tf


def sum_normalize(z, eps, absolute=False):
    """Per-sample sum normalisation N(z) = z / (sum(z) + eps), docs/rsm.md#traces-and-norms.

    The sum is over every non-batch axis (all positions and channels) and is signed, as in
    the original (docs/rsm.md#quirks item 3: tanh outputs can be negative).
    With `absolute=True` the divisor is the sum of |z| (the L1 norm): identical for
    non-negative z, and bounded (|N(z)| ≤ 1) when tanh outputs of opposite signs cancel.
    The division runs in float32 at least: eps (1e-11 by default) underflows in float16.
    """
    axes = list(range(1, len(z.shape)))
    wide = tf.float64 if z.dtype == tf.float64 else tf.float32
    z32 = tf.cast(z, wide)
    total = tf.reduce_sum(tf.abs(z32) if absolute else z32, axis=axes, keepdims=True)
    return tf.cast(z32 / (total + eps), z.dtype)


def clear_rows(tensors, reset):
    """Zeroes the samples whose `reset` flag is 1 (a new sequence) in each `[B, n]` tensor.

    Args:
      tensors: list of `[B, n]` tensors.
      reset: `[B]` or `[B, 1]` flags, 1 = clear that sample.

    Returns:
      The list of cleared tensors, in the dtype of the first one.
    """
    keep = 1.0 - tf.reshape(tf.cast(reset, tensors[0].dtype), (-1, 1))
    return [t * keep for t in tensors]


def decay_trace(trace, decay, floor):
    """The decayed trace `decay * trace`, zeroed where it falls to `floor` or below if floor > 0."""
    decayed = tf.cast(decay, trace.dtype) * trace
    if floor > 0:
        decayed = decayed * tf.cast(decayed > tf.cast(floor, trace.dtype), trace.dtype)
    return decayed


def condition_input(u, trace, *, decay, floor, norm, norm_eps, norm_first):
    """Trace → norm of one "dendrite input", without the dropout (docs/rsm.md#traces-and-norms).

    Args:
      u: the raw input of this step, [B, ...].
      trace: the previous trace ψ_{t−1} (ignored when `decay == 0`).
      decay: ε; 0 disables the trace.
      floor: φ, zero the decayed trace at or below this value.
      norm: "sum" (signed sum, the original), "abs_sum" (sum of |u|) or None.
      norm_eps: η of the sum normalisation.
      norm_first: False (default of the original): ψ = N(max(decay(ψ), u));
        True: ψ = max(decay(ψ), N(u)).

    Returns:
      (ψ_t, new_trace): the conditioned input and the trace to store (ψ_t itself when
      decay > 0, else None).
    """
    if norm in ("sum", "abs_sum"):
        def normalize(z):
            return sum_normalize(z, norm_eps, absolute=norm == "abs_sum")
    else:
        def normalize(z):
            return z
    if decay <= 0:
        return normalize(u), None
    decayed = decay_trace(trace, decay, floor)
    psi = tf.maximum(decayed, normalize(u)) if norm_first else normalize(tf.maximum(decayed, u))
    return psi, psi


def inhibition_ranking(z, refractory):
    """Ranking score ρ = (Z − min Z + 1)·refractory, min over the whole sample.

    `refractory` is (1 − I_{t−1}), possibly after dropout (docs/rsm.md#selection).
    """
    axes = list(range(1, len(z.shape)))
    shifted = z - tf.reduce_min(z, axis=axes, keepdims=True) + tf.cast(1, z.dtype)
    return shifted * refractory


def top_k_mask(scores, k):
    """Binary mask of exactly the `k` largest entries of the last axis (ties → lower index)."""
    _, indices = tf.math.top_k(scores, k=k, sorted=False)
    return tf.reduce_sum(tf.one_hot(indices, tf.shape(scores)[-1], dtype=scores.dtype), axis=-2)


def group_cell_mask(rho, k):
    """Top-k groups, then the best cell in each kept group (docs/rsm.md#selection).

    Args:
      rho: ranking scores [B, g, c].
      k: number of active groups.

    Returns:
      Binary mask [B, g, c] with exactly k ones per sample (one cell in each of k groups).

    The best cell is `argmax` over the cells of the group, so exact ties go to the lower cell
    index. This contains the original's "all cells equal → cell 0" rule; it differs from the
    original only under partial exact float ties (measure zero), where the original could keep
    several cells of one group and this keeps one, so exactly k cells are always active
    (docs/rsm.md#quirks item 6).
    """
    group_scores = tf.reduce_max(rho, axis=-1)
    group_mask = top_k_mask(group_scores, k)
    best_cell = tf.one_hot(tf.argmax(rho, axis=-1), tf.shape(rho)[-1], dtype=rho.dtype)
    return best_cell * group_mask[..., None]


def boost_from_duty_cycle(duty_cycle, target, boost_strength):
    """Boost per cell exp((target − duty_cycle)·boost_strength) (docs/rsm.md#boosting)."""
    return tf.exp((target - duty_cycle) * boost_strength)
