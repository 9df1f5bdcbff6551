"""GAN rectifier: shapes, losses, the split of the two updates, training, save/load, XLA."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm.components.gan_rectifier import (GANRectifier, RectifierDiscriminator,
                                               RectifierGenerator)

SMALL = dict(frame_shape=(12, 12, 1), encoder_filters=(8, 16, 16), decoder_filters=(16, 8),
             hidden_units=16, condition_units=8)


def small(**kwargs):
    model = GANRectifier(**{**SMALL, "seed": 3, **kwargs})
    model.compile()
    return model


def blobs(rng, batch, size=12):
    """Frames with one bright square each (targets) and their blurred versions (predictions)."""
    target = np.zeros((batch, size, size, 1), "float32")
    for b in range(batch):
        r, c = rng.integers(1, size - 4, size=2)
        target[b, r:r + 3, c:c + 3] = 1.0
    kernel = np.ones(3) / 3
    blurred = np.apply_along_axis(lambda m: np.convolve(m, kernel, "same"), 1, target)
    blurred = np.apply_along_axis(lambda m: np.convolve(m, kernel, "same"), 2, blurred)
    return {"prediction": blurred.astype("float32"), "target": target}


def numpy_bce(logits, label):
    p = 1 / (1 + np.exp(-np.asarray(logits, "float64")))
    return float(np.mean(-label * np.log(p) - (1 - label) * np.log(1 - p)))


def test_default_shapes_and_output_range():
    model = GANRectifier(seed=1)
    x = np.random.default_rng(0).uniform(size=(2, 34, 34, 1)).astype("float32")
    y = model(x)
    assert y.shape == (2, 34, 34, 1)
    assert np.all((np.asarray(y) >= 0) & (np.asarray(y) <= 1))
    g = model.generator
    assert [l.filters for l in g.encoder] == [64, 128, 256]
    assert [l.strides for l in g.encoder] == [(1, 1), (2, 2), (1, 1)]
    assert [l.filters for l in g.decoder] == [128, 64] and g.output_layer.filters == 1
    assert [l.kernel_size for l in g.encoder + g.decoder] == [(5, 5)] * 5
    d = model.discriminator
    assert d.frame_layer.kernel.shape == (34 * 34, 128)
    assert d.condition_layer.kernel.shape == (34 * 34, 128)
    assert d.output_layer.kernel.shape == (256, 1)
    logits = d(tf.constant(x), tf.constant(x))
    assert logits.shape == (2, 1)
    np.testing.assert_allclose(model.predict({"prediction": x, "target": x}, verbose=0), y,
                               atol=1e-6)


def test_condition_layer_is_shared_and_condition_shape_configurable():
    model = small(condition_shape=(2, 12, 12, 1))     # e.g. the two previous true frames
    names = [v.path for v in model.discriminator.trainable_variables]
    assert len(names) == 6 and sum("condition" in n for n in names) == 2
    batch = blobs(np.random.default_rng(1), 4)
    batch["condition"] = np.stack([batch["target"]] * 2, axis=1)
    logs = model.train_step({k: tf.constant(v) for k, v in batch.items()})
    assert np.isfinite(float(logs["discriminator_loss"]))
    with pytest.raises(ValueError, match=r"'condition' must have shape \[batch, 2, 12, 12, 1\]"):
        model.train_step({k: tf.constant(v) for k, v in blobs(np.random.default_rng(1), 4)
                          .items()})


def test_losses_against_hand_computation():
    model = small()
    real, fake = np.array([[0.3], [-1.2]]), np.array([[2.0], [-0.5]])
    expected = numpy_bce(real, 0.9) + numpy_bce(fake, 0.0)
    assert float(model.discriminator_loss(real, fake)) == pytest.approx(expected, rel=1e-5)
    assert float(model.adversarial_loss(fake)) == pytest.approx(numpy_bce(fake, 1.0), rel=1e-5)


def test_train_step_uses_the_smoothed_discriminator_loss_and_unsmoothed_adversarial_loss():
    model = small(input_noise_stddev=0.0, generator_learning_rate=0.0,
                  discriminator_learning_rate=0.5)
    batch = {k: tf.constant(v) for k, v in blobs(np.random.default_rng(2), 6).items()}
    x, t = batch["prediction"], batch["target"]
    fake = model(x)
    d_before = model.discriminator_loss(model.discriminator(t, x),
                                        model.discriminator(fake, x))
    model.reset_metrics()
    logs = model.train_step(batch)
    assert float(logs["discriminator_loss"]) == pytest.approx(float(d_before), rel=1e-5)
    # The adversarial term is computed with the updated discriminator against label 1.
    after = numpy_bce(model.discriminator(fake, x), 1.0)
    assert float(logs["generator_adversarial_loss"]) == pytest.approx(after, rel=1e-4)
    assert float(logs["generator_adversarial_loss"]) != pytest.approx(
        numpy_bce(model.discriminator(fake, x), 0.9), rel=1e-3)
    mse = float(np.mean((np.asarray(t) - np.asarray(fake)) ** 2))
    assert float(logs["generator_mse"]) == pytest.approx(mse, rel=1e-5)


def _one_step(batch, **kwargs):
    model = small(**kwargs)
    model.train_step(batch)
    return ([np.asarray(v) for v in model.generator.weights],
            [np.asarray(v) for v in model.discriminator.weights])


def test_noise_and_label_smoothing_only_reach_the_discriminator():
    batch = {k: tf.constant(v) for k, v in blobs(np.random.default_rng(3), 6).items()}
    # Without the adversarial term the generator's step depends on neither the noise nor the
    # smoothing (its MSE sees clean frames); the discriminator's step depends on both.
    base = _one_step(batch, adversarial_weight=0.0, input_noise_stddev=0.0, label_smoothing=0.1)
    noisy = _one_step(batch, adversarial_weight=0.0, input_noise_stddev=5.0, label_smoothing=0.1)
    sharp = _one_step(batch, adversarial_weight=0.0, input_noise_stddev=0.0, label_smoothing=0.0)
    for other in (noisy, sharp):
        for a, b in zip(base[0], other[0]):
            np.testing.assert_array_equal(a, b)
        assert any(not np.allclose(a, b, atol=1e-7) for a, b in zip(base[1], other[1]))
    # The generator is conditioned on nothing random: inference is deterministic.
    model = small(input_noise_stddev=5.0)
    np.testing.assert_array_equal(model(batch["prediction"]), model(batch["prediction"]))


def test_fit_lowers_the_generator_mse_on_a_tiny_batch():
    batch = blobs(np.random.default_rng(4), 8)
    model = small(generator_learning_rate=3e-3)
    first = model.evaluate(batch, batch_size=8, verbose=0, return_dict=True)["generator_mse"]
    ds = tf.data.Dataset.from_tensors(batch).repeat(50)
    history = model.fit(ds, epochs=1, verbose=0).history
    last = model.evaluate(batch, batch_size=8, verbose=0, return_dict=True)["generator_mse"]
    assert np.isfinite(history["discriminator_loss"][0])
    assert last < 0.5 * first, (first, last)


def test_keras_file_round_trip(tmp_path):
    model = small(condition_shape=(12, 12, 1))
    batch = blobs(np.random.default_rng(5), 4)
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(2), verbose=0)
    model.save(tmp_path / "rectifier.keras")
    loaded = keras.saving.load_model(tmp_path / "rectifier.keras")
    assert loaded.get_config() == model.get_config()
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    np.testing.assert_allclose(model(batch["prediction"]), loaded(batch["prediction"]),
                               atol=1e-6)
    assert loaded.generator_optimizer is not None                # compiled on loading
    loaded.fit(tf.data.Dataset.from_tensors(batch), verbose=0)


def test_xla_forward_equals_eager():
    model = small()
    x = tf.constant(blobs(np.random.default_rng(6), 4)["prediction"])
    eager = np.asarray(model(x))
    xla = np.asarray(tf.function(lambda v: model(v), jit_compile=True)(x))
    np.testing.assert_allclose(xla, eager, atol=1e-6)
    d_eager = np.asarray(model.discriminator(x, x))
    d_xla = tf.function(lambda v: model.discriminator(v, v), jit_compile=True)(x)
    np.testing.assert_allclose(np.asarray(d_xla), d_eager, atol=1e-6)


@pytest.mark.slow
def test_xla_train_step_equals_graph_train_step():
    batch = blobs(np.random.default_rng(7), 4)
    weights = {}
    for jit in (False, True):
        model = small(input_noise_stddev=0.0)
        model.compile(jit_compile=jit)
        model.fit(tf.data.Dataset.from_tensors(batch).repeat(2), verbose=0)
        weights[jit] = [np.asarray(v) for v in model.weights]
    for a, b in zip(weights[False], weights[True]):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_mirrored_strategy_matches_one_device(strategies):
    # A large SGD rate makes the discriminator's step show whether the replicas' gradients
    # add up to the gradient of the global batch mean (Adam would hide a factor of 2).
    batch = blobs(np.random.default_rng(8), 8)
    weights = []
    for strategy in strategies:
        with strategy.scope():
            model = small(input_noise_stddev=0.0, discriminator_learning_rate=2.0)
            start = [np.asarray(v) for v in model.discriminator.weights]
        model.fit(tf.data.Dataset.from_tensors(batch), verbose=0)
        weights.append([np.asarray(v) for v in model.weights])
        moved = max(np.abs(np.asarray(v) - w).max()
                    for v, w in zip(model.discriminator.weights, start))
        assert moved > 1e-3
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_mixed_float16_trains_with_loss_scaling():
    keras.mixed_precision.set_global_policy("mixed_float16")   # reset by conftest
    model = small()
    assert isinstance(model.generator_optimizer, keras.optimizers.LossScaleOptimizer)
    batch = blobs(np.random.default_rng(10), 4)
    start = [np.asarray(v) for v in model.generator.trainable_weights]
    logs = model.fit(tf.data.Dataset.from_tensors(batch).repeat(3), verbose=0).history
    assert np.isfinite(logs["generator_loss"][0]) and np.isfinite(logs["discriminator_loss"][0])
    assert keras.backend.standardize_dtype(model(batch["prediction"]).dtype) == "float16"
    for a, v in zip(start, model.generator.trainable_weights):
        assert np.all(np.isfinite(np.asarray(v))) and v.dtype == "float32"
    assert any(not np.array_equal(a, np.asarray(v))
               for a, v in zip(start, model.generator.trainable_weights))


def test_bad_arguments_and_batches():
    with pytest.raises(ValueError, match=r"product of encoder_strides \[1, 2, 1\] must equal"):
        RectifierGenerator(decoder_strides=(1, 1))
    with pytest.raises(ValueError, match=r"decoder_strides needs one entry per"):
        RectifierGenerator(decoder_filters=(8,), decoder_strides=(2, 1))
    with pytest.raises(ValueError, match=r"multiples of 2"):
        RectifierGenerator(encoder_filters=(4, 4, 4), decoder_filters=(4, 4)).build(
            (None, 35, 35, 1))
    with pytest.raises(ValueError, match=r"hidden_units must be an integer >= 1"):
        RectifierDiscriminator(hidden_units=0)
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\)"):
        GANRectifier(**SMALL, label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"input_noise_stddev must be a number >= 0"):
        GANRectifier(**SMALL, input_noise_stddev=-0.1)
    with pytest.raises(ValueError, match=r"frame_shape must be \(height, width, channels\)"):
        GANRectifier(frame_shape=(12, 12))
    model = small()
    batch = blobs(np.random.default_rng(9), 2)
    with pytest.raises(ValueError, match=r"missing 'target'"):
        model.train_step({"prediction": tf.constant(batch["prediction"])})
    with pytest.raises(ValueError, match=r"'prediction' must have shape \[batch, 12, 12, 1\]"):
        model.train_step({"prediction": tf.zeros((2, 10, 10, 1)),
                          "target": tf.constant(batch["target"])})
