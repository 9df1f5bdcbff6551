"""`WindowedRate`: a success rate over (about) the last N events, e.g. test-state accuracy."""
import keras
import tensorflow as tf

from pagi_rsm.distribute import replica_sum


class WindowedRate(keras.layers.Layer):
    """Rate of successes over the most recent `window` events, updated once per batch.

    Each batch adds (successes, events) over the global batch (summed over replicas). The rate
    is taken over the newest batches whose events add up to at least `window`; `count` is the
    number of events it covers (== the events so far until the window is full). Kept as a
    layer with variables (not a `keras.metrics.Metric`) so Keras does not reset it each epoch
    and checkpoints carry it.

    Args:
      window: N, the number of events (e.g. 2000 test-state predictions).
      slots: how many batches the ring buffer remembers; it must hold N events.
    """

    def __init__(self, window, slots=256, **kwargs):
        super().__init__(**kwargs)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window!r}")
        self.window = int(window)
        self.slots = int(slots)
        kw = dict(trainable=False, aggregation="only_first_replica", autocast=False)
        self.successes = self.add_weight(name="successes", shape=(self.slots,),
                                         initializer="zeros", **kw)
        self.events = self.add_weight(name="events", shape=(self.slots,),
                                      initializer="zeros", **kw)
        self.position = self.add_weight(name="position", shape=(), dtype="int32",
                                        initializer="zeros", **kw)
        self.built = True  # all weights exist: nothing to build from inputs

    def update(self, successes, events):
        successes, events = replica_sum([tf.cast(tf.reduce_sum(successes), tf.float32),
                                         tf.cast(tf.reduce_sum(events), tf.float32)])
        index = tf.math.floormod(self.position, self.slots)
        one_hot = tf.one_hot(index, self.slots)
        self.successes.assign(self.successes * (1.0 - one_hot) + one_hot * successes)
        self.events.assign(self.events * (1.0 - one_hot) + one_hot * events)
        self.position.assign(index + 1)

    def result(self):
        """(rate, count) over the newest batches that cover `window` events."""
        newest_first = tf.math.floormod(self.position - 1 - tf.range(self.slots), self.slots)
        events = tf.gather(self.events, newest_first)
        successes = tf.gather(self.successes, newest_first)
        before = tf.cumsum(events, exclusive=True)
        used = tf.cast(before < self.window, tf.float32)
        count = tf.reduce_sum(events * used)
        rate = tf.math.divide_no_nan(tf.reduce_sum(successes * used), count)
        return rate, count
