"""Stop training once a metric has held a target."""
import math

import keras

from pagi_rsm.checks import check_int

MODES = ("max", "min")


class StopAtTarget(keras.callbacks.Callback):
    """Stops `fit` once `metric` has reached `target` and held it over a window.

    The metric reaches the target when ``logs[metric] >= target`` (mode "max") or
    ``<= target`` (mode "min"). What "held over a window" means depends on `window_metric`:

    - with `window_metric` (e.g. ``"test_state_count"``): the metric is itself a statistic over a
      sliding window that the model reports, and the window must be full:
      ``logs[window_metric] >= window``. The grammar main job stops at
      test_state_accuracy >= 0.995 over the last 2000 test predictions this way;
    - without it: the target must hold for `window` consecutive batches (0 or 1: at once).

    Args:
      metric: name of a logged metric.
      target: the value to reach.
      mode: "max" or "min".
      window: window size (predictions or batches, see above); >= 0.
      window_metric: name of the logged window fill count, or "" / None.
      clock: optional `RunClock`, to record the run's batch number.

    Attributes:
      reached: True once stopped for the target.
      batch: the batch at which it was reached.
      value: the metric's value then.

    Example:
    ```python
    import keras
    import numpy as np
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((64, 4), "float32"), np.ones((64, 1), "float32")
    stop = StopAtTarget("loss", 1.0, mode="min")
    model.fit(x, y, batch_size=8, epochs=50, verbose=0, callbacks=[stop])
    print(stop.reached, stop.batch)          # True and the batch at which loss <= 1.0
    ```
    """

    def __init__(self, metric, target, mode="max", window=0, window_metric=None, clock=None):
        super().__init__()
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric must be a non-empty string, got {metric!r}")
        if (isinstance(target, bool) or not isinstance(target, (int, float))
                or not math.isfinite(target)):
            raise ValueError(f"target must be a finite number, got {target!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        check_int("window", window, 0)
        self.metric = metric
        self.target = float(target)
        self.mode = mode
        self.window = window
        self.window_metric = window_metric or None
        self.clock = clock
        self.reached = False
        self.batch = None
        self.value = None
        self._held = 0

    def _meets(self, value):
        return value >= self.target if self.mode == "max" else value <= self.target

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if self.reached or self.metric not in logs:
            return
        value = float(logs[self.metric])
        if not (math.isfinite(value) and self._meets(value)):
            self._held = 0
            return
        self._held += 1
        if self.window_metric is not None:
            held = float(logs.get(self.window_metric, 0.0)) >= self.window
        else:
            held = self._held >= max(self.window, 1)
        if held:
            self.reached = True
            self.value = value
            self.batch = self.clock.batch if self.clock is not None else batch + 1
            self.model.stop_training = True
