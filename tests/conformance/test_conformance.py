"""Conformance checks run over every layer in `registry.ENTRIES` (Sonnet-style goldens).

Each entry is placed in a small functional model, `input -> Scale -> layer`, where `Scale` is a
trainable per-feature scale so that layers without weights of their own still see gradients.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tests.conformance.registry import ENTRIES

IDS = [e.name for e in ENTRIES]


@keras.saving.register_keras_serializable(package="pagi_rsm_conformance")
class Scale(keras.layers.Layer):
    """Trainable per-feature scale in front of the layer under test."""

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="scale", shape=(input_shape[-1],),
            initializer=keras.initializers.RandomUniform(0.5, 1.5, seed=7))

    def call(self, x):
        return x * ops.cast(self.scale, x.dtype)


def _build(entry):
    keras.utils.set_random_seed(1)
    inputs = keras.Input(entry.input_shape)
    layer = entry.make_layer()
    wrapped = keras.layers.RNN(layer, return_sequences=True) if entry.rnn else layer
    outputs = wrapped(Scale()(inputs))
    return keras.Model(inputs, outputs), layer


def _flat(outputs):
    return [np.asarray(ops.convert_to_numpy(o), dtype="float64")
            for o in keras.tree.flatten(outputs)]


def _assert_all_close(a, b, atol, what):
    assert len(a) == len(b), what
    for i, (u, v) in enumerate(zip(a, b)):
        np.testing.assert_allclose(u, v, atol=atol, rtol=1e-4, err_msg=f"{what} [{i}]")


def _targets(model, x):
    return [np.zeros(o.shape, "float32") for o in keras.tree.flatten(model(x, training=False))]


def _fit_once(model, x, batch_size):
    y = _targets(model, x)
    model.fit(x, y if len(y) > 1 else y[0], batch_size=batch_size, epochs=1, shuffle=False,
              verbose=0)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
@pytest.mark.parametrize("training", [False, True])
def test_eager_function_xla_agree(entry, training):
    if training and not entry.training_deterministic:
        pytest.skip("training mode draws random numbers")
    model, _ = _build(entry)
    x = entry.inputs(seed=3)
    start = model.get_weights()
    results = {}
    for mode, fn in [
        ("eager", lambda v: model(v, training=training)),
        ("function", tf.function(lambda v: model(v, training=training))),
        ("xla", tf.function(lambda v: model(v, training=training), jit_compile=True)),
    ]:
        model.set_weights(start)
        out = fn(tf.constant(x))
        results[mode] = (_flat(out), [np.asarray(w, "float64") for w in model.get_weights()])
    for mode in ("function", "xla"):
        _assert_all_close(results["eager"][0], results[mode][0], entry.atol, f"outputs {mode}")
        _assert_all_close(results["eager"][1], results[mode][1], entry.atol,
                          f"weights after call {mode}")


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_keras_save_load_round_trip(entry, tmp_path):
    model, _ = _build(entry)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    _fit_once(model, entry.inputs(seed=4), entry.batch_size)  # non-trivial weights and statistics
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [tuple(w.shape) for w in model.weights] == [tuple(w.shape) for w in loaded.weights]
    _assert_all_close([np.asarray(w, "float64") for w in model.get_weights()],
                      [np.asarray(w, "float64") for w in loaded.get_weights()], 0.0, "weights")
    x = entry.inputs(seed=5)
    _assert_all_close(_flat(model(x, training=False)), _flat(loaded(x, training=False)),
                      entry.atol, "outputs after load")


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_get_config_from_config(entry):
    model, layer = _build(entry)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # The clone, given the same weights, computes the same function.
    keras.utils.set_random_seed(1)
    inputs = keras.Input(entry.input_shape)
    wrapped = keras.layers.RNN(clone, return_sequences=True) if entry.rnn else clone
    twin = keras.Model(inputs, wrapped(Scale()(inputs)))
    twin.set_weights(model.get_weights())
    x = entry.inputs(seed=6)
    _assert_all_close(_flat(model(x, training=False)), _flat(twin(x, training=False)),
                      entry.atol, "clone outputs")


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_mirrored_strategy_matches_one_device(entry, strategies):
    one_device, mirrored_strategy = strategies
    assert entry.batch_size % 2 == 0
    reference, _ = _build(entry)
    start = reference.get_weights()
    x = entry.inputs(seed=7)

    def train(strategy):
        with strategy.scope():
            model, _ = _build(entry)
            model.set_weights(start)
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        _fit_once(model, x, entry.batch_size)
        return [np.asarray(w, "float64") for w in model.get_weights()], model

    single, _ = train(one_device)
    mirrored, model = train(mirrored_strategy)
    _assert_all_close(single, mirrored, entry.atol * 10, "weights after one fit step")
    # Every replica holds the same value of every (mirrored) variable.
    for v in model.weights:
        values = getattr(v.value, "values", None)
        if values:
            for replica_value in values[1:]:
                np.testing.assert_allclose(np.asarray(replica_value), np.asarray(values[0]),
                                           err_msg=v.path)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_mixed_float16(entry):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model, layer = _build(entry)
    x = entry.inputs(seed=8)
    outputs = keras.tree.flatten(model(x, training=False))
    dtypes = [keras.backend.standardize_dtype(o.dtype) for o in outputs]
    assert dtypes[0] == "float16", dtypes  # the main output follows the compute dtype
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    _fit_once(model, x, entry.batch_size)
    for o in keras.tree.flatten(model(x, training=False)):
        assert np.all(np.isfinite(ops.convert_to_numpy(ops.cast(o, "float32"))))
    for w in model.weights:
        assert np.all(np.isfinite(np.asarray(w))), w.path


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_no_retracing_for_same_shapes(entry):
    model, _ = _build(entry)
    for training in (False, True):
        fn = tf.function(lambda v, t=training: model(v, training=t))
        for seed in range(3):
            fn(tf.constant(entry.inputs(seed=seed)))
        assert fn.experimental_get_tracing_count() == 1
