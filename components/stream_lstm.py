"""`StreamLSTM`: an LSTM baseline on continuing streams, trained by truncated BPTT.

The baseline the RSM papers compare against on image sequences (docs/image_sequence.md): one LSTM
layer and a linear softmax readout that names the next symbol, trained by backpropagation
through time truncated to one chunk (T steps, e.g. 30), the state carried across chunks (and
across `fit` batches) but no gradient. It reads the same data as `SequenceMemoryStack`
(dicts ``inputs [B, T, D]``, ``labels [B, T]``, ``reset [B, T]``, ``test [B, T]``; row b always
stream b), predicts ``labels[:, t]`` from the inputs before step t, and logs the same metrics
(`loss`, `accuracy`, `perplexity`, `test_state_accuracy` over the last `accuracy_window` test
predictions, `test_state_count`), so a workflow can train either.
"""
import keras
import tensorflow as tf
from keras import ops

from pagi_rsm.checkpointing import model_items
from pagi_rsm.metrics.windowed_rate import WindowedRate
from pagi_rsm.models.hparams_config import HparamsConfig
from pagi_rsm.models.stream_state import StreamState

from pagi_rsm.hparams.stream_lstm import OPTIONS


@keras.saving.register_keras_serializable(package="pagi_rsm")
class StreamLSTM(HparamsConfig, keras.Model):
    """LSTM + linear readout on B continuing streams, truncated BPTT over each chunk.

    At step t the readout of h_{t-1} (the state after x_{t-1}; for the first step of a chunk
    the carried state) gives the logits of ``labels[:, t]``. A train step runs the chunk from
    the carried (h, c), back-propagates the mean cross-entropy of the chunk through its T steps
    only, applies Adam, and stores the final (h, c) per stream. ``reset`` = 1 zeroes a sample's
    state before that step.

    Args (hparams):
      units: LSTM units.
      input_dim: D; num_classes: K (both required).
      batch_size: B, the number of streams (global batch).
      learning_rate: Adam's.
      accuracy_window: predictions in the window of `test_state_accuracy`.
    """

    options = OPTIONS
    """The declared hparams (`pagi_rsm.hparams.stream_lstm.OPTIONS`)."""

    def __init__(self, **hparams):
        name = hparams.pop("name", "stream_lstm")
        for key in ("trainable", "dtype"):
            hparams.pop(key, None)
        hp = OPTIONS.check({**OPTIONS.defaults(), **hparams})
        super().__init__(name=name)
        self.hparams = hp
        self.cell = keras.layers.LSTMCell(hp["units"], name="lstm_cell")
        self.cell.build((None, hp["input_dim"]))
        self.readout = keras.layers.Dense(hp["num_classes"], name="readout")
        self.readout.build((None, hp["units"]))
        self.streams = StreamState(hp["batch_size"], [hp["units"], hp["units"]], name="streams")
        self.test_state_window = WindowedRate(hp["accuracy_window"], name="test_state_window")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")
        self.built = True


    def compile(self, learning_rate=None, **kwargs):
        """Adam with `learning_rate` (default: the hparam)."""
        lr = self.hparams["learning_rate"] if learning_rate is None else learning_rate
        optimizer = keras.optimizers.Adam(lr, name="lstm_adam")
        optimizer.build(self.trainable_variables)
        super().compile(optimizer=optimizer, **kwargs)

    def checkpoint_items(self):
        """Trackables for a `tf.train.Checkpoint`: every variable by path
        (`pagi_rsm.checkpointing`) and the optimiser."""
        return model_items(self, optimizer=self.optimizer)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def zero_states(self, batch):
        """The state of `batch` fresh streams, in the layout `unroll` takes."""
        return [self.streams.zeros(batch)]

    def unroll(self, data, states=None, training=False):
        """Runs a chunk from `states` (None: the stored streams) without learning.

        Returns:
          ``({"logits": [B, T, K]}, states)``.
        """
        x = ops.convert_to_tensor(data["inputs"])
        keep = 1.0 - ops.cast(data["reset"], x.dtype)
        if states is None:
            states = [self.streams.read(tf.shape(x)[0])]
        h, c = states[0]
        logits = []
        for t in range(x.shape[1]):
            h, c = h * keep[:, t, None], c * keep[:, t, None]
            logits.append(self.readout(h))
            h, (h, c) = self.cell(x[:, t], [h, c], training=training)
        return {"logits": ops.stack(logits, axis=1)}, [[h, c]]

    def call(self, data, training=False):
        return self.unroll(data, training=training)[0]

    def _chunk(self, data, training):
        labels = ops.cast(data["labels"], "int32")
        test = ops.cast(data["test"], "float32")
        batch = tf.shape(labels)[0]
        states = [self.streams.read(batch)]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            outputs, states = self.unroll(data, [[tf.stop_gradient(s) for s in states[0]]],
                                          training=training)
            logits = ops.cast(outputs["logits"], "float32")
            cross_entropy = keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True)
            loss = ops.mean(cross_entropy)
            # The optimiser sums the replicas' gradients: each gives 1/n of its mean's.
            scaled = loss / replicas
        if training:
            grads = tape.gradient(scaled, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
        self.streams.write(states[0])
        correct = ops.cast(ops.argmax(logits, axis=-1) == labels, "float32")
        self.test_state_window.update(correct * test, test)
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(ops.mean(correct))
        rate, count = self.test_state_window.result()
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy_tracker.result(),
                "perplexity": ops.exp(self.loss_tracker.result()),
                "test_state_accuracy": rate, "test_state_count": count}

    def train_step(self, data):
        return self._chunk(data, training=True)

    def test_step(self, data):
        return self._chunk(data, training=False)
