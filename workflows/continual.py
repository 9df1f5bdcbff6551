"""The continual workflow: learn a sequence of tasks one after the other, measure forgetting.

A run trains a `ContinualClassifier` (dense or sparse MLP/CNN, `pagi_rsm.components.
continual_models`) on the tasks of a benchmark (`pagi_rsm.datasets.continual`: permuted MNIST,
split MNIST, split CIFAR-100) in order, ``epochs_first_task`` epochs on task 0 and
``epochs_per_task`` on each later one, and after every task measures the test accuracy on every
task seen so far: the accuracy matrix ``R[i, j]`` (after training task i, on task j <= i).
With ``cumulative: true`` task i trains on the union of tasks 0..i instead (the cumulative
baseline, an upper bound for a sequential learner). docs/continual.md has the figures.

Reports (``evaluation`` of results.json, headline ``average_accuracy``):

- ``accuracy_matrix`` (rows: after task i; entries j > i are null), ``final_accuracies``
  (the last row), ``average_accuracy`` (its mean), ``backward_transfer`` (mean over j < T-1 of
  ``R[T-1, j] - R[j, j]``, negative when the network forgets), ``forgetting`` (mean over
  j < T-1 of ``max_{i < T-1} R[i, j] - R[T-1, j]``), ``average_accuracy_per_task`` (the mean of
  each row: the curve of average accuracy against tasks learnt);
- per hidden code: ``active_fraction`` (non-zero units at test time) and, for k-winners layers,
  the duty-cycle entropy relative to its maximum;
- TensorBoard: ``train/loss`` and ``train/accuracy`` per epoch, ``task_accuracy/task_<j>`` and
  ``average_accuracy`` against the number of tasks learnt, ``sparsity/*``, and the accuracy
  matrix as a heat-map image (``accuracy_matrix``);
- in a sweep (or a single run) ``table.md`` / ``table.csv`` across the trials in the sweep
  directory.

Named experiments: ``workflow-options.experiments`` maps names to settings (component hparams
and workflow options), ``workflow-options.experiment`` picks one; a sweep over ``experiment``
runs them all (definitions/continual/experiments.yaml). The named experiment's values override
the rest of the definition, command-line flags included.

Checkpoints are written at every task boundary (model, optimizer, the accuracy matrix so far);
a run killed during task i and started again with the same checkpoint directory retrains task i
from the boundary and ends with the same matrix as an uninterrupted run. The experiment option
``batches`` is not used: the task schedule sets the length of a run.
"""
import csv
import glob
import math
import os

import numpy as np

from pagi_rsm import definitions
from pagi_rsm.datasets import continual as data
from pagi_rsm.options import Option
from pagi_rsm.workflows.workflow import RESULTS_FILE, Workflow, finished_results

_IMAGE_SHAPES = {"permuted_mnist": [28, 28, 1], "split_mnist": [28, 28, 1],
                 "split_cifar100": [32, 32, 3]}
_CLASSES = {"permuted_mnist": 10, "split_mnist": 10, "split_cifar100": 100}


def head_layout(benchmark, num_tasks, multi_head):
    """(num_heads, classes_per_head, input_shape) of a benchmark, without loading its data."""
    classes = _CLASSES[benchmark]
    if multi_head:
        return num_tasks, classes // num_tasks, list(_IMAGE_SHAPES[benchmark])
    return 1, classes, list(_IMAGE_SHAPES[benchmark])


def transfer_metrics(matrix):
    """Average accuracy, backward transfer and forgetting of a complete T x T accuracy matrix.

    Args:
      matrix: array [T, T]; ``matrix[i, j]`` is the accuracy on task j after training task i
        (entries j > i are ignored).

    Returns:
      dict: average_accuracy (mean of the last row), backward_transfer (mean over j < T-1 of
      ``R[T-1, j] - R[j, j]``; 0 for T = 1), forgetting (mean over j < T-1 of the best earlier
      accuracy on task j minus the last; 0 for T = 1), average_accuracy_per_task (mean of
      ``R[i, :i+1]`` for each i).
    """
    r = np.asarray(matrix, dtype=np.float64)
    t = r.shape[0]
    last = r[t - 1]
    earlier = range(t - 1)
    bwt = float(np.mean([last[j] - r[j, j] for j in earlier])) if t > 1 else 0.0
    forgetting = float(np.mean([r[j:t - 1, j].max() - last[j] for j in earlier])) if t > 1 \
        else 0.0
    return {"average_accuracy": float(last.mean()), "backward_transfer": bwt,
            "forgetting": forgetting,
            "average_accuracy_per_task": [float(r[i, :i + 1].mean()) for i in range(t)]}


