"""Dense and 2-D convolution layers with a fixed random weight-sparsity mask.

Semantics follow nupic.torch ``SparseWeights`` / ``SparseWeights2d`` (docs/sparse.md):

- ``sparsity`` is the fraction of weights that are ZERO. The deprecated ``weight_sparsity`` is the
  fraction KEPT (``1 - sparsity``); it is accepted with a ``DeprecationWarning``. Passing both is a
  ``ValueError``. Passing neither gives ``sparsity=0.5`` (``DEFAULT_SPARSITY``; nupic.torch has no
  default and asserts that one of the two is given).
- The mask is drawn once, at build time, per OUTPUT unit: exactly
  ``round((1 - sparsity) * fan_in)`` of the unit's ``fan_in`` weights are kept, chosen uniformly
  without replacement (`pagi_rsm.ops.sparse_mask.fan_in_mask`). For a Dense kernel ``[in, out]``
  that is per column; for a conv kernel ``[kh, kw, in, out]`` per output channel over
  ``kh * kw * in``. The mask is a non-trainable bool weight ``kernel_mask`` (True = kept), so it
  is saved in ``.keras`` files and checkpoints and restored, not redrawn, on load. A layer with an
  integer ``seed`` always draws the same mask (and the same default initial weights).
- Default initialisation is scaled to the EFFECTIVE fan-in, as nupic.torch's
  ``normalize_sparse_weights``: kernel and bias ~ ``uniform(-1/sqrt(nnz), 1/sqrt(nnz))`` with
  ``nnz = round((1 - sparsity) * fan_in)`` the number of kept weights per output unit.

How masked weights stay EXACTLY zero (``rezero`` timing: after every optimizer step):

1. The kernel is zero at masked positions from initialisation on (any initializer's value is
   multiplied by the mask).
2. The forward pass uses ``where(kernel_mask, kernel, 0)``, so the gradient at masked
   positions is exactly 0. Optimizer slots that start at 0 (momentum, Adam's m and v) stay 0
   there, and so does the update, decoupled weight decay included (AdamW decays 0 to 0).
3. The kernel variable carries a constraint that re-applies the mask. Keras 3 optimizers
   apply ``variable.constraint`` after every update, so even an optimizer that moves weights with
   a zero gradient cannot leave a non-zero at a masked position. A user ``kernel_constraint`` is
   applied first, then the mask.

``rezero_weights()`` re-applies the mask by hand (e.g. after ``set_weights`` with dense values).
The 2019 nupic.torch code instead rezeroed inside ``forward()`` in training mode; with momentum or
Adam that lets masked weights drift between rezeroes, which cannot happen here.
"""
import math
import random as python_random
import warnings

import keras
from keras import ops

from pagi_rsm import checks
from pagi_rsm.ops.sparse_mask import effective_fan_in_bound, fan_in_mask

__all__ = ["SparseDense", "SparseConv2D", "DEFAULT_SPARSITY"]

DEFAULT_SPARSITY = 0.5
"""Fraction of zero weights used when neither `sparsity` nor `weight_sparsity` is given."""

# Offsets that derive the seeds of the default initialisers from the layer seed.
_KERNEL_SEED_OFFSET = 1
_BIAS_SEED_OFFSET = 2


def resolve_sparsity(sparsity, weight_sparsity):
    """Returns the fraction of zero weights from `sparsity` or the deprecated `weight_sparsity`.

    Args:
      sparsity: fraction of weights that are zero, in [0, 1), or None.
      weight_sparsity: deprecated fraction of weights that are kept, in (0, 1], or None.

    Returns:
      A float in [0, 1): `sparsity`, `1 - weight_sparsity`, or `DEFAULT_SPARSITY` if both are None.

    Raises:
      ValueError: both are given, or either is out of range.
    """
    if sparsity is not None and weight_sparsity is not None:
        raise ValueError(
            "pass either sparsity (fraction of weights that are zero) or the deprecated "
            "weight_sparsity (fraction kept), not both; got "
            f"sparsity={sparsity}, weight_sparsity={weight_sparsity}")
    if weight_sparsity is not None:
        if not (checks.is_number(weight_sparsity) and 0.0 < weight_sparsity <= 1.0):
            raise ValueError(f"weight_sparsity must be in (0, 1], got {weight_sparsity!r}")
        warnings.warn(
            "`weight_sparsity` (fraction of weights KEPT) is deprecated; use "
            f"`sparsity={1.0 - float(weight_sparsity)!r}` (fraction of weights that are ZERO).",
            DeprecationWarning, stacklevel=3)
        return 1.0 - float(weight_sparsity)
    if sparsity is None:
        return DEFAULT_SPARSITY
    if not (checks.is_number(sparsity) and 0.0 <= sparsity < 1.0):
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return float(sparsity)


