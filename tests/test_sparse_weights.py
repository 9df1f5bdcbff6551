"""Tests of SparseDense / SparseConv2D and the mask op (nupic.torch SparseWeights semantics).

References are computed independently in numpy: the non-zero count formula, a naive loop
convolution, x @ (W * mask) + b.
"""
import inspect
import itertools
import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from pagi_rsm.layers import SparseConv2D, SparseDense
from pagi_rsm.layers.sparse_weights import DEFAULT_SPARSITY
from pagi_rsm.ops.sparse_mask import effective_fan_in_bound, fan_in_mask, num_nonzero


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _built_dense(in_dim=20, units=7, **kwargs):
    layer = SparseDense(units, **kwargs)
    layer.build((None, in_dim))
    return layer


def _built_conv(in_shape=(None, 9, 9, 3), filters=5, kernel_size=3, **kwargs):
    layer = SparseConv2D(filters, kernel_size, **kwargs)
    layer.build(in_shape)
    return layer


def _columns(kernel):
    """Kernel [..., out] as [fan_in, out]."""
    kernel = np.asarray(kernel)
    return kernel.reshape(-1, kernel.shape[-1])


# ---------------------------------------------------------------------------------------------
# The op


@pytest.mark.parametrize("fan_in, sparsity, expected", [
    (10, 0.75, 2),   # 2.5 -> 2 (half to even, as Python's round in nupic.torch)
    (10, 0.25, 8),   # 7.5 -> 8
    (10, 0.0, 10),
    (784, 0.7, 235),  # 235.2
    (3, 0.9, 0),
])
def test_num_nonzero_hand_values(fan_in, sparsity, expected):
    assert num_nonzero(fan_in, sparsity) == expected


@pytest.mark.parametrize("shape, sparsity", [
    ((10, 6), 0.75), ((10, 6), 0.25), ((33, 4), 0.9), ((5, 5), 0.0), ((3, 3, 2, 4), 0.5),
    ((1, 1, 7, 3), 0.6),
])
def test_fan_in_mask_exact_count_per_output_unit(shape, sparsity):
    mask = _np(fan_in_mask(shape, sparsity, seed=11))
    assert mask.shape == shape
    assert set(np.unique(mask)) <= {0.0, 1.0}
    fan_in = int(np.prod(shape[:-1]))
    expected = int(round((1 - sparsity) * fan_in))
    np.testing.assert_array_equal(_columns(mask).sum(axis=0), [expected] * shape[-1])


def test_fan_in_mask_is_uniform_over_subsets():
    # fan_in 4, keep 2: the 6 possible subsets should be equally likely. 6000 units, so each
    # count is ~Binomial(6000, 1/6): mean 1000, sd ~29; a 6-sd band cannot fail by chance.
    mask = _np(fan_in_mask((4, 6000), 0.5, seed=5)).astype(int)
    counts = {}
    for column in mask.T:
        key = tuple(np.flatnonzero(column))
        counts[key] = counts.get(key, 0) + 1
    assert sorted(counts) == sorted(itertools.combinations(range(4), 2))
    for key, n in counts.items():
        assert abs(n - 1000) < 6 * 29, (key, n)
    # ... and every input index of a larger fan-in is kept with frequency keep / fan_in.
    mask = _np(fan_in_mask((50, 4000), 0.8, seed=6))
    freq = mask.mean(axis=1)
    np.testing.assert_allclose(freq, 10 / 50, atol=6 * math.sqrt(0.2 * 0.8 / 4000))


def test_fan_in_mask_seeded_is_reproducible_and_seeds_differ():
    a = _np(fan_in_mask((30, 8), 0.7, seed=1))
    b = _np(fan_in_mask((30, 8), 0.7, seed=1))
    c = _np(fan_in_mask((30, 8), 0.7, seed=2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fan_in_mask_columns_differ():
    # Each output unit draws its own subset (not one subset repeated).
    mask = _np(fan_in_mask((40, 16), 0.5, seed=3))
    assert len({tuple(col) for col in mask.T}) > 1


def test_effective_fan_in_bound():
    assert effective_fan_in_bound(100, 0.75) == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="sparsity"):
        effective_fan_in_bound(3, 0.9)


# ---------------------------------------------------------------------------------------------
# Masks of the layers


@pytest.mark.parametrize("in_dim, units, sparsity", [(20, 7, 0.5), (33, 5, 0.9), (10, 3, 0.75),
                                                     (16, 4, 0.0)])
def test_dense_exact_nonzeros_per_output_unit(in_dim, units, sparsity):
    layer = _built_dense(in_dim, units, sparsity=sparsity, seed=0)
    expected = int(round((1 - sparsity) * in_dim))
    mask = np.asarray(layer.kernel_mask)
    kernel = np.asarray(layer.kernel)
    assert mask.shape == kernel.shape == (in_dim, units)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask.sum(axis=0), [expected] * units)
    np.testing.assert_array_equal(kernel != 0, mask)  # zero exactly where masked


