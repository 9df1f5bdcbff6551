"""FastWeightsCell against an independent numpy reference of Ba et al.'s recurrence.

Conformance (XLA, .keras, MirroredStrategy, mixed precision, retracing) is checked by
tests/conformance; here: the maths, the two implementations, per-sample isolation, validation.
"""
import keras
import numpy as np
import pytest

from pagi_rsm.layers import FastWeightsCell, FastWeightsRNNLN
from pagi_rsm.ops.fast_weights import (apply_fast_weights, attend_and_normalise, attend_history,
                                       slot_weights, update_fast_weights, write_history)
from pagi_rsm.ops.layer_norm import layer_norm

EPS = 1e-5


def _ln(z, gain, bias):
    mu = z.mean()
    sd = np.sqrt(((z - mu) ** 2).mean() + EPS)
    return gain * (z - mu) / sd + bias


def numpy_reference(x, kernel, recurrent, bias, gain, ln_bias, decay, eta, inner_steps,
                    use_ln=True, preliminary_ln=False):
    """The paper's equations, one sample at a time, float64, explicit A.

    A(t) = decay A(t-1) + eta h(t) h(t)^T; z = W h(t) + C x(t) + b (Keras kernels are [in, out],
    so W h is ``h @ recurrent``); h_0 = relu(z) (relu(LN(z)) with `preliminary_ln`);
    h_{s+1} = relu(LN(z + A(t) h_s)). Returns outputs [B, T, H] and the final A(T-1) [B, H, H].
    """
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    norm = (lambda v: _ln(v, gain, ln_bias)) if use_ln else (lambda v: v)
    batch, steps, _ = x.shape
    units = recurrent.shape[0]
    outputs = np.zeros((batch, steps, units))
    final_a = np.zeros((batch, units, units))
    for n in range(batch):
        h = np.zeros(units)
        a = np.zeros((units, units))
        for t in range(steps):
            a = decay * a + eta * np.outer(h, h)
            z = h @ recurrent + x[n, t] @ kernel + bias
            hs = relu(norm(z)) if preliminary_ln else relu(z)
            for _ in range(inner_steps):
                hs = relu(norm(z + a @ hs))
            h = hs
            outputs[n, t] = h
        final_a[n] = a
    return outputs, final_a


def _random_weights(cell, rng):
    """Non-trivial slow weights (incl. layer-norm gain/bias) so every term matters."""
    values = []
    for w in cell.weights:
        shape = tuple(w.shape)
        if w.name == "ln_gain":
            values.append(rng.uniform(0.5, 1.5, shape))
        elif w.name == "recurrent_kernel":
            values.append(rng.standard_normal(shape) * 0.3)
        else:
            values.append(rng.standard_normal(shape) * 0.5)
    cell.set_weights([v.astype("float32") for v in values])
    return {w.name: np.asarray(w, "float64") for w in cell.weights}


def _run(cell, x, rng=None, weights=None):
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    rnn.build(x.shape)
    if weights is not None:
        cell.set_weights(weights)
    named = _random_weights(cell, rng) if rng is not None else None
    out, *states = rnn(x)
    return np.asarray(out, "float64"), [np.asarray(s, "float64") for s in states], named


def _chronological(states, units):
    """The attention form's ring buffer (states[1]) in time order, oldest first, `[B, L, H]`.

    states[2] is the slot the next hidden state goes into, i.e. the oldest one."""
    ring = states[1].reshape(len(states[1]), -1, units)
    length = ring.shape[1]
    order = (states[2].astype(int) + np.arange(length)[None, :]) % length
    return np.take_along_axis(ring, order[:, :, None], axis=1)


@pytest.mark.parametrize("implementation", ["explicit", "attention"])
@pytest.mark.parametrize("inner_steps,decay,eta,preliminary_ln", [
    (1, 0.95, 0.5, False), (3, 0.7, 1.3, False), (2, 0.0, 0.5, False), (1, 1.0, 0.2, False),
    (1, 0.95, 0.5, True), (2, 0.9, 0.8, True)])