def heat_map(matrix, cell=12):
    """uint8 RGB image [T*cell, T*cell, 3] of an accuracy matrix (dark blue 0 -> yellow 1;
    entries above the diagonal, not measured, are grey)."""
    r = np.asarray(matrix, dtype=np.float64)
    t = r.shape[0]
    low, high = np.array([30, 30, 120.0]), np.array([250, 230, 40.0])
    img = np.empty((t, t, 3))
    for i in range(t):
        for j in range(t):
            img[i, j] = (low + np.clip(r[i, j], 0, 1) * (high - low)) if j <= i else 128
    return np.kron(img, np.ones((cell, cell, 1))).astype(np.uint8)


class ContinualWorkflow(Workflow):
    """Sequential training over the tasks of a continual benchmark (see the module docstring).

    Workflow options (besides the base class's): ``benchmark``, ``num_tasks``, ``multi_head``
    (null: the benchmark's default), ``permute_first``, ``cumulative``, ``epochs_first_task``,
    ``epochs_per_task``, ``batch_size``, ``eval_batch_size``, ``train_examples_per_task`` and
    ``test_examples_per_task`` (0: all), ``steps_per_epoch`` (0: whole epochs),
    ``activity_examples`` (test examples for the active fractions), ``mnist_dir``,
    ``cifar100_dir``, ``cifar100_source``, ``tfds_data_dir`` ("" = default locations),
    ``experiment`` and ``experiments`` (named experiments).
    """

    headline_metric = "average_accuracy"
    headline_mode = "max"
    options = Workflow.options.extend(
        Option("benchmark", "permuted_mnist", "the task sequence", choices=data.BENCHMARKS),
        Option("num_tasks", 10, "number of tasks (split_mnist: 5; split_cifar100: a divisor "
               "of 100)", low=1),
        Option("multi_head", None, "one output head per task (null: false for permuted_mnist, "
               "true otherwise)", kind="bool"),
        Option("permute_first", False, "permuted_mnist: permute task 0 too"),
        Option("cumulative", False, "train task i on the union of tasks 0..i (the cumulative "
               "upper bound)"),
        Option("input_scaling", "unit", "pixels / 255 (unit), or then standardised per channel "
               "with the training images' mean and std (standardize)",
               choices=data.INPUT_SCALINGS),
        Option("epochs_first_task", 2, "epochs on task 0", low=1),
        Option("epochs_per_task", 2, "epochs on each later task", low=1),
        Option("batch_size", 128, "training batch size (global, over all replicas)", low=1),
        Option("eval_batch_size", 1000, "test batch size", low=1),
        Option("train_examples_per_task", 0, "use only the first N training examples of each "
               "task (0: all)", low=0),
        Option("test_examples_per_task", 0, "use only the first N test examples of each task "
               "(0: all)", low=0),
        Option("steps_per_epoch", 0, "cap on the batches of an epoch (0: whole epochs)", low=0),
        Option("activity_examples", 1000, "test examples the active fractions are measured "
               "on", low=1),
        Option("mnist_dir", "", "directory of the MNIST IDX files (empty: $PAGI_RSM_MNIST_DIR "
               "or a prepared tensorflow-datasets copy)"),
        Option("cifar100_dir", "", "directory holding cifar-100-python.tar.gz or "
               "cifar-100-python/ (empty: tensorflow-datasets)"),
        Option("cifar100_source", "auto", "where CIFAR-100 comes from",
               choices=data.CIFAR100_SOURCES),
        Option("tfds_data_dir", "", "tensorflow-datasets data directory (empty: the default)"),
        Option("experiment", "", "the named experiment to run (a key of experiments; empty: "
               "none)"),
        Option("experiments", {}, "named experiments: name -> {component hparams and workflow "
               "options}; they override the rest of the definition", kind="mapping"),
    ).with_defaults(image_interval=0)

    @classmethod
    def default_experiment_options(cls):
        return {"component": "continual_classifier", "dataset": "continual",
                "batches": 1, "seed": 0}

    @classmethod
    def complete_config(cls, config):
        """Applies the named experiment, checks the benchmark settings and derives the heads."""
        options = config.workflow_options
        cls._apply_experiment(config)
        name, tasks = options["benchmark"], options["num_tasks"]
        if options["multi_head"] is None:
            options["multi_head"] = name != "permuted_mnist"
        data.check_benchmark_args(name, tasks, options["multi_head"],
                                  prefix="workflow-options.")
        heads, classes, shape = head_layout(name, tasks, options["multi_head"])
        hparams = config.hparams
        hparams["num_heads"], hparams["classes_per_head"] = heads, classes
        hparams["input_shape"] = shape
        component = definitions.component_options(config.experiment["component"])
        if component is not None:
            component.check_combinations(hparams, prefix="hparams_override.")

    @classmethod
    def _apply_experiment(cls, config):
        """Copies the named experiment's settings over the hparams and workflow options."""
        options = config.workflow_options
        name = options["experiment"]
        if not name:
            return
        experiments = options["experiments"]
        if name not in experiments:
            raise ValueError(f"workflow-options.experiment {name!r} is not one of the named "
                             f"experiments: {', '.join(sorted(experiments)) or '(none)'}")
        settings = experiments[name] or {}
        if not isinstance(settings, dict):
            raise ValueError(f"workflow-options.experiments.{name} must be a mapping, got "
                             f"{settings!r}")
        component = definitions.component_options(config.experiment["component"])
        for key, value in settings.items():
            where = f"workflow-options.experiments.{name}.{key}"
            if component is not None and key in component:
                config.hparams[key] = component[key].check(value, where)
            elif key in cls.options and key not in ("experiment", "experiments"):
                options[key] = cls.options[key].check(value, where)
            else:
                raise ValueError(f"unknown key {key!r} in workflow-options.experiments.{name}; "
                                 "accepted: the component's hparams and the workflow options")

    @classmethod
    def load_data_files(cls, config):
        """Reads the benchmark's test images, so missing data fails before a run starts."""
        from pagi_rsm.datasets import mnist
        o = config.workflow_options
        if o["benchmark"] == "split_cifar100":
            data.load_cifar100(o["cifar100_dir"] or None, "test", o["cifar100_source"],
                               o["tfds_data_dir"] or None)
        else:
            mnist.load_mnist(o["mnist_dir"] or None, "test",
                             tfds_data_dir=o["tfds_data_dir"] or None)

    # --- data ---------------------------------------------------------------------------------

    @property
    def benchmark(self):
        """The loaded `ContinualBenchmark` (loaded once per run)."""
        if getattr(self, "_benchmark", None) is None:
            o = self.options
            self._benchmark = self.config.dataset_fn(
                o["benchmark"], num_tasks=o["num_tasks"], seed=self.config.seed,
                multi_head=o["multi_head"], permute_first=o["permute_first"],
                mnist_dir=o["mnist_dir"] or None, cifar100_dir=o["cifar100_dir"] or None,
                source=o["cifar100_source"], tfds_data_dir=o["tfds_data_dir"] or None,
                input_scaling=o["input_scaling"])
        return self._benchmark

    def _limit(self, key):
        return self.options[key] or None

    def task_dataset(self, task, epoch=0):
        """Training batches of task `task` (tasks 0..task when cumulative) for one epoch, in
        an order that depends on the seed, the task and the epoch only."""
        tasks = list(range(task + 1)) if self.options["cumulative"] else [task]
        return self.benchmark.dataset(
            tasks, "train", self.options["batch_size"],
            shuffle_seed=(self.config.seed, task, epoch),
            limit=self._limit("train_examples_per_task"), drop_remainder=True)

    def test_dataset(self, task):
        return self.benchmark.dataset(task, "test", self.options["eval_batch_size"],
                                      limit=self._limit("test_examples_per_task"))

    def build_dataset(self, start_batch):
        """Task 0's training batches (the component builds from them); tasks are read by
        `train`."""
        return self.task_dataset(0)

    def _epoch_steps(self, task):
        o = self.options
        tasks = task + 1 if o["cumulative"] else 1
        n = self.benchmark.num_examples(list(range(tasks)) if o["cumulative"] else [task],
                                        "train", self._limit("train_examples_per_task"))
        steps = n // o["batch_size"]
        return min(steps, o["steps_per_epoch"]) if o["steps_per_epoch"] else steps

    def _epochs(self, task):
        return self.options["epochs_first_task" if task == 0 else "epochs_per_task"]

    @property
    def batches(self):
        """Training batches of the whole schedule (the experiment option is not used)."""
        return sum(self._epoch_steps(t) * self._epochs(t) for t in range(self.options[
            "num_tasks"]))

    # --- checkpointed progress ------------------------------------------------------------------

    def checkpoint_items(self, model):
        import tensorflow as tf
        tasks = self.options["num_tasks"]
        self._progress = {
            "tasks_done": tf.Variable(0, dtype=tf.int64, trainable=False),
            "accuracy": tf.Variable(np.full((tasks, tasks), np.nan, np.float32),
                                    trainable=False)}
        items = super().checkpoint_items(model)
        items["progress"] = self._progress
        return items

    # --- training -------------------------------------------------------------------------------

    def train(self, model, dataset, start_batch):
        """Trains the tasks not yet done, evaluating after each; checkpoints at task ends."""
        from pagi_rsm.callbacks.boost_strength import BoostStrengthDecay
        from pagi_rsm.callbacks.epoch_summaries import EpochSummaries
        options = self.options
        tasks = options["num_tasks"]
        progress = self._progress
        done = int(progress["tasks_done"].numpy())
        matrix = progress["accuracy"].numpy()
        if self.is_chief and options["progress"]:
            print(f"continual: {options['benchmark']}, {tasks} tasks"
                  + (f", resuming after task {done - 1}" if done else ""), flush=True)
        writer = self.writer
        if not done:
            self._write_run_summaries(0)
        curves = EpochSummaries(writer)
        callbacks = [curves]
        if self.hparams["sparse"] and self.hparams["boost_strength"] > 0:
            callbacks.append(BoostStrengthDecay())
        status, message, logs = "completed", "", {}
        for task in range(done, tasks):
            for epoch in range(self._epochs(task)):   # one fit per epoch: a fresh order each
                history = model.fit(self.task_dataset(task, epoch), epochs=1,
                                    steps_per_epoch=self._epoch_steps(task), verbose=0,
                                    shuffle=False, callbacks=callbacks)
            logs = {k: float(v[-1]) for k, v in history.history.items()}
            if not all(math.isfinite(v) for v in logs.values()):
                status, message = "nan", f"non-finite training metrics in task {task}: {logs}"
                break
            for j in range(task + 1):
                result = model.evaluate(self.test_dataset(j), verbose=0, return_dict=True)
                matrix[task, j] = float(result["accuracy"])
            activity = self._activity(model)
            progress["accuracy"].assign(matrix)
            progress["tasks_done"].assign(task + 1)
            self._store_run_state(int(model.optimizer.iterations.numpy()))
            self.manager.save(checkpoint_number=task + 1)
            self._write_task_summaries(task, matrix, activity)
            if self.is_chief and options["progress"]:
                row = " ".join(f"{100 * a:.1f}" for a in matrix[task, :task + 1])
                print(f"  task {task}: loss {logs.get('loss', math.nan):.4f}, test accuracy "
                      f"on tasks 0..{task}: {row} (mean {100 * matrix[task, :task + 1].mean():.2f})",
                      flush=True)
        done = int(progress["tasks_done"].numpy())
        if status == "completed":
            message = f"trained {done} tasks"
        self.writer.flush()
        return {"status": status, "batches": int(model.optimizer.iterations.numpy()),
                "logs": logs, "message": message, "checkpoint": self.manager.latest_checkpoint,
                "nan_loss": "loss" if status == "nan" else None}

    def _activity(self, model):
        """Active fraction of each hidden code on the first test examples of the last task,
        and the duty-cycle entropy of each k-winners layer relative to its maximum."""
        from pagi_rsm.callbacks.boost_strength import k_winners_layers
        benchmark = self.benchmark
        last = int(self._progress["tasks_done"].numpy())
        inputs, _ = next(iter(benchmark.dataset(min(last, benchmark.num_tasks - 1), "test",
                                                self.options["activity_examples"])))
        fractions = [float(f) for f in model.active_fractions(inputs)]
        entropy = []
        for layer in k_winners_layers(model):
            top = layer.max_entropy() if layer.n is not None else None
            value = float(layer.entropy())
            entropy.append(value / float(top) if top else value)
        return {"active_fraction": fractions, "duty_cycle_entropy": entropy}

    def _write_task_summaries(self, task, matrix, activity):
        import tensorflow as tf
        step = task + 1
        with self.writer.as_default():
            for j in range(task + 1):
                tf.summary.scalar(f"task_accuracy/task_{j}", matrix[task, j], step=step)
            tf.summary.scalar("average_accuracy", float(matrix[task, :task + 1].mean()),
                              step=step)
            for i, f in enumerate(activity["active_fraction"]):
                tf.summary.scalar(f"sparsity/active_fraction_{i}", f, step=step)
            for i, e in enumerate(activity["duty_cycle_entropy"]):
                tf.summary.scalar(f"sparsity/duty_cycle_entropy_{i}", e, step=step)
            shown = np.where(np.isnan(matrix), 0.0, matrix)
            tf.summary.image("accuracy_matrix", heat_map(shown)[None], step=step,
                             description="R[i, j]: accuracy on task j (columns) after "
                                         "training task i (rows)")
        self.writer.flush()

    # --- results --------------------------------------------------------------------------------

    def evaluate(self, model, training):
        """The accuracy matrix and the transfer metrics (empty if no task finished)."""
        import tensorflow as tf
        matrix = self._progress["accuracy"].numpy()
        done = int(self._progress["tasks_done"].numpy())
        if not done:
            return {}
        measured = matrix[:done, :done]
        results = transfer_metrics(measured)
        results.update(self._activity(model))
        results.update({
            "accuracy_matrix": [[None if j > i else float(measured[i, j]) for j in range(done)]
                                for i in range(done)],
            "final_accuracies": [float(v) for v in measured[done - 1]],
            "tasks_done": done,
            "parameters": int(model.count_params()),
        })
        with self.writer.as_default():
            tf.summary.scalar(f"train/{self.headline_metric}", results["average_accuracy"],
                              step=done)
            for key in ("backward_transfer", "forgetting"):
                tf.summary.scalar(f"eval/{key}", results[key], step=done)
        self.writer.flush()
        return results

    def report(self, training, evaluation):
        results = super().report(training, evaluation)
        if self.is_chief and evaluation.get("average_accuracy") is not None:
            directory = (os.path.dirname(os.path.normpath(self.summary_dir)) if self.config.trial
                         else self.summary_dir)
            pattern = os.path.join(directory, "*", RESULTS_FILE) if self.config.trial \
                else os.path.join(directory, RESULTS_FILE)
            rows = [_table_row(path) for path in sorted(glob.glob(pattern))]
            write_table([r for r in rows if r is not None], directory)
        return results


