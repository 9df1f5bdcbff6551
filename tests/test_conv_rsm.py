"""ConvRSM against an independent numpy re-implementation of one convolutional RSM step.

The reference below shares no code with the layer: SAME strided convolution, its transposed
decoder, the half-pixel bilinear resize of the feedback, per-position top-k and the
sample-wide ranking shift and sum-norms are written here with loops from docs/conv_rsm.md.
"""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm import ConvRSM, RSMCell

B, H, W, D = 3, 6, 6, 1          # input 6×6×1
FH = FW = 3                      # receptive field 3×3
S = 2                            # stride 2 → grid 3×3
G, C, K = 4, 3, 2                # n = 12 cells per position, 2 active groups
N = G * C
GH = GW = 3
FB = (2, 2, 5)                   # feedback code of a higher layer, resized 2×2 → 3×3


# ----------------------------------------------------------------------------- numpy reference
def ref_same_padding(size, out, field, stride):
    total = max((out - 1) * stride + field - size, 0)
    return total // 2


def ref_conv(x, kernel, stride):
    """SAME, strided cross-correlation [B, H, W, D] * [fh, fw, D, g] → [B, h, w, g]."""
    b, hh, ww, _ = x.shape
    fh, fw, _, g = kernel.shape
    oh, ow = math.ceil(hh / stride), math.ceil(ww / stride)
    top, left = ref_same_padding(hh, oh, fh, stride), ref_same_padding(ww, ow, fw, stride)
    out = np.zeros((b, oh, ow, g))
    for i in range(oh):
        for j in range(ow):
            for u in range(fh):
                for v in range(fw):
                    p, q = i * stride + u - top, j * stride + v - left
                    if 0 <= p < hh and 0 <= q < ww:
                        out[:, i, j] += x[:, p, q] @ kernel[u, v]
    return out


def ref_conv_transpose(a, kernel, out_shape, stride):
    """Adjoint of `ref_conv` from out_shape [Ht, Wt, Dt]: [B, h, w, g] → [B, Ht, Wt, Dt]."""
    b, oh, ow, _ = a.shape
    fh, fw, dt, _ = kernel.shape
    hh, ww, _ = out_shape
    top, left = ref_same_padding(hh, oh, fh, stride), ref_same_padding(ww, ow, fw, stride)
    out = np.zeros((b,) + tuple(out_shape))
    for i in range(oh):
        for j in range(ow):
            for u in range(fh):
                for v in range(fw):
                    p, q = i * stride + u - top, j * stride + v - left
                    if 0 <= p < hh and 0 <= q < ww:
                        out[:, p, q] += a[:, i, j] @ kernel[u, v].T
    return out


def ref_resize_half_pixel(x, oh, ow):
    """Bilinear resize with half-pixel centres: source = (dst + 0.5)·in/out − 0.5, clamped."""
    _, ih, iw, _ = x.shape

    def taps(out_size, in_size):
        src = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
        low = np.floor(src)
        frac = src - low
        lo = np.clip(low, 0, in_size - 1).astype(int)
        hi = np.clip(low + 1, 0, in_size - 1).astype(int)
        return lo, hi, frac

    r0, r1, fr = taps(oh, ih)
    c0, c1, fc = taps(ow, iw)
    rows = x[:, r0] * (1 - fr)[None, :, None, None] + x[:, r1] * fr[None, :, None, None]
    return rows[:, :, c0] * (1 - fc)[None, None, :, None] + rows[:, :, c1] * fc[None, None, :,
                                                                                None]


def ref_norm(z):
    return z / (z.reshape(z.shape[0], -1).sum(axis=1).reshape((-1,) + (1,) * (z.ndim - 1))
                + 1e-11)


def ref_condition(u, trace, eps):
    if eps == 0:
        return ref_norm(u), None
    psi = ref_norm(np.maximum(eps * trace, u))
    return psi, psi