def _get(module, argument, identifier):
    """`keras.<module>.get(identifier)` with an error that names the constructor argument."""
    try:
        obj = module.get(identifier)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{argument} could not be interpreted: {identifier!r} ({err})") from None
    if identifier is not None and obj is None:
        raise ValueError(f"{argument} could not be interpreted: {identifier!r}")
    return obj


def _pair(value, argument):
    """An int or a pair of ints, each >= 1, as a tuple of 2 ints."""
    pair = (value, value) if checks.is_int(value) else tuple(value) if isinstance(
        value, (tuple, list)) else None
    if pair is None or len(pair) != 2 or not all(checks.is_int(v) and v >= 1 for v in pair):
        raise ValueError(f"{argument} must be an int >= 1 or a pair of them, got {value!r}")
    return tuple(int(v) for v in pair)


def _apply_mask(kernel, mask):
    """`kernel` where the bool `mask` is True, exactly 0 elsewhere (gradient: masked likewise)."""
    kernel = ops.convert_to_tensor(kernel)
    return ops.where(mask, kernel, ops.zeros((), kernel.dtype))


class _SparseWeightsLayer(keras.layers.Layer):
    """Shared weight handling of SparseDense / SparseConv2D: mask, initialisation, rezeroing.

    Subclasses implement `_kernel_shape(input_shape)` (which also validates the input),
    `_bias_shape()` and `call`, and add their own constructor arguments to `get_config`.
    """

    def __init__(self, sparsity=None, weight_sparsity=None, activation=None, use_bias=True,
                 kernel_initializer=None, bias_initializer=None, kernel_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, bias_constraint=None, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.sparsity = resolve_sparsity(sparsity, weight_sparsity)
        if not isinstance(use_bias, bool):
            raise ValueError(f"use_bias must be True or False, got {use_bias!r}")
        if seed is not None and not (checks.is_int(seed) and 0 <= seed < 2 ** 32):
            raise ValueError(f"seed must be None or an int in [0, 2**32), got {seed!r}")
        self.activation = _get(keras.activations, "activation", activation)
        self.use_bias = use_bias
        self.kernel_initializer = _get(keras.initializers, "kernel_initializer",
                                       kernel_initializer)
        self.bias_initializer = _get(keras.initializers, "bias_initializer", bias_initializer)
        self.kernel_regularizer = _get(keras.regularizers, "kernel_regularizer",
                                       kernel_regularizer)
        self.bias_regularizer = _get(keras.regularizers, "bias_regularizer", bias_regularizer)
        self.kernel_constraint = _get(keras.constraints, "kernel_constraint", kernel_constraint)
        self.bias_constraint = _get(keras.constraints, "bias_constraint", bias_constraint)
        self.seed = None if seed is None else int(seed)

    # -- weights ---------------------------------------------------------------------------------

    def build(self, input_shape):
        kernel_shape = self._kernel_shape(tuple(input_shape))
        fan_in = math.prod(kernel_shape[:-1])
        bound = effective_fan_in_bound(fan_in, self.sparsity)  # ValueError if nothing is kept
        # An int mask seed makes the mask a pure function of it, so the kernel initialiser can
        # redraw the very same mask (no dependency on the mask variable's creation context).
        mask_seed = self.seed if self.seed is not None else python_random.randint(0, 2 ** 31 - 1)
        sparsity = self.sparsity

        def mask_initializer(shape, dtype=None):
            return fan_in_mask(shape, sparsity, seed=mask_seed, dtype="bool")

        base_kernel_init = self.kernel_initializer or keras.initializers.RandomUniform(
            -bound, bound, seed=self._derived_seed(_KERNEL_SEED_OFFSET))

        def kernel_initializer(shape, dtype=None):
            return _apply_mask(ops.cast(base_kernel_init(shape, dtype=dtype), dtype),
                               mask_initializer(shape))

        # A bool mask: a 4x smaller read than float32 in the forward pass and in the constraint.
        self.kernel_mask = self.add_weight(
            name="kernel_mask", shape=kernel_shape, dtype="bool", initializer=mask_initializer,
            trainable=False)
        self.kernel = self.add_weight(
            name="kernel", shape=kernel_shape, initializer=kernel_initializer,
            regularizer=self.kernel_regularizer, constraint=self._constrain_kernel)
        if self.use_bias:
            bias_init = self.bias_initializer or keras.initializers.RandomUniform(
                -bound, bound, seed=self._derived_seed(_BIAS_SEED_OFFSET))
            self.bias = self.add_weight(
                name="bias", shape=self._bias_shape(), initializer=bias_init,
                regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        else:
            self.bias = None

    def _derived_seed(self, offset):
        return None if self.seed is None else (self.seed + offset) % 2 ** 32

    def _constrain_kernel(self, kernel):
        """The kernel's constraint, applied by Keras optimizers after each update."""
        if self.kernel_constraint is not None:
            kernel = self.kernel_constraint(kernel)
        return _apply_mask(kernel, self.kernel_mask)

    def masked_kernel(self):
        """``kernel * kernel_mask`` in the compute dtype (what the forward pass uses)."""
        return _apply_mask(ops.cast(self.kernel, self.compute_dtype), self.kernel_mask)

    def rezero_weights(self):
        """Sets the masked kernel entries to exactly zero (nupic.torch `rezero_weights`)."""
        if not self.built:
            raise ValueError(f"layer {self.name} must be built before rezero_weights()")
        self.kernel.assign(_apply_mask(self.kernel, self.kernel_mask))

    def _finish(self, outputs):
        if self.use_bias:
            outputs = ops.add(outputs, ops.cast(self.bias, outputs.dtype))
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        config = super().get_config()
        config.update({
            "sparsity": self.sparsity,
            "weight_sparsity": None,  # resolved into `sparsity`
            "activation": keras.activations.serialize(self.activation)
            if self.activation is not None else None,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)
            if self.kernel_initializer is not None else None,
            "bias_initializer": keras.initializers.serialize(self.bias_initializer)
            if self.bias_initializer is not None else None,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer is not None else None,
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer)
            if self.bias_regularizer is not None else None,
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint)
            if self.kernel_constraint is not None else None,
            "bias_constraint": keras.constraints.serialize(self.bias_constraint)
            if self.bias_constraint is not None else None,
            "seed": self.seed,
        })
        return config