@pytest.mark.parametrize("kernel_size, channels, sparsity", [(3, 3, 0.5), ((2, 4), 2, 0.8),
                                                             (1, 6, 0.5)])
def test_conv_exact_nonzeros_per_output_channel(kernel_size, channels, sparsity):
    layer = _built_conv((None, 8, 8, channels), filters=6, kernel_size=kernel_size,
                        sparsity=sparsity, seed=4)
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    fan_in = kh * kw * channels
    expected = int(round((1 - sparsity) * fan_in))
    mask = np.asarray(layer.kernel_mask)
    kernel = np.asarray(layer.kernel)
    assert mask.shape == (kh, kw, channels, 6)
    np.testing.assert_array_equal(_columns(mask).sum(axis=0), [expected] * 6)
    np.testing.assert_array_equal(kernel != 0, mask)


def test_seed_reproducible_and_different_seeds_differ():
    a = _built_dense(30, 10, sparsity=0.7, seed=3)
    b = _built_dense(30, 10, sparsity=0.7, seed=3)
    c = _built_dense(30, 10, sparsity=0.7, seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(np.asarray(a.kernel_mask), np.asarray(c.kernel_mask))
    ca = _built_conv(sparsity=0.5, seed=3)
    cb = _built_conv(sparsity=0.5, seed=3)
    cc = _built_conv(sparsity=0.5, seed=9)
    np.testing.assert_array_equal(np.asarray(ca.kernel_mask), np.asarray(cb.kernel_mask))
    np.testing.assert_array_equal(np.asarray(ca.kernel), np.asarray(cb.kernel))
    assert not np.array_equal(np.asarray(ca.kernel_mask), np.asarray(cc.kernel_mask))


def test_unseeded_follows_keras_global_seed():
    keras.utils.set_random_seed(42)
    a = _built_dense(30, 10, sparsity=0.7)
    b = _built_dense(30, 10, sparsity=0.7)
    keras.utils.set_random_seed(42)
    a2 = _built_dense(30, 10, sparsity=0.7)
    assert not np.array_equal(np.asarray(a.kernel_mask), np.asarray(b.kernel_mask))
    np.testing.assert_array_equal(np.asarray(a.kernel_mask), np.asarray(a2.kernel_mask))


# ---------------------------------------------------------------------------------------------
# Forward pass against numpy references


def test_dense_forward_matches_numpy_reference(rng):
    layer = SparseDense(6, sparsity=0.6, activation="relu", seed=1)
    x = rng.standard_normal((4, 3, 15)).astype("float32")  # rank 3: applied on the last axis
    layer.build(x.shape)
    # Dense values everywhere (so a forward that ignored the mask would differ).
    w = rng.standard_normal((15, 6)).astype("float32")
    b = rng.standard_normal(6).astype("float32")
    layer.kernel.assign(w)
    layer.bias.assign(b)
    mask = np.asarray(layer.kernel_mask).astype("float32")
    expected = np.maximum(x @ (w * mask) + b, 0.0)
    np.testing.assert_allclose(_np(layer(x)), expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(expected, np.maximum(x @ w + b, 0.0))


def _np_conv2d(x, w, strides, padding, dilation):
    """Naive channels-last 2-D convolution (cross-correlation), TF padding convention."""
    batch, height, width, _ = x.shape
    kh, kw, _, cout = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if padding == "same":
        oh, ow = -(-height // sh), -(-width // sw)
        ph, pw = max((oh - 1) * sh + eh - height, 0), max((ow - 1) * sw + ew - width, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (height - eh) // sh + 1, (width - ew) // sw + 1
    out = np.zeros((batch, oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for c in range(kw):
                    patch = x[:, i * sh + a * dh, j * sw + c * dw, :]  # [batch, cin]
                    out[:, i, j, :] += patch @ w[a, c]
    return out


@pytest.mark.parametrize("kernel_size, strides, padding, dilation", [
    (3, 1, "valid", 1), ((3, 2), 2, "same", 1), (3, 1, "same", 2), (2, (1, 2), "valid", 1),
])
def test_conv_forward_matches_numpy_reference(rng, kernel_size, strides, padding, dilation):
    layer = SparseConv2D(4, kernel_size, strides=strides, padding=padding, dilation_rate=dilation,
                         sparsity=0.5, activation="tanh", seed=2)
    x = rng.standard_normal((2, 7, 8, 3)).astype("float32")
    layer.build(x.shape)
    w = rng.standard_normal(tuple(layer.kernel.shape)).astype("float32")
    b = rng.standard_normal(4).astype("float32")
    layer.kernel.assign(w)
    layer.bias.assign(b)
    mask = np.asarray(layer.kernel_mask).astype("float64")
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    expected = np.tanh(_np_conv2d(x.astype("float64"), w * mask, pair(strides), padding,
                                  pair(dilation)) + b)
    out = _np(layer(x))
    assert out.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_no_bias_and_linear_default():
    layer = _built_dense(5, 3, sparsity=0.4, use_bias=False, seed=0)
    assert layer.bias is None and len(layer.weights) == 2
    x = np.ones((2, 5), "float32")
    w = np.asarray(layer.kernel)
    np.testing.assert_allclose(_np(layer(x)), x @ w, rtol=1e-6)
    assert np.any(x @ w < 0)  # linear: negative outputs pass through


# ---------------------------------------------------------------------------------------------
# Masked weights stay exactly zero


def test_masked_gradient_is_exactly_zero(rng):
    layer = _built_dense(12, 5, sparsity=0.5, seed=0)
    x = tf.constant(rng.standard_normal((8, 12)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) * rng.standard_normal((8, 5)).astype("float32"))
    grad = tape.gradient(loss, layer.kernel.value)
    mask = np.asarray(layer.kernel_mask)
    assert np.all(_np(grad)[~mask] == 0.0)
    assert np.all(_np(grad)[mask] != 0.0)


@pytest.mark.parametrize("make_optimizer", [
    lambda: keras.optimizers.Adam(0.05),
    lambda: keras.optimizers.AdamW(0.05, weight_decay=0.1),
    lambda: keras.optimizers.SGD(0.05, momentum=0.9),
], ids=["adam", "adamw", "sgd_momentum"])
def test_masked_weights_exactly_zero_after_fit(rng, make_optimizer):
    # Targets far from the outputs give a non-zero upstream gradient at every output and input.
    layer = SparseDense(6, sparsity=0.7, seed=5)
    conv = SparseConv2D(3, 3, sparsity=0.6, padding="same", seed=6)
    inputs = keras.Input((5, 5, 4))
    h = conv(inputs)
    outputs = layer(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=make_optimizer(), loss="mse")
    before = [np.asarray(layer.kernel), np.asarray(conv.kernel)]
    x = rng.standard_normal((16, 5, 5, 4)).astype("float32")
    y = 5.0 + rng.standard_normal((16, 6)).astype("float32")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)  # 8 optimizer steps
    for lyr, start in zip((layer, conv), before):
        kernel, mask = np.asarray(lyr.kernel), np.asarray(lyr.kernel_mask)
        assert np.all(kernel[~mask] == 0.0), lyr.name
        assert np.all(kernel[mask] != start[mask]), lyr.name  # every kept weight learned


@pytest.mark.parametrize("make_optimizer", [
    lambda: keras.optimizers.Adam(0.1),
    lambda: keras.optimizers.AdamW(0.1, weight_decay=0.5),
], ids=["adam", "adamw"])
def test_constraint_rezeroes_even_with_dense_gradients(make_optimizer):
    # A gradient of ones everywhere (not from the masked forward pass) would move every weight;
    # the kernel constraint must put masked ones back to exactly zero after each step.
    layer = _built_dense(10, 4, sparsity=0.5, seed=2)
    optimizer = make_optimizer()
    start = np.asarray(layer.kernel)
    for _ in range(4):
        optimizer.apply_gradients([(tf.ones_like(layer.kernel.value), layer.kernel)])
        mask = np.asarray(layer.kernel_mask)
        assert np.all(np.asarray(layer.kernel)[~mask] == 0.0)
    assert np.all(np.asarray(layer.kernel)[mask] != start[mask])


def test_user_kernel_constraint_is_applied_before_mask():
    layer = _built_dense(10, 4, sparsity=0.5, kernel_constraint="non_neg", seed=2)
    optimizer = keras.optimizers.SGD(1.0)
    optimizer.apply_gradients([(tf.ones_like(layer.kernel.value) * 5.0, layer.kernel)])
    kernel, mask = np.asarray(layer.kernel), np.asarray(layer.kernel_mask)
    assert np.all(kernel >= 0.0) and np.all(kernel[~mask] == 0.0)


def test_rezero_weights():
    layer = _built_dense(10, 4, sparsity=0.5, seed=2)
    dense = np.arange(1, 41, dtype="float32").reshape(10, 4)
    layer.set_weights([dense if w.shape == (10, 4) and w.dtype != bool else w
                       for w in layer.get_weights()])
    layer.rezero_weights()
    mask = np.asarray(layer.kernel_mask)
    np.testing.assert_array_equal(np.asarray(layer.kernel), np.where(mask, dense, 0.0))
    with pytest.raises(ValueError, match="built"):
        SparseDense(3).rezero_weights()


# ---------------------------------------------------------------------------------------------
# Initialisation


@pytest.mark.parametrize("factory, fan_in", [
    (lambda: _built_dense(400, 300, sparsity=0.75, seed=0), 400),
    (lambda: _built_conv((None, 8, 8, 16), filters=300, kernel_size=3, sparsity=0.9, seed=0),
     144),
])
def test_default_init_uses_effective_fan_in(factory, fan_in):
    layer = factory()
    sparsity = layer.sparsity
    nnz = int(round((1 - sparsity) * fan_in))
    bound = 1.0 / math.sqrt(nnz)
    kernel = np.asarray(layer.kernel)[np.asarray(layer.kernel_mask)]
    bias = np.asarray(layer.bias)
    for values in (kernel, bias):
        assert np.all(np.abs(values) <= bound)
        assert np.abs(values).max() > 0.9 * bound  # scaled to nnz, not to the full fan-in
    # Uniform: sd = bound / sqrt(3) (30k kept weights, so the estimate is tight).
    assert kernel.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert 1.0 / math.sqrt(fan_in) < 0.6 * bound  # the full-fan-in bound would be much smaller


def test_custom_initializers_are_masked():
    layer = _built_dense(12, 5, sparsity=0.5, kernel_initializer="ones",
                         bias_initializer="zeros", seed=0)
    np.testing.assert_array_equal(np.asarray(layer.kernel),
                                  np.asarray(layer.kernel_mask).astype("float32"))
    np.testing.assert_array_equal(np.asarray(layer.bias), np.zeros(5))


# ---------------------------------------------------------------------------------------------
# Sparsity arguments


def test_default_sparsity():
    assert DEFAULT_SPARSITY == 0.5
    layer = _built_dense(20, 4, seed=0)
    assert layer.sparsity == 0.5
    np.testing.assert_array_equal(np.asarray(layer.kernel_mask).sum(axis=0), [10] * 4)


@pytest.mark.parametrize("cls, args", [(SparseDense, (4,)), (SparseConv2D, (4, 3))])
def test_weight_sparsity_is_deprecated_fraction_kept(cls, args):
    with pytest.warns(DeprecationWarning, match="weight_sparsity"):
        old = cls(*args, weight_sparsity=0.25, seed=7)
    assert old.sparsity == pytest.approx(0.75)
    config = old.get_config()
    assert config["weight_sparsity"] is None and config["sparsity"] == pytest.approx(0.75)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the clone does not warn again
        clone = cls.from_config(config)
    new = cls(*args, sparsity=0.75, seed=7)
    shape = (None, 8) if cls is SparseDense else (None, 6, 6, 2)
    for layer in (old, clone, new):
        layer.build(shape)
    np.testing.assert_array_equal(np.asarray(old.kernel_mask), np.asarray(new.kernel_mask))
    np.testing.assert_array_equal(np.asarray(old.kernel_mask), np.asarray(clone.kernel_mask))


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("kwargs, match", [
    (dict(sparsity=-0.1), r"sparsity must be in \[0, 1\)"),
    (dict(sparsity=1.0), r"sparsity must be in \[0, 1\)"),
    (dict(sparsity=1.5), r"sparsity must be in \[0, 1\), got 1.5"),
    (dict(sparsity="0.5"), "sparsity must be"),
    (dict(sparsity=float("nan")), "sparsity must be"),
    (dict(weight_sparsity=0.0), r"weight_sparsity must be in \(0, 1\]"),
    (dict(weight_sparsity=1.5), r"weight_sparsity must be in \(0, 1\]"),
    (dict(sparsity=0.5, weight_sparsity=0.5), "not both"),
    (dict(units=0), "units must be an int >= 1"),
    (dict(units=-3), "units must be an int >= 1"),
    (dict(units=2.5), "units must be an int >= 1"),
    (dict(units=True), "units must be an int >= 1"),
    (dict(use_bias="yes"), "use_bias"),
    (dict(seed=-1), "seed must be"),
    (dict(seed="1"), "seed must be"),
    (dict(activation="not_an_activation"), "activation"),
    (dict(kernel_initializer="not_an_initializer"), "kernel_initializer"),
    (dict(kernel_constraint="not_a_constraint"), "kernel_constraint"),
])
def test_dense_constructor_errors(kwargs, match):
    kwargs = dict(kwargs)
    units = kwargs.pop("units", 4)
    with pytest.raises(ValueError, match=match):
        SparseDense(units, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(filters=0), "filters must be an int >= 1"),
    (dict(kernel_size=0), "kernel_size must be"),
    (dict(kernel_size=(3,)), "kernel_size must be"),
    (dict(kernel_size=(3, 0)), "kernel_size must be"),
    (dict(strides=0), "strides must be"),
    (dict(dilation_rate=(1, -1)), "dilation_rate must be"),
    (dict(padding="full"), "padding must be"),
    (dict(strides=2, dilation_rate=2), "cannot be combined"),
    (dict(sparsity=1.0), r"sparsity must be in \[0, 1\)"),
    (dict(weight_sparsity=0.0), r"weight_sparsity must be in \(0, 1\]"),
    (dict(sparsity=0.1, weight_sparsity=0.9), "not both"),
])
def test_conv_constructor_errors(kwargs, match):
    kwargs = dict(kwargs)
    filters = kwargs.pop("filters", 4)
    kernel_size = kwargs.pop("kernel_size", 3)
    with pytest.raises(ValueError, match=match):
        SparseConv2D(filters, kernel_size, **kwargs)


def test_build_time_errors():
    with pytest.raises(ValueError, match="rank >= 2"):
        SparseDense(3).build((5,))
    with pytest.raises(ValueError, match="known last input dimension"):
        SparseDense(3).build((None, None))
    with pytest.raises(ValueError, match="rank 4"):
        SparseConv2D(3, 2).build((None, 8, 3))
    with pytest.raises(ValueError, match="rank 4"):
        SparseConv2D(3, 2).build((None, 4, 8, 8, 3))
    with pytest.raises(ValueError, match="known channel dimension"):
        SparseConv2D(3, 2).build((None, 8, 8, None))
    with pytest.raises(ValueError, match="kernel_size .* > input height 4 with padding 'valid'"):
        SparseConv2D(3, 5).build((None, 4, 8, 2))
    with pytest.raises(ValueError, match="input width 4"):
        SparseConv2D(3, 3, dilation_rate=2).build((None, 8, 4, 2))  # dilated span 5 > 4
    SparseConv2D(3, 5, padding="same").build((None, 4, 4, 2))  # fine with "same"
    SparseConv2D(3, 5).build((None, None, None, 2))  # unknown spatial size: checked at run time
    # A sparsity that keeps no weight of this fan-in.
    with pytest.raises(ValueError, match="sparsity=0.9 keeps no weight"):
        SparseDense(3, sparsity=0.9).build((None, 4))
    # Rank checked when called through the functional API too.
    with pytest.raises(ValueError):
        SparseDense(3)(keras.Input(()))


# ---------------------------------------------------------------------------------------------
# Serialisation


def test_get_config_has_every_constructor_argument():
    for cls, args in ((SparseDense, (4,)), (SparseConv2D, (4, 3))):
        layer = cls(*args, sparsity=0.3, seed=1)
        params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
        assert params <= set(layer.get_config()), cls


def test_from_config_with_seed_gives_same_mask_and_weights():
    layer = SparseConv2D(4, (3, 2), strides=(1, 2), padding="SAME", sparsity=0.6,
                         activation="relu", kernel_regularizer="l2", seed=12)
    layer.build((None, 6, 6, 3))
    config = layer.get_config()
    assert config["padding"] == "same"
    clone = SparseConv2D.from_config(config)
    assert clone.get_config() == config
    clone.build((None, 6, 6, 3))
    for a, b in zip(layer.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_round_trip_restores_mask_not_redrawn(tmp_path, rng):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    h = SparseConv2D(3, 3, sparsity=0.5)(inputs)  # seed=None: a fresh random mask
    outputs = SparseDense(4, sparsity=0.8)(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="mse")
    x = rng.standard_normal((8, 6, 6, 2)).astype("float32")
    model.fit(x, rng.standard_normal((8, 4)).astype("float32"), verbose=0)
    path = tmp_path / "sparse.keras"
    model.save(path)
    keras.utils.set_random_seed(99)  # a rebuild would now draw different masks
    loaded = keras.saving.load_model(path)
    for layer, twin in zip(model.layers[1:], loaded.layers[1:]):
        for a, b in zip(layer.weights, twin.weights):
            assert a.path == b.path
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    np.testing.assert_allclose(_np(model(x)), _np(loaded(x)), rtol=1e-6)
    # The weights file alone (checkpoint path) restores the mask as well.
    weights = tmp_path / "sparse.weights.h5"
    model.save_weights(weights)
    fresh = keras.Model.from_config(model.get_config())
    assert not np.array_equal(np.asarray(fresh.layers[-1].kernel_mask),
                              np.asarray(model.layers[-1].kernel_mask))
    fresh.load_weights(weights)
    np.testing.assert_array_equal(np.asarray(fresh.layers[-1].kernel_mask),
                                  np.asarray(model.layers[-1].kernel_mask))


def test_tf_checkpoint_restores_mask(tmp_path):
    layer = _built_dense(16, 4, sparsity=0.5)
    checkpoint = tf.train.Checkpoint(layer=layer)
    prefix = checkpoint.save(str(tmp_path / "ckpt"))
    other = _built_dense(16, 4, sparsity=0.5)
    assert not np.array_equal(np.asarray(layer.kernel_mask), np.asarray(other.kernel_mask))
    tf.train.Checkpoint(layer=other).restore(prefix).assert_consumed()
    np.testing.assert_array_equal(np.asarray(layer.kernel_mask), np.asarray(other.kernel_mask))
    np.testing.assert_array_equal(np.asarray(layer.kernel), np.asarray(other.kernel))


# ---------------------------------------------------------------------------------------------
# Mixed precision


def test_mixed_float16_forward_matches_float32(rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    layer = _built_dense(16, 8, sparsity=0.5, seed=3)
    assert layer.kernel.dtype == "float32" and layer.kernel_mask.dtype == "bool"
    x = rng.standard_normal((4, 16)).astype("float32")
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    w, mask, b = np.asarray(layer.kernel), np.asarray(layer.kernel_mask), np.asarray(layer.bias)
    np.testing.assert_allclose(_np(out).astype("float32"), x @ (w * mask) + b, atol=2e-2)


def test_mixed_float16_fit_keeps_masked_weights_zero(rng):
    # Under mixed_float16, Keras wraps the optimizer in a LossScaleOptimizer; the inner optimizer
    # must still apply the mask constraint.
    keras.mixed_precision.set_global_policy("mixed_float16")
    layer = SparseDense(5, sparsity=0.6, seed=4)
    model = keras.Sequential([keras.Input((12,)), layer])
    model.compile(optimizer=keras.optimizers.AdamW(0.05, weight_decay=0.1), loss="mse")
    start = np.asarray(layer.kernel)
    x = rng.standard_normal((16, 12)).astype("float32")
    model.fit(x, 3.0 + np.zeros((16, 5), "float32"), batch_size=8, epochs=2, verbose=0)
    kernel, mask = np.asarray(layer.kernel), np.asarray(layer.kernel_mask)
    assert np.all(kernel[~mask] == 0.0)
    assert np.all(kernel[mask] != start[mask])
