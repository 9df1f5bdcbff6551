"""`TemporalMemoryCell`: a differentiable HTM temporal memory, one step (docs/deep_htm.md)."""
import collections

import keras
import tensorflow as tf
from keras import ops

from pagi_rsm.checks import check_int
from pagi_rsm.ops import rsm as rsm_ops
from pagi_rsm.ops.sparse_matmul import top_k_matmul

TMStep = collections.namedtuple("TMStep", ["output", "mask", "states"])

_PATHS = ("dense", "sparse")


@keras.saving.register_keras_serializable(package="pagi_rsm")
class TemporalMemoryCell(keras.layers.Layer):
    """Temporal memory with `cells_per_column` cells per column, trained by backpropagation.

    The input of a step is the spatial pooler's output a_t `[B, columns]`: a column is active
    where its entry is non-zero (e.g. the output of `KWinners`, which keeps the winners' values
    and zeroes the rest). Within each active column exactly one cell becomes active, the cell
    with the largest recurrent ("distal") drive from the previous step's cells:

        R   = y_{t−1} W_r (+ b_r)                      [B, columns, c]
        M   = best cell of each active column of R     exactly one cell per active column
        y_t = M ⊙ φ(a_t + R)                           the column value plus the cell's context

    M is a constant for the gradient (`stop_gradient`); the gradient reaches a_t and W_r
    through the winners only. y_t is the output and the next state.

    Why not `RSMCell`: there the active groups are chosen by the memory itself (top-k of the
    combined drive of the previous input and the recurrent input, with inhibition) and the state
    is cut from the gradient at every step. In HTM the spatial pooler chooses the active columns
    from the current input alone and the temporal memory only chooses cells inside them; and
    this cell is trained through time. Both share the per-group best-cell rule
    (`pagi_rsm.ops.rsm.best_cell_mask`).

    Truncated backpropagation through time: with ``bptt_steps = L > 0`` the incoming state is
    `stop_gradient` at every step whose index (counted from the start of the sequence, in the
    `step` state) is a multiple of L, so the gradient flows back at most L steps; L = 1 is the
    RSM's local, immediate credit assignment. ``bptt_steps = 0``: no cut (the whole sequence).

    Args:
      cells_per_column: c >= 1.
      bptt_steps: truncation length L >= 0 (0: no truncation). Default 0.
      active_columns: number of active columns per step, needed by
        ``recurrent_path="sparse"`` (the previous output then has exactly that many non-zeros);
        None (default) with the dense path.
      recurrent_path: "dense" (R = y W_r as a matmul, default) or "sparse" (gather the
        `active_columns` rows of W_r of the previous active cells: far fewer operations at
        few active columns, same numbers).
      activation: φ, default "tanh".
      use_recurrent_bias: add b_r. Default True.
      recurrent_initializer, bias_initializer: Keras initialisers (defaults "glorot_uniform"
        and "zeros").

    Call arguments (Keras RNN cell API, `call(inputs, states, training)`):
      inputs: `[B, columns]` spatial-pooler output.
      states: `[y_{t−1} [B, columns·c], step [B, 1]]` (step counts modulo L; zeros to start).
      Returns `(y_t, new_states)`. `step(inputs, states)` returns the `TMStep` (output, mask,
      states).

    Example:
    ```python
    x = np.random.rand(2, 20, 3).astype("float32")        # [B, T, features]
    sp = pagi_rsm.KWinners(percent_on=5 / 256, k_inference_factor=1.0, break_ties=True)
    tm = keras.layers.RNN(pagi_rsm.TemporalMemoryCell(cells_per_column=5, bptt_steps=16),
                          return_sequences=True)
    cells = tm(sp(keras.layers.Dense(256)(x)))     # [B, T, 256 * 5], one cell per column
    ```
    """

    def __init__(self, cells_per_column, bptt_steps=0, active_columns=None,
                 recurrent_path="dense", activation="tanh", use_recurrent_bias=True,
                 recurrent_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.cells_per_column = check_int("cells_per_column", cells_per_column, 1)
        self.bptt_steps = check_int("bptt_steps", bptt_steps, 0)
        if recurrent_path not in _PATHS:
            raise ValueError(f"recurrent_path must be one of {', '.join(_PATHS)}, got "
                             f"{recurrent_path!r}")
        if active_columns is not None:
            check_int("active_columns", active_columns, 1)
        if recurrent_path == "sparse" and active_columns is None:
            raise ValueError("recurrent_path='sparse' needs active_columns (the number of "
                             "active columns per step), got None")
        if not isinstance(use_recurrent_bias, bool):
            raise ValueError(f"use_recurrent_bias must be True or False, got "
                             f"{use_recurrent_bias!r}")
        self.active_columns = active_columns
        self.recurrent_path = recurrent_path
        self.activation = keras.activations.get(activation)
        self.use_recurrent_bias = use_recurrent_bias
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.columns = None

    @property
    def units(self):
        """Number of cells, columns · cells_per_column (None before the cell is built)."""
        return None if self.columns is None else self.columns * self.cells_per_column

    @property
    def state_size(self):
        return [self.units, 1]

    @property
    def output_size(self):
        return self.units

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"TemporalMemoryCell expects per-step inputs [batch, columns] with a "
                             f"static column count, got shape {tuple(input_shape)}")
        self.columns = int(input_shape[-1])
        if self.active_columns is not None and self.active_columns > self.columns:
            raise ValueError(f"active_columns must be <= the number of columns "
                             f"({self.columns}), got {self.active_columns}")
        n = self.units
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(n, n), initializer=self.recurrent_initializer)
        self.recurrent_bias = (self.add_weight(name="recurrent_bias", shape=(n,),
                                               initializer=self.bias_initializer)
                               if self.use_recurrent_bias else None)

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype),
                ops.zeros((batch_size, 1), dtype=self.compute_dtype)]

    def _recurrent(self, y):
        if self.recurrent_path == "dense":
            drive = ops.matmul(y, ops.cast(self.recurrent_kernel, y.dtype))
        else:
            drive = top_k_matmul(y, self.recurrent_kernel, self.active_columns)
        if self.recurrent_bias is not None:
            drive = drive + ops.cast(self.recurrent_bias, y.dtype)
        return drive

    def step(self, inputs, states, training=False):
        """One step; returns `TMStep(output, mask, states)` (mask: the active cells, [B, n])."""
        del training  # same computation in training and inference
        a = ops.convert_to_tensor(inputs)
        y_prev, step = (ops.cast(s, a.dtype) for s in states)
        if self.bptt_steps == 1:
            y_prev = tf.stop_gradient(y_prev)
        elif self.bptt_steps > 1:
            cut = ops.equal(step, 0.0)                                  # [B, 1]
            y_prev = ops.where(cut, tf.stop_gradient(y_prev), y_prev)
        c = self.cells_per_column
        drive = ops.reshape(self._recurrent(y_prev), (-1, self.columns, c))        # [B, g, c]
        active = ops.cast(ops.not_equal(tf.stop_gradient(a), 0.0), a.dtype)       # [B, g]
        mask = tf.stop_gradient(rsm_ops.best_cell_mask(drive, active))             # [B, g, c]
        y = ops.reshape(mask * self.activation(a[:, :, None] + drive), (-1, self.units))
        if self.bptt_steps:
            one, period = ops.cast(1, step.dtype), ops.cast(self.bptt_steps, step.dtype)
            step = tf.stop_gradient(ops.mod(step + one, period))
        return TMStep(y, ops.reshape(mask, (-1, self.units)), [y, step])

    def call(self, inputs, states, training=False):
        result = self.step(inputs, list(states), training=training)
        return result.output, result.states

    def get_config(self):
        config = super().get_config()
        ser = keras.saving.serialize_keras_object
        config.update({
            "cells_per_column": self.cells_per_column, "bptt_steps": self.bptt_steps,
            "active_columns": self.active_columns, "recurrent_path": self.recurrent_path,
            "activation": keras.activations.serialize(self.activation),
            "use_recurrent_bias": self.use_recurrent_bias,
            "recurrent_initializer": ser(self.recurrent_initializer),
            "bias_initializer": ser(self.bias_initializer),
        })
        return config
