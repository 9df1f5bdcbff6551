"""Per-batch training metrics and their moving window, independent of Keras epochs."""
import collections
import json
import math
import numbers

import keras

from pagi_rsm.checks import check_int


class BatchMetrics(keras.callbacks.Callback):
    """Makes every logged training metric the value of its batch alone, and keeps a window.

    Keras metric trackers average over an epoch and are reset when an epoch begins, so the logs
    of a batch are the mean since the epoch began, and the curves change with the epoch length.
    This callback resets the model's metrics (`model.reset_metrics()`) before every training
    batch: the logs of batch i are then the metrics of batch i alone, whatever the epoch length.
    (`model.evaluate` is not affected: its trackers still average over the evaluated batches.)
    Metrics a component keeps outside Keras trackers (e.g. a windowed rate held in variables)
    are logged as the component computes them.

    It also keeps the numeric logs of the last `window` batches; `window_logs` holds, per
    metric, the mean over them (over fewer while fewer batches have run). The window is part of
    a run's state: `get_state` / `set_state` carry it through a checkpoint as a JSON string, so
    a resumed run continues the same window.

    Put it early in the callback list (right after the `RunClock`), so the callbacks after it
    see `window_logs` of the current batch.

    Args:
      window: N, the number of batches in the moving window; >= 1.

    Attributes:
      window_logs: dict name -> mean of the metric over the last N batches (finite values only;
        NaN when the window holds no finite value).

    Example:
    ```python
    import keras
    import numpy as np
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.random.rand(64, 4).astype("float32"), np.ones((64, 1), "float32")
    metrics = BatchMetrics(window=3)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[metrics])
    print(metrics.window_logs["loss"])   # mean loss of the last 3 batches, each alone
    ```
    """

    def __init__(self, window=100):
        super().__init__()
        self.window = check_int("window", window, 1)
        self._values = {}   # name -> deque of the last `window` values
        self.window_logs = {}

    def on_train_batch_begin(self, batch, logs=None):
        self.model.reset_metrics()

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            values = self._values.setdefault(name, collections.deque(maxlen=self.window))
            values.append(float(value))
        self._update_means()

    def _update_means(self):
        self.window_logs = {}
        for name, values in self._values.items():
            finite = [v for v in values if math.isfinite(v)]
            self.window_logs[name] = math.fsum(finite) / len(finite) if finite else math.nan

    def get_state(self):
        """The window's contents as a JSON string (to store with a checkpoint)."""
        return json.dumps({"window": self.window,
                           "values": {k: list(v) for k, v in self._values.items()}})

    def set_state(self, state):
        """Restores `get_state`'s string ("" restores nothing). A window of another length
        keeps the newest values that fit."""
        if not state:
            return
        values = json.loads(state)["values"]
        self._values = {k: collections.deque(v, maxlen=self.window) for k, v in values.items()}
        self._update_means()
