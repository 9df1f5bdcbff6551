"""`EpochSummaries`: each epoch's training metrics as TensorBoard scalars."""
import keras
import tensorflow as tf


class EpochSummaries(keras.callbacks.Callback):
    """Writes each epoch's training metrics as ``train/<name>`` at the optimizer step.

    For workflows that call `fit` once per epoch (the continual tasks), where the per-batch
    summaries of the base recipe do not apply.

    Args:
      writer: a `tf.summary` writer.
    """

    def __init__(self, writer):
        super().__init__()
        self.writer = writer

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        with self.writer.as_default():
            for key, value in (logs or {}).items():
                tf.summary.scalar(f"train/{key}", float(value), step=step)
