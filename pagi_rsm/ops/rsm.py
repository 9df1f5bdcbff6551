"""Stateless maths of Recurrent Sparse Memory (docs/rsm.md), shared by `RSMCell`.

All functions take and return tensors of the compute dtype; none holds state.
"""
import tensorflow as tf

from pagi_rsm.ops import k_winners as kw_ops


def sum_normalize(z, eps, absolute=False, total=None):
    """Per-sample sum normalisation N(z) = z / (sum(z) + eps), docs/rsm.md#traces-and-norms.

    The sum is over every non-batch axis (all positions and channels) and is signed, as in
    the original (docs/rsm.md#quirks item 3: tanh outputs can be negative).
    With `absolute=True` the divisor is the sum of |z| (the L1 norm): identical for
    non-negative z, and bounded (|N(z)| ≤ 1) when tanh outputs of opposite signs cancel.
    The division runs in float32 at least: eps (1e-11 by default) underflows in float16.
    `total`, when given, is the per-sample sum [B] to divide by (computed by the caller,
    e.g. the sum of a resized map that is never built).
    """
    axes = list(range(1, len(z.shape)))
    wide = tf.float64 if z.dtype == tf.float64 else tf.float32
    z32 = tf.cast(z, wide)
    if total is None:
        total = tf.reduce_sum(tf.abs(z32) if absolute else z32, axis=axes, keepdims=True)
    else:
        total = tf.reshape(tf.cast(total, wide), [-1] + [1] * len(axes))
    return tf.cast(z32 / (total + eps), z.dtype)


def clear_rows(tensors, reset):
    """Zeroes the samples whose `reset` flag is 1 (a new sequence) in each `[B, n]` tensor.

    Args:
      tensors: list of `[B, n]` tensors.
      reset: `[B]` or `[B, 1]` flags, 1 = clear that sample.

    Returns:
      The list of cleared tensors, in the dtype of the first one.
    """
    keep = 1.0 - tf.reshape(tf.cast(reset, tensors[0].dtype), (-1, 1))
    return [t * keep for t in tensors]


def decay_trace(trace, decay, floor):
    """The decayed trace `decay * trace`, zeroed where it falls to `floor` or below if floor > 0."""
    decayed = tf.cast(decay, trace.dtype) * trace
    if floor > 0:
        decayed = decayed * tf.cast(decayed > tf.cast(floor, trace.dtype), trace.dtype)
    return decayed


def condition_input(u, trace, *, decay, floor, norm, norm_eps, norm_first):
    """Trace → norm of one "dendrite input", without the dropout (docs/rsm.md#traces-and-norms).

    Args:
      u: the raw input of this step, [B, ...].
      trace: the previous trace ψ_{t−1} (ignored when `decay == 0`).
      decay: ε; 0 disables the trace.
      floor: φ, zero the decayed trace at or below this value.
      norm: "sum" (signed sum, the original), "abs_sum" (sum of |u|) or None.
      norm_eps: η of the sum normalisation.
      norm_first: False (default of the original): ψ = N(max(decay(ψ), u));
        True: ψ = max(decay(ψ), N(u)).

    Returns:
      (ψ_t, new_trace): the conditioned input and the trace to store (ψ_t itself when
      decay > 0, else None).
    """
    if norm in ("sum", "abs_sum"):
        def normalize(z):
            return sum_normalize(z, norm_eps, absolute=norm == "abs_sum")
    else:
        def normalize(z):
            return z
    if decay <= 0:
        return normalize(u), None
    decayed = decay_trace(trace, decay, floor)
    psi = tf.maximum(decayed, normalize(u)) if norm_first else normalize(tf.maximum(decayed, u))
    return psi, psi


def inhibition_ranking(z, refractory):
    """Ranking score ρ = (Z − min Z + 1)·refractory, min over the whole sample.

    `refractory` is (1 − I_{t−1}), possibly after dropout (docs/rsm.md#selection).
    """
    axes = list(range(1, len(z.shape)))
    shifted = z - tf.reduce_min(z, axis=axes, keepdims=True) + tf.cast(1, z.dtype)
    return shifted * refractory


def top_k_mask(scores, k):
    """Binary mask of exactly the `k` largest entries of the last axis (ties → lower index).

    The rule is explicit (see `pagi_rsm.ops.k_winners.k_winners_mask` with
    ``break_ties=True``): every entry above the k-th largest value wins, and the entries tied
    at that value fill the remaining places in index order. It does not depend on the order in
    which a device's top-k kernel returns tied entries, so CPU and XLA give the same mask.
    """
    return tf.cast(kw_ops.k_winners_mask(scores, k, break_ties=True), scores.dtype)


