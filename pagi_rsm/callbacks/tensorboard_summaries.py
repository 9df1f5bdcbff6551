"""TensorBoard summaries written per training batch of a run."""
import numbers

import keras
import tensorflow as tf

from pagi_rsm.checks import check_int


def write_weight_histograms(model, step, prefix="weights"):
    """Writes one histogram per model variable (trainable or not) at `step`.

    Tags are ``<prefix>/<variable path>``, e.g. ``weights/sequence_memory_stack/rsm/kernel``.
    Call inside a default summary writer (``with writer.as_default():``).
    """
    for variable in model.weights:
        value = tf.convert_to_tensor(variable)
        numeric = value.dtype.is_floating or value.dtype.is_integer
        if not numeric or value.shape.num_elements() == 0:
            continue
        tf.summary.histogram(f"{prefix}/{variable.path}", tf.cast(value, tf.float32), step=step)


class BatchSummaries(keras.callbacks.Callback):
    """Writes every logged metric, weight histograms and the component's own summaries.

    After each training batch (every `scalar_interval` batches) every numeric entry of the
    logs is written as the scalar ``<prefix>/<name>`` at step = the run's batch number
    (`clock.batch`). Every `image_interval` batches, if the model has a
    ``write_summaries(step, batch)`` method, the callback calls it inside the writer with
    `summary_batch` so the component writes its images (activity rasters, predictions vs
    inputs) and histograms (weights, statistics); a model without that hook gets a histogram of
    every variable (``weights/<path>``) instead.

    Args:
      writer: a `tf.summary` writer.
      clock: the run's `RunClock` (earlier in the callback list).
      scalar_interval: batches between scalar writes; >= 1.
      image_interval: batches between image/histogram writes; 0 = never.
      summary_batch: a dataset element for the model's hook, or None (hook not called).
      prefix: tag prefix of the scalars.

    Example:
    ```python
    import keras
    import numpy as np
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((64, 4), "float32"), np.ones((64, 1), "float32")
    import tensorflow as tf
    from pagi_rsm.callbacks import RunClock
    clock = RunClock()
    writer = tf.summary.create_file_writer("runs/demo")
    model.fit(x, y, batch_size=8, verbose=0, callbacks=[clock, BatchSummaries(writer, clock)])
    ```
    """

    def __init__(self, writer, clock, scalar_interval=1, image_interval=0, summary_batch=None,
                 prefix="train"):
        super().__init__()
        for name, value, low in (("scalar_interval", scalar_interval, 1),
                                 ("image_interval", image_interval, 0)):
            check_int(name, value, low)
        self.writer = writer
        self.clock = clock
        self.scalar_interval = scalar_interval
        self.image_interval = image_interval
        self.summary_batch = summary_batch
        self.prefix = prefix

    def write_scalars(self, logs, step):
        with self.writer.as_default():
            for name, value in (logs or {}).items():
                if isinstance(value, numbers.Real) and not isinstance(value, bool):
                    tf.summary.scalar(f"{self.prefix}/{name}", float(value), step=step)

    def write_images(self, step):
        with self.writer.as_default():
            hook = getattr(self.model, "write_summaries", None)
            if callable(hook):
                if self.summary_batch is not None:
                    hook(step, self.summary_batch)
            else:
                write_weight_histograms(self.model, step)

    def on_train_batch_end(self, batch, logs=None):
        step = self.clock.batch
        if step % self.scalar_interval == 0:
            self.write_scalars(logs, step)
        if self.image_interval and step % self.image_interval == 0:
            self.write_images(step)

    def on_train_end(self, logs=None):
        self.writer.flush()

