"""Fast-weight memory of Ba et al. (2016), "Using Fast Weights to Attend to the Recent Past".

Stateless maths behind `pagi_rsm.layers.FastWeightsCell`. Every sample of a batch has its OWN
fast-weight matrix; nothing here sums over the batch axis (one peer port summed the outer products
over the whole minibatch; docs/fast_weights.md#readings-that-differ).

Two exact forms of the same memory:

* explicit: ``A(t) = decay * A(t-1) + fast_learning_rate * h(t) h(t)^T`` kept as a `[B, H, H]`
  tensor and applied as ``A(t) h``: `update_fast_weights`, `apply_fast_weights`.
* attention: ``A(t) h = fast_learning_rate * sum_tau decay^(t-tau) h(tau) (h(tau)^T h)`` over the
  last L hidden states, never materialising A. The history is a ring buffer `[B, L, H]`:
  `write_history` overwrites the oldest slot with h(t), `slot_weights` gives each slot its
  coefficient from its age, `attend_history` computes the sum. With ``A(-1) = 0`` the two forms
  agree as long as the buffer holds every hidden state written so far (``L >= t + 1``); an
  older state overwritten in a full buffer is dropped, i.e. its term (weight ``<= decay^L``) is
  truncated. `attend_and_normalise` is one layer-normalised inner step of this form with a
  hand-written gradient (the cell's fast path).
"""
import numpy as np
from keras import ops

from pagi_rsm.ops.layer_norm import standardize


def update_fast_weights(fast_weights, hidden, decay, fast_learning_rate):
    """One fast-weight update ``A <- decay * A + fast_learning_rate * h h^T``, per sample.

    Args:
      fast_weights: `[B, H, H]` tensor A(t-1).
      hidden: `[B, H]` tensor h(t).
      decay: lambda in [0, 1] (Python float or scalar tensor).
      fast_learning_rate: eta >= 0.

    Returns:
      `[B, H, H]` tensor A(t), dtype of `fast_weights`.
    """
    # The outer products as one batched matmul with eta folded into the [B, H] factor: a
    # broadcast multiply of [B, H, 1] by [B, 1, H] (and each extra [B, H, H] multiply) costs
    # several times more on a CPU.
    outer = ops.matmul((fast_learning_rate * hidden)[:, :, None], hidden[:, None, :])
    return decay * fast_weights + outer


def apply_fast_weights(fast_weights, hidden):
    """``A h`` for each sample: `[B, H, H]` x `[B, H]` -> `[B, H]`."""
    return ops.squeeze(ops.matmul(fast_weights, hidden[:, :, None]), -1)


def write_history(history, hidden, slot):
    """Writes h(t) into slot `slot[b]` of each sample's ring buffer of past hidden states.

    The attention form keeps the last L hidden states in a ring buffer: h(t) overwrites the
    oldest entry, so nothing else moves. In a TF graph on a CPU this is one scatter of B rows;
    keeping the history in time order instead (a list of L states stacked every step, or a
    slice-and-concatenate shift of a `[B, L, H]` tensor) costs more than the attention itself.

    Args:
      history: `[B, L, H]` ring buffer.
      hidden: `[B, H]` tensor h(t), the dtype of `history`.
      slot: int32 `[B]`, the slot of each sample to overwrite (in [0, L)).

    Returns:
      `[B, L, H]` tensor: `history` with ``history[b, slot[b]] = hidden[b]``.
    """
    length, units = history.shape[1], history.shape[2]
    rows = ops.arange(ops.shape(hidden)[0], dtype="int32") * length + slot
    flat = ops.scatter_update(ops.reshape(history, (-1, units)), rows[:, None], hidden)
    return ops.reshape(flat, (-1, length, units))


def slot_weights(newest, length, decay, fast_learning_rate):
    """The weight of each ring-buffer slot when slot `newest[b]` holds h(t).

    A slot written j steps ago (``j = (newest - slot) mod length``) holds h(t - j), whose
    coefficient in A(t) unrolled from ``A(-1) = 0`` is ``fast_learning_rate * decay^j``. The
    `[length, length]` table of these weights is a numpy constant; the result is one gather.

    Args:
      newest: int32 `[B]`, the slot of each sample that holds h(t).
      length: int L, the number of slots.
      decay: lambda in [0, 1] (Python float).
      fast_learning_rate: eta >= 0 (Python float).

    Returns:
      float32 `[B, L]`.
    """
    age = np.mod(np.arange(length)[:, None] - np.arange(length)[None, :], length)
    table = float(fast_learning_rate) * np.power(float(decay), age.astype(np.float64))
    return ops.take(ops.convert_to_tensor(table.astype("float32")), newest, axis=0)


