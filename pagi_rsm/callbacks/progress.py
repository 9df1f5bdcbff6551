"""A one-line progress display for long runs, showing the headline metric."""
import sys
import time

import keras

from pagi_rsm.checks import check_int


def format_duration(seconds):
    """`seconds` as "1h02m", "3m05s" or "42s"."""
    seconds = int(round(max(seconds, 0)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class HeadlineProgress(keras.callbacks.Callback):
    """Shows batch / total, a bar, the headline metric, the loss, speed and time left.

    On a terminal the line is redrawn in place (at most every `refresh` seconds); when the output
    is a file or a pipe (CI logs) a new line is printed every `log_every` seconds instead.

    Args:
      clock: the run's `RunClock`.
      total: the run's batch limit.
      metric: the headline metric name (shown first).
      extra: other metric names to show when logged (default: ``("loss",)``).
      stream: where to print (default: sys.stdout).
      refresh: seconds between redraws on a terminal.
      log_every: seconds between lines when not on a terminal.

    Example:
    ```python
    import keras
    import numpy as np
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((64, 4), "float32"), np.ones((64, 1), "float32")
    from pagi_rsm.callbacks import RunClock
    clock = RunClock(start=0, limit=16)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[clock, HeadlineProgress(clock, 16, "loss")])
    ```
    """

    def __init__(self, clock, total, metric, extra=("loss",), stream=None, refresh=0.25,
                 log_every=15.0):
        super().__init__()
        check_int("total", total, 0)
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric must be a non-empty string, got {metric!r}")
        for name, value in (("refresh", refresh), ("log_every", log_every)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        self.clock = clock
        self.total = total
        self.metric = metric
        self.extra = tuple(m for m in extra if m != metric)
        self.stream = stream or sys.stdout
        self.refresh = refresh
        self.log_every = log_every
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._start_time = None
        self._start_batch = None
        self._last_print = 0.0
        self._width = 0

    def line(self, logs):
        """The progress text for the current batch and `logs`."""
        done, total = self.clock.batch, self.total
        fraction = min(done / total, 1.0) if total else 0.0
        bar = "#" * int(20 * fraction) + "." * (20 - int(20 * fraction))
        parts = [f"batch {done}/{total} [{bar}] {100 * fraction:3.0f}%"]
        for name in (self.metric,) + self.extra:
            if name in logs:
                parts.append(f"{name} {float(logs[name]):.4f}")
        elapsed = time.monotonic() - self._start_time
        ran = done - self._start_batch
        if ran > 0 and elapsed > 0:
            rate = ran / elapsed
            parts.append(f"{rate:.1f} batch/s" if rate >= 1 else f"{1 / rate:.1f} s/batch")
            if total and done < total:
                parts.append(f"eta {format_duration((total - done) / rate)}")
        return " | ".join(parts)

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if self._start_time is None:  # time from the end of the first batch (it traces)
            self._start_time, self._start_batch = now, self.clock.batch
        final = self.total and self.clock.batch >= self.total
        interval = self.refresh if self._tty else self.log_every
        if not final and now - self._last_print < interval and self._last_print:
            return
        self._last_print = now
        text = self.line(logs or {})
        if self._tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def on_train_end(self, logs=None):
        if self._tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
