"""Selection and ties of RSM (docs/rsm.md, "Selection and ties") and the sparse recurrent path.

Hand-derived cases: the expected masks are written out, not computed by the code under test.
Each runs eagerly, in a graph and under XLA, which must agree exactly.
"""
import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm import RSMCell
from pagi_rsm.ops import rsm as rsm_ops


def _modes(fn):
    """`fn` eagerly, as a tf.function and as an XLA-compiled tf.function."""
    return {"eager": fn, "graph": tf.function(fn, jit_compile=False),
            "xla": tf.function(fn, jit_compile=True)}


# rho [1, g=4, c=3]: group scores (best cell) 2, 3, 3, 2.
RHO = np.array([[[1.0, 2.0, 2.0],     # partial tie of cells 1 and 2 → cell 1
                 [3.0, 3.0, 3.0],     # all cells equal → cell 0
                 [0.0, 3.0, 1.0],     # no tie → cell 1
                 [2.0, 0.0, 0.0]]],   # no tie → cell 0
               dtype="float32")
# k = 3: groups 1 and 2 are above the 3rd score (2); groups 0 and 3 tie at it and one place is
# left, so the lower index (group 0) takes it.
EXPECTED_K3 = np.array([[[0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]]], dtype="float32")
# k = 1: groups 1 and 2 tie at the best score → group 1.
EXPECTED_K1 = np.array([[[0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]]], dtype="float32")


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
@pytest.mark.parametrize("k, expected", [(3, EXPECTED_K3), (1, EXPECTED_K1)])
def test_group_cell_mask_hand_case_with_ties(mode, k, expected):
    fn = _modes(lambda rho: rsm_ops.group_cell_mask(rho, k))[mode]
    np.testing.assert_array_equal(fn(tf.constant(RHO)), expected)


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_first_max_mask_takes_the_lowest_tied_index(mode):
    scores = tf.constant([[0.0, 5.0, 5.0, 1.0], [2.0, 2.0, 2.0, 2.0], [-1.0, -3.0, -1.0, -2.0]])
    fn = _modes(rsm_ops.first_max_mask)[mode]
    np.testing.assert_array_equal(fn(scores), [[False, True, False, False],
                                               [True, False, False, False],
                                               [True, False, False, False]])


def test_group_cell_mask_random_ties_agree_with_and_without_xla():
    # Small integers: many exact ties between groups and between cells.
    rho = tf.constant(np.random.default_rng(0).integers(0, 3, (64, 20, 4)).astype("float32"))
    results = [fn(rho).numpy() for fn in _modes(lambda r: rsm_ops.group_cell_mask(r, 5)).values()]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
    assert (results[0].sum(axis=(1, 2)) == 5).all()
    assert (results[0].sum(axis=2) <= 1).all()


def test_cell_partial_tie_after_a_zero_state_keeps_the_lowest_uninhibited_cell():
    # From a zero state (no biases): at t = 1, Z = 0 everywhere, so groups 0 and 1 win with
    # cell 0 and y = tanh(0) = 0. At t = 2 the recurrent drive is again exactly 0 and Z is the
    # feed-forward drive tiled over the cells: in groups 0 and 1 cell 0 is inhibited and cells
    # 1 and 2 tie. The rule keeps cell 1 (the original keeps cells 1 and 2).
    g, c, k, d = 5, 3, 2, 4
    cell = RSMCell(groups=g, cells_per_group=c, active_groups=k, inhibition_decay=0.5)
    cell.build((None, d))
    # Feed-forward weights that rank groups 0 and 1 first at t = 2.
    cell.input_kernel.assign(np.tile([[3.0, 2.0, -1.0, -2.0, -3.0]], (d, 1)).astype("float32"))
    x = tf.ones((1, d))

    def two_steps(x):
        states = cell.get_initial_state(1)
        first = cell.step(x, states)
        second = cell.step(x, first.states)
        return first.mask, second.mask

    expected_1 = np.zeros((g, c))
    expected_1[[0, 1], 0] = 1
    expected_2 = np.zeros((g, c))
    expected_2[[0, 1], 1] = 1
    for mode, fn in _modes(two_steps).items():
        m1, m2 = fn(x)
        np.testing.assert_array_equal(np.reshape(m1, (g, c)), expected_1, err_msg=mode)
        np.testing.assert_array_equal(np.reshape(m2, (g, c)), expected_2, err_msg=mode)