def ref_step(x_t, state, w, hp, reset, feedback):
    """One ConvRSM step (float64); state: x [B,H,W,D], y [B,h,w,n], inh [B,h,w,n], traces."""
    keep = 1.0 - reset
    state = {k: v * keep.reshape((-1,) + (1,) * (v.ndim - 1)) for k, v in state.items()}
    feedback = feedback * keep[:, None, None, None]
    eps, gamma = hp["recurrent_decay"], hp["inhibition_decay"]
    forward = ref_conv(state["x"], w["input_kernel"], S) + w["input_bias"]       # [B,h,w,g]
    r_in, r_trace = ref_condition(state["y"], state.get("r_trace"), eps)
    drive = r_in @ w["recurrent_kernel"]                                        # [B,h,w,n]
    resized = ref_resize_half_pixel(feedback, GH, GW)
    b_in, b_trace = ref_condition(resized, state.get("b_trace"), eps)
    drive = drive + b_in @ w["feedback_kernel"]
    z = drive.reshape(B, GH, GW, G, C) + forward[..., None]
    rho = z - z.reshape(B, -1).min(axis=1)[:, None, None, None, None] + 1.0
    rho = rho * (1.0 - state["inh"].reshape(B, GH, GW, G, C))
    mask = np.zeros_like(rho)
    for b in range(B):
        for i in range(GH):
            for j in range(GW):
                scores = rho[b, i, j]                                           # [g, c]
                winners = np.argsort(-scores.max(axis=1), kind="stable")[:K]
                for q in winners:
                    mask[b, i, j, q, np.flatnonzero(scores[q] >= scores[q].max())[0]] = 1.0
    y = np.tanh(z * mask)
    decoded = ref_conv_transpose(y.max(axis=-1), w["decoder_kernel"], (H, W, D), S)
    decoded = 1.0 / (1.0 + np.exp(-(decoded + w["decoder_bias"])))               # sigmoid
    mask = mask.reshape(B, GH, GW, N)
    y = y.reshape(B, GH, GW, N)
    new = {"x": x_t, "y": y, "inh": np.maximum(gamma * state["inh"], mask)}
    if eps > 0:
        new["r_trace"], new["b_trace"] = r_trace, b_trace
    return y, decoded, mask, new


# ----------------------------------------------------------------------------- helpers
CONFIGS = {
    "no_trace": dict(inhibition_decay=0.6, recurrent_decay=0.0),
    "trace": dict(inhibition_decay=0.3, recurrent_decay=0.7),
}


def make_layer(hp, **extra):
    layer = ConvRSM(groups=G, cells_per_group=C, active_groups=K, kernel_size=(FH, FW),
                    strides=S, feedback_shape=FB, use_input_bias=True,
                    decoder_activation="sigmoid", **hp, **extra)
    layer.build((None, H, W, D))
    rng = np.random.default_rng(0)
    for v in layer.trainable_weights:
        v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
    return layer, {v.name: np.asarray(v, "float64") for v in layer.trainable_weights}


def ref_state_of(layer, tensors):
    names = ["x", "y", "inh"] + (["r_trace", "b_trace"] if layer.recurrent_decay > 0 else [])
    shapes = {"x": (H, W, D), "y": (GH, GW, N), "inh": (GH, GW, N), "r_trace": (GH, GW, N),
              "b_trace": (GH, GW, FB[2])}
    return {k: np.asarray(t, "float64").reshape((-1,) + shapes[k])
            for k, t in zip(names, tensors)}


def zero_states(layer, batch=B):
    return [tf.zeros((batch, s)) for s in layer.state_size]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_numpy_reference_over_12_steps_with_resets_and_feedback(name):
    hp = CONFIGS[name]
    layer, w = make_layer(hp)
    assert layer.grid == (GH, GW)
    rng = np.random.default_rng(1)
    steps = 12
    xs = rng.uniform(0, 1, (steps, B, H, W, D))
    feedbacks = rng.uniform(0, 1, (steps, B) + FB) * (rng.uniform(size=(steps, B) + FB) < 0.3)
    resets = (rng.uniform(size=(steps, B)) < 0.15).astype(float)
    resets[5, 1] = 1.0
    states = zero_states(layer)
    ref = ref_state_of(layer, states)
    seen_decaying = False
    for t in range(steps):
        out = layer.step(tf.constant(xs[t], tf.float32), states, reset=tf.constant(resets[t]),
                         feedback=tf.constant(feedbacks[t], tf.float32))
        y, dec, mask, ref = ref_step(xs[t], ref, w, hp, resets[t], feedbacks[t])
        np.testing.assert_array_equal(np.asarray(out.mask), mask, err_msg=f"mask step {t}")
        np.testing.assert_allclose(np.asarray(out.encoding), y, atol=2e-5, err_msg=f"y {t}")
        np.testing.assert_allclose(np.asarray(out.decoding), dec, atol=2e-5, err_msg=f"x̂ {t}")
        got = ref_state_of(layer, out.states)
        assert got.keys() == ref.keys()
        for key in got:
            np.testing.assert_allclose(got[key], ref[key], atol=2e-5, err_msg=f"{key} step {t}")
        seen_decaying |= bool(((ref["inh"] > 0) & (ref["inh"] < 1)).any())
        states = out.states
    assert seen_decaying


