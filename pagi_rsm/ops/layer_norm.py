"""Layer normalisation of each sample over its feature axis (stateless maths).

Ba, Kiros & Hinton (2016): ``LN(z) = gain * (z - mean(z)) / sqrt(var(z) + epsilon) + bias``, with
the mean and the (biased) variance taken over the features of ONE sample. Statistics are never
taken over the batch axis: public fast-weights ports had exactly that bug, which makes examples of
a minibatch leak into each other (docs/fast_weights.md#layer-norm).

Used by `pagi_rsm.layers.FastWeightsCell` and `pagi_rsm.layers.LayerNormGRUCell`.
"""
from keras import ops


def standardize(x, epsilon=1e-5):
    """``((x - mean) / sqrt(var + epsilon), 1 / sqrt(var + epsilon))`` over the last axis.

    The core of `layer_norm`, in the dtype of `x`; the inverse deviation is returned for
    hand-written gradients (`pagi_rsm.ops.fast_weights.attend_and_normalise`).
    """
    mean = ops.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    inverse = ops.rsqrt(ops.mean(ops.square(centred), axis=-1, keepdims=True) + epsilon)
    return centred * inverse, inverse


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
    y, _ = standardize(ops.cast(x, "float32"), epsilon)
    if gain is not None:
        y = y * ops.cast(gain, "float32")
    if bias is not None:
        y = y + ops.cast(bias, "float32")
    return ops.cast(y, dtype)