@keras.saving.register_keras_serializable(package="pagi_rsm")
class SparseDense(_SparseWeightsLayer):
    """Dense layer whose kernel keeps a fixed random subset of each output unit's inputs.

    Computes ``activation(inputs @ (kernel * kernel_mask) + bias)``. ``kernel_mask`` is a
    non-trainable ``[in, units]`` bool weight with exactly ``round((1 - sparsity) * in)`` True
    entries per column, drawn once at build time (see the module docstring for the full
    contract: masking mechanism, rezero timing, initialisation).

    Args:
      units: number of output units, >= 1.
      sparsity: fraction of each unit's weights that are zero, in [0, 1). Default (when
        `weight_sparsity` is also None): `DEFAULT_SPARSITY` = 0.5.
      weight_sparsity: deprecated; fraction of weights KEPT, in (0, 1] (= 1 - sparsity). Emits a
        DeprecationWarning. Giving both is a ValueError.
      activation: activation function or its name; None for linear.
      use_bias: whether to add a bias.
      kernel_initializer: initializer of the kernel, multiplied by the mask. None (default):
        uniform(-1/sqrt(nnz), 1/sqrt(nnz)) with nnz the kept weights per unit.
      bias_initializer: initializer of the bias. None (default): the same uniform as the kernel.
      kernel_regularizer, bias_regularizer: optional Keras regularizers.
      kernel_constraint: optional Keras constraint, applied before the mask after each update.
      bias_constraint: optional Keras constraint of the bias.
      seed: None or an int in [0, 2**32). An int fixes the mask and the default initial weights;
        None draws them from Python's `random` (seeded by `keras.utils.set_random_seed`).
      **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
      inputs: tensor of shape `(..., in)`, rank >= 2, `in` known at build time.

    Input shape: `(batch, ..., in)`. Output shape: `(batch, ..., units)`.

    Example:
    >>> import numpy as np
    >>> layer = SparseDense(64, sparsity=0.9, activation="relu", seed=0)
    >>> tuple(layer(np.ones((8, 100), "float32")).shape)
    (8, 64)
    >>> set(np.count_nonzero(np.asarray(layer.kernel), axis=0).tolist())  # per output unit
    {10}
    """

    def __init__(self, units, sparsity=None, weight_sparsity=None, activation=None,
                 use_bias=True, kernel_initializer=None, bias_initializer=None,
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, seed=None, **kwargs):
        if not (checks.is_int(units) and units >= 1):
            raise ValueError(f"units must be an int >= 1, got {units!r}")
        super().__init__(
            sparsity=sparsity, weight_sparsity=weight_sparsity, activation=activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint, seed=seed, **kwargs)
        self.units = int(units)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def _kernel_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                f"SparseDense {self.name} expects inputs of rank >= 2 (batch, ..., features), "
                f"got shape {input_shape}")
        if input_shape[-1] is None:
            raise ValueError(
                f"SparseDense {self.name} needs a known last input dimension, got {input_shape}")
        in_dim = int(input_shape[-1])
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: in_dim})
        return (in_dim, self.units)

    def _bias_shape(self):
        return (self.units,)

    def call(self, inputs):
        return self._finish(ops.matmul(inputs, self.masked_kernel()))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        return config


