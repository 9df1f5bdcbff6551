"""SequenceMemoryStack with ConvRSM layers: the paper's video shapes, training in fit without a
predictor, streams under MirroredStrategy, .keras round trip and the generation `step`."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm.components.sequence_memory_stack import SequenceMemoryStack

B, T, S = 4, 5, 8   # streams, steps per chunk, frame side

# The two-layer bouncing-balls stack of the paper (docs/conv_rsm.md), reconstruction only.
PAPER = dict(
    input_shape=[34, 34, 1], num_layers=2, groups=[64, 128], cells_per_group=[8, 8],
    active_groups=[3, 5], kernel_size=[5, 3], strides=[2, 2], pool_size=[2, 1], connectivity="bi",
    inhibition_decay=[0.0], recurrent_decay=[0.0], recurrent_keep_rate=[0.5],
    decoder_activation=["sigmoid", None], use_input_bias=[True], use_recurrent_bias=[True],
    use_feedback_bias=[True], use_decoder_bias=[True], num_classes=None, layer_mass=0.0)


def bar_chunks(start=0):
    """Stream b shows a vertical bar moving right, one column per step, from column b."""
    i = start
    while True:
        t = i * T + np.arange(T)[None] + np.arange(B)[:, None]            # [B, T]
        frames = np.zeros((B, T, S, S, 1), "float32")
        columns = t % S
        for b in range(B):
            for s in range(T):
                frames[b, s, :, columns[b, s]] = 1.0
        yield dict(inputs=frames, reset=np.zeros((B, T), "float32"))
        i += 1


def bar_dataset(start=0):
    spec = dict(inputs=tf.TensorSpec((B, T, S, S, 1), tf.float32),
                reset=tf.TensorSpec((B, T), tf.float32))
    return tf.data.Dataset.from_generator(lambda: bar_chunks(start), output_signature=spec)


def small_conv_stack(**overrides):
    hp = dict(input_shape=[S, S, 1], num_layers=2, groups=[8, 8], cells_per_group=[4, 2],
              active_groups=[2, 2], kernel_size=[3, 3], strides=[2, 2], pool_size=[2, 1],
              connectivity="bi", inhibition_decay=[0.0], decoder_activation=["sigmoid", None],
              use_decoder_bias=[True], learning_rate=0.01, batch_size=B, seed=1,
              duty_cycle_interval=T)
    hp.update(overrides)
    keras.utils.set_random_seed(1)
    model = SequenceMemoryStack(**hp)
    model.compile()
    return model


def test_paper_shapes():
    model = SequenceMemoryStack(batch_size=2, **PAPER)
    first, second = model.cells
    assert first.grid == (17, 17) and first.units == 512
    assert model.input_shapes[1] == (9, 9, 512)                        # max-pool 2: 17 → 9
    assert second.grid == (5, 5) and second.units == 1024
    assert first.feedback_shape == (5, 5, 1024) and second.feedback_shape is None
    assert tuple(first.decoder_kernel.shape) == (5, 5, 1, 64)
    assert tuple(second.decoder_kernel.shape) == (3, 3, 512, 128)
    assert tuple(second.decoder_bias.shape) == (9, 9, 512)
    assert first.uses_sparse_recurrent_path and second.uses_sparse_recurrent_path
    assert model.predictor is None


@pytest.mark.slow
def test_paper_shapes_one_fit_step_and_exact_k_per_position():
    model = SequenceMemoryStack(batch_size=2, **PAPER)
    model.compile()
    frames = np.random.default_rng(0).uniform(size=(2, 2, 34, 34, 1)).astype("float32")
    logs = model.train_on_batch(dict(inputs=frames, reset=np.zeros((2, 2), "float32")),
                                return_dict=True)
    assert set(logs) == {"loss", "memory_loss", "memory_loss_0", "memory_loss_1",
                         "cell_entropy_0", "cell_entropy_1"}
    assert all(np.isfinite(v) for v in logs.values())
    out = model(dict(inputs=frames, reset=np.zeros((2, 2), "float32")))
    assert out["encoding_0"].shape == (2, 2, 17, 17, 512)
    assert out["decoding_0"].shape == (2, 2, 34, 34, 1)
    assert out["decoding_1"].shape == (2, 2, 9, 9, 512)
    # Exactly k winners at every position of both layers.
    assert (np.asarray(out["mask_0"]).sum(-1) == 3).all()
    assert (np.asarray(out["mask_1"]).sum(-1) == 5).all()


@pytest.mark.slow
def test_learns_to_predict_a_moving_bar_inside_fit():
    model = small_conv_stack()
    history = model.fit(bar_dataset(), steps_per_epoch=25, epochs=3, verbose=0).history
    assert "predictor_loss" not in history
    first, last = history["memory_loss_0"][0], history["memory_loss_0"][-1]
    assert last < 0.5 * first, (first, last)
    assert history["memory_loss_1"][-1] > 0.0
    freq = np.asarray(model.cells[0].duty_cycle)
    # Win rates per position: k of n cells win at each position, so they sum to ≤ k.
    assert 0 < freq.sum() <= 2 + 1e-5


def test_generation_step_in_a_while_loop_matches_the_unrolled_stack():
    model = small_conv_stack()
    model.fit(bar_dataset(), steps_per_epoch=3, verbose=0)
    chunk = next(bar_chunks(7))
    frames = tf.constant(chunk["inputs"])                               # [B, T, S, S, 1]
    # step(x_t) predicts x_{t+1}: the decoding of layer 0 at t + 1 in an unrolled chunk.
    unrolled, _ = model.unroll(chunk, states=model.zero_states(B))
    states = model.zero_states(B)
    for t in range(T - 1):
        prediction, states = model.step(frames[:, t], states)
        np.testing.assert_allclose(prediction, unrolled["decoding_0"][:, t + 1], atol=1e-5)

    @tf.function(jit_compile=True)
    def prime_then_generate(frames, states):
        def prime(t, prediction, states):
            prediction, states = model.step(frames[:, t], states)
            return t + 1, prediction, states

        _, prediction, states = tf.while_loop(
            lambda t, *_: t < 3, prime, (tf.constant(0), tf.zeros_like(frames[:, 0]), states))
        generated = tf.TensorArray(tf.float32, size=4)

        def generate(i, prediction, states, generated):
            generated = generated.write(i, prediction)
            prediction, states = model.step(prediction, states)
            return i + 1, prediction, states, generated

        _, _, _, generated = tf.while_loop(lambda i, *_: i < 4, generate,
                                           (tf.constant(0), prediction, states, generated))
        return generated.stack()

    generated = prime_then_generate(frames, model.zero_states(B))
    assert generated.shape == (4, B, S, S, 1)
    # The same loop in Python, eagerly.
    states = model.zero_states(B)
    for t in range(3):
        prediction, states = model.step(frames[:, t], states)
    for i in range(4):
        np.testing.assert_allclose(generated[i], prediction, atol=1e-4)
        prediction, states = model.step(prediction, states)


def test_keras_file_round_trip_keeps_stream_state(tmp_path):
    model = small_conv_stack()
    model.fit(bar_dataset(), steps_per_epoch=2, verbose=0)
    model.save(tmp_path / "conv_stack.keras")
    loaded = keras.saving.load_model(tmp_path / "conv_stack.keras")
    for a, b in zip(model.stream_states[0].values, loaded.stream_states[0].values):
        np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(model.stream_states[0].values[1])).sum() > 0
    chunk = next(bar_chunks(3))
    np.testing.assert_allclose(model(chunk)["decoding_0"], loaded(chunk)["decoding_0"],
                               atol=1e-6)


def test_mirrored_strategy_matches_one_device(strategies):

    def run(strategy):
        with strategy.scope():
            model = small_conv_stack(learning_rate=1e-4)
        model.fit(bar_dataset(), steps_per_epoch=2, verbose=0)
        return [np.asarray(w) for w in model.weights], model

    single, one_model = run(strategies[0])
    mirrored, model = run(strategies[1])
    for a, b, w in zip(single, mirrored, model.weights):
        np.testing.assert_allclose(a, b, atol=1e-3, err_msg=w.path)
    # Every replica wrote its own streams back: the stored previous frames agree exactly.
    np.testing.assert_array_equal(one_model.stream_states[0].values[0],
                                  model.stream_states[0].values[0])
    # Winners agree up to near-ties flipped by float noise (the bar frames tie many drives):
    # a wrong stream/replica mapping would change most of them.
    chunk = next(bar_chunks(3))
    for key in ("mask_0", "mask_1"):
        agree = np.mean(np.asarray(one_model(chunk)[key]) == np.asarray(model(chunk)[key]))
        assert agree > 0.999, (key, agree)


@pytest.mark.parametrize("overrides, word", [
    (dict(input_shape=[8, 8]), "input_shape"),
    (dict(input_shape=None), "input_dim"),
    (dict(input_dim=10), "input_dim"),
    (dict(kernel_size=[-1, 3]), "layer 1"),
    (dict(kernel_size=[0, 3]), "kernel_size"),
    (dict(pool_size=[0, 1]), "pool_size"),
])
def test_bad_hparams_name_the_hparam(overrides, word):
    with pytest.raises(ValueError, match=word):
        small_conv_stack(**overrides)
