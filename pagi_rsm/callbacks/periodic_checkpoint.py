"""Save a `tf.train.CheckpointManager` every N training batches."""
from absl import logging
import keras

from pagi_rsm.checks import check_int


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves `manager` every `interval` batches of the run (as counted by `clock`).

    The checkpoint number is the run's batch number, so ``ckpt-1200`` holds the state after 1200
    batches. If `guard` (a `NaNGuard`) has tripped, nothing more is saved: the last good
    checkpoint stays the latest.

    Args:
      manager: a `tf.train.CheckpointManager`.
      clock: the run's `RunClock` (must come earlier in the callback list).
      interval: batches between saves; 0 saves nothing here (call `save` at the end yourself).
      guard: optional `NaNGuard`.
      before_save: optional callable(batch) run just before each save (e.g. to store the batch
        number in a checkpointed variable).

    Example:
    ```python
    import keras
    import numpy as np
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((64, 4), "float32"), np.ones((64, 1), "float32")
    import tensorflow as tf
    from pagi_rsm.callbacks import RunClock
    clock = RunClock(start=0, limit=16)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), "ckpts", 3)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[clock, PeriodicCheckpoint(manager, clock, 4)])
    print(manager.latest_checkpoint)                       # ckpts/ckpt-16
    ```
    """

    def __init__(self, manager, clock, interval, guard=None, before_save=None):
        super().__init__()
        check_int("interval", interval, 0)
        self.manager = manager
        self.clock = clock
        self.interval = interval
        self.guard = guard
        self.before_save = before_save
        self.last_saved_batch = None

    def save(self):
        """Saves now (unless the guard tripped or this batch is saved); returns the path or None."""
        if self.guard is not None and self.guard.tripped:
            return None
        if self.last_saved_batch == self.clock.batch:
            return self.manager.latest_checkpoint
        if self.before_save is not None:
            self.before_save(self.clock.batch)
        path = self.manager.save(checkpoint_number=self.clock.batch)
        self.last_saved_batch = self.clock.batch
        logging.info("saved checkpoint %s", path)
        return path

    def on_train_batch_end(self, batch, logs=None):
        if self.interval and self.clock.batch % self.interval == 0:
            self.save()
