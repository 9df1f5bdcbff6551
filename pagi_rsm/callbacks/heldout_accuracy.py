"""`HeldOutAccuracy`: a model's own predictor scored on held-out streams, in TensorBoard."""
import keras
import numpy as np
import tensorflow as tf

from pagi_rsm.checks import check_int


def confusion_image(confusion, cell=16):
    """A [1, H, W, 1] float image of a confusion matrix: row r (true class) normalised to sum 1,
    white = 1; each entry a `cell` x `cell` square, rows top to bottom, columns left to right."""
    confusion = np.asarray(confusion, np.float64)
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1.0)
    image = np.kron(rows, np.ones((cell, cell)))
    return image[None, :, :, None].astype(np.float32)


class HeldOutAccuracy(keras.callbacks.Callback):
    """Every `interval` batches, runs the model's predictor on held-out streams and logs it.

    The model runs `warmup_chunks + chunks` chunks of held-out streams from a fresh (zero) state
    with its current weights, without learning and without touching its own (training) stream
    state; the last `chunks` are scored. Written at step = the run's batch:

    - ``<prefix>/accuracy``: next-step accuracy of the model's predictor (argmax of its logits);
    - ``<prefix>/<mask>_accuracy`` for each name in `masks` (a data key: a per-step 0/1 mask,
      e.g. the image sequences' ``determined``);
    - ``<prefix>/ceiling`` and ``<prefix>/fraction_of_ceiling`` when `ceiling` is given (also
      ``train/ceiling``, to set beside the training accuracy);
    - ``<prefix>/confusion``: the per-class confusion matrix as an image (row = true class,
      normalised; white = all of that class predicted as the column's class).

    Args:
      writer: a `tf.summary` writer.
      clock: the run's `RunClock` (earlier in the callback list).
      interval: batches between evaluations, >= 1.
      dataset_fn: callable returning a fresh dataset of held-out chunks (the same streams every
        time); elements are dicts with ``inputs``, ``reset``, ``labels`` (and the `masks`).
      num_classes: number of label classes.
      chunks: chunks to score, >= 1.
      warmup_chunks: chunks run first and not scored, >= 0.
      masks: data keys of extra per-step masks to report separately.
      ceiling: the best accuracy any predictor can reach on these streams, or None.
      prefix: tag prefix.

    The model must offer ``zero_states(batch)`` and ``unroll(data, states)`` returning
    ``(outputs, states)`` with ``outputs["logits"]`` [B, T, K] (`SequenceMemoryStack` does).
    """

    def __init__(self, writer, clock, interval, dataset_fn, num_classes, chunks=10,
                 warmup_chunks=10, masks=(), ceiling=None, prefix="heldout"):
        super().__init__()
        check_int("interval", interval, 1)
        check_int("chunks", chunks, 1)
        check_int("warmup_chunks", warmup_chunks, 0)
        self.writer = writer
        self.clock = clock
        self.interval = interval
        self.dataset_fn = dataset_fn
        self.num_classes = num_classes
        self.chunks = chunks
        self.warmup_chunks = warmup_chunks
        self.masks = tuple(masks)
        self.ceiling = ceiling
        self.prefix = prefix
        self._unroll = None
        self.last = None       # the latest {name: value}
        self.confusion = None  # the latest confusion matrix (counts, [true, predicted])

    def evaluate(self, model=None):
        """Scores the model's current weights; returns {name: value} (names without prefix)."""
        model = model or self.model
        if self._unroll is None:
            @tf.function
            def unroll(data, states):
                outputs, states = model.unroll(data, states)
                return tf.argmax(outputs["logits"], axis=-1, output_type=tf.int32), states

            self._unroll = unroll
        k = self.num_classes
        confusion = np.zeros((k, k), np.int64)
        masked = {name: [0.0, 0.0] for name in self.masks}
        states = None
        chunks = iter(self.dataset_fn())
        for index in range(self.warmup_chunks + self.chunks):
            data = next(chunks)
            if states is None:
                states = model.zero_states(int(data["inputs"].shape[0]))
            predicted, states = self._unroll({"inputs": data["inputs"],
                                              "reset": data["reset"]}, states)
            if index < self.warmup_chunks:
                continue
            predicted = predicted.numpy().reshape(-1)
            labels = np.asarray(data["labels"]).reshape(-1)
            np.add.at(confusion, (labels, predicted), 1)
            correct = predicted == labels
            for name in self.masks:
                mask = np.asarray(data[name], np.float64).reshape(-1)
                masked[name][0] += float(np.sum(correct * mask))
                masked[name][1] += float(np.sum(mask))
        values = {"accuracy": float(np.trace(confusion) / confusion.sum())}
        for name, (right, count) in masked.items():
            values[f"{name}_accuracy"] = right / count if count else 0.0
        if self.ceiling is not None:
            values["ceiling"] = float(self.ceiling)
            values["fraction_of_ceiling"] = values["accuracy"] / self.ceiling
        self.confusion = confusion
        return values

    def write(self, values, step):
        with self.writer.as_default():
            for name, value in values.items():
                tf.summary.scalar(f"{self.prefix}/{name}", value, step=step)
            if self.ceiling is not None:
                tf.summary.scalar("train/ceiling", float(self.ceiling), step=step)
            tf.summary.image(f"{self.prefix}/confusion", confusion_image(self.confusion),
                             step=step)

    def on_train_batch_end(self, batch, logs=None):
        step = self.clock.batch
        if step % self.interval:
            return
        self.last = self.evaluate()
        self.write(self.last, step)
