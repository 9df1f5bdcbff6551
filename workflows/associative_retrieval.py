"""Associative retrieval (Ba et al. 2016, Table 1): train the five models, report test error.

Recipe: generate the splits (`pagi_rsm.datasets.associative_retrieval`), build a model
(`pagi_rsm.components.retrieval_models`), train it with `model.fit` on shuffled minibatches of the
training split (Adam, gradient clipped by global norm, the norm logged as ``grad_norm``), measure
the validation error every `checkpoint_interval` steps, keep the weights of the best validation
error (in the checkpoint, so a resumed run keeps them), and report the test error of those
weights (and of the last weights).

One way to run it, `pagi run` (``--workflow=associative_retrieval``, or a definition in
definitions/fast_weights/): checkpoints, resume, TensorBoard scalars and HParams, results.json,
model.keras; a sweep over ``kind`` and ``units`` (definitions/fast_weights/table1.yaml) writes the
paper's Table 1 layout as ``table.md`` and ``table.csv`` in the sweep directory. `merge_tables`
combines the tables of several sweep directories (e.g. columns run in parallel).
"""
import csv
import glob
import os

import numpy as np

from pagi_rsm.hparams.retrieval_models import KINDS
from pagi_rsm.datasets import associative_retrieval as ar
from pagi_rsm.options import Option
from pagi_rsm.workflows.workflow import RESULTS_FILE, Workflow, finished_results

__all__ = ["AssociativeRetrievalWorkflow", "error_rate", "format_table", "write_table",
           "merge_tables", "PAPER_TABLE"]

PAPER_TABLE = {
    # Ba et al. 2016, Table 1, test error (%) with K = 4 pairs, collected from secondary sources
    # and not checked against the PDF (docs/fast_weights.md#paper-table-1); the paper has no
    # RNN-LN / GRU-LN row.
    "control": {20: 62.11, 50: 60.23, 100: 0.34},   # IRNN
    "lstm": {20: 60.81, 50: 1.85, 100: 0.0},
    "fast_weights": {20: 1.81, 50: 0.0, 100: 0.0},
}

MODEL_NAMES = {"fast_weights": "Fast weights (RNN-LN-FW)", "rnn_ln": "RNN-LN",
               "control": "IRNN (control)", "gru_ln": "GRU-LN", "lstm": "LSTM"}


def error_rate(model, tokens, targets, batch_size=1000):
    """Classification error (fraction in [0, 1]) of `model` on one split."""
    dataset = ar.make_tf_dataset(tokens, targets, batch_size)
    predictions = model.predict(dataset, verbose=0).argmax(-1)
    return float(np.mean(predictions != np.asarray(targets)))


# --- the Table 1 layout -------------------------------------------------------------------------

def format_table(rows):
    """Markdown table of test error (%): one row per model kind, one column per R.

    Args:
      rows: dicts with ``kind``, ``units`` and ``test_error`` (a fraction); where several rows
        share (kind, units) the last one is shown. The paper's number follows ours where it
        has one.
    """
    units_list = sorted({r["units"] for r in rows})
    kinds = [k for k in KINDS if any(r["kind"] == k for r in rows)]
    lines = ["| model | " + " | ".join(f"R={u}" for u in units_list) + " |",
             "|---" * (len(units_list) + 1) + "|"]
    for kind in kinds:
        cells = []
        for units in units_list:
            found = [r for r in rows if r["kind"] == kind and r["units"] == units]
            paper = PAPER_TABLE.get(kind, {}).get(units)
            paper_text = f" (paper {paper:g}%)" if paper is not None else ""
            cells.append(f"{100 * found[-1]['test_error']:.2f}%{paper_text}" if found else "-")
        lines.append(f"| {MODEL_NAMES[kind]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TABLE_FIELDS = ["kind", "units", "pairs", "seed", "test_error_percent",
                "validation_error_percent", "final_test_error_percent", "best_step", "steps_run",
                "train_seconds", "seconds_per_step", "parameters"]


