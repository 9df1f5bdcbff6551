"""The five models of the associative-retrieval comparison (Ba et al. 2016, Table 1).

Each model reads the one-hot sequence `[batch, 2K+3, 37]` with one recurrent layer of R = `units`
hidden units and predicts the queried value from the last hidden state with a softmax over the
10 digits:

| kind           | recurrent layer                                                            |
|----------------|----------------------------------------------------------------------------|
| `fast_weights` | `FastWeightsCell` (RNN-LN-FW): layer norm + fast weights A(t)              |
| `rnn_ln`       | the same `FastWeightsCell` with ``fast_learning_rate=0`` (RNN-LN)           |
| `control`      | plain ReLU RNN, recurrent kernel initialised to the identity (IRNN)        |
| `gru_ln`       | `LayerNormGRUCell` (GRU with layer norm on every gate)                     |
| `lstm`         | `keras.layers.LSTM`                                                        |

`RetrievalModel` trains with its own `train_step`, which computes the global norm of the
gradient every step (reported as the metric ``grad_norm``, before clipping) and clips the
gradient to `clip_norm` by global norm (``clip_norm=None`` or 0: no clipping). Under mixed
precision the norm is that of the unscaled gradient, and steps whose loss-scaled gradient
overflowed (which the loss-scale optimizer skips) are left out of ``grad_norm``. Under a
`tf.distribute` strategy the gradient is summed over the replicas before its norm is taken, so
the norm and the clipping are those of the global batch (Keras' own ``global_clipnorm`` clips
each replica's partial gradient). Calling `compile()` with no optimizer gives Adam with the
model's `learning_rate`, sparse categorical cross-entropy and accuracy.

Example:
  >>> import numpy as np
  >>> model = build_model("fast_weights", units=20)
  >>> model.compile()
  >>> tuple(model(np.zeros((2, 11, 37), "float32")).shape)
  (2, 10)
"""
import keras
import tensorflow as tf

from pagi_rsm.datasets.associative_retrieval import DEFAULT_PAIRS, NUM_CLASSES, NUM_SYMBOLS
from pagi_rsm.hparams.retrieval_models import KINDS, OPTIONS
from pagi_rsm.layers.fast_weights import FastWeightsCell
from pagi_rsm.layers.layer_norm_gru import LayerNormGRUCell

__all__ = ["KINDS", "RetrievalModel", "build_model", "clip_by_global_norm"]

DEFAULT_MAX_LENGTH = 2 * DEFAULT_PAIRS + 3
"""History length used when `max_length` is None: the sequence length for K = 4 pairs."""



def clip_by_global_norm(grads, clip_norm, scale=None):
    """Global norm of `grads` and the gradients clipped to `clip_norm` (if given).

    Args:
      grads: list of gradient tensors (None entries are kept as None).
      clip_norm: positive float, or None / 0 for no clipping.
      scale: optional loss-scale factor the gradients are multiplied by (mixed precision); the
        norm is reported and the threshold applied on the unscaled gradients, while the returned
        gradients keep the scale (the loss-scale optimizer removes it).

    Returns:
      ``(clipped_grads, norm)`` with `norm` the unscaled global norm before clipping (float32).
    """
    present = [tf.cast(g, tf.float32) for g in grads if g is not None]
    norm = tf.linalg.global_norm(present) if present else tf.constant(0.0)
    if scale is not None:
        norm = norm / tf.cast(scale, tf.float32)
    if not clip_norm:
        return list(grads), norm
    factor = tf.minimum(1.0, clip_norm / tf.maximum(norm, 1e-12))
    return [None if g is None else g * tf.cast(factor, g.dtype) for g in grads], norm


