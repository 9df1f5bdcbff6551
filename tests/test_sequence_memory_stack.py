"""SequenceMemoryStack: local learning inside model.fit, streams, resets, checkpoints, hparams."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm.components.sequence_memory_stack import SequenceMemoryStack, default_hparams

B, T, K = 8, 6, 5
SEQ = [0, 1, 2, 3, 0, 2, 1, 4]  # higher order: what follows 0 depends on the step before it


def toy_chunks(start=0, reset_every=None):
    """Continuing one-hot streams of SEQ; stream b starts at offset b."""
    i = start
    while True:
        t = i * T + np.arange(T)[None] + np.arange(B)[:, None]
        labels = np.array(SEQ)[t % len(SEQ)].astype("int32")
        reset = np.zeros((B, T), "float32")
        if reset_every:
            reset[(t % reset_every) == 0] = 1.0
        yield dict(inputs=np.eye(K, dtype="float32")[labels], labels=labels, reset=reset,
                   test=(t % len(SEQ) == 5).astype("float32"))
        i += 1


def toy_dataset(start=0, **kw):
    spec = dict(inputs=tf.TensorSpec((B, T, K), tf.float32),
                labels=tf.TensorSpec((B, T), tf.int32),
                reset=tf.TensorSpec((B, T), tf.float32), test=tf.TensorSpec((B, T), tf.float32))
    return tf.data.Dataset.from_generator(lambda: toy_chunks(start, **kw), output_signature=spec)


def small_stack(**overrides):
    hp = dict(input_dim=K, num_classes=K, batch_size=B, groups=[16], cells_per_group=[4],
              active_groups=[3], inhibition_decay=[0.5], predictor_hidden_size=[32],
              predictor_nonlinearity=["none"], learning_rate=0.01, accuracy_window=100, seed=1)
    hp.update(overrides)
    keras.utils.set_random_seed(1)
    model = SequenceMemoryStack(**hp)
    model.compile()
    return model


@pytest.mark.parametrize("schedule", ["chunk", "step"])
def test_learns_a_higher_order_sequence_inside_fit(schedule):
    model = small_stack(update_schedule=schedule)
    history = model.fit(toy_dataset(), steps_per_epoch=40, epochs=3, verbose=0).history
    assert history["loss"][0] > 0.05          # the logged loss is real, not Keras' empty 0
    assert history["memory_loss_0"][0] > 0.0
    assert history["loss"][-1] < history["loss"][0]
    assert history["accuracy"][-1] > 0.95
    assert history["test_state_accuracy"][-1] > 0.95
    assert history["test_state_count"][-1] >= 100


def test_heads_once_per_chunk_equal_the_heads_of_each_step():
    """With constant weights (chunk schedule, evaluation) the decoders and the predictor run
    once over all T steps' rows; values, losses, gradients and the [B, T] metrics must equal
    those of running the heads step by step (the step schedule's path)."""
    model = small_stack(num_layers=2, groups=[16, 8], cells_per_group=[4, 2],
                        active_groups=[3, 2], pool_size=[2, 1], connectivity="bi",
                        predictor_input_decay=0.5)
    model.fit(toy_dataset(), steps_per_epoch=2, verbose=0)
    chunk = next(toy_chunks(2))
    chunk["reset"][1, 3] = 1.0
    x, reset = tf.constant(chunk["inputs"]), tf.constant(chunk["reset"])
    labels = tf.constant(chunk["labels"])
    states = model.zero_states(B)
    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        records = []
        for t in range(T):
            records.append(model._step(x[:, t], reset[:, t], states, training=False))
            states = records[-1].states
        per_step = [model._heads([r], training=False) for r in records]
        per_step_total = sum(model._total(losses, model._predictor_loss(labels[:, t], logits))
                             for t, (_, losses, logits) in enumerate(per_step)) / T
        decodings, losses, logits = model._heads(records, training=False)
        once_total = model._total(losses, model._predictor_loss(
            tf.reshape(tf.transpose(labels), [-1]), logits))
    np.testing.assert_allclose(once_total, per_step_total, rtol=1e-6)
    for a, b in zip(tape.gradient(once_total, variables),
                    tape.gradient(per_step_total, variables)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    out, _ = model.unroll(chunk, model.zero_states(B))
    for t, (step_decodings, _, step_logits) in enumerate(per_step):
        np.testing.assert_allclose(out["logits"][:, t], step_logits, atol=1e-6)
        for l in range(2):
            np.testing.assert_allclose(out[f"decoding_{l}"][:, t], step_decodings[l], atol=1e-6)
    # the [B, T] metrics, heads once (evaluation) and step by step (training, one update per
    # chunk; no dropout here): correct[b, t] scores step t of stream b
    log_p = np.asarray(model.predictor.log_distribution(out["logits"]))
    for training in (False, True):
        _, losses, loss, correct, cross_entropy, _ = model._run_steps(
            x, labels, reset, model.zero_states(B), training=training, update_each_step=False)
        np.testing.assert_allclose(model._total(losses, loss), once_total, rtol=1e-6)
        np.testing.assert_array_equal(correct, np.argmax(log_p, -1) == chunk["labels"])
        np.testing.assert_allclose(
            cross_entropy, -np.take_along_axis(log_p, chunk["labels"][..., None], -1)[..., 0],
            rtol=1e-6)


def test_two_layers_with_feedback_and_pooling_train():
    model = small_stack(num_layers=2, groups=[16, 8], cells_per_group=[4, 2], active_groups=[3, 2],
                        pool_size=[2, 1], connectivity="bi")
    assert model.cells[1].input_dim == 32 and model.cells[0].feedback_units == 16
    history = model.fit(toy_dataset(), steps_per_epoch=30, epochs=2, verbose=0).history
    assert history["memory_loss_1"][-1] > 0.0
    assert np.isfinite(history["loss"][-1])


def test_streams_continue_across_fit_calls_and_reset_zeroes_a_sample():
    model = small_stack()
    model.fit(toy_dataset(), steps_per_epoch=3, verbose=0)
    x_prev = np.asarray(model.stream_states[0].values[0])
    # Stream b's last input of chunk 2 is SEQ[(2*T + T - 1 + b) % 8].
    last = np.array(SEQ)[(3 * T - 1 + np.arange(B)) % len(SEQ)]
    np.testing.assert_array_equal(x_prev.argmax(-1), last)
    # A chunk whose first step resets stream 0 only: stream 0 must behave like a fresh stream.
    chunk = next(toy_chunks(3))
    chunk["reset"][0, 0] = 1.0
    out = model(chunk)
    fresh = small_stack()
    fresh.set_weights(model.get_weights())
    fresh.reset_streams()
    out_fresh = fresh(chunk)
    np.testing.assert_allclose(out["encoding_0"][0], out_fresh["encoding_0"][0], atol=1e-6)
    assert not np.allclose(out["encoding_0"][1], out_fresh["encoding_0"][1])


@pytest.mark.parametrize("trace", [0.0, 0.8])
def test_checkpoint_restores_streams_and_optimizers_so_training_continues_identically(
        tmp_path, trace):
    model = small_stack(predictor_input_decay=trace)
    assert len(model.stream_states) == (2 if trace else 1)   # the predictor's input trace
    model.fit(toy_dataset(), steps_per_epoch=4, verbose=0)
    ckpt = tf.train.Checkpoint(**model.checkpoint_items())
    path = ckpt.save(str(tmp_path / "ckpt"))
    after = model.fit(toy_dataset(start=4), steps_per_epoch=3, verbose=0).history
    restored = small_stack(seed=99, predictor_input_decay=trace)  # different init: everything must come from the checkpoint
    tf.train.Checkpoint(**restored.checkpoint_items()).restore(path).assert_consumed()
    again = restored.fit(toy_dataset(start=4), steps_per_epoch=3, verbose=0).history
    for key in ("loss", "memory_loss_0", "predictor_loss", "accuracy"):
        np.testing.assert_allclose(after[key], again[key], rtol=1e-5, err_msg=key)
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, err_msg=a.path)


def test_keras_file_round_trip_keeps_stream_state(tmp_path):
    model = small_stack()
    model.fit(toy_dataset(), steps_per_epoch=3, verbose=0)
    model.save(tmp_path / "stack.keras")
    loaded = keras.saving.load_model(tmp_path / "stack.keras")
    chunk = next(toy_chunks(3))
    np.testing.assert_allclose(model(chunk)["encoding_0"], loaded(chunk)["encoding_0"], atol=1e-6)


def test_stream_state_read_outside_a_replica_gives_the_first_rows_of_the_batch():
    """Keras builds a model in a strategy's scope on one replica's batch outside a replica
    context: the states read there must have the batch's rows, not all the streams'."""
    from pagi_rsm.models.stream_state import StreamState
    state = StreamState(4, [3])
    state.values[0].assign(np.arange(12, dtype="float32").reshape(4, 3))
    np.testing.assert_array_equal(state.read(4)[0], state.values[0])
    np.testing.assert_array_equal(state.read(tf.constant(2))[0], [[0, 1, 2], [3, 4, 5]])
    model = small_stack()
    out = model({k: v[:2] for k, v in next(toy_chunks()).items()})   # 2 of the B streams
    assert out["decoding_0"].shape == (2, T, K) and out["logits"].shape == (2, T, K)


def test_frequency_statistics_update():
    model = small_stack(duty_cycle_interval=T)
    model.fit(toy_dataset(), steps_per_epoch=2, verbose=0)
    freq = np.asarray(model.cells[0].duty_cycle)
    assert freq.sum() > 0
    # Each step activates exactly k of n cells: frequencies (EMA of win rates) sum to ≤ k.
    assert freq.sum() <= 3 + 1e-5


def test_boost_strength_decays_on_its_schedule():
    # Duty cycle and boost are updated after every chunk of T steps; the strength halves every
    # T steps, so the update of the third chunk (time step 2T) uses 2.0 * 0.5 ** 2.
    model = small_stack(duty_cycle_interval=T, boost_strength=[2.0], boost_strength_factor=0.5,
                        boost_decay_interval=T)
    model.fit(toy_dataset(), steps_per_epoch=3, verbose=0)
    cell = model.cells[0]
    assert float(model.boost_scale()) == pytest.approx(0.125)     # time step 3T: next update
    target = cell.active_groups / cell.units
    np.testing.assert_allclose(np.asarray(cell.boost),
                               np.exp((target - np.asarray(cell.duty_cycle)) * 2.0 * 0.25),
                               rtol=1e-5)


def test_mirrored_strategy_matches_one_device(strategies):

    def run(strategy):
        with strategy.scope():
            model = small_stack(learning_rate=1e-4)
        model.fit(toy_dataset(), steps_per_epoch=3, verbose=0)
        return [np.asarray(w) for w in model.weights], model

    single, one_model = run(strategies[0])
    mirrored, model = run(strategies[1])
    # Adam turns float-noise-sized gradient differences (reduction order; exactly 0 vs 1e-10)
    # into steps of up to ~lr (1e-4 here), so weights agree to 1e-3 after 3 steps, not bitwise; a wrong stream/replica mapping would
    # differ by O(1) in the stream state and in the winners.
    for a, b, w in zip(single, mirrored, model.weights):
        np.testing.assert_allclose(a, b, atol=1e-3, err_msg=w.path)
    chunk = next(toy_chunks(3))
    np.testing.assert_array_equal(one_model(chunk)["mask_0"], model(chunk)["mask_0"])


@pytest.mark.parametrize("overrides, word", [
    (dict(active_groups=[20]), "active_groups"),
    (dict(inhibition_decay=[1.5]), "inhibition_decay"),
    (dict(inhibition_decay=[-0.5]), "inhibition_decay"),
    (dict(num_layers=2, groups=[16, 8, 4]), "groups"),
    (dict(num_layers=2, active_groups=[3, 2, 1]), "active_groups"),
    (dict(dends_per_cell=[1]), "dends_per_cell"),
    (dict(update_schedule="sometimes"), "update_schedule"),
    (dict(connectivity="up"), "connectivity"),
    (dict(memory_training_interval=5), "memory_training_interval"),
    (dict(predictor_nonlinearity=["none", "none", "none"]), "predictor_nonlinearity"),
    (dict(layer_mass=0.5), "layer_mass"),
    (dict(predictor_input_decay=1.0), "predictor_input_decay"),
    (dict(predictor_learning_rate=0.0), "predictor_learning_rate"),
    (dict(predictor_input_reset=1), "predictor_input_reset"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(predictor_input_norm_first="yes"), "predictor_input_norm_first"),
    (dict(input_dim=None), "input_dim"),
])
def test_bad_hparams_name_the_hparam(overrides, word):
    with pytest.raises(ValueError, match=word):
        small_stack(**overrides)


def test_predictor_learning_rate_is_its_own_when_set():
    model = small_stack(predictor_learning_rate=0.05)
    assert float(model.predictor_optimizer.learning_rate) == pytest.approx(0.05)
    assert float(model.memory_optimizers[0].learning_rate) == pytest.approx(0.01)
    assert float(small_stack().predictor_optimizer.learning_rate) == pytest.approx(0.01)


def test_default_hparams_cover_every_accepted_key():
    hp = default_hparams()
    assert {"groups", "cells_per_group", "active_groups", "inhibition_decay", "recurrent_decay",
            "predictor_hidden_size", "batch_size", "learning_rate"} <= set(hp)


@pytest.mark.parametrize("norm, divisor", [("sum", 0.1), ("abs_sum", 1.7), (None, 1.0)])
def test_predictor_input_normalisation(norm, divisor):
    """N(y) divides by the signed sum (original) or by the sum of |y|; hand-derived divisors."""
    from pagi_rsm.components.predictor import Predictor
    predictor = Predictor(3, hidden_sizes=[], nonlinearities=["none"], norm=norm)
    y = np.array([[0.9, -0.8, 0.0, 0.0]], "float32")    # signed sum 0.1, |y| sum 1.7
    predictor.build(y.shape)
    kernel = np.eye(4, 3, dtype="float32")
    predictor.dense_layers[0].set_weights([kernel, np.zeros(3, "float32")])
    np.testing.assert_allclose(predictor(y), (y / divisor) @ kernel, rtol=1e-6)
    with pytest.raises(ValueError, match="predictor_norm"):
        Predictor(3, norm="l2")


@pytest.mark.parametrize("layer_mass, uniform_mass", [(1.0, 0.0), (0.9, 0.1)])
def test_predictor_log_distribution_is_finite_and_exact(layer_mass, uniform_mass):
    from pagi_rsm.components.predictor import Predictor
    predictor = Predictor(3, layer_mass=layer_mass, uniform_mass=uniform_mass)
    logits = np.array([[0.5, -1.0, 2.0], [200.0, -200.0, 0.0]], "float32")
    log_p = np.asarray(predictor.log_distribution(logits))
    assert np.isfinite(log_p).all()       # softmax of row 2 underflows to 0 for class 1
    e = np.exp(logits[0] - logits[0].max())
    expected = np.log(layer_mass * e / e.sum() + uniform_mass / 3)
    np.testing.assert_allclose(log_p[0], expected, rtol=1e-5)
    np.testing.assert_allclose(np.exp(log_p).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [True, False])
def test_predictor_input_trace_follows_the_original(norm_first):
    """τ_t = max(δ·τ_{t−1}, N(y_t)) (norm first) or N(max(δ·τ_{t−1}, y_t)), docs/rsm.md#predictor;
    the reference is written out here in numpy."""
    from pagi_rsm.components.predictor import Predictor
    delta = 0.5
    predictor = Predictor(2, hidden_sizes=[], nonlinearities=["none"], input_decay=delta,
                          input_norm_first=norm_first)
    codes = np.array([[[0.8, 0.0, 0.2, 0.0]], [[0.0, 0.5, 0.0, 0.5]],
                      [[0.0, 0.0, 0.9, 0.1]]], "float32")        # [T, B=1, n]
    trace = np.zeros((1, 4), "float32")
    expected = np.zeros((1, 4))
    for y in codes:
        x, trace = predictor.condition(y, trace)
        if norm_first:
            expected = np.maximum(delta * expected, y / y.sum())
        else:
            both = np.maximum(delta * expected, y)
            expected = both / both.sum()
        np.testing.assert_allclose(x, expected, rtol=1e-6)
        np.testing.assert_allclose(trace, expected, rtol=1e-6)
    # the last step, by hand for norm_first: max(0.5 * max(0.5 * [.8 0 .2 0], [0 .5 0 .5]), y3)
    if norm_first:
        np.testing.assert_allclose(x, [[0.2, 0.25, 0.9, 0.25]], rtol=1e-6)
    with pytest.raises(ValueError, match="trace"):
        predictor(codes[0])                      # a trace predictor needs its previous trace


@pytest.mark.parametrize("clear", [False, True])
def test_predictor_trace_is_cleared_at_a_reset_only_with_predictor_input_reset(clear):
    model = small_stack(predictor_input_decay=0.5, predictor_norm=None,
                        predictor_input_reset=clear)
    model.fit(toy_dataset(), steps_per_epoch=2, verbose=0)     # a non-zero trace
    chunk = next(toy_chunks(2))
    chunk["reset"][:] = 0.0
    chunk["reset"][0, -1] = 1.0                                 # stream 0 restarts at the end
    y_last = np.asarray(model(chunk)["encoding_0"])[:, -1]     # the codes; state unchanged
    model.test_step(chunk)                                      # steps the streams, no learning
    trace = np.asarray(model.stream_states[-1].values[0])
    fresh = np.maximum(0.0, y_last)      # max(0.5 * 0, y): a cleared trace (y = 0 right after
    assert np.allclose(trace[0], fresh[0], atol=1e-6) == clear     # a reset: no input yet)
    assert not np.allclose(trace[1], fresh[1], atol=1e-6)      # other streams keep their trace


def test_unroll_held_out_streams_and_a_probe_of_the_trained_code():
    """`unroll` from `zero_states` is `call` on fresh streams; a linear probe of the trained
    code reads the higher-order sequence's test step, and probing leaves the streams alone."""
    from pagi_rsm.callbacks.probe_summaries import ProbeSummaries
    model = small_stack()
    batch = next(iter(toy_dataset()))
    fresh, states = model.unroll(batch, model.zero_states(B))
    np.testing.assert_allclose(np.asarray(fresh["encoding_0"]),
                               np.asarray(model(batch)["encoding_0"]))   # streams are still zero
    assert [len(s) for s in states] == [len(s.sizes) for s in model.stream_states]
    model.fit(toy_dataset(), steps_per_epoch=40, epochs=2, verbose=0)
    before = [np.asarray(v) for s in model.stream_states for v in s.values]
    probe = ProbeSummaries(None, None, 1, toy_dataset, num_classes=K, feature="encoding_0",
                           train_chunks=8, test_chunks=4, mask_key="test")
    probe.set_model(model)
    values = probe.probe()
    assert values["probe/test_accuracy"] > 0.95, values
    after = [np.asarray(v) for s in model.stream_states for v in s.values]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_training_interval_freezes_the_memory_on_one_device_and_mirrored(strategies):
    """memory_training_interval [0, 12]: the memory learns for 12 time steps (2 chunks of 6),
    then stays exactly as it was while the predictor goes on learning, also under
    MirroredStrategy (where the gated update runs in the cross-replica context)."""
    for strategy in strategies:
        with strategy.scope():
            model = small_stack(memory_training_interval=[0, 12])
        memory = model.cells[0].trainable_variables
        predictor = model.predictor.trainable_variables
        start = [np.asarray(v) for v in memory]
        model.fit(toy_dataset(), steps_per_epoch=2, verbose=0)
        learned = [np.asarray(v) for v in memory]
        after = [np.asarray(v) for v in predictor]
        model.fit(toy_dataset(start=2), steps_per_epoch=2, verbose=0)
        assert max(np.abs(a - b).max() for a, b in zip(start, learned)) > 1e-4
        for a, v in zip(learned, memory):
            np.testing.assert_array_equal(a, np.asarray(v), err_msg=v.path)
        assert max(np.abs(a - np.asarray(v)).max() for a, v in zip(after, predictor)) > 1e-4
