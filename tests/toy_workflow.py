"""A tiny stream component, dataset and workflow for testing the framework quickly.

`ToyStream` is a small recurrent classifier with the contract of the RSM component: built from
hparams (`default_hparams()`), `compile()` without required arguments, its own `train_step`,
stream state in a model variable (so checkpoints carry it), a `write_summaries(step, batch)`
hook. `toy_dataset` yields the RSM dataset dicts {inputs [B,T,D], labels [B,T], reset [B,T],
test [B,T]} from (seed, batch index) alone, so `start_batch` fast-forwards exactly.

Used by name from definitions: ``workflow: tests.toy_workflow.ToyWorkflow`` (run from the
repository root). `run_pagi` runs the real `pagi` command in a subprocess.
"""
import os
import pathlib
import signal
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from pagi_rsm.callbacks.tensorboard_summaries import write_weight_histograms
from pagi_rsm.options import Option
from pagi_rsm.workflows.workflow import Workflow

REPO = pathlib.Path(__file__).resolve().parents[1]
TOY = "tests.toy_workflow.ToyWorkflow"


@pytest.fixture(autouse=True)
def restore_op_determinism():
    """Workflows enable TF op determinism process-wide; switch it back off after each test.

    Import it into a test module to use it there (it is autouse).
    """
    from tensorflow.python.framework import config as tf_config
    was = tf_config.is_op_determinism_enabled()
    yield
    if not was and tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()


