"""Stop a run cleanly on SIGTERM or SIGINT: finish the batch, save a checkpoint, exit.

A job scheduler's SIGTERM (or Ctrl-C) would otherwise lose everything since the last periodic
checkpoint, which for a long run can be half an hour of training. With `StopOnSignal` among
the callbacks, the first such signal lets the current batch finish and then stops `fit`; the
workflow saves the checkpoint of that batch, writes ``results.json`` with status
``"interrupted"`` and exits with status 5, and the same command resumes from there. A second
signal does what the signal did before (SIGINT raises `KeyboardInterrupt`, SIGTERM ends the
process), for a run that does not come back from a long batch.
"""
import signal
import threading

from absl import logging
import keras


class StopOnSignal(keras.callbacks.Callback):
    """Turns the first SIGTERM / SIGINT into ``model.stop_training`` at the end of the batch.

    Use as a context manager around the training loop: the handlers are installed on entry and
    the previous ones restored on exit. A signal that the process ignores (SIGINT in a job
    started with ``&`` from a script) stays ignored. Outside the main thread (where Python
    cannot install signal handlers) it does nothing.

    Args:
      clock: the run's `RunClock` (for the batch number in the message).
      signals: the signals to catch.

    Attributes:
      received: the name of the signal received (``"SIGTERM"``), or None.

    Example:
    ```python
    import os, signal
    import keras, numpy as np
    from pagi_rsm.callbacks import RunClock, StopOnSignal

    class Send(keras.callbacks.Callback):       # stands in for `kill -TERM <pid>`
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    clock = RunClock(start=0, limit=100)
    with StopOnSignal(clock) as stop:
        model.fit(np.ones((800, 4)), np.ones((800, 1)), batch_size=8, verbose=0,
                  callbacks=[clock, Send(), stop])
    print(stop.received, clock.batch)            # SIGTERM 4
    ```
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, clock, signals=SIGNALS):
        super().__init__()
        self.clock = clock
        self.signals = tuple(signals)
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in self.signals:
                if signal.getsignal(number) is signal.SIG_IGN:
                    continue    # ignored, as SIGINT is in a `cmd &` job: leave it so
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        self._restore()
        return False

    def _restore(self):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _handle(self, number, frame):
        if self.received is not None:      # the second signal: what it did before
            self._restore()
            signal.raise_signal(number)
            return
        self.received = signal.Signals(number).name
        logging.warning("%s received (batch %d done): stopping at the end of the current batch "
                        "and saving its checkpoint (send it again to stop at once)",
                        self.received, self.clock.batch)

    def on_train_batch_end(self, batch, logs=None):
        if self.received is not None:
            self.model.stop_training = True

    @property
    def message(self):
        """Why the run stopped, and how to go on."""
        return (f"stopped by {self.received} after batch {self.clock.batch}; its checkpoint is "
                f"saved: run the same command again to resume")