# --- the table across experiments ----------------------------------------------------------------

TABLE_FIELDS = ["experiment", "benchmark", "tasks", "heads", "architecture", "sparse",
                "hidden_units", "hidden_layers", "percent_on", "weight_sparsity", "cumulative",
                "seed", "average_accuracy_percent", "backward_transfer_percent",
                "forgetting_percent", "active_fraction", "tasks_done", "wall_time_s"]


def _table_row(results_path):
    """A table row from a run's results.json (None if the run finished no task)."""
    finished = finished_results(results_path, "average_accuracy")
    if finished is None:
        return None
    results, experiment, hparams, options = finished
    evaluation = results["evaluation"]
    return {"experiment": options.get("experiment") or results.get("trial") or "run",
            "benchmark": options["benchmark"], "tasks": options["num_tasks"],
            "heads": hparams["num_heads"], "architecture": hparams["architecture"],
            "sparse": hparams["sparse"], "hidden_units": hparams["hidden_units"],
            "hidden_layers": hparams["hidden_layers"],
            "percent_on": hparams["percent_on"] if hparams["sparse"] else None,
            "weight_sparsity": hparams["weight_sparsity"] if hparams["sparse"] else None,
            "cumulative": options["cumulative"], "seed": experiment["seed"],
            "average_accuracy_percent": round(100 * evaluation["average_accuracy"], 2),
            "backward_transfer_percent": round(100 * evaluation["backward_transfer"], 2),
            "forgetting_percent": round(100 * evaluation["forgetting"], 2),
            "active_fraction": ", ".join(f"{f:.4f}" for f in evaluation["active_fraction"]),
            "tasks_done": evaluation["tasks_done"], "wall_time_s": results["wall_time_s"]}


