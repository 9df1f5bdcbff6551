"""`DeepHTM`: HTM as one differentiable function, trained end to end by backpropagation.

encoder MLP -> spatial pooler (k-winner columns, global inhibition) -> temporal memory (one
active cell per active column) -> decoder MLP, predicting the next value of a series
(docs/deep_htm.md). Every step's input may be a vector (a multivariate series).

    e_t = MLP_enc(x_t)                                 ReLU layers (2 x 256)
    a_t = kWTA(e_t W_p + b_p)                          columns (256), 5 winners over all of
                                                       them (global inhibition), `KWinners`
    y_t = TM(a_t, y_{t-1})                             `TemporalMemoryCell`: in each active
                                                       column the cell (of 5) with the largest
                                                       recurrent drive
    x̂_{t+1} = MLP_dec(y_t)                             ReLU layer (256), then linear (D)

The k-winners keep the winners' values, so the gradient passes straight through at the
winners (identity) and is 0 at the losers; the temporal memory's winner cells pass it the same
way. Training is backpropagation through time over the training windows, truncated every
`bptt_steps` steps (0: the whole window; 1: the local, immediate credit assignment of RSM).

Example:

```python
model = DeepHTM(input_dim=1, bptt_steps=16)
model.compile()
predictions = model(np.zeros((2, 32, 1), "float32"))      # [2, 32, 1], x̂_{t+1} at each t
```
"""
import keras
import tensorflow as tf
from keras import ops

from pagi_rsm.checkpointing import model_items
from pagi_rsm.hparams.deep_htm import OPTIONS
from pagi_rsm.layers.k_winners import KWinners
from pagi_rsm.layers.temporal_memory import TemporalMemoryCell
from pagi_rsm.models.hparams_config import HparamsConfig
from pagi_rsm.models.stream_state import StreamState
from pagi_rsm.ops.sparse_matmul import top_k_matmul

__all__ = ["DeepHTM"]


