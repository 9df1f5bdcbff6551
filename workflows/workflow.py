"""The Workflow base class: the recipe every pagi-rsm experiment follows.

A workflow builds the dataset and the component from resolved options, trains the component
through `model.fit` (the streams continue across batches: their state lives in model variables),
evaluates, and reports. `Workflow.run` is that recipe, step for step:

```python
def run(self):
    self.check_data(self.config)                   # missing/corrupt data: DataError, no run dir
    self.setup()                                   # seed, strategy, directories, summary writer
    start = self.resume_point()                    # batch of the latest checkpoint, else 0
    dataset = self.build_dataset(start_batch=start)
    model = self.build_component(dataset)          # built + compiled under the strategy
    self.restore(model)                            # weights, stream state, optimizer state
    training = self.train(model, dataset, start)   # model.fit with the run's callbacks
    evaluation = self.evaluate(model, training)    # (skipped after SIGTERM/SIGINT)
    self.save_component(model, training)           # model.keras beside results.json
    return self.report(training, evaluation)       # results.json + one-screen summary
```

Components: built as ``component_class(**hparams)`` under the strategy's scope, then (if not yet
built) ``model.build(shapes)`` with the dataset's element shapes (a dict such as
``{"inputs": [B, T, D], "labels": [B, T], ...}``), then ``model.compile(jit_compile=...)``.

What a run reports:

- TensorBoard (in ``summary_dir``): every logged metric as the scalar ``train/<name>``, the
  value of that batch alone (`pagi_rsm.callbacks.batch_metrics.BatchMetrics` resets the Keras
  trackers before each batch), and ``train_window/<name>``, its mean over the last
  `summary_window` batches (the window is checkpointed), every `summary_interval` batches: the
  curves do not depend on `checkpoint_interval`; every `image_interval` batches the
  component's images and histograms (its optional ``write_summaries(step, batch)`` hook;
  without one, a histogram of every weight, ``weights/<path>``); the resolved definition as the
  text ``definition``; HParams (the swept values in a sweep, else the seed, the batch limit and
  the hparams that differ from the component's defaults).
- A progress line with the headline metric (`headline_metric`).
- ``results.json`` in ``summary_dir`` (status, headline metric, final metrics (the last
  batch's, and their window means), options, versions, wall time) and a final one-screen
  summary.
- ``model.keras`` in ``summary_dir``: the trained component (`save_component`);
  ``pagi_rsm.load_run(summary_dir)`` gives the resolved options and the component restored from
  the latest checkpoint.
- Checkpoints (``tf.train.CheckpointManager``) every `checkpoint_interval` batches and at the
  end, holding the component's variables (stream state included), its optimizers and the run's
  batch counter. A run started again with the same ``checkpoint`` directory resumes from the
  latest checkpoint and rebuilds its dataset from that batch, so a run killed (even with
  SIGKILL) and resumed ends with the same metrics as one never interrupted. (A Keras epoch is
  one checkpoint interval; no logged metric depends on it.)
- Early stops: any callback that requests a stop (a `TargetStop`; the `stop_metric` option's
  `StopAtTarget`) ends the run with status "target_reached".
- A non-finite loss stops the run with a message naming the loss; no checkpoint is written after
  it, so the last good one stays the latest. Status "nan", exit code 3 from the CLI.
- SIGTERM or SIGINT (Ctrl-C) stops the run after the current batch
  (`pagi_rsm.callbacks.stop_on_signal.StopOnSignal`): the checkpoint of that batch is saved,
  evaluation is skipped, results.json has status "interrupted" (exit code 5) and the same
  command resumes. A second signal acts at once. (Not in multi-worker runs, where one worker
  stopping alone would stall the others.)

Subclasses set `headline_metric`, their defaults (`default_experiment_options`), declare their
options (`options`, extending the base class's) and implement `build_dataset`; anything else the
recipe does not need to show lives in the component or the library.

Example:

```python
from pagi_rsm import definitions
[config] = definitions.resolve(                 # a small grammar run of 3 batches
    workflow="grammar", experiment_overrides={"batches": 3, "summary_dir": "runs/example"},
    hparams_overrides={"batch_size": 8, "groups": 20, "active_groups": 3,
                       "predictor_hidden_size": [16]},
    workflow_option_overrides={"probe_interval": 0, "progress": False})
results = config.workflow_class(config).run()
print(results["headline"])
```
"""
import json
import math
import os
import re
import tempfile
import time

from absl import logging

