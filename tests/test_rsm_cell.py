"""RSMCell against an independent numpy re-implementation of docs/rsm.md (one step).

The reference below shares no code with the cell: it is written from docs/rsm.md.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm import RSMCell

B, D, G, C, K = 4, 6, 5, 3, 2
N = G * C


# ----------------------------------------------------------------------------- numpy reference
def ref_condition(u, trace, eps, floor, norm_first, norm_eps=1e-11):
    def norm(z):
        return z / (z.sum(axis=1, keepdims=True) + norm_eps)
    if eps == 0:
        return norm(u), None
    decayed = eps * trace
    if floor > 0:
        decayed = np.where(decayed > floor, decayed, 0.0)
    psi = np.maximum(decayed, norm(u)) if norm_first else norm(np.maximum(decayed, u))
    return psi, psi


def ref_step(x_t, state, w, hp, reset, feedback=None):
    """One RSM step as docs/rsm.md#overview states it, float64."""
    keep = (1.0 - reset)[:, None]
    state = {name: value * keep for name, value in state.items()}
    if feedback is not None:
        feedback = feedback * keep
    eps, floor, first = hp["recurrent_decay"], hp.get("recurrent_decay_floor", 0.0), \
        hp.get("input_norm_first", False)
    r_in, r_trace = ref_condition(state["y"], state.get("r_trace"), eps, floor, first)
    forward = state["x"] @ w["input_kernel"]                       # [B, g]
    drive = r_in @ w["recurrent_kernel"]                            # [B, n]
    if feedback is not None:
        b_in, b_trace = ref_condition(feedback, state.get("b_trace"), eps, floor, first)
        drive = drive + b_in @ w["feedback_kernel"]
    z = np.repeat(forward, C, axis=1) + drive                       # cell j = group*C + m
    if hp.get("boost_strength", 0) > 0:
        rho = z * w["boost"]
    else:
        rho = (z - z.min(axis=1, keepdims=True) + 1.0) * (1.0 - state["inh"])
    rho3 = rho.reshape(-1, G, C)
    group_score = rho3.max(axis=2)
    mask = np.zeros_like(rho3)
    for b in range(rho3.shape[0]):
        winners = np.argsort(-group_score[b], kind="stable")[:K]   # ties → lower index
        for q in winners:
            cells = rho3[b, q]
            if cells.max() == cells.min():
                best = np.zeros(C)
                best[0] = 1.0                                     # all equal → cell 0
            else:
                # Partial exact ties happen right after a reset (R = 0, Z tiled, one cell of
                # the group inhibited): the original keeps every tied cell, which breaks
                # "exactly k cells"; the documented choice is the lowest tied index.
                best = np.zeros(C)
                best[np.flatnonzero(cells >= cells.max())[0]] = 1.0
            mask[b, q] = best
    mask = mask.reshape(-1, N)
    y = np.tanh(z * mask)
    inh = np.maximum(hp["inhibition_decay"] * state["inh"], mask)
    decoded = y.reshape(-1, G, C).max(axis=2) @ w["decoder_kernel"] + w["decoder_bias"]
    new_state = {"x": x_t, "y": y, "inh": inh}
    if eps > 0:
        new_state["r_trace"] = r_trace
        if feedback is not None:
            new_state["b_trace"] = b_trace
    return y, decoded, mask, new_state


# ----------------------------------------------------------------------------- helpers
CONFIGS = {
    "inhibition_trace": dict(inhibition_decay=0.7, recurrent_decay=0.6),
    "trace_floor_norm_first": dict(inhibition_decay=0.3, recurrent_decay=0.8,
                                   recurrent_decay_floor=0.02, input_norm_first=True),
    "gamma0_feedback": dict(inhibition_decay=0.0, recurrent_decay=0.5, feedback=3),
    "boosting": dict(inhibition_decay=0.9, recurrent_decay=0.4, boost_strength=2.0),
}


def make_cell(hp):
    kwargs = {k: v for k, v in hp.items() if k != "feedback"}
    cell = RSMCell(groups=G, cells_per_group=C, active_groups=K,
                   feedback_units=hp.get("feedback", 0),
                   decoder_initializer="glorot_uniform", bias_initializer="random_normal",
                   **kwargs)
    cell.build((None, D + hp.get("feedback", 0)))  # per-step input is [x, feedback]
    rng = np.random.default_rng(0)
    for v in cell.trainable_weights:
        v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
    cell.boost.assign(rng.uniform(0.5, 1.5, N).astype("float32"))
    weights = {v.name: np.asarray(v, "float64") for v in cell.weights}
    return cell, weights