def test_paper_shapes_decode_to_the_target_size_exactly():
    first = ConvRSM(groups=2, cells_per_group=2, active_groups=1, kernel_size=5, strides=2)
    first.build((None, 34, 34, 1))
    second = ConvRSM(groups=2, cells_per_group=2, active_groups=1, kernel_size=3, strides=2,
                     feedback_shape=None)
    second.build((None, 9, 9, 4))
    assert first.grid == (17, 17) and second.grid == (5, 5)
    for layer, shape in ((first, (34, 34, 1)), (second, (9, 9, 4))):
        out = layer.step(tf.random.uniform((2,) + shape), zero_states(layer, 2))
        assert tuple(out.decoding.shape) == (2,) + shape
        assert layer.decoder_bias.shape == shape


def test_1x1_input_and_field_equals_rsm_cell():
    kwargs = dict(groups=5, cells_per_group=3, inhibition_decay=0.4, recurrent_decay=0.5,
                  use_recurrent_bias=True, use_input_bias=True, boost_strength=0.0)
    cell = RSMCell(active_groups=2, feedback_units=4, **kwargs)
    cell.build((None, 6 + 4))
    conv = ConvRSM(active_groups=2, kernel_size=1, feedback_shape=(1, 1, 4), **kwargs)
    conv.build((None, 1, 1, 6))
    rng = np.random.default_rng(3)
    for v in cell.trainable_weights:
        v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
    for name in ("recurrent_kernel", "recurrent_bias", "input_bias", "feedback_kernel"):
        getattr(conv, name).assign(getattr(cell, name))
    conv.input_kernel.assign(np.asarray(cell.input_kernel)[None, None])
    conv.decoder_kernel.assign(np.asarray(cell.decoder_kernel).T[None, None])
    conv.decoder_bias.assign(np.asarray(cell.decoder_bias)[None, None])
    s_cell, s_conv = zero_states(cell, 4), zero_states(conv, 4)
    assert [s.shape for s in s_cell] == [s.shape for s in s_conv]
    for t in range(8):
        x = rng.uniform(size=(4, 6)).astype("float32")
        fb = rng.uniform(size=(4, 4)).astype("float32")
        reset = tf.constant([float(t == 4), 0.0, 0.0, 0.0])
        a = cell.step(tf.constant(x), s_cell, reset=reset, feedback=tf.constant(fb))
        b = conv.step(tf.constant(x.reshape(4, 1, 1, 6)), s_conv, reset=reset,
                      feedback=tf.constant(fb.reshape(4, 1, 1, 4)))
        np.testing.assert_array_equal(np.asarray(a.mask), np.asarray(b.mask).reshape(4, -1))
        np.testing.assert_allclose(a.encoding, np.reshape(b.encoding, (4, -1)), atol=1e-6)
        np.testing.assert_allclose(a.decoding, np.reshape(b.decoding, (4, -1)), atol=1e-6)
        for u, v in zip(a.states, b.states):
            np.testing.assert_allclose(u, v, atol=1e-6)
        s_cell, s_conv = a.states, b.states


