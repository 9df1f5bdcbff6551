"""The associative-retrieval models: kinds, gradient norm / clipping, LayerNormGRUCell maths."""
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm.components.retrieval_models import (KINDS, RetrievalModel, build_model,
                                                  clip_by_global_norm)
from pagi_rsm.datasets import associative_retrieval as ar
from pagi_rsm.layers import FastWeightsCell
from pagi_rsm.layers.layer_norm_gru import LayerNormGRUCell


def _batch(n=8, seed=0):
    tokens, targets = ar.generate(n, seed=seed)
    return ar.one_hot(tokens), targets


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_trains_and_reports_grad_norm(kind):
    keras.utils.set_random_seed(0)
    model = build_model(kind, units=6)
    model.compile()
    x, y = _batch()
    out = model(x)
    assert out.shape == (8, 10)
    np.testing.assert_allclose(np.asarray(out).sum(-1), 1.0, rtol=1e-5)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "grad_norm"}
    assert history.history["grad_norm"][0] > 0


def test_kinds_use_the_right_layers():
    fw = build_model("fast_weights", 5).recurrent.cell
    assert isinstance(fw, FastWeightsCell) and fw.fast_learning_rate == 0.5
    assert fw.implementation == "attention" and fw.max_length == 11
    ln = build_model("rnn_ln", 5).recurrent.cell
    assert isinstance(ln, FastWeightsCell) and ln.fast_learning_rate == 0.0
    assert ln.state_size == [5]  # the same cell without memory, not a copy
    control = build_model("control", 5).recurrent
    assert isinstance(control, keras.layers.SimpleRNN)
    np.testing.assert_allclose(np.asarray(control.cell.recurrent_kernel), np.eye(5))
    assert isinstance(build_model("gru_ln", 5).recurrent.cell, LayerNormGRUCell)
    assert isinstance(build_model("lstm", 5).recurrent, keras.layers.LSTM)


def test_optional_input_and_readout_layers():
    model = build_model("lstm", 5, input_units=7, readout_units=9)
    lstm = 4 * (7 * 5 + 5 * 5 + 5)
    assert model.count_params() == (37 * 7 + 7) + lstm + (5 * 9 + 9) + (9 * 10 + 10)
    x, _ = _batch(3)
    encoded = np.maximum(x @ np.asarray(model.encoder.kernel) + np.asarray(model.encoder.bias), 0)
    h = np.asarray(model.recurrent(encoded))
    hidden = np.maximum(h @ np.asarray(model.hidden.kernel) + np.asarray(model.hidden.bias), 0)
    logits = hidden @ np.asarray(model.readout.kernel) + np.asarray(model.readout.bias)
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5)
    plain = build_model("lstm", 5)
    assert plain.encoder is None and plain.hidden is None
    with pytest.raises(ValueError, match="input_units must be an integer >= 0"):
        build_model("lstm", 5, input_units=-1)


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(ValueError, match="fast_weights, rnn_ln, control, gru_ln, lstm"):
        build_model("transformer", 5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(units=0), "units must be an integer >= 1"),
    (dict(learning_rate=0.0), "learning_rate must be a number > 0"),
    (dict(clip_norm=-1.0), "clip_norm must be None or a number >= 0"),
    (dict(fast_learning_rate=0.0), "fast_learning_rate must be a number > 0"),
    (dict(implementation="dense"), "implementation must be one of"),
    (dict(unroll="yes"), "unroll must be True or False"),
    (dict(decay=2.0), r"decay must be in \[0, 1\]"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(**{"kind": "fast_weights", "units": 4, **kwargs})


def test_learning_rate_schedule():
    assert build_model("lstm", 3, learning_rate=2e-3).learning_schedule() == 2e-3
    model = build_model("lstm", 3, learning_rate=1e-3, final_learning_rate=1e-4, decay_steps=100)
    schedule = model.learning_schedule()
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(50)) == pytest.approx(1e-4 + 0.5 * 9e-4)  # half way along the cosine
    assert float(schedule(100)) == pytest.approx(1e-4)
    assert float(schedule(500)) == pytest.approx(1e-4)
    model.compile()
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="decay_steps must be > 0"):
        build_model("lstm", 3, final_learning_rate=1e-4)
    with pytest.raises(ValueError, match="final_learning_rate must be None or a number in"):
        build_model("lstm", 3, final_learning_rate=1e-2, decay_steps=10)


