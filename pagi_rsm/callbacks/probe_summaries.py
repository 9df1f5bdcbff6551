"""`ProbeSummaries`: a linear probe of a model's code on held-out streams, in TensorBoard."""
import keras
import numpy as np
import tensorflow as tf

from pagi_rsm.checks import check_int
from pagi_rsm.metrics.linear_probe import LinearProbe


class ProbeSummaries(keras.callbacks.Callback):
    """Every `interval` batches, fits a `LinearProbe` to the model's code and logs its accuracy.

    The model runs held-out streams from a fresh (zero) state with its current weights, without
    learning and without touching its own stream state: the first `train_chunks` chunks fit the
    ridge readout (code at step t -> label at step t), the next `test_chunks` chunks score it.
    Written at step = the run's batch:

    - ``<prefix>/accuracy``: over every scored step;
    - ``<prefix>/<mask_name>_accuracy`` (with `mask_key`): over the steps where that entry of
      the data is nonzero (the grammar's test states: ``probe/test_state_accuracy``, to set
      beside ``train/test_state_accuracy`` of the model's own predictor).

    A probe well above the model's predictor says the code carries the answer and the predictor
    has not read it out yet; a probe as low as the predictor says the code itself lacks it.

    Args:
      writer: a `tf.summary` writer.
      clock: the run's `RunClock` (earlier in the callback list).
      interval: batches between probes, >= 1.
      dataset_fn: callable returning a fresh dataset of held-out chunks (the same streams every
        time, so probes at different batches are comparable); elements are dicts with
        ``inputs``, ``reset``, ``labels`` (and `mask_key`).
      num_classes: number of label classes.
      feature: the key of ``model.unroll``'s outputs to probe, e.g. ``"encoding_0"``.
      train_chunks, test_chunks: chunks to fit on and to score on, >= 1 each.
      mask_key: optional data key of a per-step mask to report separately.
      mask_name: the name in that tag (default: `mask_key`).
      l2: ridge penalty of the probe.
      prefix: tag prefix.

    The model must offer ``zero_states(batch)`` and ``unroll(data, states)`` returning
    ``(outputs, states)`` (`SequenceMemoryStack` does).
    """

    def __init__(self, writer, clock, interval, dataset_fn, num_classes, feature,
                 train_chunks=20, test_chunks=10, mask_key=None, mask_name=None, l2=1.0,
                 prefix="probe"):
        super().__init__()
        for name, value in (("interval", interval), ("train_chunks", train_chunks),
                            ("test_chunks", test_chunks)):
            check_int(name, value, 1)
        self.writer = writer
        self.clock = clock
        self.interval = interval
        self.dataset_fn = dataset_fn
        self.num_classes = num_classes
        self.feature = feature
        self.train_chunks = train_chunks
        self.test_chunks = test_chunks
        self.mask_key = mask_key
        self.mask_name = mask_name or mask_key
        self.l2 = l2
        self.prefix = prefix
        self._unroll = None
        self.last = None   # the latest {tag: value}

    def probe(self):
        """Runs one probe with the model's current weights; returns {tag: value}."""
        if self._unroll is None:
            model = self.model

            @tf.function
            def unroll(data, states):
                outputs, states = model.unroll(data, states)
                return outputs[self.feature], states

            self._unroll = unroll
        probe = LinearProbe(self.num_classes, self.l2)
        states, masked_correct, masked_count = None, 0.0, 0.0
        chunks = iter(self.dataset_fn())
        for index in range(self.train_chunks + self.test_chunks):
            data = next(chunks)
            if states is None:
                states = self.model.zero_states(int(data["inputs"].shape[0]))
            codes, states = self._unroll({"inputs": data["inputs"], "reset": data["reset"]},
                                         states)
            codes = codes.numpy().reshape(-1, codes.shape[-1])
            labels = np.asarray(data["labels"]).reshape(-1)
            if index < self.train_chunks:
                probe.add_train(codes, labels)
                continue
            correct = probe.add_test(codes, labels)
            if self.mask_key:
                mask = np.asarray(data[self.mask_key], np.float64).reshape(-1)
                masked_correct += float(np.sum(correct * mask))
                masked_count += float(np.sum(mask))
        values = {f"{self.prefix}/accuracy": probe.result()[0]}
        if self.mask_key:
            values[f"{self.prefix}/{self.mask_name}_accuracy"] = (
                masked_correct / masked_count if masked_count else 0.0)
        return values

    def on_train_batch_end(self, batch, logs=None):
        step = self.clock.batch
        if step % self.interval:
            return
        self.last = self.probe()
        with self.writer.as_default():
            for tag, value in self.last.items():
                tf.summary.scalar(tag, value, step=step)
