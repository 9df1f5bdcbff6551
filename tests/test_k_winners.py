"""KWinners / KWinners2D: fixed small cases with hand-derived answers (nupic.torch semantics),
plus a tiny independent numpy reference for random inputs."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import pagi_rsm
from pagi_rsm.callbacks import BoostStrengthDecay, k_winners_layers
from pagi_rsm.layers import KWinners, KWinners2D
from pagi_rsm.metrics import binary_entropy, max_entropy
from pagi_rsm.ops import k_winners as kw_ops


def _np(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def _built(layer, shape):
    layer.build(shape)
    return layer


# ----------------------------------------------------------------------------------------------
# Independent numpy reference (sorting, not top-k / thresholds).

def _ref_rows(x, duty, k, bs, break_ties, relu):
    """x: [rows, n], duty: [n]. Returns the k-winners output row by row."""
    boosted = x * np.exp(-bs * duty) if bs > 0 else x.copy()
    out = np.zeros_like(x)
    for r in range(x.shape[0]):
        b = boosted[r]
        order = sorted(range(len(b)), key=lambda i: (-b[i], i))  # descending, low index first
        if k == 0:
            continue
        if break_ties:
            win = order[:k]
            if relu:
                win = [i for i in win if b[i] > 0]
        else:
            thr = b[order[k - 1]]
            if relu:
                thr = max(thr, 0.0)
            win = [i for i in range(len(b)) if b[i] >= thr]
        out[r, win] = x[r, win]
    return out


def _ref_duty(duty, iterations, out_positive_count, batch, period):
    iterations += batch
    p = min(period, iterations)
    return (duty * (p - batch) + out_positive_count) / p, iterations


# ----------------------------------------------------------------------------------------------
# Selection rule.

def test_ties_kept_by_default():
    layer = KWinners(percent_on=0.4, boost_strength=0.0)  # n=5 -> k=2
    x = np.array([[1.0, 2.0, 2.0, 3.0, 0.0]], "float32")
    # k-th (2nd) largest is 2.0; both 2.0s tie at the threshold and survive: 3 winners.
    np.testing.assert_array_equal(_np(layer(x, training=True)), [[0, 2, 2, 3, 0]])


def test_ties_broken_lowest_index_first():
    layer = KWinners(percent_on=0.4, boost_strength=0.0, break_ties=True)
    x = np.array([[1.0, 2.0, 2.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0]], "float32")
    np.testing.assert_array_equal(_np(layer(x, training=True)),
                                  [[0, 2, 0, 3, 0], [2, 2, 0, 0, 0]])


def test_boosting_changes_winners_and_output_is_unboosted():
    x = np.array([[1.0, 1.2, 3.0, 0.5]], "float32")
    plain = KWinners(percent_on=0.25, boost_strength=0.0)  # k = 1
    np.testing.assert_array_equal(_np(plain(x, training=False)), [[0, 0, 3.0, 0]])
    boosted = _built(KWinners(percent_on=0.25, k_inference_factor=1.0, boost_strength=2.0),
                     (None, 4))
    boosted.duty_cycles.assign([0.0, 0.0, 1.0, 0.0])
    # boosted values: [1, 1.2, 3 e^-2 = 0.406, 0.5] -> unit 1 wins, with its raw value 1.2.
    np.testing.assert_allclose(_np(boosted(x, training=False)), [[0, 1.2, 0, 0]])
    # A weaker boost (e^-0.2 * 3 = 2.46) does not change the winner.
    boosted.boost_strength.assign(0.2)
    np.testing.assert_allclose(_np(boosted(x, training=False)), [[0, 0, 3.0, 0]])


def test_k_inference_used_in_inference():
    layer = KWinners(percent_on=0.2, k_inference_factor=1.5, boost_strength=0.0)
    x = np.arange(10, dtype="float32")[None] + 1.0  # n=10: k=2, k_inference=int(3.0)=3
    assert (layer.k, layer.k_inference) == (None, None)
    np.testing.assert_array_equal(_np(layer(x, training=True)), [[0] * 8 + [9, 10]])
    np.testing.assert_array_equal(_np(layer(x, training=False)), [[0] * 7 + [8, 9, 10]])
    np.testing.assert_array_equal(_np(layer(x)), [[0] * 7 + [8, 9, 10]])  # training=None


def test_relu():
    neg = np.array([[-1.0, -2.0, -3.0, -4.0]], "float32")
    mixed = np.array([[0.5, -1.0, -2.0, -3.0]], "float32")
    for break_ties in (False, True):
        k1 = KWinners(percent_on=0.25, boost_strength=0.0, break_ties=break_ties)
        np.testing.assert_array_equal(_np(k1(neg, training=True)), [[-1, 0, 0, 0]])
        k1_relu = KWinners(percent_on=0.25, boost_strength=0.0, break_ties=break_ties,
                           relu=True)
        np.testing.assert_array_equal(_np(k1_relu(neg, training=True)), [[0, 0, 0, 0]])
        k2 = KWinners(percent_on=0.5, k_inference_factor=1.5, boost_strength=0.0,
                      break_ties=break_ties)
        np.testing.assert_array_equal(_np(k2(mixed, training=True)), [[0.5, -1, 0, 0]])
        k2_relu = KWinners(percent_on=0.5, k_inference_factor=1.5, boost_strength=0.0,
                           break_ties=break_ties, relu=True)
        np.testing.assert_array_equal(_np(k2_relu(mixed, training=True)), [[0.5, 0, 0, 0]])
    # relu without break_ties keeps ties at 0 (output 0 anyway) and never a negative value.
    zeros = np.array([[0.0, 0.0, -1.0, 2.0]], "float32")
    k2_relu = KWinners(percent_on=0.5, k_inference_factor=1.5, boost_strength=0.0, relu=True)
    np.testing.assert_array_equal(_np(k2_relu(zeros, training=True)), [[0, 0, 0, 2]])


def test_k_zero_gives_zeros():
    layer = KWinners(percent_on=0.1, boost_strength=0.0)  # n=4: k=round(0.4)=0, k_inf=0
    x = np.array([[1.0, 2.0, 3.0, 4.0]], "float32")
    np.testing.assert_array_equal(_np(layer(x, training=True)), np.zeros((1, 4)))
    np.testing.assert_array_equal(_np(layer(x, training=False)), np.zeros((1, 4)))
    assert layer.k == 0 and layer.k_inference == 0
    np.testing.assert_array_equal(_np(layer.duty_cycles), np.zeros(4))
    assert int(_np(layer.learning_iterations)) == 1


def test_gradient_identity_at_winners_zero_at_losers():
    layer = KWinners(percent_on=0.5, boost_strength=0.0)  # k=2
    x = tf.constant([[1.0, 5.0, 3.0, 4.0], [4.0, 4.0, 4.0, 0.0]])
    w = tf.constant([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * w)
    # Row 2: three-way tie at the threshold, all three are winners.
    np.testing.assert_array_equal(_np(tape.gradient(loss, x)), [[0, 2, 0, 4], [5, 6, 7, 0]])


def test_2d_local_vs_global():
    # [1, 2, 2, 2]: position (h, w) -> the two channel values.
    x = np.array([[[[1.0, 4.0], [6.0, 2.0]],
                   [[3.0, 5.0], [0.0, 7.0]]]], "float32")
    local = KWinners2D(percent_on=0.5, k_inference_factor=1.5, local=True, boost_strength=0.0)
    # C=2, k=1: the larger channel at every position.
    np.testing.assert_array_equal(
        _np(local(x, training=True)),
        [[[[0, 4], [6, 0]], [[0, 5], [0, 7]]]])
    glob = KWinners2D(percent_on=0.25, k_inference_factor=1.5, local=False, boost_strength=0.0)
    # n=8, k=2: the two largest of all eight values (7 and 6).
    np.testing.assert_array_equal(
        _np(glob(x, training=True)),
        [[[[0, 0], [6, 0]], [[0, 0], [0, 7]]]])
    # k_inference: round(2 * 0.75) = round(1.5) = 2; round(8 * 0.375) = 3.
    assert (local.k, local.k_inference, glob.k, glob.k_inference) == (1, 2, 2, 3)


def test_2d_boosting_is_per_channel():
    x = np.array([[[[3.0, 2.0]], [[3.0, 2.0]]]], "float32")  # [1, 2, 1, 2]
    layer = _built(KWinners2D(percent_on=0.5, k_inference_factor=1.5, local=True,
                              boost_strength=1.0), (None, 2, 1, 2))
    layer.duty_cycles.assign([1.0, 0.0])  # channel 0 boosted down: 3/e = 1.10 < 2
    # training: k = 1 (k_inference would be round(1.5) = 2, i.e. everything).
    np.testing.assert_allclose(_np(layer(x, training=True)), [[[[0, 2]], [[0, 2]]]])


@pytest.mark.parametrize("local", [True, False])
@pytest.mark.parametrize("break_ties", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_matches_numpy_reference(local, break_ties, relu):
    rng = np.random.default_rng(0)
    # Rounded values make ties frequent.
    x = np.round(rng.standard_normal((3, 3, 4, 5)), 1).astype("float32")
    duty = rng.uniform(0, 0.3, 5).astype("float32")
    layer = _built(KWinners2D(percent_on=0.3, boost_strength=1.3, local=local,
                              break_ties=break_ties, relu=relu), (None, 3, 4, 5))
    layer.duty_cycles.assign(duty)
    for training in (True, False):
        layer.duty_cycles.assign(duty)
        got = _np(layer(x, training=training))
        k = layer.k if training else layer.k_inference
        if local:
            want = _ref_rows(x.reshape(-1, 5), duty, k, 1.3, break_ties, relu).reshape(x.shape)
        else:
            want = _ref_rows(x.reshape(3, -1), np.tile(duty, 12), k, 1.3, break_ties,
                             relu).reshape(x.shape)
        np.testing.assert_allclose(got, want, rtol=0, atol=0)
    dense = _built(KWinners(percent_on=0.3, boost_strength=1.3, break_ties=break_ties,
                            relu=relu), (None, 5))
    dense.duty_cycles.assign(duty)
    rows = x.reshape(-1, 5)
    np.testing.assert_array_equal(_np(dense(rows, training=True)),
                                  _ref_rows(rows, duty, dense.k, 1.3, break_ties, relu))


@pytest.mark.parametrize("k", range(1, 8))
def test_kth_largest_nth_element_and_xla_top_k(k):
    # Eager / tf.function use NthElement; XLA uses top_k of values (k <= n - k + 1) or of -values.
    values = np.array([[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0], [0.0] * 7, [-1.0] * 6 + [2.0]],
                      "float32")
    want = -np.sort(-values, axis=-1)[:, k - 1:k]
    np.testing.assert_array_equal(_np(kw_ops.kth_largest(tf.constant(values), k)), want)
    xla = tf.function(lambda v: kw_ops.kth_largest(v, k), jit_compile=True)
    np.testing.assert_array_equal(_np(xla(tf.constant(values))), want)


# ----------------------------------------------------------------------------------------------
# k rounding.

def test_k_rounding_1d_vs_2d():
    # 1-D: k = int(round(n p)), k_inference = int(k * kif) (floor).
    one = _built(KWinners(percent_on=0.3, k_inference_factor=1.6), (None, 10))
    assert (one.k, one.k_inference) == (3, 4)  # int(4.8) = 4
    # 2-D local: k = int(round(C p)), k_inference = int(round(C p kif)).
    local = _built(KWinners2D(percent_on=0.3, k_inference_factor=1.6, local=True),
                   (None, 2, 2, 10))
    assert (local.k, local.k_inference) == (3, 5)  # round(4.8) = 5
    # 2-D global: n = H W C = 20.
    glob = _built(KWinners2D(percent_on=0.3, k_inference_factor=1.6, local=False),
                  (None, 2, 2, 5))
    assert (glob.n, glob.k, glob.k_inference) == (20, 6, 10)  # round(9.6) = 10
    # Python's round() is round-half-to-even, as in nupic.torch: 2.5 -> 2, 1.5 -> 2.
    assert _built(KWinners(percent_on=0.25), (None, 10)).k == 2
    assert _built(KWinners(percent_on=0.25), (None, 6)).k == 2
    assert _built(KWinners2D(percent_on=0.125, local=False), (None, 2, 2, 5)).k == 2
    # k_inference larger than n is clamped to n (nupic.torch would fail there).
    tiny = _built(KWinners(percent_on=0.3, k_inference_factor=3.2), (None, 2))
    assert (tiny.k, tiny.k_inference) == (1, 2)


# ----------------------------------------------------------------------------------------------
# Duty cycles.

def test_duty_cycles_running_mean_then_period_cap():
    layer = KWinners(percent_on=0.34, boost_strength=0.0, duty_cycle_period=4)  # n=3, k=1
    steps = [
        # input, expected duty (hand-derived), expected learning_iterations
        ([[3, 1, 2], [1, 3, 2]], [0.5, 0.5, 0.0], 2),  # p=2: ([1,1,0]) / 2
        ([[3, 1, 2], [3, 1, 2]], [0.75, 0.25, 0.0], 4),  # p=4: ([.5,.5,0]*2 + [2,0,0]) / 4
        ([[1, 2, 3], [1, 2, 3]], [0.375, 0.125, 0.5], 6),  # p=min(4,6)=4: ([.75,.25,0]*2+[0,0,2])/4
        ([[-1, -2, -3]], [0.28125, 0.09375, 0.375], 7),  # winner -1 is not > 0: ([..]*3 + 0) / 4
    ]
    for x, duty, iterations in steps:
        layer(np.array(x, "float32"), training=True)
        np.testing.assert_allclose(_np(layer.duty_cycles), duty, rtol=1e-6)
        assert int(_np(layer.learning_iterations)) == iterations


def test_duty_cycles_follow_reference_with_boosting():
    rng = np.random.default_rng(3)
    layer = KWinners(percent_on=0.25, boost_strength=1.0, duty_cycle_period=10)
    duty, iterations = np.zeros(8), 0
    for _ in range(6):
        x = rng.standard_normal((4, 8)).astype("float32")
        want = _ref_rows(x, duty.astype("float32"), 2, 1.0, False, False)
        got = _np(layer(x, training=True))
        np.testing.assert_allclose(got, want)
        duty, iterations = _ref_duty(duty, iterations, (want > 0).sum(0), 4, 10)
        np.testing.assert_allclose(_np(layer.duty_cycles), duty, rtol=1e-5, atol=1e-7)
    assert iterations == 24 and int(_np(layer.learning_iterations)) == 24


def test_duty_cycles_2d_per_channel():
    layer = KWinners2D(percent_on=0.5, local=True, boost_strength=0.0)  # C=2, k=1
    # [2, 1, 2, 2]; winners: s0 (ch1, ch0), s1 (ch1, ch1) -> counts [1, 3] / (H W = 2) = [.5, 1.5]
    x = np.array([[[[1.0, 2.0], [3.0, 1.0]]], [[[1.0, 2.0], [1.0, 2.0]]]], "float32")
    layer(x, training=True)
    np.testing.assert_allclose(_np(layer.duty_cycles), [0.25, 0.75])  # / period = min(1000, 2)
    assert int(_np(layer.learning_iterations)) == 2


def test_no_duty_update_in_inference():
    layer = KWinners(percent_on=0.25)
    x = np.random.default_rng(1).standard_normal((5, 8)).astype("float32")
    layer(x, training=True)
    duty, it = _np(layer.duty_cycles).copy(), int(_np(layer.learning_iterations))
    assert duty.sum() > 0
    layer(x, training=False)
    layer(x)
    tf.function(lambda v: layer(v, training=False))(x)
    np.testing.assert_array_equal(_np(layer.duty_cycles), duty)
    assert int(_np(layer.learning_iterations)) == it == 5


def test_rank3_input_equals_flattened_rank2():
    x = np.random.default_rng(2).standard_normal((2, 3, 8)).astype("float32")
    seq = KWinners(percent_on=0.25, boost_strength=1.0)
    flat = KWinners(percent_on=0.25, boost_strength=1.0)
    for _ in range(2):
        np.testing.assert_array_equal(_np(seq(x, training=True)).reshape(6, 8),
                                      _np(flat(x.reshape(6, 8), training=True)))
    np.testing.assert_array_equal(_np(seq.duty_cycles), _np(flat.duty_cycles))
    assert int(_np(seq.learning_iterations)) == 12


def test_mixed_precision_dtypes():
    layer = KWinners2D(percent_on=0.25, local=True, dtype="mixed_float16")
    x = np.random.default_rng(2).standard_normal((2, 3, 3, 8)).astype("float32")
    y = layer(x, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert layer.duty_cycles.dtype == "float32" and layer.boost_strength.dtype == "float32"
    assert _np(layer.duty_cycles).sum() > 0


# ----------------------------------------------------------------------------------------------
# Entropy.

def test_entropy_values():
    h25 = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))  # 0.8112781
    np.testing.assert_allclose(_np(binary_entropy(tf.constant([0.0, 0.5, 1.0, 0.25]))),
                               [0.0, 1.0, 0.0, h25], rtol=1e-6)
    assert max_entropy(4, 2) == pytest.approx(4.0)
    assert max_entropy(10, 1) == pytest.approx(4.689955935892812)
    assert max_entropy(10, 0) == 0.0 and max_entropy(10, 10) == 0.0
    layer = _built(KWinners(percent_on=0.25), (None, 4))
    layer.duty_cycles.assign([0.0, 0.5, 1.0, 0.25])
    assert float(layer.entropy()) == pytest.approx(1.0 + h25, rel=1e-6)
    wide = _built(KWinners(percent_on=0.25), (None, 10))
    assert wide.max_entropy() == pytest.approx(10 * -(0.2 * math.log2(0.2)
                                                      + 0.8 * math.log2(0.8)))  # int(2.5) = 2
    conv = _built(KWinners2D(percent_on=0.25, local=True), (None, 2, 3, 4))  # H W = 6
    conv.duty_cycles.assign([0.0, 0.5, 1.0, 0.25])
    assert float(conv.entropy()) == pytest.approx(6 * (1.0 + h25), rel=1e-6)
    assert conv.max_entropy() == pytest.approx(max_entropy(24, 6))


# ----------------------------------------------------------------------------------------------
# Boost strength decay.

def test_update_boost_strength():
    layer = _built(KWinners(percent_on=0.25, boost_strength=2.0, boost_strength_factor=0.5),
                   (None, 8))
    layer.update_boost_strength()
    assert float(_np(layer.boost_strength)) == pytest.approx(1.0)
    layer.update_boost_strength()
    assert float(_np(layer.boost_strength)) == pytest.approx(0.5)
    assert layer.get_config()["boost_strength"] == 2.0  # the config keeps the initial value


def test_callback_decays_every_k_winners_layer_once_per_epoch(tmp_path):
    inner = keras.Sequential([keras.layers.Dense(8),
                              KWinners(percent_on=0.25, boost_strength=1.0,
                                       boost_strength_factor=0.5)])
    inputs = keras.Input((3, 3, 2))
    h = KWinners2D(percent_on=0.25, boost_strength=2.0, boost_strength_factor=0.9)(inputs)
    outputs = inner(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    found = k_winners_layers(model)
    assert len(found) == 2
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3, 3, 2)), rng.standard_normal((8, 8))
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[BoostStrengthDecay()])
    strengths = sorted(float(_np(layer.boost_strength)) for layer in found)
    np.testing.assert_allclose(strengths, [1.0 * 0.5 ** 3, 2.0 * 0.9 ** 3], rtol=1e-6)
    # The decayed strength is a saved weight.
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(
        sorted(float(_np(layer.boost_strength)) for layer in k_winners_layers(loaded)),
        strengths, rtol=1e-6)


def test_exported_names():
    assert pagi_rsm.KWinners is KWinners and pagi_rsm.layers.KWinners2D is KWinners2D


# ----------------------------------------------------------------------------------------------
# Validation.

@pytest.mark.parametrize("kwargs, message", [
    (dict(percent_on=0.0), r"percent_on must be in \(0, 1\), got 0.0"),
    (dict(percent_on=1.0), r"percent_on must be in \(0, 1\), got 1.0"),
    (dict(percent_on=1.5), r"percent_on must be in \(0, 1\), got 1.5"),
    (dict(percent_on=0.5, k_inference_factor=2.0), r"percent_on \* k_inference_factor must be "
                                                   r"in \(0, 1\)"),
    (dict(percent_on=0.5, k_inference_factor=0.0), r"percent_on \* k_inference_factor must be "
                                                   r"in \(0, 1\)"),
    (dict(percent_on=0.1, k_inference_factor=-1.0), r"percent_on \* k_inference_factor"),
    (dict(percent_on=0.1, boost_strength=-0.1), r"boost_strength must be >= 0, got -0.1"),
    (dict(percent_on=0.1, boost_strength_factor=1.1),
     r"boost_strength_factor must be in \[0, 1\], got 1.1"),
    (dict(percent_on=0.1, boost_strength_factor=-0.1), r"boost_strength_factor must be in"),
    (dict(percent_on=0.1, duty_cycle_period=0), r"duty_cycle_period must be an integer >= 1"),
    (dict(percent_on=0.1, duty_cycle_period=2.5), r"duty_cycle_period must be an integer >= 1"),
    (dict(percent_on=0.1, break_ties="yes"), r"break_ties must be True or False"),
    (dict(percent_on=0.1, relu=1), r"relu must be True or False"),
])
@pytest.mark.parametrize("cls", [KWinners, KWinners2D])
def test_invalid_arguments(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_invalid_local_and_input_ranks():
    with pytest.raises(ValueError, match="local must be True or False"):
        KWinners2D(local="no")
    with pytest.raises(ValueError, match=r"KWinners expects inputs of rank >= 2"):
        KWinners(percent_on=0.1)(np.zeros((4,), "float32"))
    with pytest.raises(ValueError, match=r"KWinners needs a static last dimension"):
        KWinners(percent_on=0.1).build((None, None))
    with pytest.raises(ValueError, match=r"KWinners2D expects inputs of rank 4"):
        KWinners2D()(np.zeros((2, 8), "float32"))
    with pytest.raises(ValueError, match=r"KWinners2D expects inputs of rank 4"):
        KWinners2D().build((None, 2, 2, 2, 2))
    with pytest.raises(ValueError, match=r"static height and width when local=False"):
        KWinners2D(local=False).build((None, None, None, 4))
    # local=True only needs static channels; entropy() then needs H and W.
    local = _built(KWinners2D(local=True, percent_on=0.25), (None, None, None, 4))
    y = local(np.ones((1, 2, 3, 4), "float32") * np.arange(4, dtype="float32"), training=True)
    np.testing.assert_array_equal(_np(y)[0, 0, 0], [0, 0, 0, 3])
    with pytest.raises(ValueError, match="static height and width"):
        local.entropy()
    with pytest.raises(ValueError, match="build the layer"):
        KWinners(percent_on=0.1).update_boost_strength()