def _loss_scale(optimizer):
    """The factor `optimizer.scale_loss` multiplies the loss by (None if it does not)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.dynamic_scale if optimizer.built else optimizer.initial_scale
    return optimizer.loss_scale_factor


@keras.saving.register_keras_serializable(package="pagi_rsm")
class RetrievalModel(keras.Model):
    """One recurrent layer + softmax over the 10 digits, with gradient-norm tracking/clipping.

    Args:
      kind: one of `KINDS` (see the module docstring).
      units: R, hidden size of the recurrent layer (>= 1).
      decay: fast-weight decay lambda in [0, 1] (`fast_weights` only; default 0.95).
      fast_learning_rate: fast-weight learning rate eta > 0 (`fast_weights` only; default 0.5).
      inner_steps: inner-loop steps S >= 1 (`fast_weights` only; default 1).
      implementation: `FastWeightsCell` implementation, "attention" (default) or "explicit".
      max_length: history length of the attention form; at least the sequence length (2K+3)
        makes it exact. None (default): 11, the length for K = 4.
      preliminary_layer_norm: `FastWeightsCell` option (`fast_weights` only): layer-normalise
        the preliminary vector too (default False, the paper's f(W h + C x)).
      learning_rate: Adam learning rate used by `compile()` without an optimizer (default 1e-3).
      final_learning_rate: if set (with `decay_steps` > 0), the learning rate follows a cosine
        from `learning_rate` down to this value over `decay_steps` steps, then stays there.
        None (default): constant.
      decay_steps: length of that decay in optimizer steps (0: no decay).
      clip_norm: global-norm gradient clip (default 5.0; None or 0 disables it).
      unroll: unroll the recurrent loop over time (`keras.layers.RNN(unroll=True)`): faster
        for short sequences on CPU, in particular under XLA (needs a static time axis).
      input_units: if > 0, a ReLU layer of this size encodes each input symbol before the
        recurrent layer (Ba et al. add such input processing; docs/fast_weights.md). 0: the
        one-hot symbols go straight in (default).
      readout_units: if > 0, a ReLU layer of this size between the last hidden state and the
        softmax (the paper's extra layer). 0: none (default).
      num_symbols: input features (default 37).
      num_classes: softmax classes (default 10).
      **kwargs: `keras.Model` arguments (name, ...).

    Call arguments:
      inputs: float `[batch, time, num_symbols]` one-hot sequence.
      training: passed to the layers.

    Returns:
      `[batch, num_classes]` softmax probabilities (float32 under mixed precision).
    """

    options = OPTIONS
    """The declared hparams (`pagi_rsm.hparams.retrieval_models.OPTIONS`)."""

    def __init__(self, kind="fast_weights", units=50, decay=0.95, fast_learning_rate=0.5,
                 inner_steps=1, implementation="attention", max_length=None,
                 preliminary_layer_norm=False, learning_rate=1e-3,
                 final_learning_rate=None, decay_steps=0, clip_norm=5.0, unroll=False,
                 input_units=0, readout_units=0,
                 num_symbols=NUM_SYMBOLS, num_classes=NUM_CLASSES, **kwargs):
        super().__init__(**kwargs)
        OPTIONS.check(dict(
            kind=kind, units=units, decay=decay, fast_learning_rate=fast_learning_rate,
            inner_steps=inner_steps, implementation=implementation, max_length=max_length,
            preliminary_layer_norm=preliminary_layer_norm, learning_rate=learning_rate,
            final_learning_rate=final_learning_rate, decay_steps=decay_steps,
            clip_norm=clip_norm, unroll=unroll, input_units=input_units,
            readout_units=readout_units, num_symbols=num_symbols, num_classes=num_classes))
        self.kind = kind
        self.units = int(units)
        self.decay = decay
        self.fast_learning_rate = fast_learning_rate
        self.inner_steps = inner_steps
        self.implementation = implementation
        self.max_length = max_length
        self.preliminary_layer_norm = preliminary_layer_norm
        self.learning_rate = float(learning_rate)
        self.final_learning_rate = (None if final_learning_rate is None
                                    else float(final_learning_rate))
        self.decay_steps = int(decay_steps)
        self.clip_norm = None if not clip_norm else float(clip_norm)
        self.unroll = unroll
        self.input_units = int(input_units)
        self.readout_units = int(readout_units)
        self.num_symbols = int(num_symbols)
        self.num_classes = int(num_classes)
        self.encoder = (keras.layers.Dense(self.input_units, activation="relu", name="encoder")
                        if self.input_units else None)
        self.recurrent = self._make_recurrent()
        self.hidden = (keras.layers.Dense(self.readout_units, activation="relu", name="hidden")
                       if self.readout_units else None)
        # Softmax in float32 even under mixed precision.
        self.readout = keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                          name="readout")
        self.grad_norm_tracker = keras.metrics.Mean(name="grad_norm")

    def _make_recurrent(self):
        units = self.units
        if self.kind in ("fast_weights", "rnn_ln"):
            # rnn_ln is the same cell with eta = 0: no memory, no inner loop (not a copy).
            eta = self.fast_learning_rate if self.kind == "fast_weights" else 0.0
            cell = FastWeightsCell(units, decay=self.decay, fast_learning_rate=eta,
                                   inner_steps=self.inner_steps,
                                   preliminary_layer_norm=self.preliminary_layer_norm and eta > 0,
                                   implementation=self.implementation if eta else "explicit",
                                   max_length=(self.max_length or DEFAULT_MAX_LENGTH) if eta
                                   else None)
            return keras.layers.RNN(cell, unroll=self.unroll, name=self.kind)
        if self.kind == "control":
            return keras.layers.SimpleRNN(
                units, activation="relu", recurrent_initializer=keras.initializers.Identity(),
                unroll=self.unroll, name="control")
        if self.kind == "gru_ln":
            return keras.layers.RNN(LayerNormGRUCell(units), unroll=self.unroll, name="gru_ln")
        return keras.layers.LSTM(units, unroll=self.unroll, name="lstm")

    def build(self, input_shape):
        if input_shape and isinstance(input_shape[0], (list, tuple)):
            input_shape = input_shape[0]  # (inputs, targets) shapes of a dataset element
        if len(input_shape) != 3:
            raise ValueError(f"RetrievalModel expects [batch, time, {self.num_symbols}] inputs, "
                             f"got shape {tuple(input_shape)}")
        shape = tuple(input_shape)
        if self.encoder is not None:
            self.encoder.build(shape)
            shape = shape[:-1] + (self.input_units,)
        self.recurrent.build(shape)
        shape = (shape[0], self.units)
        if self.hidden is not None:
            self.hidden.build(shape)
            shape = (shape[0], self.readout_units)
        self.readout.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = self.encoder(inputs) if self.encoder is not None else inputs
        h = self.recurrent(x, training=training)
        if self.hidden is not None:
            h = self.hidden(h)
        return self.readout(h)

    def learning_schedule(self):
        """The learning rate (a float) or its cosine decay schedule."""
        if self.final_learning_rate is None:
            return self.learning_rate
        return keras.optimizers.schedules.CosineDecay(
            self.learning_rate, self.decay_steps,
            alpha=self.final_learning_rate / self.learning_rate)

    def compile(self, optimizer=None, loss=None, metrics=None, **kwargs):
        """`keras.Model.compile` with this model's defaults for anything not given."""
        if optimizer is None:
            optimizer = keras.optimizers.Adam(self.learning_schedule())
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy()
        if metrics is None:
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                     training=True)
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        grads = tape.gradient(scaled_loss, variables)
        replica = tf.distribute.get_replica_context()
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replica is not None and replicas > 1:
            # The global gradient is the sum of the replicas' partial gradients: norm and clip
            # that, then hand each replica 1/n of it so the optimizer's own sum restores it.
            grads = replica.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        grads, norm = clip_by_global_norm(grads, self.clip_norm, _loss_scale(self.optimizer))
        if replicas > 1:
            grads = [g / replicas for g in grads]
        self.optimizer.apply(grads, variables)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss * replicas, sample_weight=tf.shape(y)[0])
        # A loss-scaled step that overflowed is skipped by the optimizer: leave it out.
        finite = tf.math.is_finite(norm)
        self.grad_norm_tracker.update_state(tf.where(finite, norm, 0.0),
                                            sample_weight=tf.cast(finite, tf.float32))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def compile_from_config(self, config):
        """Restores the compile settings saved in a `.keras` file (custom `compile` above)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        config = {
            "name": self.name,
            "kind": self.kind,
            "units": self.units,
            "decay": self.decay,
            "fast_learning_rate": self.fast_learning_rate,
            "inner_steps": self.inner_steps,
            "implementation": self.implementation,
            "max_length": self.max_length,
            "preliminary_layer_norm": self.preliminary_layer_norm,
            "learning_rate": self.learning_rate,
            "final_learning_rate": self.final_learning_rate,
            "decay_steps": self.decay_steps,
            "clip_norm": self.clip_norm,
            "unroll": self.unroll,
            "input_units": self.input_units,
            "readout_units": self.readout_units,
            "num_symbols": self.num_symbols,
            "num_classes": self.num_classes,
        }
        return config


def build_model(kind, units, **kwargs):
    """Builds the `kind` model with R = `units` (see `RetrievalModel` for the options).

    Raises:
      ValueError: unknown `kind` (the message lists `KINDS`) or an invalid option.
    """
    model = RetrievalModel(kind=kind, units=units, **kwargs)
    model.build((None, kwargs.get("max_length") or DEFAULT_MAX_LENGTH, model.num_symbols))
    return model