def test_default_hparams_match_the_constructor():
    signature = inspect.signature(RetrievalModel.__init__)
    for key, value in RetrievalModel.options.defaults().items():
        assert signature.parameters[key].default == value, key


def test_clip_by_global_norm_by_hand():
    grads = [tf.constant([3.0, 0.0]), None, tf.constant([[4.0]])]
    clipped, norm = clip_by_global_norm(grads, 2.5)
    assert float(norm) == pytest.approx(5.0)
    assert clipped[1] is None
    np.testing.assert_allclose(np.asarray(clipped[0]), [1.5, 0.0])
    np.testing.assert_allclose(np.asarray(clipped[2]), [[2.0]])
    same, norm = clip_by_global_norm(grads, 10.0)
    np.testing.assert_allclose(np.asarray(same[0]), [3.0, 0.0])
    unclipped, _ = clip_by_global_norm(grads, None)
    np.testing.assert_allclose(np.asarray(unclipped[2]), [[4.0]])
    # Loss-scaled gradients: the norm and the threshold are those of the unscaled gradients.
    scaled, norm = clip_by_global_norm([g * 8.0 for g in (grads[0], grads[2])], 2.5, scale=8.0)
    assert float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose(np.asarray(scaled[0]) / 8.0, [1.5, 0.0])


def _sgd_step(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    before = [np.asarray(v) for v in model.trainable_variables]
    logs = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0).history
    after = [np.asarray(v) for v in model.trainable_variables]
    return before, after, logs


def test_train_step_norm_and_clipping_match_a_tape():
    """grad_norm is the global norm of the full-batch gradient, and the SGD step is the
    gradient rescaled to clip_norm."""
    x, y = _batch(8, seed=1)
    keras.utils.set_random_seed(3)
    model = build_model("fast_weights", 6, clip_norm=0.01)
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, model.trainable_variables)
    norm = float(tf.linalg.global_norm(grads))
    assert norm > 0.01  # so the clip is active
    before, after, logs = _sgd_step(model, x, y)
    assert logs["grad_norm"][0] == pytest.approx(norm, rel=1e-4)
    for b, a, g in zip(before, after, grads):
        np.testing.assert_allclose(b - a, np.asarray(g) * 0.01 / norm, atol=1e-6)


def test_no_clipping_when_clip_norm_is_zero():
    x, y = _batch(8, seed=2)
    keras.utils.set_random_seed(3)
    model = build_model("rnn_ln", 4, clip_norm=0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x)))
    grads = tape.gradient(loss, model.trainable_variables)
    before, after, _ = _sgd_step(model, x, y)
    for b, a, g in zip(before, after, grads):
        np.testing.assert_allclose(b - a, np.asarray(g), atol=1e-6)


def test_mirrored_strategy_matches_one_device(strategies):
    """Under 2 replicas the norm and the clip are those of the global batch."""
    x, y = _batch(8, seed=4)
    keras.utils.set_random_seed(5)
    start = build_model("fast_weights", 6, clip_norm=0.05).get_weights()
    results = []
    for strategy in strategies:
        with strategy.scope():
            model = build_model("fast_weights", 6, clip_norm=0.05)
            model.set_weights(start)
            model.compile(optimizer=keras.optimizers.SGD(1.0))
        logs = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False).history
        results.append((model.get_weights(), logs))
    (w1, logs1), (w2, logs2) = results
    assert logs2["grad_norm"][0] == pytest.approx(logs1["grad_norm"][0], rel=1e-4)
    assert logs2["loss"][0] == pytest.approx(logs1["loss"][0], rel=1e-5)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    model = build_model("fast_weights", 5, clip_norm=2.0, learning_rate=3e-3)
    model.compile()
    x, y = _batch(4)
    model.fit(x, y, verbose=0)
    path = tmp_path / "retrieval.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, RetrievalModel)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    assert loaded.clip_norm == 2.0 and loaded.optimizer is not None
    loaded.fit(x, y, verbose=0)  # still trains after loading


