"""Products of a mostly-zero input with a dense kernel, through the input's non-zero rows."""
import tensorflow as tf


@tf.custom_gradient
def _rows_product(values, index, kernel):
    """sum_j values[b, j] * kernel[index[b, j]], with a dense gradient for `kernel`.

    The gradient of `tf.gather(kernel, index)` is an IndexedSlices; inside a `tf.while_loop`
    (an RNN) TensorFlow accumulates those by concatenation over the steps, which costs
    O(steps²) over a sequence. A dense segment sum per step keeps it linear.
    """
    rows = tf.gather(kernel, index)                                          # [B, k, m]

    def grad(upstream):
        d_values = tf.einsum("bm,bkm->bk", upstream, rows)
        contributions = values[:, :, None] * upstream[:, None, :]             # [B, k, m]
        d_kernel = tf.math.unsorted_segment_sum(
            tf.reshape(contributions, [-1, tf.shape(kernel)[1]]), tf.reshape(index, [-1]),
            num_segments=tf.shape(kernel)[0])
        return d_values, None, d_kernel

    return tf.einsum("bk,bkm->bm", values, rows), grad


def top_k_matmul(x, kernel, k):
    """``x @ kernel`` for `x` `[B, n]` with at most `k` non-zeros per row, in O(B·k·m).

    The k entries of largest magnitude of each row are gathered with their rows of `kernel`
    `[n, m]` (k·B rows instead of an [B, n]×[n, m] matmul). The gradient reaches `x` at those
    entries and `kernel` at those rows (as a dense tensor, so it accumulates cheaply over the
    steps of a recurrent loop). Equal to the dense product whenever each row of `x` has at
    most k non-zeros.

    Args:
      x: `[B, n]`.
      kernel: `[n, m]`, cast to `x.dtype`.
      k: Python int, 1 <= k <= n.

    Returns:
      `[B, m]`.
    """
    kernel = tf.cast(kernel, x.dtype)
    _, index = tf.math.top_k(tf.abs(x), k=k, sorted=False)                  # [B, k]
    values = tf.gather(x, index, batch_dims=1)                              # [B, k]
    return _rows_product(values, index, kernel)