@pytest.mark.parametrize("commute", [True, False])
@pytest.mark.parametrize("jit", [False, True])
def test_sparse_recurrent_and_feedback_paths_equal_dense_with_gradients(jit, commute):
    """Same masks, codes and kernel gradients over 6 steps; the feedback is a k'-sparse code on
    a 2×2 grid, resized to the 3×3 grid (so up to 4·k' non-zeros per position), or, when the
    product commutes with the resize, multiplied on the 2×2 grid (k' per position)."""
    fb_shape, fb_k = (2, 2, 10), 2
    kwargs = dict(groups=G, cells_per_group=C, active_groups=K, kernel_size=3, strides=2,
                  inhibition_decay=0.5, use_recurrent_bias=True, use_feedback_bias=True,
                  feedback_shape=fb_shape, feedback_max_active=fb_k)
    dense = ConvRSM(recurrent_path="dense", **kwargs)
    sparse = ConvRSM(recurrent_path="sparse", **kwargs)
    assert sparse.uses_sparse_recurrent_path and not dense.uses_sparse_recurrent_path
    assert sparse.uses_sparse_feedback_path and not dense.uses_sparse_feedback_path
    assert sparse.feedback_max_nonzero == 4 * fb_k
    for layer in (dense, sparse):
        layer.build((None, H, W, D))
        layer._commute_feedback = commute            # pylint: disable=protected-access
        assert layer.feedback_commutes(training=False) == commute
    sparse.set_weights(dense.get_weights())
    rng = np.random.default_rng(5)
    xs = tf.constant(rng.uniform(size=(6, B, H, W, D)).astype("float32"))
    fbs = np.zeros((6, B) + fb_shape, "float32")
    index = rng.integers(0, fb_shape[2], (6, B) + fb_shape[:2] + (fb_k,))
    np.put_along_axis(fbs, index, rng.uniform(-1, 1, index.shape).astype("float32"), axis=-1)
    kernels = ("recurrent_kernel", "feedback_kernel", "feedback_bias")

    @tf.function(jit_compile=jit)
    def steps(layer, x, fb, states):
        with tf.GradientTape() as tape:
            out = layer.step(x, states, feedback=fb)
            loss = tf.reduce_sum((out.decoding - x) ** 2)
        grads = tape.gradient(loss, [getattr(layer, k) for k in kernels])
        return out, [tf.convert_to_tensor(g) for g in grads]

    s_d = s_s = zero_states(dense)
    for t in range(6):
        fb = tf.constant(fbs[t])
        out_d, g_d = steps(dense, xs[t], fb, s_d)
        out_s, g_s = steps(sparse, xs[t], fb, s_s)
        np.testing.assert_array_equal(out_d.mask, out_s.mask)
        np.testing.assert_allclose(out_d.encoding, out_s.encoding, atol=1e-5)
        for u, v in zip(g_d, g_s):
            np.testing.assert_allclose(u, v, atol=1e-4)
        s_d, s_s = out_d.states, out_s.states


@pytest.mark.parametrize("jit", [False, True])
def test_feedback_on_the_coarse_grid_equals_resizing_first(jit):
    """resize(fb) W_b / Σresize(fb) computed as resize(fb W_b) / Σresize(Σ_c fb): the same
    codes, decodings and gradients (every kernel and bias) over 6 steps with resets."""
    kwargs = dict(groups=G, cells_per_group=C, active_groups=K, kernel_size=3, strides=2,
                  inhibition_decay=0.5, use_recurrent_bias=True, use_feedback_bias=True,
                  feedback_shape=FB, decoder_activation="sigmoid")
    coarse, fine = ConvRSM(**kwargs), ConvRSM(**kwargs)
    for layer in (coarse, fine):
        layer.build((None, H, W, D))
    fine._commute_feedback = False                   # pylint: disable=protected-access
    assert coarse.feedback_commutes(False) and not fine.feedback_commutes(False)
    rng = np.random.default_rng(7)
    fine.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                      for w in fine.get_weights()])
    coarse.set_weights(fine.get_weights())
    xs = rng.uniform(size=(6, B, H, W, D)).astype("float32")
    # Non-negative codes: a signed sum near 0 would amplify rounding in either order.
    fbs = (rng.uniform(0, 1, (6, B) + FB) * (rng.uniform(size=(6, B) + FB) < 0.4)
           ).astype("float32")
    resets = (rng.uniform(size=(6, B)) < 0.2).astype("float32")

    @tf.function(jit_compile=jit)
    def step(layer, x, fb, reset, states):
        with tf.GradientTape() as tape:
            out = layer.step(x, states, reset=reset, feedback=fb)
            loss = tf.reduce_sum((out.decoding - x) ** 2)
        return out, tape.gradient(loss, layer.trainable_weights)

    s_c = s_f = zero_states(coarse)
    for t in range(6):
        args = (tf.constant(xs[t]), tf.constant(fbs[t]), tf.constant(resets[t]))
        out_c, g_c = step(coarse, *args, s_c)
        out_f, g_f = step(fine, *args, s_f)
        np.testing.assert_array_equal(out_c.mask, out_f.mask)
        np.testing.assert_allclose(out_c.encoding, out_f.encoding, atol=1e-5)
        np.testing.assert_allclose(out_c.decoding, out_f.decoding, atol=1e-5)
        for w, u, v in zip(coarse.trainable_weights, g_c, g_f):
            np.testing.assert_allclose(u, v, atol=1e-4, rtol=1e-4, err_msg=w.name)
        s_c, s_f = out_c.states, out_f.states