from pagi_rsm import definitions
from pagi_rsm.checkpointing import model_items
from pagi_rsm import runtime
from pagi_rsm.options import Option, Options

RESULTS_FILE = "results.json"
RUN_INFO_FILE = "run.json"
DEFINITION_FILE = "definition.yaml"
MODEL_FILE = "model.keras"

STATUS_EXIT_CODES = {"completed": 0, "target_reached": 0, "nan": 3, "dataset_exhausted": 4,
                     "interrupted": 5}


class ResumeError(definitions.DefinitionError):
    """A checkpoint directory that this run cannot resume from (nothing was started)."""


class DataError(definitions.DefinitionError):
    """A data file that is missing or corrupt, found before anything started (exit status 2).

    The message is one line naming the file and how to provide it.
    """


def _finite_or_none(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class Workflow:
    """Base class of pagi-rsm workflows (see the module docstring for what a run does).

    Args:
      config: a `pagi_rsm.definitions.RunConfig` (from `definitions.resolve`).
      summary_dir: overrides the summary directory of `config` (used for sweep trials).
      checkpoint_dir: overrides the checkpoint directory of `config`.

    Class attributes:
      headline_metric: the logged metric that says how well the run did (shown in the progress
        line, the summary and results.json).
      headline_mode: "max" if larger is better, else "min".
    """

    headline_metric = "loss"
    headline_mode = "min"

    # --- options ---------------------------------------------------------------------------------

    @classmethod
    def default_experiment_options(cls):
        """Defaults of `experiment-options` for this workflow.

        Subclasses add ``component``, ``dataset`` and usually ``hparams_override`` (component
        hparams that this workflow sets differently from the component's own defaults).
        """
        return {"batches": 1000, "seed": 42}

    options = Options(
        Option("checkpoint_interval", 500, "batches between checkpoints (also the length of a "
               "Keras epoch, which no logged metric depends on); 0: only at the end", low=0),
        Option("max_to_keep", 3, "checkpoints kept on disk", low=1),
        Option("summary_interval", 1, "batches between scalar summaries", low=1),
        Option("summary_window", 100, "batches in the moving window of the train_window/<metric> "
               "scalars (train/<metric> is each batch alone)", low=1),
        Option("image_interval", 500, "batches between weight histograms and component images; "
               "0: never", low=0),
        Option("stop_metric", "", "stop early once this logged metric reaches stop_target "
               "(empty: never)"),
        Option("stop_target", 0.0, "the value of stop_metric that ends the run"),
        Option("stop_mode", "max", "max: stop when stop_metric >= stop_target; min: <=",
               choices=("max", "min")),
        Option("stop_window", 0, "the target must hold over this many counts of "
               "stop_window_metric (0: at one batch)", low=0),
        Option("stop_window_metric", "", "logged count that measures stop_window"),
        Option("evaluate_batches", 0, "after training, evaluate on this many further batches of "
               "the stream (model.evaluate)", low=0),
        Option("progress", True, "show the progress line"),
    )
    """The declared workflow options; subclasses extend it (`Options.extend`,
    `Options.with_defaults`). Definitions, `pagi show`, `pagi run --help` and docs/options.md
    are made from it."""

    @classmethod
    def check_options(cls, config):
        """Checks combinations of option values; raises ValueError naming the option.

        Each option's own type and range are checked by its declaration; subclasses add checks
        of combinations here.
        """

    @classmethod
    def check_data(cls, config):
        """Checks that the data a run needs is present and readable, before anything starts.

        Subclasses whose data comes from files override `load_data_files(config)` (open and
        parse them; raise `FileNotFoundError`/`OSError`/`ValueError` naming the file). Any such
        error becomes a one-line `DataError`, so `pagi run` prints one line, exits with status
        2 and leaves no run directory, whatever the dataset.
        """
        try:
            cls.load_data_files(config)
        except (OSError, ValueError) as e:
            if isinstance(e, definitions.DefinitionError):
                raise
            message = " ".join(str(e).split())
            raise DataError(f"{config.source}: data: {message}") from None

    @classmethod
    def load_data_files(cls, config):
        """Opens the data files `config` needs (default: none; generated data needs none)."""

    # --- construction ----------------------------------------------------------------------------

    def __init__(self, config, summary_dir=None, checkpoint_dir=None):
        self.config = config
        self.options = dict(config.workflow_options)
        self.summary_dir, self.checkpoint_dir = plan_directories(
            config, summary_dir=summary_dir, checkpoint_dir=checkpoint_dir)
        self.is_chief = runtime.is_chief()
        self.strategy = None
        self.writer = None
        self.jit_compile = None
        self.checkpoint = None
        self.manager = None
        self.resumed_from = 0
        self._run_state = None
        self._started = None
        self._wall_base = 0.0  # wall time of the earlier processes of a resumed run
        self.clock = None
        self.batch_metrics = None
        self.model_file = None

    @property
    def hparams(self):
        """The component's resolved hyperparameters."""
        return self.config.hparams

    @property
    def batches(self):
        """The run's batch limit."""
        return self.config.batches

    # --- the recipe -------------------------------------------------------------------------------

    def run(self):
        """Runs the workflow: set up, build, (resume,) train, evaluate, report.

        Returns:
          The results dict also written to ``<summary_dir>/results.json``.

        Raises:
          DataError: `check_data` found a missing or corrupt data file; no directory was made.
        """
        self.check_data(self.config)
        self.setup()
        start = self.resume_point()
        dataset = self.build_dataset(start_batch=start)
        model = self.build_component(dataset)
        self.restore(model)
        training = self.train(model, dataset, start)
        evaluation = {} if training["status"] == "interrupted" else self.evaluate(model, training)
        self.save_component(model, training)
        return self.report(training, evaluation)

    # --- steps ------------------------------------------------------------------------------------

    def setup(self):
        """Seeds, chooses the strategy and XLA, creates directories and the summary writer."""
        import keras
        import tensorflow as tf
        self._started = time.time()
        experiment = self.config.experiment
        self.check_resumable()
        # Fresh Keras state: layer names (and so TensorBoard tags) are the same in every run.
        keras.backend.clear_session()
        runtime.seed_everything(experiment["seed"], experiment["deterministic"])
        self.strategy = runtime.make_strategy(experiment["distribution"])
        self.jit_compile = runtime.resolve_jit_compile(experiment["jit_compile"])
        if self.is_chief:
            os.makedirs(self.summary_dir, exist_ok=True)
            os.makedirs(self.checkpoint_dir, exist_ok=True)
            with open(os.path.join(self.summary_dir, DEFINITION_FILE), "w",
                      encoding="utf-8") as f:
                f.write(self.config.to_yaml())
            with open(os.path.join(self.checkpoint_dir, RUN_INFO_FILE), "w",
                      encoding="utf-8") as f:
                json.dump({"summary_dir": os.path.abspath(self.summary_dir),
                           "definition": self.config.as_definition()}, f, indent=2)
            self.writer = tf.summary.create_file_writer(self.summary_dir)
        else:
            self.writer = tf.summary.create_noop_writer()
        logging.info("workflow %s: summaries in %s, checkpoints in %s (distribution=%s, "
                     "replicas=%d, jit_compile=%s)", experiment["workflow"], self.summary_dir,
                     self.checkpoint_dir, experiment["distribution"],
                     self.strategy.num_replicas_in_sync, self.jit_compile)
        if self.is_chief and self.options["progress"]:
            print(f"{experiment['workflow']}: {self.batches} batches at most; watch it with\n"
                  f"  tensorboard --logdir {self.summary_dir} --host 127.0.0.1", flush=True)

    def check_resumable(self):
        """Before resuming, compares this run's options with those the checkpoints were made by.

        Raises:
          ResumeError: the component or its hparams differ (the checkpoint cannot be restored
            into this model). Other differences (seed, workflow options) are logged as warnings:
            the run resumes, but is no longer the continuation of the earlier one.
        """
        import tensorflow as tf
        info = os.path.join(self.checkpoint_dir, RUN_INFO_FILE)
        if not (os.path.exists(info) and tf.train.latest_checkpoint(self.checkpoint_dir)):
            return
        with open(info, encoding="utf-8") as f:
            before = json.load(f)["definition"]
        now = self.config.as_definition()
        old_exp, new_exp = before["experiment-options"], now["experiment-options"]
        problems = []
        if old_exp.get("component") != new_exp["component"]:
            problems.append(f"component {old_exp.get('component')!r} -> "
                            f"{new_exp['component']!r}")
        old_hp, new_hp = old_exp.get("hparams_override", {}), new_exp["hparams_override"]
        for key in sorted(set(old_hp) | set(new_hp)):
            if old_hp.get(key) != new_hp.get(key):
                problems.append(f"hparams_override.{key}: {old_hp.get(key)!r} -> "
                                f"{new_hp.get(key)!r}")
        if problems:
            raise ResumeError(
                f"the checkpoints in {self.checkpoint_dir} were written by a run with other "
                f"component settings ({'; '.join(problems)}); resume with the same hparams or "
                f"choose another --checkpoint directory")
        ignored = {"batches", "summary_dir", "checkpoint", "distribution", "jit_compile"}
        changed = [k for k in new_exp if k not in ignored | {"hparams_override"}
                   and old_exp.get(k) != new_exp[k]]
        changed += [f"workflow-options.{k}" for k, v in now["workflow-options"].items()
                    if before.get("workflow-options", {}).get(k) != v]
        if changed:
            logging.warning("resuming with options that differ from the checkpointed run's: "
                            "%s", ", ".join(changed))

    def build_component(self, dataset):
        """Creates, builds (from `dataset`'s element shapes) and compiles the component under
        the strategy's scope."""
        import tensorflow as tf
        with self.strategy.scope():
            model = self.create_component()
            if not model.built:
                model.build(tf.nest.map_structure(lambda s: s.shape.as_list(),
                                                  dataset.element_spec))
            self.compile_component(model)
        effective = getattr(model, "jit_compile", self.jit_compile)
        if self.jit_compile and not effective:
            # Keras turns XLA off under op determinism (and for layers that cannot be compiled).
            logging.warning("jit_compile requested but Keras compiles without XLA%s",
                            " because op determinism is on (pass --nodeterministic to use XLA)"
                            if self.config.experiment["deterministic"] else "")
        self.jit_compile = bool(effective)
        return model

    def create_component(self):
        """The component, constructed under the strategy's scope (not yet built or compiled);
        the base class: ``component_class(**hparams)``."""
        return self.config.component_class(**self.hparams)

    def compile_component(self, model):
        """Compiles `model`; the base class passes only `jit_compile` (components create their
        own optimizers in `compile`)."""
        model.compile(jit_compile=self.jit_compile)

    def build_dataset(self, start_batch):
        """Returns the training `tf.data.Dataset`, starting at batch `start_batch` of the stream.

        The dataset must be deterministic given the seed and `start_batch`: a run resumed at
        batch i must see exactly the batches an uninterrupted run sees from batch i on.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement build_dataset()")

    def checkpoint_items(self, model):
        """Trackables to checkpoint: ``model.checkpoint_items()`` if it has one, else every
        variable of the model by path and its optimizer (`pagi_rsm.checkpointing.model_items`:
        the model object alone would miss the layers it holds in Python lists)."""
        items = getattr(model, "checkpoint_items", None)
        if callable(items):
            return dict(items())
        return model_items(model, optimizer=getattr(model, "optimizer", None))

    def resume_point(self):
        """Batches already trained according to the latest checkpoint (0 if there is none)."""
        import tensorflow as tf
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest is None:
            return 0
        return int(tf.train.load_variable(latest, "run_state/batch/.ATTRIBUTES/VARIABLE_VALUE"))

    def restore(self, model):
        """Creates the checkpoint manager and restores the latest checkpoint, if any.

        Returns:
          The number of batches already trained (0 for a fresh run).
        """
        import tensorflow as tf
        self._run_state = {"batch": tf.Variable(0, dtype=tf.int64, trainable=False),
                           "wall_time": tf.Variable(0.0, dtype=tf.float64, trainable=False),
                           # the train_window/* scalars' window (BatchMetrics.get_state)
                           "metric_window": tf.Variable("", dtype=tf.string, trainable=False)}
        self.checkpoint = tf.train.Checkpoint(run_state=self._run_state,
                                              **self.checkpoint_items(model))
        save_dir = self.checkpoint_dir
        if not self.is_chief:  # every worker must save (collectives); only the chief's is kept
            save_dir = tempfile.mkdtemp(prefix="pagi_worker_ckpt_")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, save_dir, max_to_keep=self.options["max_to_keep"])
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest is None:
            return 0
        self.checkpoint.restore(latest).expect_partial()
        self.resumed_from = int(self._run_state["batch"].numpy())
        self._wall_base = float(self._run_state["wall_time"].numpy())
        logging.info("resumed from %s at batch %d", latest, self.resumed_from)
        return self.resumed_from

    def extra_callbacks(self):
        """More Keras callbacks for `fit`: placed after the run's clock, `BatchMetrics` and NaN
        guard and before its checkpoint saver (what they change at a checkpoint batch is in that
        checkpoint), summaries, early stop and progress line. `self.clock` (the run's
        `RunClock`) is set when this is called. Default: none."""
        return []

    def train(self, model, dataset, start_batch):
        """Trains with `model.fit` from `start_batch` to the batch limit or an early stop.

        Returns:
          A dict: status ("completed", "target_reached", "nan", "dataset_exhausted",
          "interrupted": SIGTERM or SIGINT, after saving the checkpoint of the batch), batches
          (trained so far, resumed ones included), logs (the last batch's metrics, of that batch
          alone), window_logs (their means over the last `summary_window` batches), message,
          checkpoint (the latest checkpoint path), nan_loss.

        Early stops have one mechanism: any callback that sets ``model.stop_training`` before
        the batch limit (a `pagi_rsm.callbacks.stop_at_target.TargetStop`, such as the
        `stop_metric` option's `StopAtTarget`, says why) ends the run with status
        "target_reached"; the loop does not call `fit` again.
        """
        from pagi_rsm.callbacks.batch_metrics import BatchMetrics
        from pagi_rsm.callbacks.nan_guard import NaNGuard
        from pagi_rsm.callbacks.periodic_checkpoint import PeriodicCheckpoint
        from pagi_rsm.callbacks.progress import HeadlineProgress
        from pagi_rsm.callbacks.run_clock import RunClock
        from pagi_rsm.callbacks.stop_at_target import StopAtTarget
        from pagi_rsm.callbacks.stop_on_signal import StopOnSignal
        from pagi_rsm.callbacks.tensorboard_summaries import BatchSummaries

        options = self.options
        interval = options["checkpoint_interval"]
        clock = self.clock = RunClock(start=start_batch, limit=self.batches)
        metrics = self.batch_metrics = BatchMetrics(options["summary_window"])
        if self._run_state is not None:
            metrics.set_state(self._run_state["metric_window"].numpy().decode())
        guard = NaNGuard(clock)
        saver = PeriodicCheckpoint(self.manager, clock, interval, guard=guard,
                                   before_save=self._store_run_state)
        hook = getattr(model, "write_summaries", None)
        summary_batch = None
        if callable(hook) and options["image_interval"] and start_batch < self.batches:
            summary_batch = next(iter(self.build_dataset(start_batch=start_batch)))
        # The workflow's own callbacks come before the saver: what they change at a checkpoint
        # batch is in that checkpoint.
        # Multi-worker: a signal reaches one worker, which must not leave the collectives alone.
        multi_worker = self.config.experiment["distribution"] == "multi_worker"
        stop = StopOnSignal(clock, () if multi_worker else StopOnSignal.SIGNALS)
        callbacks = [clock, metrics, guard, *self.extra_callbacks(), stop, saver,
                     BatchSummaries(self.writer, clock, options["summary_interval"],
                                    options["image_interval"], summary_batch, window=metrics)]
        if options["stop_metric"]:
            callbacks.append(StopAtTarget(options["stop_metric"], options["stop_target"],
                                          options["stop_mode"], options["stop_window"],
                                          options["stop_window_metric"], clock=clock))
        if options["progress"] and self.is_chief:
            callbacks.append(HeadlineProgress(clock, self.batches, self.headline_metric))

        self._write_run_summaries(start_batch)
        with stop:
            status, message = self._fit_loop(model, dataset, start_batch, callbacks, guard, stop)
        if status == "completed":
            message = f"trained {clock.batch} batches"
        if status != "nan":
            saver.save()
        self.writer.flush()
        return {"status": status, "batches": clock.batch, "logs": dict(clock.logs),
                "window_logs": dict(metrics.window_logs), "message": message,
                "checkpoint": self.manager.latest_checkpoint, "nan_loss": guard.loss_name}

    def _fit_loop(self, model, dataset, start_batch, callbacks, guard, stop):
        """Calls `fit` one checkpoint interval at a time until the limit or a stop; returns
        (status, message)."""
        from pagi_rsm.callbacks.stop_at_target import TargetStop
        clock = self.clock
        epoch = self.options["checkpoint_interval"] or self.batches
        status, message = "completed", None
        while clock.batch < self.batches:
            batch = clock.batch
            if batch % epoch:  # resumed off the epoch grid: finish this epoch first
                steps, epochs = min(epoch - batch % epoch, self.batches - batch), 1
            else:
                steps, epochs = epoch, math.ceil((self.batches - batch) / epoch)
            data = dataset if batch == start_batch else self.build_dataset(start_batch=batch)
            model.fit(data, steps_per_epoch=steps, epochs=epochs, verbose=0, shuffle=False,
                      callbacks=callbacks)
            # One early-stop mechanism: a stop requested by any callback before the batch limit
            # (a `TargetStop` with its message, or any callback setting model.stop_training)
            # ends the run; `fit` is not called again.
            if guard.tripped:
                status, message = "nan", guard.message
                break
            if stop.received:
                status, message = "interrupted", stop.message
                break
            reached = [c for c in callbacks if isinstance(c, TargetStop) and c.reached]
            if reached:
                status, message = "target_reached", reached[0].message
                break
            if model.stop_training and not clock.done:
                status = "target_reached"
                message = f"a callback stopped training at batch {clock.batch}"
                break
            if clock.batch == batch:
                status, message = "dataset_exhausted", (f"the dataset ended after {clock.batch} "
                                                        f"batches")
                break
        return status, message

    def evaluate(self, model, training):
        """Evaluates after training. Returns a dict of metrics (may be empty).

        The base class runs `model.evaluate` on `evaluate_batches` further batches of the stream
        when that option is > 0 (stream workflows such as grammar score on the training stream
        itself, as the paper does, and leave it at 0).
        """
        n = self.options["evaluate_batches"]
        if not n or training["status"] == "nan":
            return {}
        dataset = self.build_dataset(start_batch=training["batches"])
        results = model.evaluate(dataset, steps=n, verbose=0, return_dict=True)
        results = {k: float(v) for k, v in results.items()}
        with self.writer.as_default():
            import tensorflow as tf
            for k, v in results.items():
                tf.summary.scalar(f"eval/{k}", v, step=training["batches"])
        self.writer.flush()
        return results

    def save_component(self, model, training):
        """Saves the trained component as ``<summary_dir>/model.keras`` (chief only).

        The file holds the model as `evaluate` left it: the last weights (those of the latest
        checkpoint, stream state included), unless the workflow's `evaluate` chose others (the
        associative-retrieval workflow restores the best-validation weights). After a NaN stop
        the latest (last good) checkpoint is restored into the model first; without one
        nothing is saved. Load it with ``keras.saving.load_model`` or, with the run's options
        and its latest checkpoint, `pagi_rsm.load_run`.
        """
        self.model_file = None
        if not self.is_chief:
            return None
        if training["status"] == "nan":
            if training["checkpoint"] is None:
                return None
            self.checkpoint.restore(training["checkpoint"]).expect_partial()
        path = os.path.join(self.summary_dir, MODEL_FILE)
        model.save(path)
        self.model_file = os.path.abspath(path)
        return self.model_file

    def report(self, training, evaluation):
        """Writes results.json (chief only), prints the one-screen summary, returns the results."""
        logs = training["logs"]
        wall_time = time.time() - self._started
        total_wall = self._wall_base + wall_time
        options = self.options
        # The headline comes from the evaluation when it reports it, else from training.
        source = evaluation if self.headline_metric in evaluation else logs
        headline = {"metric": self.headline_metric,
                    "value": _finite_or_none(source.get(self.headline_metric)),
                    "mode": self.headline_mode,
                    "from": "evaluation" if source is evaluation else "training"}
        if options["stop_metric"]:
            headline["target"] = {"metric": options["stop_metric"],
                                  "value": options["stop_target"],
                                  "mode": options["stop_mode"],
                                  "window": options["stop_window"]}
        results = {
            "workflow": self.config.workflow,
            "trial": self.config.trial,
            "trial_values": self.config.trial_values,
            "status": training["status"],
            "message": training["message"],
            "headline": headline,
            "metrics": {k: _finite_or_none(v) if not isinstance(v, str) else v
                        for k, v in logs.items()},
            "window_metrics": {k: _finite_or_none(v)
                               for k, v in training.get("window_logs", {}).items()},
            "summary_window": options["summary_window"],
            "evaluation": evaluation,
            "batches": training["batches"],
            "batches_limit": self.batches,
            "resumed_from": self.resumed_from,
            "jit_compile": self.jit_compile,
            "replicas": self.strategy.num_replicas_in_sync,
            "nan_loss": training["nan_loss"],
            "wall_time_s": round(total_wall, 3),
            "wall_time_this_process_s": round(wall_time, 3),
            "summary_dir": os.path.abspath(self.summary_dir),
            "checkpoint_dir": os.path.abspath(self.checkpoint_dir),
            "last_checkpoint": training["checkpoint"],
            "model_file": self.model_file,
            "options": self.config.as_definition(),
            "source": self.config.source,
            "versions": runtime.versions(),
        }
        if self.is_chief:
            with open(os.path.join(self.summary_dir, RESULTS_FILE), "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2, default=str)
            print(format_summary(results), flush=True)
        return results

    # --- helpers ----------------------------------------------------------------------------------

    def _store_run_state(self, batch):
        # Saved with each checkpoint: the batch reached, the wall time of the whole run
        # (earlier, resumed processes included) and the window of the train_window/* scalars.
        self._run_state["batch"].assign(batch)
        self._run_state["wall_time"].assign(self._wall_base + time.time() - self._started)
        if self.batch_metrics is not None:  # a workflow with its own training loop has none
            self._run_state["metric_window"].assign(self.batch_metrics.get_state())

    def hparams_for_dashboard(self):
        """The values shown in TensorBoard's HParams dashboard for this run."""
        if self.config.trial_values:
            domains = self.config.sweep_domains
            return {k: _as_domain_type(v, domains.get(k, [v]))
                    for k, v in self.config.trial_values.items()}
        values = {"seed": self.config.seed, "batches": self.batches}
        defaults = definitions.component_defaults(self.config.component_class) or {}
        for key, value in self.hparams.items():
            if key not in defaults or defaults[key] != value:
                values[key] = value if isinstance(value, (bool, int, float, str)) else \
                    json.dumps(value)
        return values

    def _write_run_summaries(self, step):
        import tensorflow as tf
        from tensorboard.plugins.hparams import api as hp
        text = "\n".join("    " + line for line in self.config.to_yaml().splitlines())
        with self.writer.as_default():
            tf.summary.text("definition", f"Resolved definition (source: "
                                          f"{self.config.source}):\n\n{text}", step=step)
            # A single run writes only its session: TensorBoard infers the HParams table from
            # every run under --logdir (an experiment config per run would hide the others).
            # A sweep's configuration is written once, in the sweep directory (run_all).
            hp.hparams(self.hparams_for_dashboard(), trial_id=self.config.trial or
                       os.path.basename(os.path.normpath(self.summary_dir)))
        self.writer.flush()


# --- module-level helpers ------------------------------------------------------------------------

def _as_domain_type(value, values):
    """`value` converted to the common type of the domain `values` (see `_domain`)."""
    if all(isinstance(v, bool) for v in values):
        return value
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return value if all(isinstance(v, int) for v in values) else float(value)
    return str(value)


def _domain(values):
    """An HParams domain for `values`: bools, ints, floats (ints mixed in become floats), or
    strings (anything else mixed becomes strings)."""
    from tensorboard.plugins.hparams import api as hp
    return hp.Discrete([_as_domain_type(v, values) for v in values])


def _short_name(workflow):
    name = workflow.replace(":", ".").rsplit(".", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lower() or "run"


def plan_directories(config, summary_dir=None, checkpoint_dir=None):
    """The (summary_dir, checkpoint_dir) of a run.

    Checkpoint directory: `checkpoint_dir`, else experiment option ``checkpoint``, else
    ``<summary_dir>/checkpoints``. Summary directory: `summary_dir`, else experiment option
    ``summary_dir``, else (when resuming from a checkpoint directory written by an earlier run)
    that run's summary directory, else ``runs/<workflow>-<YYYYmmdd-HHMMSS>``.
    """
    experiment = config.experiment
    checkpoint_dir = checkpoint_dir or experiment.get("checkpoint")
    summary_dir = summary_dir or experiment.get("summary_dir")
    if summary_dir is None and checkpoint_dir:
        info = os.path.join(checkpoint_dir, RUN_INFO_FILE)
        if os.path.exists(info):
            with open(info, encoding="utf-8") as f:
                summary_dir = json.load(f).get("summary_dir")
    if summary_dir is None:
        summary_dir = os.path.join("runs", f"{_short_name(experiment['workflow'])}-"
                                           f"{runtime.timestamp()}")
    if checkpoint_dir is None:
        checkpoint_dir = os.path.join(summary_dir, "checkpoints")
    return summary_dir, checkpoint_dir


def finished_results(results_path, metric):
    """A run's results.json as ``(results, experiment-options, hparams, workflow-options)``, or
    None when its evaluation has no `metric` (the run did not finish). Tables across the runs
    of a sweep are made from these."""
    with open(results_path, encoding="utf-8") as f:
        results = json.load(f)
    if (results.get("evaluation") or {}).get(metric) is None:
        return None
    experiment = results["options"]["experiment-options"]
    return (results, experiment, experiment["hparams_override"],
            results["options"]["workflow-options"])


def format_summary(results):
    """The one-screen summary of a run's results."""
    from pagi_rsm.callbacks.progress import format_duration
    head = results["headline"]
    value = head["value"]
    title = f" pagi run: {results['workflow']}" + (f" ({results['trial']})" if results["trial"]
                                                    else "") + " "
    lines = [title.center(78, "=")]
    lines.append(f"status      {results['status']}: {results['message']}")
    lines.append(f"headline    {head['metric']} = "
                 + ("n/a" if value is None else f"{value:.4f}"))
    shown = [(k, v) for k, v in results["metrics"].items() if k != head["metric"]]
    row = []
    for k, v in shown[:12]:
        row.append(f"{k} {v:.4g}" if isinstance(v, float) else
                   f"{k} {'n/a' if v is None else v}")
    for i in range(0, len(row), 3):
        lines.append(("metrics     " if i == 0 else "            ") + " | ".join(row[i:i + 3]))
    if results["evaluation"]:
        # Scalars only: an evaluation may also hold lists (e.g. an accuracy matrix).
        lines.append("evaluation  " + " | ".join(
            f"{k} {v:.4g}" for k, v in results["evaluation"].items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)))
    resumed = f" (resumed from batch {results['resumed_from']})" if results["resumed_from"] else ""
    lines.append(f"batches     {results['batches']} / {results['batches_limit']}{resumed}")
    rate = ""
    ran = results["batches"] - results["resumed_from"]
    if ran > 0 and results["wall_time_this_process_s"] > 0:
        rate = f" ({ran / results['wall_time_this_process_s']:.1f} batches/s in this process)"
    lines.append(f"wall time   {format_duration(results['wall_time_s'])}{rate}")
    lines.append(f"summaries   {results['summary_dir']}")
    lines.append(f"            tensorboard --logdir {results['summary_dir']} --host 127.0.0.1")
    lines.append(f"checkpoint  {results['last_checkpoint']}")
    lines.append(f"results     {os.path.join(results['summary_dir'], RESULTS_FILE)}")
    lines.append("=" * 78)
    return "\n".join(lines)


def run_all(configs, summary_dir=None, checkpoint_dir=None):
    """Runs one config, or every trial of a sweep, each as its own run.

    A sweep's trials run one after the other in ``<summary_dir>/<trial>`` (checkpoints in
    ``<checkpoint_dir>/<trial>``), and the sweep directory gets TensorBoard's HParams
    configuration (every swept value and the headline metric) and ``sweep.json`` listing the
    trials' results.

    Returns:
      A list of results dicts, one per run.
    """
    import keras
    if len(configs) == 1 and configs[0].trial is None:
        config = configs[0]
        return [config.workflow_class(config, summary_dir=summary_dir,
                                      checkpoint_dir=checkpoint_dir).run()]
    for config in configs:  # every trial's data, before the sweep directory exists
        config.workflow_class.check_data(config)
    first = configs[0]
    parent, parent_ckpt = plan_directories(first, summary_dir=summary_dir,
                                           checkpoint_dir=checkpoint_dir)
    if runtime.is_chief():
        _write_sweep_config(first, parent)
    results = []
    for config in configs:
        keras.backend.clear_session()
        workflow = config.workflow_class(
            config, summary_dir=os.path.join(parent, config.trial),
            checkpoint_dir=os.path.join(parent_ckpt, config.trial))
        results.append(workflow.run())
        if runtime.is_chief():
            with open(os.path.join(parent, "sweep.json"), "w", encoding="utf-8") as f:
                json.dump([{"trial": r["trial"], "values": r["trial_values"],
                            "status": r["status"], "headline": r["headline"],
                            "summary_dir": r["summary_dir"]} for r in results], f, indent=2)
    return results


def _write_sweep_config(config, parent):
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp
    os.makedirs(parent, exist_ok=True)
    names = [config.workflow_class.headline_metric, "loss"]
    with tf.summary.create_file_writer(parent).as_default():
        hp.hparams_config(
            hparams=[hp.HParam(name, _domain(values))
                     for name, values in config.sweep_domains.items()],
            metrics=[hp.Metric(f"train/{n}", display_name=n)
                     for n in dict.fromkeys(names)])
