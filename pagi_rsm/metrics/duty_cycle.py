"""Entropy of duty cycles: how evenly a sparse layer spreads its activity over its units.

A unit active a fraction d of the time is a Bernoulli(d) variable with entropy
``H(d) = -d log2 d - (1 - d) log2 (1 - d)`` bits (0 at d = 0 or 1). The total over units is largest
when every one of n units is active k/n of the time: ``max_entropy(n, k) = n * H(k / n)``.
(nupic.torch `duty_cycle_metrics.binary_entropy` / `max_entropy`.)
"""
import math

import tensorflow as tf


def binary_entropy(duty_cycles):
    """Per-unit binary entropy, in bits, of activity probabilities.

    Args:
      duty_cycles: float tensor (any shape) of probabilities in [0, 1].

    Returns:
      float32 tensor of the same shape, ``-d log2 d - (1-d) log2 (1-d)``, exactly 0 where d is 0
      or 1. Sum it for the layer total (`KWinners.entropy()` does).

    Example:
      >>> binary_entropy(tf.constant([0.0, 0.5, 1.0])).numpy()
      array([0., 1., 0.], dtype=float32)
    """
    d = tf.cast(duty_cycles, tf.float32)
    inside = (d > 0.0) & (d < 1.0)
    safe = tf.where(inside, d, 0.5 * tf.ones_like(d))  # keeps log finite (and its gradient)
    h = -(safe * tf.math.log(safe) + (1.0 - safe) * tf.math.log(1.0 - safe)) / math.log(2.0)
    return tf.where(inside, h, tf.zeros_like(h))


def max_entropy(n, k):
    """The largest total entropy (bits) of n units of which k are active on average.

    Args:
      n: number of units (int >= 1).
      k: number of active units (int); 0 or >= n gives 0.

    Returns:
      Python float ``n * H(k / n)``.

    Example:
      >>> max_entropy(4, 2)
      4.0
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    s = float(k) / n
    if not 0.0 < s < 1.0:
        return 0.0
    return n * (-s * math.log2(s) - (1.0 - s) * math.log2(1.0 - s))