def test_feedback_commutes_only_without_trace_abs_norm_or_dropout():
    kwargs = dict(groups=G, cells_per_group=C, active_groups=K, kernel_size=3, strides=2,
                  feedback_shape=FB)
    layer = ConvRSM(**kwargs)
    layer.build((None, H, W, D))
    assert layer.feedback_commutes(training=False) and layer.feedback_commutes(training=True)
    for extra in (dict(recurrent_decay=0.5), dict(recurrent_norm="abs_sum")):
        other = ConvRSM(**kwargs, **extra)
        other.build((None, H, W, D))
        assert not other.feedback_commutes(training=False), extra
    dropout = ConvRSM(recurrent_keep_rate=0.5, **kwargs)
    dropout.build((None, H, W, D))
    assert dropout.feedback_commutes(training=False)
    assert not dropout.feedback_commutes(training=True)
    same_grid = ConvRSM(**{**kwargs, "feedback_shape": (GH, GW, 5)})
    same_grid.build((None, H, W, D))
    assert not same_grid.feedback_commutes(training=False)       # nothing to save


def test_sparse_feedback_path_needs_a_bound_and_no_trace():
    kwargs = dict(groups=64, cells_per_group=8, active_groups=3, kernel_size=5, strides=2,
                  feedback_shape=(5, 5, 1024))
    assert not ConvRSM(**kwargs).uses_sparse_feedback_path              # bound unknown
    layer = ConvRSM(feedback_max_active=5, **kwargs)
    layer.build((None, 34, 34, 1))
    # 20 of 1024 feedback entries (2%) is above auto's 1%: dense, the faster one there
    # (docs/conv_rsm.md); the sparse path is taken when asked for.
    assert layer.feedback_max_nonzero == 20 and not layer.uses_sparse_feedback_path
    forced = ConvRSM(feedback_max_active=5, recurrent_path="sparse", **kwargs)
    forced.build((None, 34, 34, 1))
    assert forced.uses_sparse_feedback_path
    same_grid = ConvRSM(feedback_max_active=5, **{**kwargs, "feedback_shape": (17, 17, 1024)})
    same_grid.build((None, 34, 34, 1))
    assert same_grid.feedback_max_nonzero == 5 and same_grid.uses_sparse_feedback_path
    traced = ConvRSM(feedback_max_active=5, recurrent_decay=0.5,
                     **{**kwargs, "feedback_shape": (17, 17, 1024)})
    traced.build((None, 34, 34, 1))
    assert traced.feedback_max_nonzero is None                         # a trace is dense
    assert not traced.uses_sparse_feedback_path