def test_matches_numpy_reference(implementation, inner_steps, decay, eta, preliminary_ln, rng):
    batch, steps, features, units = 3, 6, 4, 5
    x = rng.standard_normal((batch, steps, features)).astype("float32")
    cell = FastWeightsCell(units, decay=decay, fast_learning_rate=eta, inner_steps=inner_steps,
                           implementation=implementation, max_length=steps,
                           preliminary_layer_norm=preliminary_ln)
    out, states, w = _run(cell, x, rng)
    expected, final_a = numpy_reference(x.astype("float64"), w["kernel"], w["recurrent_kernel"],
                                        w["bias"], w["ln_gain"], w["ln_bias"], decay, eta,
                                        inner_steps, preliminary_ln=preliminary_ln)
    np.testing.assert_allclose(out, expected, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(states[0], expected[:, -1], atol=2e-4, rtol=1e-4)
    if implementation == "explicit":
        memory = states[1].reshape(batch, units, units)
    else:  # rebuild A(T-1) from the history of h(0..T-1) and its weights
        history = _chronological(states, units)  # h(0) .. h(T-1)
        coef = eta * decay ** np.arange(steps - 1, -1, -1)
        memory = np.einsum("l,bli,blj->bij", coef, history, history)
    np.testing.assert_allclose(memory, final_a, atol=5e-4, rtol=1e-4)
    # The reference is sensitive to the fast weights: without them the outputs differ.
    if eta > 0:
        no_fw, _ = numpy_reference(x.astype("float64"), w["kernel"], w["recurrent_kernel"],
                                   w["bias"], w["ln_gain"], w["ln_bias"], decay, 0.0, inner_steps,
                                   preliminary_ln=preliminary_ln)
        assert np.abs(no_fw - expected).max() > 1e-2
        # ... and the two readings of the preliminary vector differ.
        other, _ = numpy_reference(x.astype("float64"), w["kernel"], w["recurrent_kernel"],
                                   w["bias"], w["ln_gain"], w["ln_bias"], decay, eta, inner_steps,
                                   preliminary_ln=not preliminary_ln)
        assert np.abs(other - expected).max() > 1e-3


def test_zero_fast_learning_rate_is_rnn_ln(rng):
    x = rng.standard_normal((2, 5, 3)).astype("float32")
    cell = FastWeightsCell(4, fast_learning_rate=0.0, inner_steps=3)
    assert cell.state_size == [4]
    out, states, w = _run(cell, x, rng)
    assert len(states) == 1
    expected, _ = numpy_reference(x.astype("float64"), w["kernel"], w["recurrent_kernel"],
                                  w["bias"], w["ln_gain"], w["ln_bias"], 0.95, 0.0, 3)
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-4)


def test_without_layer_norm_matches_reference(rng):
    x = rng.standard_normal((2, 5, 3)).astype("float32")
    cell = FastWeightsCell(4, layer_norm=False, inner_steps=2, decay=0.9, fast_learning_rate=0.3)
    out, _, w = _run(cell, x, rng)
    assert "ln_gain" not in w
    expected, _ = numpy_reference(x.astype("float64"), w["kernel"], w["recurrent_kernel"],
                                  w["bias"], None, None, 0.9, 0.3, 2, use_ln=False)
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-4)


def test_explicit_and_attention_agree(rng):
    batch, steps, features, units = 4, 11, 37, 20
    x = rng.standard_normal((batch, steps, features)).astype("float32")
    explicit = FastWeightsCell(units, inner_steps=2)
    out_e, states_e, w = _run(explicit, x, rng)
    attention = FastWeightsCell(units, inner_steps=2, implementation="attention",
                                max_length=steps)
    out_a, states_a, _ = _run(attention, x, weights=[w[v.name] for v in explicit.weights])
    np.testing.assert_allclose(out_a, out_e, atol=1e-4, rtol=1e-4)
    history = _chronological(states_a, units)
    coef = 0.5 * 0.95 ** np.arange(steps - 1, -1, -1)
    np.testing.assert_allclose(np.einsum("l,bli,blj->bij", coef, history, history),
                               states_e[1].reshape(batch, units, units), atol=1e-3, rtol=1e-4)


def test_masked_steps_keep_the_memory_in_both_forms(rng):
    """Keras keeps a sample's states on its masked steps: the ring position is per sample, so
    pre- and post-padded samples give the same outputs in both forms and as unpadded."""
    steps, units = 8, 6
    x = rng.standard_normal((3, steps, 4)).astype("float32")
    mask = np.ones((3, steps), bool)
    mask[0, :3] = False   # pre-padded
    mask[1, -2:] = False  # post-padded
    outs = {}
    for implementation in ("explicit", "attention"):
        cell = FastWeightsCell(units, implementation=implementation, max_length=steps)
        rnn = keras.layers.RNN(cell, return_sequences=True)
        rnn.build(x.shape)
        _random_weights(cell, np.random.default_rng(5))
        outs[implementation] = np.asarray(rnn(x, mask=mask))
        alone = np.asarray(rnn(x[:1, 3:]))   # sample 0 without its padding
        np.testing.assert_allclose(outs[implementation][0, 3:], alone[0], atol=1e-5)
    np.testing.assert_allclose(outs["attention"], outs["explicit"], atol=1e-4, rtol=1e-4)