def attend_history(history, hidden, weights):
    """``A(t) h`` computed as attention over past hidden states, without forming A.

    ``sum_l weights[:, l] * history[:, l] * <history[:, l], hidden>``; with the ring buffer of
    `write_history` and the weights of `slot_weights` this equals
    ``apply_fast_weights(A(t), hidden)`` (the order of the slots does not matter).

    Args:
      history: `[B, L, H]` tensor of past hidden states.
      hidden: `[B, H]` query (the inner-loop state h_s).
      weights: `[B, L]` tensor from `slot_weights` (unwritten slots hold zeros, so their
        weight does not matter).

    Returns:
      `[B, H]` tensor.
    """
    return _attend(history, hidden, weights[:, :, None])[1]


def _attend(history, query, weights):
    """``(scores [B, L, 1], attended [B, H])`` of `attend_history`; `weights` is `[B, L, 1]`.

    Both sums over the history are broadcast products reduced over one axis. The batched
    matrix-vector form (`matmul` of `[B, L, H]` by `[B, H, 1]`) gives the same values, but on a
    2-core AVX-512 CPU oneDNN splits each of these tiny batched products over the intra-op
    thread pool, and the training step of the attention form took 1.4-1.6x longer with them
    (docs/performance.md#fast-weights-attention-on-avx-512).
    """
    scores = ops.sum(history * query[:, None, :], axis=-1, keepdims=True) * weights  # [B, L, 1]
    return scores, ops.sum(scores * history, axis=1)


def attend_and_normalise(boundary, query, history, weights, gain, bias, epsilon=1e-5):
    """``LN(boundary + attend_history(history, query, weights))``, with a hand-written gradient.

    One inner step of the attention form before the activation: the fast-weight term added to
    the sustained boundary term, then layer normalisation of each sample over its features,
    ``gain * (u - mean(u)) / sqrt(var(u) + epsilon) + bias`` as in
    `pagi_rsm.ops.layer_norm.layer_norm`. The values equal those of the two composed to float
    rounding.

    Why a separate function: in a CPU graph the recurrent step is dominated by per-op overhead
    and by `[B, L, H]`-sized temporaries, not by arithmetic. Automatic differentiation of the
    composed expression materialises broadcast products of shape `[B, L, H]` and adds reductions,
    reshapes and tiles for every mean and broadcast. Here the gradient is the closed form, with
    ``x = (u - mean) / sigma`` and ``dx = dy * gain``:
    ``du = (dx - mean(dx) - x * mean(dx * x)) / sigma``, then back through the attention (the
    same two sums as forward, with ``du`` as the query),
    ``d_history[l] = scores[l] du + d_scores[l] query``. The gradients
    agree with automatic differentiation to float rounding (tests/test_fast_weights.py).

    Args:
      boundary: float32 `[B, H]`, the sustained term ``W h(t) + C x(t) + b``.
      query: float32 `[B, H]`, the inner-loop state h_s.
      history: float32 `[B, L, H]`, past hidden states (the ring buffer).
      weights: float32 `[B, L]` from `slot_weights` (gets no gradient).
      gain, bias: float32 `[H]` tensors (not variables), the layer-norm gain and bias.
      epsilon: positive float added to the variance.

    Returns:
      float32 `[B, H]`, the layer-normalised pre-activation.
    """
    import tensorflow as tf

    weights = weights[:, :, None]  # [B, L, 1]: scales the [B, L, 1] scores

    @tf.custom_gradient
    def forward(boundary, query, history, gain, bias):
        scores, attended = _attend(history, query, weights)
        normalised, inverse = standardize(boundary + attended, epsilon)
        y = normalised * gain + bias

        def grad(dy):
            d_gain = tf.reduce_sum(dy * normalised, axis=0)
            d_bias = tf.reduce_sum(dy, axis=0)
            d_norm = dy * gain
            d_u = inverse * (d_norm - tf.reduce_mean(d_norm, axis=-1, keepdims=True)
                             - normalised * tf.reduce_mean(d_norm * normalised, axis=-1,
                                                           keepdims=True))
            # u = boundary + sum_l scores[l] history[l];  scores[l] = w[l] <history[l], query>
            d_scores, d_query = _attend(history, d_u, weights)  # [B, L, 1], [B, H]
            d_history = scores * d_u[:, None, :] + d_scores * query[:, None, :]
            return d_u, d_query, d_history, d_gain, d_bias

        return y, grad

    return forward(boundary, query, history, gain, bias)