@keras.saving.register_keras_serializable(package="pagi_rsm")
class DeepHTM(HparamsConfig, keras.Model):
    """Encoder -> spatial pooler -> temporal memory -> decoder (see the module docstring).

    Args (the hparams, declared in `pagi_rsm.hparams.deep_htm.OPTIONS` with their defaults):
      input_dim: D, features per step (>= 1).
      encoder_units: sizes of the encoder's ReLU layers (list; [] for none).
      columns: spatial-pooler columns (>= 2).
      active_columns: k, winning columns per step, 1 <= k < columns, in training and in
        inference (exactly k: ties are broken by index).
      boost_strength: k-winners boosting by duty cycle (0: off, the default).
      boost_strength_factor: `KWinners.update_boost_strength` factor (1: constant boost).
      duty_cycle_period: duty-cycle averaging period in samples (steps of all windows).
      cells_per_column: cells per column (>= 1).
      sparse_reads: read the temporal memory's output (k active cells of columns x cells)
        through the k rows of the recurrent kernel and of the decoder's first kernel that the
        active cells select, instead of dense matmuls (default True; the same numbers, far
        fewer operations: with the defaults 5 of 1280 rows).
      decoder_units: sizes of the decoder's ReLU layers before its linear output (list).
      predict_change: the decoder's output is the change x_{t+1} − x_t, added to the current
        input x_t (default False: the output is x_{t+1} itself). The readout's kernel then
        starts at zero, so the untrained model is persistence and learns corrections to it.
      bptt_steps: truncation length of backpropagation through time (0: the whole window).
      streams: 0 (default): every training batch starts from the zero state (independent
        windows). B > 0: the batches are B continuing streams (row b of every batch continues
        row b of the previous one): in training the temporal memory starts from the state the
        previous batch ended in, kept in a `StreamState` (checkpointed with the model; split by
        replica under MirroredStrategy). The gradient stops at the batch boundary.
      learning_rate: Adam learning rate used by `compile()` without an optimizer.
      decay_steps: if > 0, the learning rate follows a cosine from `learning_rate` to
        `final_learning_rate` over this many optimizer steps, then stays there (0: constant).
      final_learning_rate: see `decay_steps`, in (0, learning_rate].
      **kwargs: `keras.Model` arguments (name, ...).

    Call arguments:
      inputs: `[B, T, D]` (or a dict with key "inputs").
      training: selects k-winners' training mode (duty-cycle updates).

    Returns:
      `[B, T, D]`: at step t the prediction of x_{t+1}. `sequence_outputs` returns the
      columns and cells too; `step` / `zero_state` run one step at a time (streaming,
      free-running forecasts with `pagi_rsm.generation`).
    """

    options = OPTIONS
    """The declared hparams (`pagi_rsm.hparams.deep_htm.OPTIONS`)."""

    def __init__(self, **hparams):
        kwargs = {k: hparams.pop(k) for k in ("name", "trainable", "dtype") if k in hparams}
        super().__init__(**kwargs)
        self.hparams = OPTIONS.check({**OPTIONS.defaults(), **hparams})
        hp = self.hparams
        self.encoder = [keras.layers.Dense(u, activation="relu", name=f"encoder_{i}")
                        for i, u in enumerate(hp["encoder_units"])]
        self.proximal = keras.layers.Dense(hp["columns"], name="proximal")
        self.spatial_pooler = KWinners(
            percent_on=hp["active_columns"] / hp["columns"], k_inference_factor=1.0,
            boost_strength=hp["boost_strength"],
            boost_strength_factor=hp["boost_strength_factor"],
            duty_cycle_period=hp["duty_cycle_period"], break_ties=True, name="spatial_pooler")
        self.tm_cell = TemporalMemoryCell(
            hp["cells_per_column"], bptt_steps=hp["bptt_steps"],
            active_columns=hp["active_columns"],
            recurrent_path="sparse" if hp["sparse_reads"] else "dense", name="temporal_memory")
        self.temporal_memory = keras.layers.RNN(self.tm_cell, return_sequences=True,
                                                return_state=True, name="temporal_memory_rnn")
        self.decoder = [keras.layers.Dense(u, activation="relu", name=f"decoder_{i}")
                        for i, u in enumerate(hp["decoder_units"])]
        # Predicting the change, the untrained model is exactly persistence (zero change).
        self.readout = keras.layers.Dense(
            hp["input_dim"], name="readout",
            kernel_initializer="zeros" if hp["predict_change"] else "glorot_uniform")
        self.stream_state = None

    # --- construction -----------------------------------------------------------------------

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["inputs"]
        elif input_shape and isinstance(input_shape[0], (list, tuple)):
            input_shape = input_shape[0]  # a dataset's (inputs, targets, weights) shapes
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[-1] != self.hparams["input_dim"]:
            raise ValueError(f"DeepHTM expects inputs [batch, time, input_dim="
                             f"{self.hparams['input_dim']}], got shape {input_shape}")
        batch = input_shape[0]
        shape = (batch, self.hparams["input_dim"])
        for layer in self.encoder:
            layer.build(shape)
            shape = (batch, layer.units)
        self.proximal.build(shape)
        self.spatial_pooler.build((batch, self.hparams["columns"]))
        self.temporal_memory.build((batch, None, self.hparams["columns"]))
        shape = (batch, self.tm_cell.units)
        for layer in self.decoder:
            layer.build(shape)
            shape = (batch, layer.units)
        self.readout.build(shape)
        if self.hparams["streams"]:
            self.stream_state = StreamState(self.hparams["streams"],
                                            self.tm_cell.state_size, name="stream_state")
        self.built = True


    def compile(self, optimizer=None, loss=None, **kwargs):
        """`keras.Model.compile` with Adam (`learning_schedule()`) and mean squared error by
        default."""
        if optimizer is None:
            optimizer = keras.optimizers.Adam(self.learning_schedule())
        if loss is None:
            loss = keras.losses.MeanSquaredError()
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def learning_schedule(self):
        """The learning rate (a float, or a cosine schedule when `decay_steps` > 0)."""
        hp = self.hparams
        if not hp["decay_steps"]:
            return hp["learning_rate"]
        return keras.optimizers.schedules.CosineDecay(
            hp["learning_rate"], hp["decay_steps"],
            alpha=hp["final_learning_rate"] / hp["learning_rate"])

    def checkpoint_items(self):
        """Trackables for a `tf.train.Checkpoint`: every variable by path, the stream state
        included (`pagi_rsm.checkpointing`), and the optimizer."""
        return model_items(self, optimizer=self.optimizer)

    def compile_from_config(self, config):
        """Restores the compile settings saved in a `.keras` file (custom `compile` above)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # --- the function ---------------------------------------------------------------------------

    def encode_columns(self, x, training=False):
        """Spatial-pooler output `[..., columns]` for inputs `[..., D]` (k non-zeros each)."""
        for layer in self.encoder:
            x = layer(x)
        return self.spatial_pooler(self.proximal(x), training=training)

    def decode(self, cells):
        """Prediction `[..., D]` from temporal-memory cells `[..., cells]`."""
        x = cells
        for i, layer in enumerate(self.decoder):
            if i == 0 and self.hparams["sparse_reads"]:
                flat = ops.reshape(x, (-1, x.shape[-1]))
                h = top_k_matmul(flat, layer.kernel, self.hparams["active_columns"])
                h = layer.activation(h + ops.cast(layer.bias, h.dtype))
                x = tf.reshape(h, tf.concat([tf.shape(x)[:-1], [layer.units]], 0))
            else:
                x = layer(x)
        return self.readout(x)

    def sequence_outputs(self, inputs, state=None, training=False):
        """Runs a whole sequence: dict of predictions, columns, cells `[B, T, ...]`, state."""
        columns = self.encode_columns(ops.convert_to_tensor(inputs), training=training)
        cells, *state = self.temporal_memory(columns, initial_state=state, training=training)
        return {"predictions": self._prediction(inputs, cells), "columns": columns,
                "cells": cells, "state": state}

    def _prediction(self, inputs, cells):
        """The decoder's output, plus the current input when it predicts the change."""
        decoded = self.decode(cells)
        if self.hparams["predict_change"]:
            decoded = decoded + ops.cast(inputs, decoded.dtype)
        return decoded

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            inputs = inputs["inputs"]
        if not (training and self.stream_state is not None):
            return self.sequence_outputs(inputs, training=training)["predictions"]
        state = self.stream_state.read(tf.shape(inputs)[0])
        out = self.sequence_outputs(inputs, state=state, training=training)
        self.stream_state.write([tf.stop_gradient(s) for s in out["state"]])
        return out["predictions"]

    def zero_state(self, batch_size):
        """The temporal memory's initial state for `batch_size` streams."""
        return self.tm_cell.get_initial_state(batch_size)

    def step(self, x, state):
        """One inference step `x [B, D]` -> (prediction of the next value [B, D], state)."""
        cells, state = self.tm_cell(self.encode_columns(x, training=False), state)
        return self._prediction(x, cells), state

    # --- TensorBoard ----------------------------------------------------------------------------

    def write_summaries(self, step, batch):
        """Images for TensorBoard: SP and TM activity rasters and prediction vs truth of stream
        0 of `batch`; histograms of every weight and of the duty cycles."""
        from pagi_rsm import plot
        inputs, targets = batch[0], batch[1]
        out = self.sequence_outputs(inputs[:1], training=False)
        tf.summary.image("deep_htm/sp_columns",
                         plot.raster(ops.convert_to_numpy(out["columns"][0]))[None], step=step)
        tf.summary.image("deep_htm/tm_cells",
                         plot.raster(ops.convert_to_numpy(out["cells"][0]))[None], step=step)
        truth = ops.convert_to_numpy(targets[0, :, 0])
        prediction = ops.convert_to_numpy(out["predictions"][0, :, 0])
        tf.summary.image("deep_htm/prediction_vs_truth",
                         plot.line_plot([truth, prediction])[None], step=step)
        for w in self.weights:
            tf.summary.histogram(f"weights/{w.path}", w, step=step)