def test_attention_history_window(rng):
    """With L = max_length < T, step t sees h(0..t); h(0) = 0, so steps t <= L are still exact
    and from t = L + 1 on the truncated term h(t - L) makes the outputs differ."""
    length, steps = 3, 8
    x = rng.standard_normal((2, steps, 3)).astype("float32")
    explicit = FastWeightsCell(6, decay=1.0, fast_learning_rate=1.0)
    out_e, _, w = _run(explicit, x, rng)
    short = FastWeightsCell(6, decay=1.0, fast_learning_rate=1.0, implementation="attention",
                            max_length=length)
    out_a, _, _ = _run(short, x, weights=[w[v.name] for v in explicit.weights])
    np.testing.assert_allclose(out_a[:, :length + 1], out_e[:, :length + 1], atol=1e-4)
    assert np.abs(out_a[:, length + 1:] - out_e[:, length + 1:]).max() > 1e-3


@pytest.mark.parametrize("implementation", ["explicit", "attention"])
def test_fast_weights_never_mix_across_samples(implementation, rng):
    batch, steps = 5, 9
    x = rng.standard_normal((batch, steps, 4)).astype("float32")
    cell = FastWeightsCell(8, implementation=implementation, max_length=steps, inner_steps=2)
    out, _, w = _run(cell, x, rng)
    changed = x.copy()
    changed[2] = 10.0 * rng.standard_normal((steps, 4))
    out2 = np.asarray(keras.layers.RNN(cell, return_sequences=True)(changed))
    others = [0, 1, 3, 4]
    np.testing.assert_allclose(out2[others], out[others], atol=1e-6, rtol=1e-6)
    assert np.abs(out2[2] - out[2]).max() > 1e-2
    # Alone in a batch of one, a sample gives the same outputs as inside the batch.
    alone = np.asarray(keras.layers.RNN(cell, return_sequences=True)(x[3:4]))
    np.testing.assert_allclose(alone[0], out[3], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("implementation", ["explicit", "attention"])
def test_state_carries_over_between_chunks(implementation, rng):
    """Two chunks fed through `initial_state` equal one pass (the memory is in the state)."""
    x = rng.standard_normal((3, 10, 4)).astype("float32")
    cell = FastWeightsCell(6, implementation=implementation, max_length=10)
    whole, _, _ = _run(cell, x, rng)
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    first, *states = rnn(x[:, :4])
    second, *_ = rnn(x[:, 4:], initial_state=states)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-5)


def test_defaults_and_alias():
    assert FastWeightsRNNLN is FastWeightsCell
    cell = FastWeightsCell(5)
    assert (cell.decay, cell.fast_learning_rate, cell.inner_steps) == (0.95, 0.5, 1)
    assert cell.implementation == "explicit" and cell.preliminary_layer_norm is False
    cell.build((None, 3))
    np.testing.assert_allclose(np.asarray(cell.recurrent_kernel), 0.05 * np.eye(5))
    np.testing.assert_allclose(np.asarray(cell.ln_gain), np.ones(5))
    assert cell.state_size == [5, 25]
    att = FastWeightsCell(5, implementation="attention", max_length=11)
    assert att.state_size == [5, 55, 1]  # h, the ring buffer of 11 states, its position


def test_config_round_trip():
    cell = FastWeightsCell(7, decay=0.9, fast_learning_rate=0.25, inner_steps=2,
                           implementation="attention", max_length=9, layer_norm=True,
                           preliminary_layer_norm=True, activation="tanh", epsilon=1e-3,
                           name="fw")
    config = cell.get_config()
    clone = FastWeightsCell.from_config(config)
    assert clone.get_config() == config
    for key in ("units", "decay", "fast_learning_rate", "inner_steps", "implementation",
                "max_length", "layer_norm", "preliminary_layer_norm", "epsilon"):
        assert getattr(clone, key) == getattr(cell, key), key