def run_pagi(*args, cwd=REPO, timeout=600, env=None):
    """Runs `python -m pagi_rsm.cli ARGS` (what the `pagi` script runs) in a subprocess, with
    the extra environment variables `env`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-m", "pagi_rsm.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def toy_dataset(batch_size=8, time_steps=4, symbols=4, seed=0, start_batch=0):
    """Infinite dataset of B random symbol streams, one-hot, labelled with the symbol itself.

    Stream b's symbol at time g depends only on (seed, g), so batch i depends only on (seed, i)
    and `start_batch` fast-forwards exactly. `reset` is 1 at ~5% of the steps.
    """
    def symbols_at(g):
        key = tf.stack([tf.cast(seed, tf.int64), g])
        return tf.random.stateless_uniform([batch_size], seed=key, minval=0, maxval=symbols,
                                           dtype=tf.int32)

    def make(i):
        times = i * time_steps + tf.range(time_steps, dtype=tf.int64)
        ids = tf.transpose(tf.map_fn(symbols_at, times, fn_output_signature=tf.int32))
        key = tf.stack([tf.cast(seed, tf.int64) + 1, i])
        reset = tf.cast(tf.random.stateless_uniform([batch_size, time_steps], seed=key) < 0.05,
                        tf.float32)
        return {"inputs": tf.one_hot(ids, symbols),
                "labels": ids,
                "reset": reset,
                "test": tf.ones([batch_size, time_steps])}
    return tf.data.Dataset.counter(start=start_batch, dtype=tf.int64).map(make)


@keras.saving.register_keras_serializable(package="pagi_rsm_tests")
class ToyStream(keras.Model):
    """h_t = tanh(x_t W + h_{t-1} U) per stream; predicts the current symbol from h_t.

    The state h is a non-trainable variable [batch_size, units] carried across batches (when
    `stateful`), zeroed per sample where `reset` is 1. `nan_after` > 0 makes the loss NaN from
    that optimizer step on (to test the NaN guard).
    """

    @staticmethod
    def default_hparams():
        return {"batch_size": 8, "units": 16, "symbols": 4, "learning_rate": 0.05,
                "stateful": True, "nan_after": 0}

    def __init__(self, batch_size=8, units=16, symbols=4, learning_rate=0.05, stateful=True,
                 nan_after=0, **kwargs):
        super().__init__(**kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if units < 1:
            raise ValueError(f"units must be >= 1, got {units}")
        self.batch_size, self.units, self.symbols = batch_size, units, symbols
        self.learning_rate, self.stateful, self.nan_after = learning_rate, stateful, nan_after
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    def build(self, input_shape=None):
        self.w_in = self.add_weight(shape=(self.symbols, self.units), name="w_in")
        self.w_rec = self.add_weight(shape=(self.units, self.units), name="w_rec",
                                     initializer="orthogonal")
        self.w_out = self.add_weight(shape=(self.units, self.symbols), name="w_out")
        if self.stateful:
            self.state = self.add_weight(shape=(self.batch_size, self.units), name="state",
                                         initializer="zeros", trainable=False)
        self.built = True

    def compile(self, optimizer=None, **kwargs):
        super().compile(optimizer=optimizer or keras.optimizers.Adam(self.learning_rate),
                        **kwargs)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def _unroll(self, data, h):
        logits = []
        for t in range(data["inputs"].shape[1]):
            h = h * (1.0 - data["reset"][:, t, None])
            h = tf.tanh(data["inputs"][:, t] @ self.w_in + tf.stop_gradient(h) @ self.w_rec)
            logits.append(h @ self.w_out)
        return tf.stack(logits, axis=1), h

    def call(self, data, training=False):
        h = self.state if self.stateful else tf.zeros([tf.shape(data["inputs"])[0], self.units])
        return self._unroll(data, h)[0]

    def train_step(self, data):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        h0 = self.state if self.stateful else tf.zeros([tf.shape(data["inputs"])[0], self.units])
        with tf.GradientTape() as tape:
            logits, h = self._unroll(data, h0)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                data["labels"], logits, from_logits=True))
            if self.nan_after:
                loss = tf.where(self.optimizer.iterations >= self.nan_after,
                                tf.constant(float("nan"), loss.dtype), loss)
            scaled = loss / replicas
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        if self.stateful:
            self.state.assign(h)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                   data["labels"]), tf.float32)
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(tf.reduce_mean(correct))
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy_tracker.result()}

    def test_step(self, data):
        logits = self(data)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                   data["labels"]), tf.float32)
        self.accuracy_tracker.update_state(tf.reduce_mean(correct))
        return {"accuracy": self.accuracy_tracker.result()}

    def write_summaries(self, step, batch):
        state = self.state if self.stateful else tf.zeros([self.batch_size, self.units])
        tf.summary.image("activity/state", tf.convert_to_tensor(state)[None, :, :, None],
                         step=step)
        tf.summary.histogram("activity/state", state, step=step)
        write_weight_histograms(self, step)

    def get_config(self):
        return {"batch_size": self.batch_size, "units": self.units, "symbols": self.symbols,
                "learning_rate": self.learning_rate, "stateful": self.stateful,
                "nan_after": self.nan_after}


class KillAt(keras.callbacks.Callback):
    """Sends this process `signame` (default SIGKILL) once, when the run's clock reaches `batch`
    (to test resume and the clean stop on SIGTERM / SIGINT)."""

    def __init__(self, clock, batch, signame="SIGKILL"):
        super().__init__()
        self.clock, self.kill_batch, self.signame = clock, batch, signame
        self.sent = False

    def on_train_batch_end(self, batch, logs=None):
        if self.clock.batch >= self.kill_batch and not self.sent:
            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.signame))


class ToyWorkflow(Workflow):
    """Trains `ToyStream` on `toy_dataset` (a framework test workflow)."""

    headline_metric = "accuracy"
    headline_mode = "max"

    @classmethod
    def default_experiment_options(cls):
        return {"component": "tests.toy_workflow.ToyStream",
                "dataset": "tests.toy_workflow.toy_dataset",
                "batches": 20, "seed": 7,
                "hparams_override": {"units": 12}}

    options = Workflow.options.extend(
        Option("time_steps", 4, "time steps per batch", low=1),
        Option("kill_at_batch", 0, "signal this process at this batch (0: never)", low=0),
        Option("kill_signal", "SIGKILL", "the signal kill_at_batch sends",
               choices=("SIGKILL", "SIGTERM", "SIGINT")),
    ).with_defaults(checkpoint_interval=5, image_interval=5, progress=False)

    def build_dataset(self, start_batch):
        return self.config.dataset_fn(
            batch_size=self.hparams["batch_size"], time_steps=self.options["time_steps"],
            symbols=self.hparams["symbols"], seed=self.config.seed, start_batch=start_batch)

    def extra_callbacks(self):
        if not self.options["kill_at_batch"]:
            return []
        return [KillAt(self.clock, self.options["kill_at_batch"], self.options["kill_signal"])]