def test_unrolled_equals_loop():
    x, _ = _batch(4)
    keras.utils.set_random_seed(0)
    loop = build_model("fast_weights", 6)
    unrolled = build_model("fast_weights", 6, unroll=True)
    unrolled.set_weights(loop.get_weights())
    np.testing.assert_allclose(unrolled(x), loop(x), atol=1e-6)


# ---- LayerNormGRUCell ----

def _ln(v, g, b, eps=1e-5):
    return g * (v - v.mean()) / np.sqrt(v.var() + eps) + b


def test_layer_norm_gru_matches_numpy(rng):
    batch, steps, features, units = 3, 5, 4, 6
    x = rng.standard_normal((batch, steps, features)).astype("float32")
    cell = LayerNormGRUCell(units)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    rnn.build(x.shape)
    cell.set_weights([rng.standard_normal(tuple(w.shape)).astype("float32") * 0.5
                      for w in cell.weights])
    kernel, recurrent, gain, bias = [np.asarray(w, "float64") for w in cell.weights]
    out = np.asarray(rnn(x))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for n in range(batch):
        h = np.zeros(units)
        for t in range(steps):
            xw, hu = x[n, t] @ kernel, h @ recurrent
            z = sig(_ln(xw[:units] + hu[:units], gain[0], bias[0]))
            r = sig(_ln(xw[units:2 * units] + hu[units:2 * units], gain[1], bias[1]))
            c = np.tanh(_ln(xw[2 * units:] + r * hu[2 * units:], gain[2], bias[2]))
            h = z * h + (1 - z) * c
            np.testing.assert_allclose(out[n, t], h, atol=1e-5)


def test_layer_norm_gru_validation_and_config():
    with pytest.raises(ValueError, match="units must be an integer >= 1"):
        LayerNormGRUCell(0)
    with pytest.raises(ValueError, match="epsilon must be a number > 0"):
        LayerNormGRUCell(3, epsilon=0)
    with pytest.raises(ValueError, match="rank 2"):
        keras.layers.RNN(LayerNormGRUCell(3))(np.zeros((2, 3, 4, 5), "float32"))
    cell = LayerNormGRUCell(3, epsilon=1e-3)
    assert LayerNormGRUCell.from_config(cell.get_config()).get_config() == cell.get_config()


def test_mixed_float16_grad_norm_is_unscaled():
    """Under mixed_float16 the gradients are loss-scaled; the reported norm is that of the
    unscaled gradient, close to the float32 one, and overflowed (skipped) steps are left out."""
    x, y = _batch(8, seed=6)
    keras.utils.set_random_seed(2)
    start = build_model("fast_weights", 6).get_weights()
    norms = []
    for policy in ("float32", "mixed_float16"):
        keras.mixed_precision.set_global_policy(policy)
        model = build_model("fast_weights", 6)
        model.set_weights(start)
        optimizer = keras.optimizers.Adam(1e-3)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=256.0)
        model.compile(optimizer=optimizer)
        logs = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
        norms.append(logs["grad_norm"][0])
        assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert norms[1] == pytest.approx(norms[0], rel=5e-2)  # float16 rounding; scale is 256
    # A scale so large that the float16 gradients overflow: the step is skipped and not counted.
    model = build_model("fast_weights", 6)
    model.set_weights(start)
    model.compile(optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3),
                                                                initial_scale=2.0 ** 60))
    logs = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert logs["grad_norm"][0] == 0.0  # no step counted
    for w, w0 in zip(model.get_weights(), start):
        np.testing.assert_array_equal(w, w0)  # skipped
