"""Layer normalisation of each sample over its feature axis (stateless maths).

Ba, Kiros & Hinton (2016): ``LN(z) = gain * (z - mean(z)) / sqrt(var(z) + epsilon) + bias``, with
the mean and the (biased) variance taken over the features of ONE sample. Statistics are never
taken over the batch axis: peer fast-weights ports had exactly that bug (reference/peers.md §2.4),
which makes examples of a minibatch leak into each other.

Used by `pagi_rsm.layers.FastWeightsCell` and `pagi_rsm.layers.LayerNormGRUCell`.
"""
from keras import ops


def layer_norm(x, gain=None, bias=None, epsilon=1e-5):
    """Normalises `x` over its last axis, sample by sample, then applies `gain` and `bias`.

    The statistics are computed in float32 whatever the dtype of `x` (as
    `keras.layers.LayerNormalization` does), so a float16 input under mixed precision does not
    lose the variance to rounding; the result is cast back to the dtype of `x`.

    Args:
      x: float tensor `[..., features]`.
      gain: optional tensor `[features]` (the learned scale, "g" in the paper), or None for 1.
      bias: optional tensor `[features]` (the learned shift, "b"), or None for 0.
      epsilon: positive float added to the variance.

    Returns:
      Tensor of the shape and dtype of `x`.

    Example:
      >>> import numpy as np
      >>> y = layer_norm(np.array([[1.0, 2.0, 3.0]], "float32"))
      >>> np.round(np.asarray(y, "float64"), 3).tolist()
      [[-1.225, 0.0, 1.225]]
    """
    x = ops.convert_to_tensor(x)
    dtype = x.dtype
    x32 = ops.cast(x, "float32")
    mean = ops.mean(x32, axis=-1, keepdims=True)
    variance = ops.mean(ops.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * ops.rsqrt(variance + epsilon)
    if gain is not None:
        y = y * ops.cast(gain, "float32")
    if bias is not None:
        y = y + ops.cast(bias, "float32")
    return ops.cast(y, dtype)