def state_dict(cell, tensors):
    names = ["x", "y", "inh"]
    if cell.recurrent_decay > 0:
        names.append("r_trace")
        if cell.feedback_units:
            names.append("b_trace")
    return dict(zip(names, [np.asarray(t, "float64") for t in tensors]))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_numpy_reference_over_20_steps_with_resets(name):
    hp = CONFIGS[name]
    cell, w = make_cell(hp)
    rng = np.random.default_rng(1)
    xs = rng.uniform(0, 1, (20, B, D))
    resets = (rng.uniform(size=(20, B)) < 0.15).astype(float)
    resets[0] = 1.0
    resets[7, 1] = 1.0
    feedbacks = rng.uniform(-1, 1, (20, B, hp.get("feedback", 0))) if hp.get("feedback") else None

    states = [tf.zeros((B, s)) for s in cell.state_size]
    ref_state = state_dict(cell, states)
    seen_inhibited = False
    for t in range(20):
        fb = None if feedbacks is None else feedbacks[t]
        out = cell.step(tf.constant(xs[t], tf.float32), states, reset=tf.constant(resets[t]),
                        feedback=None if fb is None else tf.constant(fb, tf.float32))
        y, dec, mask, ref_state = ref_step(xs[t], ref_state, w, hp, resets[t], fb)
        np.testing.assert_array_equal(np.asarray(out.mask), mask, err_msg=f"mask step {t}")
        np.testing.assert_allclose(np.asarray(out.encoding), y, atol=2e-5, err_msg=f"y {t}")
        np.testing.assert_allclose(np.asarray(out.decoding), dec, atol=2e-5, err_msg=f"x̂ {t}")
        got = state_dict(cell, out.states)
        assert got.keys() == ref_state.keys()
        for key in got:
            np.testing.assert_allclose(got[key], ref_state[key], atol=2e-5,
                                       err_msg=f"state {key} step {t}")
        seen_inhibited |= bool(((ref_state["inh"] > 0) & (ref_state["inh"] < 1)).any())
        states = out.states
    if hp["inhibition_decay"] > 0:
        assert seen_inhibited  # the decaying inhibition trace was exercised


def test_rnn_wrapper_equals_step_loop():
    hp = CONFIGS["inhibition_trace"]
    cell, _ = make_cell(hp)
    rnn_cell = RSMCell.from_config({**cell.get_config(), "reset_input": True,
                                    "output_decoding": True})
    rnn = keras.layers.RNN(rnn_cell, return_sequences=True)
    rng = np.random.default_rng(2)
    xs = rng.uniform(0, 1, (B, 9, D)).astype("float32")
    resets = np.zeros((B, 9, 1), "float32")
    resets[:, 0] = 1
    resets[2, 4] = 1
    rnn.build((None, 9, D + 1))
    rnn_cell.set_weights(cell.get_weights())
    out = np.asarray(rnn(np.concatenate([xs, resets], axis=-1)))
    states = [tf.zeros((B, s)) for s in cell.state_size]
    for t in range(9):
        step = cell.step(tf.constant(xs[:, t]), states, reset=tf.constant(resets[:, t, 0]))
        np.testing.assert_allclose(out[:, t, :N], step.encoding, atol=1e-6)
        np.testing.assert_allclose(out[:, t, N:], step.decoding, atol=1e-6)
        states = step.states


# ---------------------------------------------------------------- sanity (docs/rsm.md#tests)
def run_steps(cell, xs):
    states = [tf.zeros((xs.shape[1], s)) for s in cell.state_size]
    masks = []
    for x in xs:
        out = cell.step(tf.constant(x), states)
        masks.append(np.asarray(out.mask))
        states = out.states
    return np.stack(masks)


def test_exactly_k_cells_one_per_group_and_cell0_at_start():
    cell = RSMCell(groups=G, cells_per_group=C, active_groups=K, inhibition_decay=0.5)
    cell.build((None, D))
    masks = run_steps(cell, np.random.default_rng(3).uniform(size=(6, B, D)).astype("float32"))
    assert (masks.sum(-1) == K).all()
    assert (masks.reshape(6, B, G, C).sum(-1) <= 1).all()
    # t = 0: zero state, no recurrent bias → all cells of a group tie → cell 0 wins.
    assert (masks[0].reshape(B, G, C)[..., 1:] == 0).all()


def test_gamma_zero_gives_one_step_refractory_period():
    cell = RSMCell(groups=G, cells_per_group=C, active_groups=K, inhibition_decay=0.0)
    cell.build((None, D))
    masks = run_steps(cell, np.random.default_rng(4).uniform(size=(12, 1, D)).astype("float32"))
    assert not (masks[1:] * masks[:-1]).any()


def test_no_gradient_reaches_state_inputs():
    cell, _ = make_cell(CONFIGS["inhibition_trace"])
    states = [tf.Variable(tf.random.uniform((B, s))) for s in cell.state_size]
    x = tf.random.uniform((B, D))
    with tf.GradientTape() as tape:
        out = cell.step(x, [s + 0.0 for s in states])
        loss = tf.reduce_mean((out.decoding - x) ** 2) + tf.reduce_sum(out.encoding)
    grads = tape.gradient(loss, states + cell.trainable_weights)
    assert all(g is None for g in grads[:len(states)])
    assert all(g is not None for g in grads[len(states):len(states) + 3])