def first_max_mask(scores, axis_max=None):
    """Boolean one-hot of the first (lowest-index) maximum along the last axis.

    Args:
      scores: real tensor [..., c] with a static last axis.
      axis_max: optional ``reduce_max(scores, axis=-1)``, when the caller has it already.

    Returns:
      bool tensor like `scores`, exactly one True per row (the lowest index among the entries
      equal to the row's maximum). Computed with comparisons and a min over the cell index, so
      the tie rule is the same on every device (unlike `argmax`, whose order on ties is not
      promised).
    """
    c = scores.shape[-1]
    if axis_max is None:
        axis_max = tf.reduce_max(scores, axis=-1)
    index = tf.range(c, dtype=tf.int32)
    first = tf.reduce_min(tf.where(scores >= axis_max[..., None], index, c), axis=-1)
    return tf.equal(index, first[..., None])


def group_cell_mask(rho, k):
    """Top-k groups, then the best cell in each kept group (docs/rsm.md#selection).

    Args:
      rho: ranking scores [B, g, c].
      k: number of active groups.

    Returns:
      Binary mask [B, g, c] with exactly k ones per sample (one cell in each of k groups).

    Tie rule (explicit and device-independent): groups are ranked by their best cell's score;
    groups tied at the k-th score are taken in group-index order (`top_k_mask`); within a group
    the cell is the lowest index among the cells with the group's maximum (`first_max_mask`).
    This contains the original's "all cells equal → cell 0" rule. It differs from the original
    under partial exact ties, which occur right after a zero state (R = 0 exactly, so the
    uninhibited cells of a group tie): the original then keeps every tied cell, this keeps the
    lowest-index one, so exactly k cells are always active (docs/rsm.md#quirks item 6).
    """
    group_scores = tf.reduce_max(rho, axis=-1)                                 # [B, g]
    group_mask = kw_ops.k_winners_mask(group_scores, k, break_ties=True)       # [B, g] bool
    return best_cell_mask(rho, tf.cast(group_mask, rho.dtype), group_scores)


def best_cell_mask(rho, group_mask, group_scores=None):
    """The best cell of each active group: the first maximum (lowest index on exact ties, by
    explicit comparisons, so every device and XLA agree; docs/rsm.md#selection).

    Args:
      rho: ranking scores [B, g, c].
      group_mask: [B, g], 1 where the group is active, 0 elsewhere (same dtype as `rho`).
      group_scores: ``reduce_max(rho, -1)`` when the caller has it already.

    Returns:
      Binary mask [B, g, c]: one cell in each active group, none in the others.
    """
    if group_scores is None:
        group_scores = tf.reduce_max(rho, axis=-1)
    best_cell = first_max_mask(rho, group_scores)                              # [B, g, c] bool
    return tf.cast(best_cell, rho.dtype) * group_mask[..., None]


def boost_from_duty_cycle(duty_cycle, target, boost_strength):
    """Boost per cell exp((target − duty_cycle)·boost_strength) (docs/rsm.md#boosting)."""
    return tf.exp((target - duty_cycle) * boost_strength)


def sparse_input_matmul(inputs, kernel, max_nonzero, values_fn=None):
    """``inputs @ kernel`` computed from the non-zero entries of `inputs` only.

    Args:
      inputs: [B, n] with at most `max_nonzero` non-zero entries per row (e.g. the recurrent
        input of an RSM layer without a trace: k active cells).
      kernel: [n, m].
      max_nonzero: Python int, the bound on the non-zeros per row (used by the XLA form).
      values_fn: optional elementwise function applied to the non-zero values before the
        product (the layers' dropout: random numbers are drawn for the non-zeros only, since a
        dropped zero stays zero).

    Returns:
      [B, m], equal to the dense matmul (of ``values_fn`` applied to `inputs`) up to float
      summation order. The gradient with respect to `kernel` is ``inputs^T @ grad`` computed the
      same way (cost ∝ non-zeros × m).

    Outside XLA the non-zeros (found by one `tf.where`, any number per row) form a
    `tf.SparseTensor` and one `sparse_dense_matmul` adds their rows of `kernel`: about
    B·k·m multiply-adds instead of B·n·m, and no [B, k, m] gather. XLA has no sparse-dense
    matmul kernel, so inside `jit_compile=True` the `max_nonzero` largest |entries| of each row
    are gathered instead (their rows of `kernel` [B, k, m], then a weighted sum, with the
    kernel's gradient written as a segment sum: `gathered_rows_matmul`).
    """
    kernel = tf.cast(kernel, inputs.dtype)
    if kw_ops._in_xla_context():  # pylint: disable=protected-access
        values, index = top_k_entries(inputs, max_nonzero)
        if values_fn is not None:
            values = values_fn(values)
        return gathered_rows_matmul(values, index, kernel)
    indices = tf.where(tf.not_equal(inputs, tf.zeros((), inputs.dtype)))          # [nnz, 2]
    values = tf.gather_nd(inputs, indices)
    if values_fn is not None:
        values = values_fn(values)
    sparse = tf.SparseTensor(indices, values, tf.shape(inputs, out_type=tf.int64))
    return tf.sparse.sparse_dense_matmul(sparse, kernel)


