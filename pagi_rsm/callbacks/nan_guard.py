"""Stop training as soon as a loss is NaN or infinite."""
import math

from absl import logging
import keras


class NaNGuard(keras.callbacks.Callback):
    """Stops `fit` after the first batch whose logs hold a non-finite loss.

    Every log entry whose name contains "loss" (``loss``, ``memory_loss_0``,
    ``predictor_loss``, ...) is checked after each batch. On the first NaN or infinity the
    guard records which loss, its value and the batch, logs an error naming them and sets
    `model.stop_training`. Callbacks that save checkpoints consult `tripped` so the last good
    checkpoint stays the latest one.

    Args:
      clock: optional `RunClock`, to report the run's batch number (else the batch in the epoch).

    Attributes:
      tripped: True once a non-finite loss was seen.
      loss_name, loss_value, batch: what was seen, and when.
      message: a one-line description for the user.

    Example:
    ```python
    import keras
    import numpy as np
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((64, 4), "float32"), np.ones((64, 1), "float32")
    guard = NaNGuard()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[guard])
    assert not guard.tripped        # guard.message says which loss became NaN when it is
    ```
    """

    def __init__(self, clock=None):
        super().__init__()
        self.clock = clock
        self.tripped = False
        self.loss_name = None
        self.loss_value = None
        self.batch = None
        self.message = None

    def on_train_batch_end(self, batch, logs=None):
        if self.tripped:
            return
        for name, value in (logs or {}).items():
            if "loss" not in name:
                continue
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                self.tripped = True
                self.loss_name = name
                self.loss_value = value
                self.batch = self.clock.batch if self.clock is not None else batch + 1
                self.message = (f"loss {name!r} became {value} at batch {self.batch}; "
                                f"training stopped")
                logging.error(self.message)
                self.model.stop_training = True
                return