def test_update_duty_cycle_sets_boost():
    cell = RSMCell(groups=G, cells_per_group=C, active_groups=K, boost_strength=3.0)
    cell.build((None, D))
    usage = np.arange(N, dtype="float32")
    cell.update_duty_cycle(usage, slots=20, learning_rate=0.5)
    freq = 0.5 * usage / 20
    np.testing.assert_allclose(cell.duty_cycle, freq, rtol=1e-6)
    np.testing.assert_allclose(cell.boost, np.exp((K / N - freq) * 3.0), rtol=1e-5)


@pytest.mark.parametrize("kwargs, word", [
    (dict(active_groups=6), "active_groups"),
    (dict(inhibition_decay=1.5), "inhibition_decay"),
    (dict(inhibition_decay=-0.1), "inhibition_decay"),
    (dict(recurrent_decay=2.0), "recurrent_decay"),
    (dict(recurrent_keep_rate=0.0), "recurrent_keep_rate"),
    (dict(groups=0), "groups"),
    (dict(cells_per_group=1.5), "cells_per_group"),
    (dict(recurrent_norm="l2"), "recurrent_norm"),
    (dict(boost_strength=-1.0), "boost_strength"),
])
def test_bad_arguments_name_the_argument(kwargs, word):
    args = dict(groups=G, cells_per_group=C, active_groups=K)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        RSMCell(**args)


def test_wrong_input_rank_is_a_clear_error():
    cell = RSMCell(groups=G, cells_per_group=C, active_groups=K)
    with pytest.raises(ValueError, match="rank 2"):
        cell.build((None, 3, D))


def test_sparse_recurrent_path_equals_dense():
    kwargs = dict(groups=10, cells_per_group=3, active_groups=2, inhibition_decay=0.6,
                  use_recurrent_bias=True)
    dense = RSMCell(recurrent_path="dense", **kwargs)
    sparse = RSMCell(recurrent_path="sparse", **kwargs)
    assert sparse.uses_sparse_recurrent_path and not dense.uses_sparse_recurrent_path
    dense.build((None, D))
    sparse.build((None, D))
    sparse.set_weights(dense.get_weights())
    xs = tf.constant(np.random.default_rng(5).uniform(size=(8, B, D)).astype("float32"))
    states_d = [tf.zeros((B, s)) for s in dense.state_size]
    states_s = list(states_d)
    for t in range(8):
        with tf.GradientTape(persistent=True) as tape:
            out_d = dense.step(xs[t], states_d)
            out_s = sparse.step(xs[t], states_s)
            loss_d = tf.reduce_sum((out_d.decoding - xs[t]) ** 2)
            loss_s = tf.reduce_sum((out_s.decoding - xs[t]) ** 2)
        np.testing.assert_array_equal(out_d.mask, out_s.mask)
        np.testing.assert_allclose(out_d.encoding, out_s.encoding, atol=1e-6)
        g_d = tape.gradient(loss_d, dense.recurrent_kernel)
        g_s = tf.convert_to_tensor(tape.gradient(loss_s, sparse.recurrent_kernel))
        np.testing.assert_allclose(g_d, g_s, atol=1e-5)
        states_d, states_s = out_d.states, out_s.states


def test_sparse_path_rejects_a_trace():
    with pytest.raises(ValueError, match="recurrent_path"):
        RSMCell(groups=G, cells_per_group=C, active_groups=K, recurrent_decay=0.5,
                recurrent_path="sparse")


def test_sum_decoder_pooling_sees_negative_winners():
    cell = RSMCell(groups=G, cells_per_group=C, active_groups=K, decoder_pooling="sum")
    cell.build((None, D))
    rng = np.random.default_rng(7)
    for v in cell.trainable_weights:
        v.assign(rng.normal(0, 0.1, v.shape).astype("float32"))
    # A strongly negative feed-forward drive makes every winner's value negative.
    cell.input_kernel.assign(-np.abs(rng.normal(0, 3.0, (D, G))).astype("float32"))
    states = [tf.constant(rng.uniform(0.2, 1, (B, s)).astype("float32")) for s in cell.state_size]
    out = cell.step(tf.constant(rng.uniform(size=(B, D)).astype("float32")), states)
    y = np.asarray(out.encoding, "float64").reshape(B, G, C)
    assert (y < 0).any()  # the case where "max" would hide a winner
    expected = y.sum(-1) @ np.asarray(cell.decoder_kernel) + np.asarray(cell.decoder_bias)
    np.testing.assert_allclose(out.decoding, expected, atol=1e-5)
    with pytest.raises(ValueError, match="decoder_pooling"):
        RSMCell(groups=G, cells_per_group=C, active_groups=K, decoder_pooling="mean")
