"""ContinualClassifier: per-task heads by gather, k-winners codes, coupled weight decay, checks."""
import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm.components.continual_models import ContinualClassifier


def _inputs(rng, batch=6, shape=(8, 8, 1), tasks=3):
    return {"inputs": tf.constant(rng.normal(size=(batch,) + shape), tf.float32),
            "task": tf.constant(rng.integers(0, tasks, size=batch), tf.int32)}


def _model(**kwargs):
    kwargs.setdefault("input_shape", [8, 8, 1])
    kwargs.setdefault("hidden_units", 20)
    model = ContinualClassifier(**kwargs)
    model.build()
    return model


def test_each_example_gets_its_own_tasks_head(rng):
    model = _model(num_heads=3, classes_per_head=4)
    x = _inputs(rng)
    logits = model(x).numpy()
    # Independent computation: hidden code, then the full head kernel, sliced by task in numpy.
    h = x["inputs"].numpy().reshape(6, -1) @ model.body[1].kernel.numpy() \
        + model.body[1].bias.numpy()
    h = np.maximum(h, 0.0)
    full = h @ model.head.kernel.numpy() + model.head.bias.numpy()
    task = x["task"].numpy()
    expected = np.stack([full[i, 4 * t:4 * t + 4] for i, t in enumerate(task)])
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_only_the_examples_heads_get_a_gradient(rng):
    model = _model(num_heads=3, classes_per_head=4, weight_decay=0.0)
    x = _inputs(rng)
    x["task"] = tf.constant([1, 1, 1, 1, 1, 1], tf.int32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True))
    grad = tape.gradient(loss, model.head.kernel).numpy()
    assert np.abs(grad[:, 4:8]).sum() > 0
    assert np.abs(grad[:, :4]).sum() == 0 and np.abs(grad[:, 8:]).sum() == 0


def test_weight_decay_is_coupled_l2_on_every_kernel_and_bias(rng):
    model = _model(weight_decay=0.01, sparse=True, weight_sparsity=0.5, percent_on=0.25)
    squares = sum(float(tf.reduce_sum(tf.square(v))) for v in model.trainable_variables)
    assert float(tf.add_n(model.losses)) == pytest.approx(0.005 * squares, rel=1e-5)
    # The gradient of the penalty is weight_decay * w (PyTorch SGD weight_decay).
    w = model.head.kernel
    with tf.GradientTape() as tape:
        penalty = tf.add_n(model.losses)
    np.testing.assert_allclose(tape.gradient(penalty, w).numpy(), 0.01 * w.numpy(), rtol=1e-5)


def test_sparse_mlp_code_has_k_winners_and_sparse_weights(rng):
    model = _model(sparse=True, hidden_units=40, percent_on=0.1, k_inference_factor=1.5,
                   weight_sparsity=0.75, hidden_layers=2)
    x = _inputs(rng, batch=16)
    _, codes = model._forward(x, training=True)
    for code in codes:
        assert (np.count_nonzero(code.numpy(), axis=1) <= 4).all()      # k = 4 of 40
    _, codes = model._forward(x, training=False)
    assert (np.count_nonzero(codes[0].numpy(), axis=1) <= 6).all()      # k_inference = 6
    kernel = model.body[1].kernel.numpy()
    assert (np.count_nonzero(kernel, axis=0) == 16).all()                # 25% of 64 kept
    fractions = [float(f) for f in model.active_fractions(x)]
    assert len(fractions) == 2 and all(0 < f <= 6 / 40 + 1e-6 for f in fractions)


def test_cnn_dense_and_sparse_shapes(rng):
    x = _inputs(rng, shape=(16, 16, 3))
    for sparse in (False, True):
        model = _model(architecture="cnn", conv_filters=[4, 6], kernel_size=3, sparse=sparse,
                       input_shape=[16, 16, 3], num_heads=3, classes_per_head=5,
                       conv_weight_sparsity=0.5 if sparse else 0.0, conv_percent_on=0.25)
        assert model(x, training=True).shape == (6, 5)
        assert len(model.active_fractions(x)) == 3   # two conv codes and the FC code
    with pytest.raises(ValueError, match="conv_filters: 3 conv layers"):
        _model(architecture="cnn", conv_filters=[4, 4, 4], kernel_size=5, input_shape=[16, 16, 1])


def test_keras_round_trip(tmp_path, rng):
    import keras
    model = _model(sparse=True, percent_on=0.2, num_heads=3, classes_per_head=4)
    model.compile()
    x = _inputs(rng)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)
    assert loaded.get_config() == model.get_config()


def test_optimizer_hparam_chooses_sgd_or_adam_and_survives_saving(tmp_path):
    import keras
    sgd = _model()
    sgd.compile()
    assert isinstance(sgd.optimizer, keras.optimizers.SGD) and sgd.optimizer.nesterov
    adam = _model(optimizer="adam", learning_rate=5e-4)
    adam.compile()
    assert isinstance(adam.optimizer, keras.optimizers.Adam)
    assert float(adam.optimizer.learning_rate) == pytest.approx(5e-4)
    path = tmp_path / "adam.keras"
    adam.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config()["optimizer"] == "adam"
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)


@pytest.mark.parametrize("kwargs, match", [
    ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam"),
    ({"percent_on": 1.5}, r"percent_on must be a number in \(0, 1\), got 1.5"),
    ({"percent_on": 0.0}, "percent_on must be a number in"),
    ({"percent_on": 0.5, "k_inference_factor": 2.5}, r"percent_on \* k_inference_factor"),
    ({"sparse": True, "percent_on": 0.001, "hidden_units": 100}, "at least 1 winner"),
    ({"architecture": "rnn"}, "architecture must be one of mlp, cnn"),
    ({"hidden_units": 0}, "hidden_units must be an integer >= 1"),
    ({"dropout": 1.0}, "dropout must be a number in"),
    ({"weight_sparsity": 1.0}, "weight_sparsity must be a number in"),
    ({"classes_per_head": 1}, "classes_per_head must be an integer >= 2"),
])
def test_bad_hparams_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContinualClassifier(**kwargs)
