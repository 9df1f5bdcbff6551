"""A global batch counter for workflows that train through several `model.fit` calls."""
import keras

from pagi_rsm.checks import check_int


class RunClock(keras.callbacks.Callback):
    """Counts training batches across `fit` calls and resumes, and stops at a batch limit.

    Keras numbers batches within an epoch and epochs within one `fit` call. A workflow that
    resumes from a checkpoint at batch 1200, or calls `fit` more than once, needs the run's own
    batch number: `RunClock.batch` is the number of training batches completed since the run
    began (checkpointed runs included). Put it first in the callback list, so the callbacks after
    it see the updated count in `on_train_batch_end`.

    Args:
      start: batches already completed (the checkpoint's batch when resuming).
      limit: stop training (`model.stop_training = True`) once `batch` reaches it; None = never.

    Attributes:
      batch: completed batches.
      logs: the logs of the last completed batch (a dict of floats).

    Example:
    ```python
    import keras
    import numpy as np
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((64, 4), "float32"), np.ones((64, 1), "float32")
    clock = RunClock(start=0, limit=12)
    model.fit(x, y, batch_size=8, epochs=10, verbose=0, callbacks=[clock])  # stops at 12
    print(clock.batch)                                     # 12
    ```
    """

    def __init__(self, start=0, limit=None):
        super().__init__()
        check_int("start", start, 0)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise ValueError(f"limit must be None or an integer >= 0, got {limit!r}")
        self.batch = start
        self.limit = limit
        self.logs = {}

    @property
    def done(self):
        """True once the batch limit is reached."""
        return self.limit is not None and self.batch >= self.limit

    def on_train_batch_end(self, batch, logs=None):
        self.batch += 1
        self.logs = dict(logs or {})
        if self.done:
            self.model.stop_training = True