@pytest.mark.parametrize("jit", [False, True])
def test_sparse_input_matmul_applies_values_fn_to_the_nonzeros_only(jit):
    """The sparse paths' dropout: values_fn sees the non-zeros; the result equals the dense
    matmul of the transformed input, and so does the kernel's gradient (graph and XLA forms)."""
    from pagi_rsm.ops.rsm import sparse_input_matmul
    rng = np.random.default_rng(9)
    r = np.zeros((7, 10), "float32")
    for row in r[1:]:                          # row 0 has no non-zeros (a reset sample)
        row[rng.choice(10, 3, replace=False)] = rng.normal(size=3)
    r = tf.constant(r)
    kernel = tf.constant(rng.normal(size=(10, 4)).astype("float32"))
    up = tf.constant(rng.normal(size=(7, 4)).astype("float32"))
    seen = []

    @tf.function(jit_compile=jit)
    def both(r, kernel):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(kernel)
            dense = tf.reduce_sum(((3.0 * r) @ kernel) * up)
            sparse = tf.reduce_sum(sparse_input_matmul(
                r, kernel, 3, values_fn=lambda v: seen.append(v.shape) or 3.0 * v) * up)
        return sparse, dense, tape.gradient(sparse, kernel), tape.gradient(dense, kernel)

    sparse, dense, g_sparse, g_dense = both(r, kernel)
    np.testing.assert_allclose(sparse, dense, rtol=1e-5)
    np.testing.assert_allclose(g_sparse, g_dense, atol=1e-5)
    # values_fn got the non-zeros only: [nnz] outside XLA, [rows, max_nonzero] inside it
    assert seen and (seen[0].rank == 2 if jit else seen[0].rank == 1)


def test_auto_path_choice():
    kwargs = dict(groups=64, cells_per_group=8, active_groups=3, kernel_size=5)
    assert ConvRSM(**kwargs).uses_sparse_recurrent_path               # ε = 0, k/n = 3/512
    assert not ConvRSM(recurrent_decay=0.5, **kwargs).uses_sparse_recurrent_path
    assert not ConvRSM(groups=4, cells_per_group=2, active_groups=2,
                       kernel_size=3).uses_sparse_recurrent_path       # k/n = 1/4


def test_xla_equals_eager_with_feedback():
    layer, _ = make_layer(CONFIGS["trace"], recurrent_keep_rate=0.5)
    rng = np.random.default_rng(6)
    x = tf.constant(rng.uniform(size=(B, H, W, D)).astype("float32"))
    fb = tf.constant(rng.uniform(size=(B,) + FB).astype("float32"))
    states = [tf.constant(rng.uniform(size=(B, s)).astype("float32")) for s in layer.state_size]

    def run(x, fb, states):
        out = layer.step(x, states, feedback=fb)
        return [out.encoding, out.decoding, out.mask] + list(out.states)

    eager = run(x, fb, states)
    xla = tf.function(run, jit_compile=True)(x, fb, states)
    for a, b in zip(eager, xla):
        np.testing.assert_allclose(a, b, atol=1e-5)


# ----------------------------------------------------------------------------- sanity checks
def run_steps(layer, xs):
    states = zero_states(layer, xs.shape[1])
    masks = []
    for x in xs:
        out = layer.step(tf.constant(x), states)
        masks.append(np.asarray(out.mask))
        states = out.states
    return np.stack(masks)                                          # [T, B, h, w, n]


def test_exactly_k_cells_per_position_and_cell0_at_start():
    layer = ConvRSM(groups=G, cells_per_group=C, active_groups=K, kernel_size=3, strides=2,
                    inhibition_decay=0.5)
    layer.build((None, H, W, D))
    xs = np.random.default_rng(3).uniform(size=(6, B, H, W, D)).astype("float32")
    masks = run_steps(layer, xs)
    assert (masks.reshape(6, B, -1).sum(-1) == K * GH * GW).all()  # k·h·w per sample
    assert (masks.sum(-1) == K).all()                               # k per position
    assert (masks.reshape(6, B, GH, GW, G, C).sum(-1) <= 1).all()
    # t = 0: zero state, no recurrent bias → the cells of a group tie → cell 0 wins.
    assert (masks[0].reshape(B, GH, GW, G, C)[..., 1:] == 0).all()


