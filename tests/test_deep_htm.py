"""TemporalMemoryCell against a numpy reference, truncated BPTT, and the DeepHTM component:
exactly k active columns, one cell per active column, gradients through the top-k."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm.components.deep_htm import DeepHTM
from pagi_rsm.layers.temporal_memory import TemporalMemoryCell
from pagi_rsm.ops.sparse_matmul import top_k_matmul


def _sparse_columns(rng, batch, columns, k):
    a = np.zeros((batch, columns), "float32")
    for b in range(batch):
        a[b, rng.choice(columns, k, replace=False)] = rng.normal(size=k)
    return a


def _reference_step(a, y_prev, kernel, bias, c):
    """One TM step written out with loops (the contract of the docstring)."""
    batch, g = a.shape
    drive = (y_prev @ kernel + bias).reshape(batch, g, c)
    y = np.zeros((batch, g, c))
    for b in range(batch):
        for col in range(g):
            if a[b, col] != 0:
                best = int(np.argmax(drive[b, col]))
                y[b, col, best] = np.tanh(a[b, col] + drive[b, col, best])
    return y.reshape(batch, g * c)


@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_temporal_memory_step_matches_numpy(rng, path):
    g, c, k, batch = 7, 3, 2, 4
    cell = TemporalMemoryCell(c, active_columns=k, recurrent_path=path,
                              bias_initializer="random_normal")
    cell.build((batch, g))
    kernel, bias = cell.recurrent_kernel.numpy(), cell.recurrent_bias.numpy()
    y_prev = _reference_step(_sparse_columns(rng, batch, g, k), np.zeros((batch, g * c)),
                             kernel, bias, c)
    a = _sparse_columns(rng, batch, g, k)
    out = cell.step(tf.constant(a), [tf.constant(y_prev, tf.float32), tf.zeros((batch, 1))])
    expected = _reference_step(a, y_prev, kernel, bias, c)
    np.testing.assert_allclose(out.output.numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(out.mask.numpy(), (expected != 0).astype("float32"))
    # exactly one cell in each active column, none elsewhere
    per_column = out.mask.numpy().reshape(batch, g, c).sum(-1)
    np.testing.assert_array_equal(per_column, (a != 0).astype("float32"))


def test_top_k_matmul_equals_dense_product_and_gradient(rng):
    x = _sparse_columns(rng, 5, 12, 3)
    kernel = rng.normal(size=(12, 4)).astype("float32")
    x_t, k_t = tf.constant(x), tf.Variable(kernel)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x_t)
        sparse = top_k_matmul(x_t, k_t, 3)
        dense = x_t @ k_t
        w = tf.constant(rng.normal(size=(5, 4)).astype("float32"))
        ls, ld = tf.reduce_sum(sparse * w), tf.reduce_sum(dense * w)
    np.testing.assert_allclose(sparse.numpy(), dense.numpy(), atol=1e-5)
    np.testing.assert_allclose(tape.gradient(ls, k_t).numpy(), tape.gradient(ld, k_t).numpy(),
                               atol=1e-5)
    # the input gradient is the dense one at the non-zeros (the winners), 0 elsewhere
    np.testing.assert_allclose(tape.gradient(ls, x_t).numpy(),
                               tape.gradient(ld, x_t).numpy() * (x != 0), atol=1e-5)


def _input_gradients(bptt_steps, steps=5):
    """|d y_{T-1} / d a_t| summed, per step t, through keras.layers.RNN."""
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(0)
    cell = TemporalMemoryCell(3, bptt_steps=bptt_steps)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    a = tf.constant(np.stack([_sparse_columns(rng, 2, 6, 2) for _ in range(steps)], axis=1))
    with tf.GradientTape() as tape:
        tape.watch(a)
        y = rnn(a)
        loss = tf.reduce_sum(y[:, -1] ** 2)
    return np.abs(tape.gradient(loss, a).numpy()).sum(axis=(0, 2))


def test_truncated_bptt_cuts_the_gradient_every_l_steps():
    full = _input_gradients(0)
    assert np.all(full > 0)                       # the last output depends on every input
    local = _input_gradients(1)                   # RSM-style: only the current input
    assert np.all(local[:-1] == 0) and local[-1] > 0
    # L = 2: the state entering steps 0, 2, 4 is cut, so the last output (step 4) sees a_4 only;
    # L = 3: cut entering steps 0 and 3, so step 4 sees a_3 and a_4.
    two, three = _input_gradients(2), _input_gradients(3)
    assert np.all(two[:4] == 0) and two[4] > 0
    assert np.all(three[:3] == 0) and np.all(three[3:] > 0)


def test_cell_arguments_are_checked():
    with pytest.raises(ValueError, match="cells_per_column must be an integer >= 1"):
        TemporalMemoryCell(0)
    with pytest.raises(ValueError, match="recurrent_path='sparse' needs active_columns"):
        TemporalMemoryCell(2, recurrent_path="sparse")
    with pytest.raises(ValueError, match="bptt_steps must be an integer >= 0"):
        TemporalMemoryCell(2, bptt_steps=-1)


def _small_model(**kwargs):
    keras.utils.set_random_seed(1)
    args = dict(input_dim=2, encoder_units=[16, 16], columns=32, active_columns=5,
                cells_per_column=5, decoder_units=[16])
    args.update(kwargs)
    model = DeepHTM(**args)
    model.build((None, None, 2))
    return model


@pytest.mark.parametrize("training", [False, True])
def test_spatial_pooler_keeps_exactly_k_columns_and_tm_one_cell_each(rng, training):
    model = _small_model()
    x = tf.constant(rng.normal(size=(3, 9, 2)).astype("float32"))
    out = model.sequence_outputs(x, training=training)
    active = out["columns"].numpy() != 0
    np.testing.assert_array_equal(active.sum(-1), np.full((3, 9), 5))
    cells = out["cells"].numpy().reshape(3, 9, 32, 5) != 0
    np.testing.assert_array_equal(cells.sum(-1), active.astype(int))
    assert out["predictions"].shape == (3, 9, 2)


def test_gradients_reach_the_encoder_straight_through_the_winners(rng):
    model = _small_model()
    x = tf.constant(rng.normal(size=(2, 6, 2)).astype("float32"))
    # Straight-through at the winners: d columns / d pre-activation is 1 at winners, 0 else.
    hidden = x
    for layer in model.encoder:
        hidden = layer(hidden)
    pre = model.proximal(hidden)
    weights = tf.constant(rng.normal(size=pre.shape).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(pre)
        columns = model.spatial_pooler(pre, training=False)
        loss = tf.reduce_sum(columns * weights)
    winners = columns.numpy() != 0
    np.testing.assert_allclose(tape.gradient(loss, pre).numpy(), weights.numpy() * winners)
    # The next-value loss reaches every encoder kernel, non-zero and finite.
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((model(x, training=True)[:, :-1] - x[:, 1:]) ** 2)
    grads = tape.gradient(loss, [layer.kernel for layer in model.encoder]
                          + [model.proximal.kernel, model.tm_cell.recurrent_kernel])
    for g in grads:
        assert g is not None and np.all(np.isfinite(g.numpy())) and np.abs(g.numpy()).sum() > 0


def test_sparse_reads_equal_dense_and_step_equals_sequence(rng):
    x = tf.constant(rng.normal(size=(2, 7, 2)).astype("float32"))
    sparse, dense = _small_model(), _small_model(sparse_reads=False)
    dense.set_weights(sparse.get_weights())
    np.testing.assert_allclose(sparse(x).numpy(), dense(x).numpy(), atol=1e-5)
    state = sparse.zero_state(2)
    steps = []
    for t in range(7):
        prediction, state = sparse.step(x[:, t], state)
        steps.append(prediction.numpy())
    np.testing.assert_allclose(np.stack(steps, 1), sparse(x).numpy(), atol=1e-5)


def test_keras_round_trip_and_bad_hparams(tmp_path, rng):
    model = _small_model(bptt_steps=4)
    model.compile()
    x = rng.normal(size=(2, 5, 2)).astype("float32")
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    assert loaded.hparams == model.hparams
    with pytest.raises(ValueError, match=r"active_columns must be < columns \(8\)"):
        DeepHTM(columns=8, active_columns=8)
    with pytest.raises(ValueError, match="final_learning_rate must be a number in"):
        DeepHTM(learning_rate=1e-3, final_learning_rate=1e-2)
    with pytest.raises(ValueError, match=r"inputs \[batch, time, input_dim=2\]"):
        DeepHTM(input_dim=2).build((None, None, 3))


def test_compiled_stream_under_xla_equals_the_sequence_call(rng):
    from pagi_rsm import generation
    model = _small_model()
    x = tf.constant(rng.normal(size=(1, 12, 2)).astype("float32"))
    outputs, _ = generation.compiled_stream(model.step, jit_compile=True)(model.zero_state(1), x)
    np.testing.assert_allclose(outputs.numpy(), model(x).numpy(), atol=1e-5)
    free, _ = generation.compiled_free_run(model.step, jit_compile=True)(
        model.zero_state(1), x[:, 0], 5)
    assert free.shape == (1, 5, 2) and np.all(np.isfinite(free.numpy()))


def test_predict_change_adds_the_decoded_change_to_the_current_input(rng):
    x = tf.constant(rng.normal(size=(2, 6, 2)).astype("float32"))
    plain, change = _small_model(), _small_model(predict_change=True)
    # Untrained, it is persistence: the readout's kernel starts at zero.
    np.testing.assert_allclose(change(x).numpy(), x.numpy() + change.readout.bias.numpy(),
                               atol=1e-6)
    change.set_weights(plain.get_weights())
    np.testing.assert_allclose(change(x).numpy(), plain(x).numpy() + x.numpy(), atol=1e-5)
    # With a zero readout the model is persistence: the prediction of x_{t+1} is x_t.
    change.readout.kernel.assign(tf.zeros_like(change.readout.kernel))
    change.readout.bias.assign(tf.zeros_like(change.readout.bias))
    np.testing.assert_allclose(change(x).numpy(), x.numpy(), atol=1e-6)
    state = change.zero_state(2)
    prediction, state = change.step(x[:, 0], state)                 # streaming agrees
    np.testing.assert_allclose(prediction.numpy(), x[:, 0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="predict_change must be True or False"):
        DeepHTM(predict_change="yes")