# ----------------------------------------------------------------------------- sparse path
def _sparse_rows(batch, n, k, seed):
    rng = np.random.default_rng(seed)
    r = np.zeros((batch, n), "float32")
    for b in range(batch):
        r[b, rng.choice(n, k, replace=False)] = rng.uniform(-1, 1, k)
    r[0] = 0.0  # a row without non-zeros (e.g. right after a reset)
    return tf.constant(r)


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_sparse_input_matmul_equals_the_dense_matmul_and_its_gradient(mode):
    r = _sparse_rows(6, 30, 3, seed=1)
    kernel = tf.Variable(np.random.default_rng(2).normal(size=(30, 7)).astype("float32"))

    def both(r):
        with tf.GradientTape(persistent=True) as tape:
            sparse = rsm_ops.sparse_input_matmul(r, kernel, 3)
            dense = tf.matmul(r, kernel)
            loss_s = tf.reduce_sum(tf.sin(sparse))
            loss_d = tf.reduce_sum(tf.sin(dense))
        return (sparse, dense, tf.convert_to_tensor(tape.gradient(loss_s, kernel)),
                tape.gradient(loss_d, kernel))

    sparse, dense, grad_s, grad_d = _modes(both)[mode](r)
    np.testing.assert_allclose(sparse, dense, atol=1e-6)
    np.testing.assert_allclose(grad_s, grad_d, atol=1e-6)


def test_auto_recurrent_path_is_sparse_only_at_small_k_without_trace():
    def path(**kwargs):
        return RSMCell(groups=200, cells_per_group=6, **kwargs).uses_sparse_recurrent_path
    assert path(active_groups=2)                          # k/n = 0.17%
    assert path(active_groups=12)                         # 1%
    assert not path(active_groups=25)                     # 2%: the dense matmul is faster
    assert not path(active_groups=2, recurrent_decay=0.5)  # a trace has more than k non-zeros
    assert not path(active_groups=2, recurrent_path="dense")
    assert path(active_groups=25, recurrent_path="sparse")


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_max_over_cells_gradient_from_the_mask_equals_tensorflows(mode):
    # y = tanh(z * mask) with one active cell per active group; the active cell's value is
    # positive, exactly 0 (the maximum is then shared by all c cells) or negative (the maximum
    # is an inactive cell's 0). The gradient with respect to z must equal TensorFlow's own
    # gradient of reduce_max, bit for bit.
    rng = np.random.default_rng(3)
    b, g, c = 4, 5, 3
    z = rng.standard_normal((b, g, c)).astype(np.float32)
    mask = np.zeros((b, g, c), np.float32)
    for i in range(b):
        for j in rng.choice(g, 3, replace=False):
            mask[i, j, rng.integers(c)] = 1.0
    active = np.argwhere(mask > 0)
    z[tuple(active[0])] = 0.0                        # a = 0: shared maximum
    z[tuple(active[1])] = -abs(z[tuple(active[1])])  # a < 0: the maximum is an inactive 0
    z[tuple(active[2])] = abs(z[tuple(active[2])])   # a > 0
    weights = rng.standard_normal((b, g)).astype(np.float32)

    def gradient(use_mask):
        def fn(z):
            with tf.GradientTape() as tape:
                tape.watch(z)
                y = tf.tanh(z * mask)
                pooled = rsm_ops.pool_cells(y, "max", mask if use_mask else None)
                loss = tf.reduce_sum(pooled * weights)
            return pooled, tape.gradient(loss, z)
        if mode != "eager":
            fn = tf.function(fn, jit_compile=mode == "xla")
        return [t.numpy() for t in fn(tf.constant(z))]

    (pooled_tf, grad_tf), (pooled_mask, grad_mask) = gradient(False), gradient(True)
    np.testing.assert_array_equal(pooled_mask, pooled_tf)
    np.testing.assert_array_equal(grad_mask, grad_tf)
    i, j, k = active[0]
    assert grad_tf[i, j, k] == np.float32(weights[i, j]) * np.float32(1.0 / c)  # the 1/c share
    assert grad_tf[tuple(active[1])] == 0.0


def test_the_mask_gradient_is_used_only_when_the_activation_keeps_zero():
    assert RSMCell(4, 2, 1, activation="tanh")._activation_keeps_zero
    assert RSMCell(4, 2, 1, activation="relu")._activation_keeps_zero
    assert not RSMCell(4, 2, 1, activation="sigmoid")._activation_keeps_zero
