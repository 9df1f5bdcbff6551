"""`StreamState`: per-stream recurrent state kept in variables across `fit` batches."""
import keras
import tensorflow as tf
from keras import ops

from pagi_rsm.distribute import replica_slot


class StreamState(keras.layers.Layer):
    """Holds one [streams, size] variable per state tensor of B continuing streams.

    Streams continue across `model.fit` batches: row b of every batch is stream b, and the
    state read at the start of a batch is the state written at the end of the previous one.
    The variables are ordinary model weights, so `.keras` files, `save_weights` and
    `tf.train.Checkpoint` save and restore the streams with the model.

    Under `tf.distribute.MirroredStrategy` each replica sees a contiguous slice of the global
    batch (replica r gets rows [r·b, (r+1)·b)). Keras' own `stateful=True` RNN sizes its state to
    the global batch and fails there; here every replica reads its own rows of the (mirrored)
    global state and writes them back through a SUM-aggregated assignment of a tensor that is
    zero outside its rows, so after the write every replica holds the full, exact global state.

    Args:
      streams: B, the global number of streams (the global batch size).
      sizes: per-sample size of each state tensor.
    """

    def __init__(self, streams, sizes, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(streams, int) or streams < 1:
            raise ValueError(f"streams (batch_size) must be an integer >= 1, got {streams!r}")
        self.streams = streams
        self.sizes = [int(s) for s in sizes]
        self.values = [
            self.add_weight(name=f"state_{i}", shape=(streams, size), initializer="zeros",
                            trainable=False, aggregation="sum", autocast=False)
            for i, size in enumerate(self.sizes)]
        self.built = True  # all weights exist: nothing to build from inputs

    def _rows(self, batch):
        replica, replicas = replica_slot()
        if replicas == 1:
            return None
        return replica * batch

    def read(self, batch):
        """The state rows of the streams in this replica's batch of `batch` rows.

        Outside a replica context (one device, or Keras building a model in a strategy's
        scope on one replica's batch) those are the first `batch` streams, so the states
        always have the batch's rows."""
        start = self._rows(batch)
        values = [ops.convert_to_tensor(v) for v in self.values]
        if start is None:
            if isinstance(batch, int) and batch == self.streams:
                return values
            start = 0
        return [tf.slice(v, [start, 0], [batch, -1]) for v in values]

    def write(self, new_values):
        """Stores this replica's rows (a list like `read` returned)."""
        batch = tf.shape(new_values[0])[0]
        start = self._rows(batch)
        for var, value in zip(self.values, new_values):
            value = ops.cast(value, var.dtype)
            if start is not None:
                value = tf.pad(value, [[start, self.streams - start - batch], [0, 0]])
            var.assign(value)

    def zeros(self, batch):
        """The state of `batch` fresh streams (zeros, as `read` lays them out), e.g. held-out
        streams run beside the stored ones."""
        return [ops.zeros((batch, size), dtype=v.dtype) for size, v in zip(self.sizes,
                                                                           self.values)]

    def reset(self):
        """Zeroes every stream (cross-replica / eager use)."""
        for var in self.values:
            var.assign(ops.zeros_like(var))
