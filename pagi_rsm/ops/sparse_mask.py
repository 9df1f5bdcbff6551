"""Random fixed-fan-in weight masks (nupic.torch `SparseWeights` semantics), as pure functions.

A weight-sparsity mask keeps, for every OUTPUT unit, exactly
``num_nonzero(fan_in, sparsity) = round((1 - sparsity) * fan_in)`` of its ``fan_in`` incoming
weights, chosen uniformly at random without replacement, and zeroes the rest. Kernels follow the
Keras layout: the last axis indexes output units and every other axis is fan-in, so a Dense kernel
``[in, out]`` gets a fixed number of non-zeros per column and a Conv2D kernel
``[kh, kw, in, out]`` a fixed number per output channel over ``kh * kw * in``.

These functions hold no state: the same ``seed`` always gives the same mask.
"""
import math

import keras
from keras import ops

__all__ = ["num_nonzero", "effective_fan_in_bound", "fan_in_mask"]


def num_nonzero(fan_in, sparsity):
    """Number of non-zero weights kept per output unit: ``round((1 - sparsity) * fan_in)``.

    Python's ``round`` (half to even) is used, as nupic.torch does.

    Args:
      fan_in: number of inputs of one output unit (>= 1).
      sparsity: fraction of weights that are zero, in [0, 1).

    Returns:
      An int in [0, fan_in].

    Example:
    >>> num_nonzero(10, 0.75)  # 2.5 rounds to 2
    2
    """
    fan_in = int(fan_in)
    if fan_in < 1:
        raise ValueError(f"fan_in must be >= 1, got {fan_in}")
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return int(round((1.0 - float(sparsity)) * fan_in))


def effective_fan_in_bound(fan_in, sparsity):
    """Bound ``1 / sqrt(nnz)`` of the uniform initialisation scaled to the effective fan-in.

    nupic.torch's ``normalize_sparse_weights`` draws weights and biases from
    ``uniform(-1/sqrt(fan), 1/sqrt(fan))`` with ``fan = fan_in * (1 - sparsity)``; here ``fan`` is
    the exact number of non-zero weights per output unit, ``num_nonzero(fan_in, sparsity)``
    (nupic.torch truncates ``fan_in * (1 - sparsity)`` instead; the two differ by at most one).

    Args:
      fan_in: number of inputs of one output unit.
      sparsity: fraction of weights that are zero, in [0, 1).

    Returns:
      A positive float.
    """
    nnz = num_nonzero(fan_in, sparsity)
    if nnz < 1:
        raise ValueError(
            f"sparsity={sparsity} keeps no weight of a fan-in of {fan_in} "
            f"(round((1 - sparsity) * fan_in) = 0); lower sparsity or enlarge the input")
    return 1.0 / math.sqrt(nnz)


def fan_in_mask(shape, sparsity, seed, dtype="float32"):
    """Draws a 0/1 mask with a fixed number of ones per output unit (the last axis).

    For each of the ``shape[-1]`` output units, ``num_nonzero(prod(shape[:-1]), sparsity)``
    positions among its ``prod(shape[:-1])`` inputs are set to 1, chosen uniformly at random without
    replacement (the ranks of i.i.d. float64 uniforms); all other positions are 0.

    Args:
      shape: kernel shape, at least 2 axes; the last axis indexes output units.
      sparsity: fraction of zeros per output unit, in [0, 1).
      seed: int or `keras.random.SeedGenerator`; an int gives the same mask on every call.
      dtype: dtype of the returned mask.

    Returns:
      A tensor of `shape` and `dtype` holding 0 and 1.

    Example:
    >>> m = fan_in_mask((6, 3), sparsity=0.5, seed=1)
    >>> [int(c) for c in keras.ops.convert_to_numpy(keras.ops.sum(m, axis=0))]
    [3, 3, 3]
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        raise ValueError(f"shape must have at least 2 axes (fan-in..., units), got {shape}")
    units = shape[-1]
    fan_in = math.prod(shape[:-1])
    keep = num_nonzero(fan_in, sparsity)
    # Row u holds the inputs of output unit u; the rank of each input among i.i.d. uniforms is a
    # uniformly random permutation, so "rank < keep" is a uniform subset of exactly `keep` inputs.
    noise = keras.random.uniform((units, fan_in), dtype="float64", seed=seed)
    ranks = ops.argsort(ops.argsort(noise, axis=-1), axis=-1)
    mask = ops.cast(ops.less(ranks, keep), dtype)
    return ops.reshape(ops.transpose(mask), shape)