def test_gamma_zero_gives_one_step_refractory_period():
    layer = ConvRSM(groups=G, cells_per_group=C, active_groups=K, kernel_size=3, strides=2,
                    inhibition_decay=0.0)
    layer.build((None, H, W, D))
    masks = run_steps(layer, np.random.default_rng(4).uniform(
        size=(12, 1, H, W, D)).astype("float32"))
    assert masks.sum() > 0
    assert not (masks[1:] * masks[:-1]).any()


def test_no_gradient_reaches_state_inputs_or_feedback():
    layer, _ = make_layer(CONFIGS["trace"])
    states = [tf.Variable(tf.random.uniform((B, s))) for s in layer.state_size]
    feedback = tf.Variable(tf.random.uniform((B,) + FB))
    x = tf.random.uniform((B, H, W, D))
    with tf.GradientTape() as tape:
        out = layer.step(x, [s + 0.0 for s in states], feedback=feedback + 0.0)
        loss = (tf.reduce_mean((out.decoding - x) ** 2) + tf.reduce_sum(out.encoding)
                + sum(tf.reduce_sum(s) for s in out.states))
    grads = tape.gradient(loss, states + [feedback] + layer.trainable_weights)
    assert all(g is None for g in grads[:len(states) + 1])
    trained = dict(zip([v.name for v in layer.trainable_weights], grads[len(states) + 1:]))
    for name in ("input_kernel", "recurrent_kernel", "feedback_kernel", "decoder_kernel",
                 "decoder_bias"):
        assert trained[name] is not None, name


def test_rnn_wrapper_equals_step_loop_and_round_trips(tmp_path):
    layer = ConvRSM(groups=G, cells_per_group=C, active_groups=K, kernel_size=3, strides=2,
                    inhibition_decay=0.5, recurrent_decay=0.4, reset_input=True,
                    output_decoding=True)
    inputs = keras.Input((5, H, W, D + 1))
    model = keras.Model(inputs, keras.layers.RNN(layer, return_sequences=True)(inputs))
    rng = np.random.default_rng(8)
    xs = rng.uniform(size=(B, 5, H, W, D)).astype("float32")
    resets = np.zeros((B, 5, H, W, 1), "float32")
    resets[1, 3] = 1.0
    out = np.asarray(model(np.concatenate([xs, resets], axis=-1)))
    cells = GH * GW * N
    assert out.shape == (B, 5, cells + H * W * D)
    states = zero_states(layer)
    for t in range(5):
        step = layer.step(tf.constant(xs[:, t]), states, reset=tf.constant(resets[:, t, 0, 0, 0]))
        np.testing.assert_allclose(out[:, t, :cells], np.reshape(step.encoding, (B, -1)),
                                   atol=1e-6)
        np.testing.assert_allclose(out[:, t, cells:], np.reshape(step.decoding, (B, -1)),
                                   atol=1e-6)
        states = step.states
    path = tmp_path / "conv_rsm.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(np.concatenate([xs, resets], axis=-1)), out, atol=1e-6)


@pytest.mark.parametrize("kwargs, word", [
    (dict(active_groups=5), "active_groups"),
    (dict(active_groups=0), "active_groups"),
    (dict(sparsity=2), "sparsity"),
    (dict(kernel_size=0), "kernel_size"),
    (dict(kernel_size=(3, 3, 3)), "kernel_size"),
    (dict(strides=1.5), "strides"),
    (dict(decoder_shape=(6, 6)), "decoder_shape"),
    (dict(feedback_shape=(2, 2, 0)), "feedback_shape"),
    (dict(inhibition_decay=1.5), "inhibition_decay"),
])
def test_bad_arguments_name_the_argument(kwargs, word):
    args = dict(groups=G, cells_per_group=C, active_groups=K, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        ConvRSM(**args)


def test_bad_shapes_are_clear_errors():
    layer = ConvRSM(groups=G, cells_per_group=C, active_groups=K, kernel_size=3, strides=2)
    with pytest.raises(ValueError, match="rank 4"):
        layer.build((None, 6, 6))
    layer = ConvRSM(groups=G, cells_per_group=C, active_groups=K, kernel_size=3, strides=2,
                    decoder_shape=(12, 12, 1))
    with pytest.raises(ValueError, match="decoder_shape"):
        layer.build((None, 6, 6, 1))