def format_table(rows):
    """Markdown table: one row per experiment (cumulative runs are the upper bounds)."""
    lines = ["| experiment | benchmark | model | avg acc after last task | BWT | forgetting | "
             "active fraction | tasks |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        model = (f"{r['architecture'].upper()} {r['hidden_layers']}x{r['hidden_units']} "
                 + (f"sparse (k {r['percent_on']:g}, w {r['weight_sparsity']:g})" if r["sparse"]
                    else "dense") + (", cumulative" if r["cumulative"] else ""))
        lines.append(f"| {r['experiment']} | {r['benchmark']} ({r['heads']} head"
                     f"{'s' if r['heads'] > 1 else ''}) | {model} | "
                     f"{r['average_accuracy_percent']:.2f}% | "
                     f"{r['backward_transfer_percent']:+.2f} | {r['forgetting_percent']:.2f} | "
                     f"{r['active_fraction']} | {r['tasks_done']}/{r['tasks']} |")
    return "\n".join(lines)


def write_table(rows, out_dir):
    """Writes ``table.md`` and ``table.csv`` (one line per run) to `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "table.md"), "w", encoding="utf-8") as f:
        f.write("Continual learning: test accuracy averaged over all tasks after the last one\n\n")
        f.write(format_table(rows) + "\n")
    with open(os.path.join(out_dir, "table.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=TABLE_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow(r)