@pytest.mark.parametrize("kwargs,match", [
    (dict(units=0), "units must be an integer >= 1"),
    (dict(units=2.5), "units must be an integer >= 1"),
    (dict(units=4, decay=-0.1), r"decay must be in \[0, 1\]"),
    (dict(units=4, decay=1.5), r"decay must be in \[0, 1\]"),
    (dict(units=4, fast_learning_rate=-1.0), "fast_learning_rate must be a finite number >= 0"),
    (dict(units=4, fast_learning_rate=float("nan")), "fast_learning_rate must be"),
    (dict(units=4, inner_steps=0), "inner_steps must be an integer >= 1"),
    (dict(units=4, implementation="fast"), "implementation must be one of"),
    (dict(units=4, implementation="attention"), "max_length must be an integer >= 1"),
    (dict(units=4, implementation="attention", max_length=0), "max_length must be None or"),
    (dict(units=4, layer_norm="yes"), "layer_norm must be True or False"),
    (dict(units=4, preliminary_layer_norm=1), "preliminary_layer_norm must be True or False"),
    (dict(units=4, layer_norm=False, preliminary_layer_norm=True),
     "preliminary_layer_norm=True needs layer_norm=True"),
    (dict(units=4, epsilon=0.0), "epsilon must be a number > 0"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FastWeightsCell(**kwargs)


def test_wrong_input_rank_fails_at_build():
    cell = FastWeightsCell(4)
    with pytest.raises(ValueError, match="rank 2"):
        keras.layers.RNN(cell)(np.zeros((2, 3, 4, 5), "float32"))


def test_mixed_float16_close_to_float32(rng):
    x = rng.standard_normal((2, 11, 37)).astype("float32")
    cell = FastWeightsCell(16, implementation="attention", max_length=11)
    out32, _, w = _run(cell, x, rng)
    keras.mixed_precision.set_global_policy("mixed_float16")
    cell16 = FastWeightsCell(16, implementation="attention", max_length=11)
    out16, states16, _ = _run(cell16, x, weights=[w[v.name] for v in cell.weights])
    assert all(s.dtype == np.float64 for s in states16)  # converted by _run
    np.testing.assert_allclose(out16, out32, atol=5e-2, rtol=5e-2)


def test_gradients_reach_every_weight(rng):
    import tensorflow as tf
    x = tf.constant(rng.standard_normal((2, 6, 3)).astype("float32"))
    for implementation in ("explicit", "attention"):
        cell = FastWeightsCell(5, implementation=implementation, max_length=6)
        rnn = keras.layers.RNN(cell)
        rnn.build(x.shape)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(rnn(x) ** 2)
        grads = tape.gradient(loss, rnn.trainable_variables)
        assert len(grads) == 5
        for g, v in zip(grads, rnn.trainable_variables):
            assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0, v.name


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_attention_gradients_match_explicit(inner_steps, rng):
    """The attention form's hand-written gradient (attend_and_normalise) against automatic
    differentiation of the explicit form, for every weight and for the input."""
    import tensorflow as tf
    x = tf.constant(rng.standard_normal((3, 7, 4)).astype("float32"))
    probe = tf.constant(rng.standard_normal((3, 7, 5)).astype("float32"))
    grads = {}
    for implementation in ("explicit", "attention"):
        cell = FastWeightsCell(5, implementation=implementation, max_length=7,
                               inner_steps=inner_steps, decay=0.9, fast_learning_rate=0.7)
        rnn = keras.layers.RNN(cell, return_sequences=True)
        rnn.build(x.shape)
        _random_weights(cell, np.random.default_rng(3))  # the same values for both
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(rnn(x) * probe)
        grads[implementation] = tape.gradient(loss, [x] + rnn.trainable_variables)
    for g_e, g_a in zip(grads["explicit"], grads["attention"]):
        np.testing.assert_allclose(np.asarray(g_a), np.asarray(g_e), atol=1e-4, rtol=1e-4)


# ---- the stateless ops ----

def test_layer_norm_op_per_sample(rng):
    x = rng.standard_normal((3, 7)).astype("float32")
    x[1] *= 1000.0  # a very different sample must not change the others
    gain, bias = rng.standard_normal(7), rng.standard_normal(7)
    y = np.asarray(layer_norm(x, gain.astype("float32"), bias.astype("float32"), EPS))
    expected = np.stack([_ln(v.astype("float64"), gain, bias) for v in x])
    np.testing.assert_allclose(y, expected, atol=1e-4, rtol=1e-4)
    y16 = layer_norm(x[[0, 2]].astype("float16"))
    assert keras.backend.standardize_dtype(y16.dtype) == "float16"
    np.testing.assert_allclose(np.asarray(y16, "float64"),
                               np.stack([_ln(v.astype("float64"), 1.0, 0.0) for v in x[[0, 2]]]),
                               atol=1e-2)


def test_fast_weight_ops_agree(rng):
    """The ring buffer over more writes than slots: its content, the weights of its slots by
    age, and the attention over it against A built by hand from the last L states."""
    batch, length, units, decay, eta = 2, 4, 3, 0.8, 0.5
    steps = 2 * length + 1
    hs = rng.standard_normal((steps, batch, units)).astype("float32")
    a = np.zeros((batch, units, units), "float32")
    ring = np.zeros((batch, length, units), "float32")
    newest = np.array([0, 2])  # the samples' rings need not be aligned
    for t, h in enumerate(hs):
        a = np.asarray(update_fast_weights(a, h, decay, eta))
        slot = (newest + t) % length
        ring = np.asarray(write_history(ring, h, slot.astype("int32")))
        for b in range(batch):  # the written row only
            np.testing.assert_array_equal(ring[b, slot[b]], h[b])
    for b in range(batch):  # slot (s + j) holds the state written at step j modulo L
        for back in range(length):
            np.testing.assert_array_equal(ring[b, (slot[b] - back) % length], hs[-1 - back, b])
    weights = np.asarray(slot_weights(slot.astype("int32"), length, decay, eta))
    for b in range(batch):
        for back in range(length):
            np.testing.assert_allclose(weights[b, (slot[b] - back) % length],
                                       eta * decay ** back, rtol=1e-6)
    query = rng.standard_normal((batch, units)).astype("float32")
    truncated = sum(eta * decay ** back * np.einsum("bi,bj->bij", hs[-1 - back], hs[-1 - back])
                    for back in range(length))
    by_hand = np.einsum("bij,bj->bi", truncated, query)
    np.testing.assert_allclose(np.asarray(apply_fast_weights(truncated, query)), by_hand,
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(attend_history(ring, query, weights)), by_hand,
                               atol=1e-5)
    # the explicit A keeps the older terms too: the truncation is real
    assert np.abs(np.asarray(apply_fast_weights(a, query)) - by_hand).max() > 1e-4


def test_ring_position_wraps_and_stays_in_range(rng):
    """The position state counts modulo max_length; one out of range in a user's initial
    state is read modulo max_length too, so it never writes into another sample's rows."""
    length, units = 3, 4
    x = rng.standard_normal((2, 2 * length + 2, 3)).astype("float32")
    cell = FastWeightsCell(units, implementation="attention", max_length=length)
    _, states, _ = _run(cell, x, rng)
    np.testing.assert_array_equal(states[2][:, 0], [(2 * length + 2) % length] * 2)
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    zeros = np.zeros((2, units), "float32"), np.zeros((2, length * units), "float32")
    out_in, *_ = rnn(x, initial_state=[*zeros, np.full((2, 1), 1.0, "float32")])
    out_out, *_ = rnn(x, initial_state=[*zeros, np.full((2, 1), 1.0 + 5 * length, "float32")])
    np.testing.assert_allclose(np.asarray(out_out), np.asarray(out_in), atol=1e-6)


def test_low_precision_limits_max_length():
    cell = FastWeightsCell(4, implementation="attention", max_length=300,
                           dtype="mixed_bfloat16")
    with pytest.raises(ValueError, match="max_length must be <= 256"):
        cell.build((None, 3))
    FastWeightsCell(4, implementation="attention", max_length=256,
                    dtype="mixed_bfloat16").build((None, 3))
    FastWeightsCell(4, max_length=300, dtype="mixed_bfloat16").build((None, 3))  # explicit


def test_attend_and_normalise_matches_composition(rng):
    """Same values as layer_norm(boundary + attend_history(...)); the hand-written gradient
    equals automatic differentiation of that composition."""
    import tensorflow as tf
    batch, length, units = 3, 5, 7
    args = [tf.constant(rng.standard_normal(shape).astype("float32")) for shape in
            [(batch, units), (batch, units), (batch, length, units), (units,), (units,)]]
    weights = slot_weights(np.array([0, 3, 4], "int32"), length, 0.9, 0.5)
    upstream = tf.constant(rng.standard_normal((batch, units)).astype("float32"))

    def composed(boundary, query, history, gain, bias):
        return layer_norm(boundary + attend_history(history, query, weights), gain, bias)

    def fused(boundary, query, history, gain, bias):
        return attend_and_normalise(boundary, query, history, weights, gain, bias)

    results = []
    for fn in (composed, fused):
        with tf.GradientTape() as tape:
            tape.watch(args)
            y = fn(*args)
            loss = tf.reduce_sum(y * upstream)
        results.append((y, tape.gradient(loss, args)))
    (y_ref, g_ref), (y, g) = results
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), atol=1e-5)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)