@keras.saving.register_keras_serializable(package="pagi_rsm")
class SparseConv2D(_SparseWeightsLayer):
    """2-D convolution (channels-last) whose kernel keeps a fixed random subset per filter.

    Computes ``activation(conv2d(inputs, kernel * kernel_mask) + bias)``. ``kernel_mask`` is a
    non-trainable ``[kh, kw, in, filters]`` bool weight with exactly
    ``round((1 - sparsity) * kh * kw * in)`` True entries per output channel, drawn once at build
    time (see the module docstring for the full contract: masking mechanism, rezero timing,
    initialisation; nupic.torch `SparseWeights2d`).

    Args:
      filters: number of output channels, >= 1.
      kernel_size: int or pair of ints >= 1.
      strides: int or pair of ints >= 1.
      padding: "valid" or "same" (case-insensitive).
      dilation_rate: int or pair of ints >= 1; > 1 only with strides 1.
      sparsity: fraction of each filter's weights that are zero, in [0, 1). Default (when
        `weight_sparsity` is also None): `DEFAULT_SPARSITY` = 0.5.
      weight_sparsity: deprecated; fraction of weights KEPT, in (0, 1]. Emits a
        DeprecationWarning. Giving both is a ValueError.
      activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
      bias_regularizer, kernel_constraint, bias_constraint, seed: as in `SparseDense`; the
        effective fan-in is `round((1 - sparsity) * kh * kw * in)`.
      **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
      inputs: tensor of shape `(batch, height, width, channels)`; `channels` known at build time.
        With padding "valid" the (dilated) kernel must fit in the input's known height and width.

    Input shape: `(batch, H, W, C)`. Output shape: `(batch, H', W', filters)` with
    `H' = ceil(H / sh)` for "same" and `floor((H - (kh - 1) * dh - 1) / sh) + 1` for "valid".

    Example:
    >>> import numpy as np
    >>> conv = SparseConv2D(30, 5, sparsity=0.8, activation="relu", seed=0)
    >>> tuple(conv(np.ones((2, 28, 28, 1), "float32")).shape)
    (2, 24, 24, 30)
    >>> set(np.asarray(conv.kernel_mask).reshape(-1, 30).sum(axis=0).tolist())  # 0.2 * 25
    {5}
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 sparsity=None, weight_sparsity=None, activation=None, use_bias=True,
                 kernel_initializer=None, bias_initializer=None, kernel_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, bias_constraint=None, seed=None,
                 **kwargs):
        if not (checks.is_int(filters) and filters >= 1):
            raise ValueError(f"filters must be an int >= 1, got {filters!r}")
        kernel_size = _pair(kernel_size, "kernel_size")
        strides = _pair(strides, "strides")
        dilation_rate = _pair(dilation_rate, "dilation_rate")
        if not (isinstance(padding, str) and padding.lower() in ("valid", "same")):
            raise ValueError(f'padding must be "valid" or "same", got {padding!r}')
        if max(strides) > 1 and max(dilation_rate) > 1:
            raise ValueError(
                f"strides > 1 and dilation_rate > 1 cannot be combined, got strides={strides}, "
                f"dilation_rate={dilation_rate}")
        super().__init__(
            sparsity=sparsity, weight_sparsity=weight_sparsity, activation=activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint, seed=seed, **kwargs)
        self.filters = int(filters)
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding.lower()
        self.dilation_rate = dilation_rate
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _effective_kernel_size(self):
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate))

    def _kernel_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"SparseConv2D {self.name} expects inputs of rank 4 (batch, height, width, "
                f"channels), got shape {input_shape}")
        if input_shape[-1] is None:
            raise ValueError(
                f"SparseConv2D {self.name} needs a known channel dimension, got {input_shape}")
        if self.padding == "valid":
            for axis, size, k in zip(("height", "width"), input_shape[1:3],
                                     self._effective_kernel_size()):
                if size is not None and k > size:
                    raise ValueError(
                        f"kernel_size {self.kernel_size} (dilation_rate {self.dilation_rate}) "
                        f"spans {k} > input {axis} {size} with padding 'valid'; use a smaller "
                        f"kernel_size or padding='same'")
        channels = int(input_shape[-1])
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})
        return self.kernel_size + (channels, self.filters)

    def _bias_shape(self):
        return (self.filters,)

    def call(self, inputs):
        outputs = ops.conv(inputs, self.masked_kernel(), strides=self.strides,
                           padding=self.padding, data_format="channels_last",
                           dilation_rate=self.dilation_rate)
        return self._finish(outputs)

    def compute_output_shape(self, input_shape):
        batch, *spatial, _ = tuple(input_shape)
        out = []
        for size, k, s in zip(spatial, self._effective_kernel_size(), self.strides):
            if size is None:
                out.append(None)
            elif self.padding == "same":
                out.append(-(-size // s))
            else:
                out.append((size - k) // s + 1)
        return (batch, *out, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
        })
        return config