def write_table(rows, out_dir):
    """Writes ``table.md`` (`format_table`) and ``table.csv`` (one line per run) to `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "table.md"), "w", encoding="utf-8") as f:
        f.write("Associative retrieval, test error (%) at the best validation error\n\n")
        f.write(format_table(rows) + "\n")
    with open(os.path.join(out_dir, "table.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=TABLE_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            line = dict(r)
            for key in ("test_error", "validation_error", "final_test_error"):
                if r.get(key) is not None:
                    line[f"{key}_percent"] = round(100 * r[key], 3)
            for key, digits in (("train_seconds", 1), ("seconds_per_step", 5)):
                if r.get(key) is not None:
                    line[key] = round(r[key], digits)
            writer.writerow(line)


# --- the pagi workflow ---------------------------------------------------------------------------

class AssociativeRetrievalWorkflow(Workflow):
    """`pagi run` workflow: one `RetrievalModel` trained on associative retrieval.

    Options. Component hparams (``hparams_override``, see `RetrievalModel`): ``kind`` (the
    model), ``units`` (R), ``learning_rate``, ``clip_norm``, the fast-weight settings, ``unroll``.
    Experiment options: ``batches`` (training steps), ``seed``. Workflow options (besides the base
    class's): ``pairs`` (K), ``batch_size``, the split sizes, ``target_validation_error`` (stop
    once the validation error is <= this fraction; < 0: never; the run then ends with status
    "target_reached"). The validation error is measured every ``checkpoint_interval`` batches
    (just before that batch's checkpoint is written) and when training ends.

    Reports: ``test_error`` (the headline: test error at the best validation weights),
    ``validation_error``, ``final_test_error`` (last weights) and ``best_batch`` in
    results.json's ``evaluation``; TensorBoard scalars ``validation/error`` during training and
    ``eval/*`` at the end; ``table.md`` / ``table.csv`` in the run directory, or, in a sweep, in
    the sweep directory covering every trial finished so far (the paper's Table 1 layout);
    ``model.keras`` holds the best-validation weights. The best weights, their validation error
    and batch are variables in the run's checkpoint (`pagi_rsm.callbacks.best_weights`), so a
    resumed run continues with the best weights found before the interruption.
    """

    headline_metric = "test_error"
    headline_mode = "min"

    @classmethod
    def default_experiment_options(cls):
        return {"component": "retrieval_model",
                "dataset": "pagi_rsm.datasets.associative_retrieval.make_dataset",
                "batches": 30000, "seed": 0,
                "hparams_override": {"unroll": True}}

    options = Workflow.options.extend(
        Option("pairs", ar.DEFAULT_PAIRS, "K, key/value pairs per sequence", low=1,
               high=ar.MAX_PAIRS),
        Option("batch_size", 128, "minibatch size", low=1),
        Option("train_size", ar.SPLIT_SIZES["train"], "training sequences", low=1),
        Option("validation_size", ar.SPLIT_SIZES["validation"], "validation sequences", low=1),
        Option("test_size", ar.SPLIT_SIZES["test"], "test sequences", low=1),
        Option("target_validation_error", -1.0, "end the run (status target_reached) once the "
               "validation error is <= this fraction (< 0: never)"),
    ).with_defaults(checkpoint_interval=1000, image_interval=0, summary_interval=25)

    @classmethod
    def complete_config(cls, config):
        """Checks the data options and derives ``max_length`` (the sequence length 2K+3)."""
        options = config.workflow_options
        pairs = options["pairs"]
        if options["batch_size"] > options["train_size"]:
            raise ValueError(f"workflow-options.batch_size ({options['batch_size']}) must be <= "
                             f"train_size ({options['train_size']})")
        length = ar.sequence_length(pairs)
        hparams = config.hparams
        if hparams.get("max_length") is None:
            hparams["max_length"] = length
        elif hparams["max_length"] < length:
            raise ValueError(f"hparams_override.max_length ({hparams['max_length']}) is shorter "
                             f"than the sequence length 2K+3 = {length}; leave it unset")

    def build_dataset(self, start_batch):
        options = self.options
        stream, self.splits = self.config.dataset_fn(
            pairs=options["pairs"], batch_size=options["batch_size"], seed=self.config.seed,
            start_batch=start_batch, train_size=options["train_size"],
            validation_size=options["validation_size"], test_size=options["test_size"])
        return stream

    def checkpoint_items(self, model):
        """The base class's items and the best-validation weights (`BestWeights`)."""
        from pagi_rsm.callbacks.best_weights import BestWeights
        with self.strategy.scope():
            self.best = BestWeights(model, mode="min")
        return {**super().checkpoint_items(model), "best_validation": self.best.checkpoint_items()}

    def extra_callbacks(self):
        from pagi_rsm.callbacks.best_weights import ValidationMonitor
        target = self.options["target_validation_error"]
        validation = self.splits["validation"]
        self.monitor = ValidationMonitor(
            self.best, lambda model: error_rate(model, *validation),
            self.options["checkpoint_interval"] or self.batches, self.clock, name="error",
            target=target if target >= 0 else None, writer=self.writer)
        return [self.monitor]

    def evaluate(self, model, training):
        """Validation and test error at the best validation weights (and test at the last).

        Leaves the best weights in `model` (so model.keras holds them)."""
        import tensorflow as tf
        results = super().evaluate(model, training)
        if training["status"] == "nan":
            return results
        final_test = error_rate(model, *self.splits["test"])
        best_batch = self.best.batch if self.best.restore_into(model) else training["batches"]
        results.update({
            "test_error": error_rate(model, *self.splits["test"]),
            "validation_error": error_rate(model, *self.splits["validation"]),
            "final_test_error": final_test,
            "best_batch": best_batch,
            "parameters": model.count_params(),
        })
        with self.writer.as_default():
            for key in ("test_error", "validation_error", "final_test_error"):
                tf.summary.scalar(f"eval/{key}", results[key], step=training["batches"])
            # A sweep's HParams configuration lists the headline as train/<headline>.
            tf.summary.scalar(f"train/{self.headline_metric}", results["test_error"],
                              step=training["batches"])
        self.writer.flush()
        return results

    def dashboard_metrics(self):
        from tensorboard.plugins.hparams import api as hp
        return [hp.Metric("eval/test_error", display_name="test error"),
                hp.Metric("eval/validation_error", display_name="validation error"),
                hp.Metric("train/loss", display_name="loss")]

    def report(self, training, evaluation):
        results = super().report(training, evaluation)
        if self.is_chief and evaluation.get("test_error") is not None:
            directory = (os.path.dirname(os.path.normpath(self.summary_dir)) if self.config.trial
                         else self.summary_dir)
            merge_tables([directory], directory)
        return results


def _table_rows(directories):
    """The `format_table` rows of the finished runs in `directories`.

    Each directory is a run directory (its results.json) or a sweep directory (the
    results.json of its trials, ``<dir>/*/results.json``). Unfinished runs are left out.
    """
    rows = []
    for directory in directories:
        paths = sorted(glob.glob(os.path.join(directory, RESULTS_FILE))
                       + glob.glob(os.path.join(directory, "*", RESULTS_FILE)))
        rows += [r for r in map(_table_row, paths) if r is not None]
    return rows


def merge_tables(directories, out_dir):
    """Writes one table.md / table.csv (`write_table`) to `out_dir` covering the finished runs
    of several run or sweep directories. The workflow calls it on its own directory after each
    run; call it on several (e.g. Table 1's columns run in parallel) to combine them. Returns
    the rows."""
    rows = _table_rows(directories)
    write_table(rows, out_dir)
    return rows


def _table_row(results_path):
    """A `format_table` row from a run's results.json (None if it is not a finished run)."""
    finished = finished_results(results_path, "test_error")
    if finished is None:
        return None
    results, experiment, hparams, options = finished
    evaluation = results["evaluation"]
    return {"kind": hparams["kind"], "units": hparams["units"], "pairs": options["pairs"],
            "seed": experiment["seed"], "test_error": evaluation["test_error"],
            "validation_error": evaluation["validation_error"],
            "final_test_error": evaluation["final_test_error"],
            "best_step": evaluation["best_batch"], "steps_run": results["batches"],
            "train_seconds": results["wall_time_s"],
            "seconds_per_step": results["wall_time_s"] / max(results["batches"], 1),
            "parameters": evaluation.get("parameters")}