def top_k_entries(r, k):
    """(values [M, k], index [M, k]) of the k entries of largest |r| in every row of r [M, n]."""
    _, index = tf.math.top_k(tf.abs(r), k=k, sorted=False)
    return tf.gather(r, index, batch_dims=1), index


@tf.custom_gradient
def gathered_rows_matmul(values, index, kernel):
    """Σ_j values[:, j] · kernel[index[:, j]]: [M, k], [M, k] int, [n, m] → [M, m].

    The gradient of `kernel` is a dense segment sum over the M·k rows; `index` has none.
    """
    rows = tf.gather(kernel, index)                                        # [M, k, m]
    out = tf.reduce_sum(values[..., None] * rows, axis=1)

    def grad(upstream):
        d_values = tf.reduce_sum(upstream[:, None, :] * rows, axis=-1)
        d_kernel = tf.math.unsorted_segment_sum(
            tf.reshape(values[..., None] * upstream[:, None, :], (-1, tf.shape(kernel)[1])),
            tf.reshape(index, (-1,)), tf.shape(kernel)[0])
        return d_values, None, d_kernel

    return out, grad


def pool_cells(y, mode, mask=None):
    """What the decoder reads of each group: "max" over its cells (the original) or "sum".

    Args:
      y: cell outputs [..., g, c].
      mode: "max" or "sum".
      mask: optional selection mask like `y` (one active cell per active group, 0 elsewhere),
        given only when ``y = f(z * mask)`` with f(0) = 0, i.e. every inactive cell outputs
        exactly 0. The max then gets a cheaper gradient (`_max_over_active_cells`) with the
        same values wherever the caller's gradient can reach (the active cells).

    Returns:
      [..., g].
    """
    if mode != "max":
        return tf.reduce_sum(y, axis=-1)
    if mask is None:
        return tf.reduce_max(y, axis=-1)
    return _max_over_active_cells(y, tf.cast(mask, y.dtype))


def _max_over_active_cells(y, mask):
    """``reduce_max(y, -1)`` whose gradient is computed from the selection mask.

    TensorFlow's gradient of a max splits the upstream gradient equally among the entries equal
    to the maximum (comparison, count, division over the whole [..., g, c] tensor). Here the
    inactive cells output exactly 0 and one cell per group is active, with output a. So the
    maximum is a when a > 0 (the only entry equal to it), 0 shared by all c cells when a = 0,
    and 0 from the inactive cells when a < 0. The active cell's share of the gradient is 1, 1/c
    or 0, as in TensorFlow's gradient. The inactive cells get 0 here (TensorFlow gives them a
    share when the maximum is 0), which is the same to the caller: their output is f(z * 0),
    whose gradient with respect to z is multiplied by the mask's 0.
    """
    c = y.shape[-1]

    @tf.custom_gradient
    def forward(y):
        pooled = tf.reduce_max(y, axis=-1)

        def grad(upstream):
            active = tf.reduce_sum(y * mask, axis=-1)                              # [..., g]
            share = tf.where(active > 0, tf.ones((), y.dtype),
                             tf.where(tf.equal(active, 0), tf.cast(1.0 / c, y.dtype),
                                      tf.zeros((), y.dtype)))
            return (share * upstream)[..., None] * mask

        return pooled, grad

    return forward(y)


def resize_bilinear(x, size):
    """Bilinear resize of a feature map [B, h', w', n'] to `size` (h, w) with half-pixel centres.

    This is `tf.image.resize(..., "bilinear")` (TF2 convention: sample centres aligned, no
    antialiasing), returned in the dtype of `x`; the identity when the size already matches.
    """
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)


def conv_decode(a, kernel, bias, output_shape, strides):
    """Transposed-convolution decoder of a ConvRSM layer, output exactly `output_shape`.

    Args:
      a: group code [B, h, w, g].
      kernel: [fh, fw, D, g] (the layout of `tf.nn.conv2d_transpose`).
      bias: None or a per-element bias [H, W, D].
      output_shape: (H, W, D); SAME padding, so ceil(H / sh) must equal h (and for w).
      strides: (sh, sw).

    Returns:
      [B, H, W, D]: the adjoint of a SAME, strided convolution from [H, W, D] to [h, w, g]
      (padding max((h − 1)·s + f − H, 0), the smaller half before), plus the bias.
    """
    shape = tf.stack([tf.shape(a)[0], *[int(d) for d in output_shape]])
    out = tf.nn.conv2d_transpose(a, tf.cast(kernel, a.dtype), shape, strides=list(strides),
                                 padding="SAME")
    out = tf.reshape(out, [-1, *[int(d) for d in output_shape]])  # static shape for callers
    return out if bias is None else out + tf.cast(bias, out.dtype)
