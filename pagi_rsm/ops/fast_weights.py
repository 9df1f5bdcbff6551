"""Fast-weight memory of Ba et al. (2016), "Using Fast Weights to Attend to the Recent Past".

Stateless maths behind `pagi_rsm.layers.FastWeightsCell`. Every sample of a batch has its OWN
fast-weight matrix; nothing here sums over the batch axis (one peer port summed the outer products
over the whole minibatch, reference/peers.md §2.4).

Two exact forms of the same memory:

* explicit: ``A(t) = decay * A(t-1) + fast_learning_rate * h(t) h(t)^T`` kept as a `[B, H, H]`
  tensor and applied as ``A(t) h``: `update_fast_weights`, `apply_fast_weights`.
* attention: ``A(t) h = fast_learning_rate * sum_tau decay^(t-tau) h(tau) (h(tau)^T h)`` over the
  last L hidden states, never materialising A. The history is a list of L `[B, H]` tensors,
  oldest first (`push_history` shifts the list, which copies nothing), stacked to `[B, L, H]`
  for `attend_history`. With ``A(-1) = 0`` the two agree as long as the history holds every
  hidden state written so far (``L >= t + 1``); an older state pushed out of a full history is
  dropped, i.e. its term (weight ``<= decay^L``) is truncated.
"""
import numpy as np
from keras import ops


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
    outer = hidden[:, :, None] * hidden[:, None, :]
    return decay * fast_weights + fast_learning_rate * outer


def apply_fast_weights(fast_weights, hidden):
    """``A h`` for each sample: `[B, H, H]` x `[B, H]` -> `[B, H]`."""
    return ops.squeeze(ops.matmul(fast_weights, hidden[:, :, None]), -1)


def push_history(history, hidden):
    """Appends h(t) as the newest entry of a history, dropping the oldest.

    The history is a list of L `[B, H]` tensors (an RNN cell keeps them as L states), so the
    shift is a re-labelling: no tensor is copied. (Shifting a `[B, L, H]` tensor with a slice
    and a concatenation costs more than the attention itself in a TF graph on a CPU.)

    Args:
      history: sequence of L `[B, H]` tensors, oldest first.
      hidden: `[B, H]` tensor.

    Returns:
      list ``history[1:] + [hidden]``.
    """
    return list(history[1:]) + [hidden]


def history_weights(length, decay, fast_learning_rate, dtype="float32"):
    """The weight of each history slot: ``fast_learning_rate * decay^(length - 1 - i)``.

    The newest slot (``i = length - 1``) has weight `fast_learning_rate`, the one before it
    ``fast_learning_rate * decay`` and so on, which is the coefficient of ``h(tau) h(tau)^T`` in
    A(t) unrolled from ``A(-1) = 0``. Computed with numpy from Python floats, so in a graph it is
    a constant.

    Returns:
      `[length]` tensor of `dtype`.
    """
    exponents = np.arange(length - 1, -1, -1, dtype=np.float64)
    weights = float(fast_learning_rate) * np.power(float(decay), exponents)
    return ops.convert_to_tensor(weights.astype(dtype))


def attend_history(history, hidden, weights):
    """``A(t) h`` computed as attention over past hidden states, without forming A.

    ``sum_i weights[i] * history[:, i] * <history[:, i], hidden>``; with the weights of
    `history_weights` and the history of `push_history` this equals
    ``apply_fast_weights(A(t), hidden)``.

    Args:
      history: `[B, L, H]` tensor of past hidden states, oldest first (``ops.stack`` of the
        list kept by `push_history`, axis 1).
      hidden: `[B, H]` query (the inner-loop state h_s).
      weights: `[L]` tensor from `history_weights`.

    Returns:
      `[B, H]` tensor.
    """
    # Elementwise products and sums: cheaper than batched mat-vecs of 128 tiny matrices on a CPU.
    scores = ops.sum(history * hidden[:, None, :], axis=-1) * weights
    return ops.sum(history * scores[:, :, None], axis=1)
