"""Associative retrieval (Ba et al. 2016, Table 1): train the five models, report test error.

Recipe: generate the splits (`pagi_rsm.datasets.associative_retrieval`), build a model
(`pagi_rsm.components.retrieval_models`), train it with `model.fit` on shuffled minibatches of the
training split (Adam, gradient clipped by global norm, the norm logged as ``grad_norm``), measure
the validation error every `eval_interval` steps, keep the weights of the best validation error,
and report the test error of those weights (and of the last weights).

Two ways to run it, sharing the data, the models, the validation monitor and the table writer:

* `AssociativeRetrievalWorkflow`, the `pagi run` workflow (``--workflow=associative_retrieval``):
  checkpoints, resume, TensorBoard scalars and HParams, results.json; a sweep over ``kind`` and
  ``units`` (definitions/fast_weights/table1.yaml) writes the paper's Table 1 layout as
  ``table.md`` and ``table.csv`` in the sweep directory.
* `train_retrieval` / `run_table`, a plain function for scripts and benchmarks. It runs several
  training steps per compiled call (`steps_per_execution`), faster on a CPU than the workflow's
  one step per call (the workflow's batch clock counts one batch per call; see
  docs/fast_weights.md#training):

      python -m pagi_rsm.workflows.associative_retrieval --models fast_weights,lstm,rnn_ln \\
          --units 20,50 --steps 30000 --out runs/retrieval_table
"""
import argparse
import csv
import glob
import json
import math
import os
import time

import keras
import numpy as np

from pagi_rsm.components.retrieval_models import KINDS, build_model
from pagi_rsm.datasets import associative_retrieval as ar
from pagi_rsm.options import Option
from pagi_rsm.workflows.workflow import RESULTS_FILE, Workflow

__all__ = ["AssociativeRetrievalWorkflow", "train_retrieval", "run_table", "error_rate",
           "format_table", "write_table", "merge_tables", "PAPER_TABLE"]

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


class BestValidation(keras.callbacks.Callback):
    """At every epoch end: the validation error; keeps the weights with the lowest one.

    Args:
      tokens, targets: the validation split.
      target_error: stop training once the error is <= this fraction (None: never).
      log: callable for a progress line per evaluation (None: silent).
      writer: optional `tf.summary` writer; the error is written as ``validation/error`` at
        step = the optimizer's iteration count.

    Attributes:
      best_error, best_step, best_weights: the best evaluation so far.
      history: one dict per evaluation (step, val_error and the epoch's training logs).
    """

    def __init__(self, tokens, targets, target_error=None, log=None, writer=None):
        super().__init__()
        self.tokens, self.targets = tokens, targets
        self.target_error = target_error
        self.log = log
        self.writer = writer
        self.best_error, self.best_step, self.best_weights = math.inf, 0, None
        self.history = []
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        error = error_rate(self.model, self.tokens, self.targets)
        step = int(self.model.optimizer.iterations.numpy())
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.history.append({"step": step, "val_error": error, **logs})
        if error < self.best_error:
            self.best_error, self.best_step = error, step
            self.best_weights = self.model.get_weights()
        if self.writer is not None:
            import tensorflow as tf
            with self.writer.as_default():
                tf.summary.scalar("validation/error", error, step=step)
        if self.log:
            self.log(f"  step {step:6d}  loss {logs.get('loss', math.nan):.4f}  "
                     f"train acc {logs.get('accuracy', math.nan):.4f}  "
                     f"grad_norm {logs.get('grad_norm', math.nan):.3f}  "
                     f"val error {100 * error:.2f}%  ({time.perf_counter() - self._start:.0f} s)")
        if self.target_error is not None and error <= self.target_error:
            self.model.stop_training = True


def train_retrieval(kind="fast_weights", units=50, pairs=ar.DEFAULT_PAIRS, steps=30000,
                    batch_size=128, learning_rate=1e-3, clip_norm=5.0, seed=0,
                    eval_interval=1000, target_error=None, jit_compile=True, unroll=True,
                    steps_per_execution=25, splits=None, log=print, **model_options):
    """Trains one model on associative retrieval and returns its errors and timings.

    Args:
      kind: model kind, one of `pagi_rsm.components.retrieval_models.KINDS`.
      units: hidden size R.
      pairs: K key/value pairs per sequence.
      steps: maximum number of training steps (minibatches).
      batch_size: minibatch size.
      learning_rate: Adam learning rate.
      clip_norm: gradient clipping by global norm (None/0: off).
      seed: seed of the data splits, the initialisation and the shuffling.
      eval_interval: steps between validation passes (the Keras epoch length).
      target_error: stop early once the validation error is <= this fraction (None: never).
      jit_compile: XLA-compile the training step.
      unroll: unroll the recurrent loop over the 2K+3 time steps (with XLA on CPU this is
        several times faster than a while loop for the custom cells).
      steps_per_execution: training steps per compiled call (`keras.Model.compile`); cuts the
        per-step Python overhead, which dominates at this model size.
      splits: precomputed `load_splits(pairs, seed)` (saves regenerating them per model).
      log: callable for progress lines (None: silent).
      **model_options: further `RetrievalModel` arguments (decay, inner_steps, ...).

    Returns:
      dict with kind, units, pairs, steps_run, best_step, validation_error, test_error (fractions
      in [0, 1], at the best validation weights), final_test_error (last weights),
      train_seconds, seconds_per_step, parameters, history (per-evaluation metrics) and model.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if splits is None:
        splits = ar.load_splits(pairs, seed)
    keras.utils.set_random_seed(seed)
    model = build_model(kind, units, max_length=ar.sequence_length(pairs),
                        learning_rate=learning_rate, clip_norm=clip_norm, unroll=unroll,
                        **model_options)
    model.compile(jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    train = ar.make_training_stream(*splits["train"], batch_size, seed=seed)
    monitor = BestValidation(*splits["validation"], target_error=target_error, log=log)
    if log:
        log(f"{kind} R={units} K={pairs}: {model.count_params()} parameters, up to {steps} "
            f"steps of {batch_size}")
    start = time.perf_counter()
    model.fit(train, steps_per_epoch=eval_interval, epochs=math.ceil(steps / eval_interval),
              verbose=0, callbacks=[monitor], shuffle=False)  # the stream is shuffled
    seconds = time.perf_counter() - start
    steps_run = int(model.optimizer.iterations.numpy())
    final_test = error_rate(model, *splits["test"])
    if monitor.best_weights is not None:
        model.set_weights(monitor.best_weights)
    test = error_rate(model, *splits["test"])
    result = {
        "kind": kind, "units": units, "pairs": pairs, "seed": seed, "batch_size": batch_size,
        "learning_rate": learning_rate, "clip_norm": clip_norm, "unroll": unroll,
        "jit_compile": jit_compile, "steps_run": steps_run, "best_step": monitor.best_step,
        "validation_error": monitor.best_error, "test_error": test,
        "final_test_error": final_test, "train_seconds": seconds,
        "seconds_per_step": seconds / max(steps_run, 1), "parameters": model.count_params(),
        "model_options": dict(model_options), "history": monitor.history, "model": model,
    }
    if log:
        log(f"{kind} R={units}: test error {100 * test:.2f}% (best validation "
            f"{100 * monitor.best_error:.2f}% at step {monitor.best_step}), {steps_run} steps "
            f"in {seconds:.0f} s")
    return result


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


def run_table(models=("fast_weights", "lstm", "rnn_ln"), units_list=(20, 50), out_dir=None,
              pairs=ar.DEFAULT_PAIRS, seed=0, log=print, **train_options):
    """Trains every (model, R) with `train_retrieval`; after each run writes table.md,
    table.csv and results.json to `out_dir` (if given). Returns the list of results."""
    splits = ar.load_splits(pairs, seed)
    results = []
    for units in units_list:
        for kind in models:
            result = train_retrieval(kind, units, pairs=pairs, seed=seed, splits=splits,
                                     log=log, **train_options)
            result.pop("model")
            results.append(result)
            if out_dir:
                write_table(results, out_dir)
                with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
                    json.dump(results, f, indent=1)
    if log:
        log(format_table(results))
    return results


# --- the pagi workflow ---------------------------------------------------------------------------

class AssociativeRetrievalWorkflow(Workflow):
    """`pagi run` workflow: one `RetrievalModel` trained on associative retrieval.

    Options. Component hparams (``hparams_override``, see `RetrievalModel`): ``kind`` (the
    model), ``units`` (R), ``learning_rate``, ``clip_norm``, the fast-weight settings, ``unroll``.
    Experiment options: ``batches`` (training steps), ``seed``. Workflow options (besides the base
    class's): ``pairs`` (K), ``batch_size``, the split sizes, ``target_validation_error`` (stop
    once the validation error is <= this fraction; < 0: never). The validation error is
    measured every ``checkpoint_interval`` batches (the Keras epoch length of the base class).

    Reports: ``test_error`` (the headline: test error at the best validation weights),
    ``validation_error``, ``final_test_error`` (last weights) and ``best_batch`` in
    results.json's ``evaluation``; TensorBoard scalars ``validation/error`` during training and
    ``eval/*`` at the end; ``table.md`` / ``table.csv`` in the run directory, or, in a sweep, in
    the sweep directory covering every trial finished so far (the paper's Table 1 layout).
    The best weights are kept in memory: a resumed run starts its best-weights search afresh.
    """

    headline_metric = "test_error"
    headline_mode = "min"

    @classmethod
    def default_experiment_options(cls):
        return {"component": "pagi_rsm.components.retrieval_models.RetrievalModel",
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
        Option("target_validation_error", -1.0, "stop once the validation error is <= this "
               "fraction (< 0: never)"),
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

    def extra_callbacks(self):
        target = self.options["target_validation_error"]
        self.monitor = BestValidation(*self.splits["validation"],
                                      target_error=target if target >= 0 else None,
                                      writer=self.writer)
        return [self.monitor]

    def evaluate(self, model, training):
        """Validation and test error at the best validation weights (and test at the last)."""
        import tensorflow as tf
        results = super().evaluate(model, training)
        if training["status"] == "nan":
            return results
        monitor = getattr(self, "monitor", None)
        final_test = error_rate(model, *self.splits["test"])
        if monitor is not None and monitor.best_weights is not None:
            model.set_weights(monitor.best_weights)
        results.update({
            "test_error": error_rate(model, *self.splits["test"]),
            "validation_error": error_rate(model, *self.splits["validation"]),
            "final_test_error": final_test,
            "best_batch": monitor.best_step if monitor is not None else training["batches"],
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
            pattern = os.path.join(directory, "*", RESULTS_FILE) if self.config.trial \
                else os.path.join(directory, RESULTS_FILE)
            rows = [_table_row(path) for path in sorted(glob.glob(pattern))]
            write_table([r for r in rows if r is not None], directory)
        return results


def _table_row(results_path):
    """A `format_table` row from a run's results.json (None if it is not a finished run)."""
    with open(results_path, encoding="utf-8") as f:
        results = json.load(f)
    evaluation = results.get("evaluation") or {}
    if evaluation.get("test_error") is None:
        return None
    experiment = results["options"]["experiment-options"]
    hparams = experiment["hparams_override"]
    options = results["options"]["workflow-options"]
    return {"kind": hparams["kind"], "units": hparams["units"], "pairs": options["pairs"],
            "seed": experiment["seed"], "test_error": evaluation["test_error"],
            "validation_error": evaluation["validation_error"],
            "final_test_error": evaluation["final_test_error"],
            "best_step": evaluation["best_batch"], "steps_run": results["batches"],
            "train_seconds": results["wall_time_s"],
            "seconds_per_step": results["wall_time_s"] / max(results["batches"], 1),
            "parameters": evaluation.get("parameters")}


def merge_tables(run_dirs, out_dir):
    """Combines the results.json of several `run_table` directories (e.g. runs made in parallel)
    into one table.md / table.csv / results.json in `out_dir`. Returns the combined rows."""
    rows = []
    for directory in run_dirs:
        with open(os.path.join(directory, "results.json"), encoding="utf-8") as f:
            rows.extend(json.load(f))
    write_table(rows, out_dir)
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="fast_weights,lstm,rnn_ln",
                        help=f"comma-separated kinds from {', '.join(KINDS)}")
    parser.add_argument("--units", default="20,50", help="comma-separated hidden sizes R")
    parser.add_argument("--pairs", type=int, default=ar.DEFAULT_PAIRS)
    parser.add_argument("--steps", type=int, default=30000)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--final_learning_rate", type=float, default=None,
                        help="cosine-decay the learning rate to this over --steps (default: "
                             "constant)")
    parser.add_argument("--clip_norm", type=float, default=5.0)
    parser.add_argument("--input_units", type=int, default=0,
                        help="ReLU layer of this size on each input symbol (0: none)")
    parser.add_argument("--readout_units", type=int, default=0,
                        help="ReLU layer of this size before the softmax (0: none)")
    parser.add_argument("--eval_interval", type=int, default=1000)
    parser.add_argument("--target_error", type=float, default=None,
                        help="stop a run once its validation error (fraction) is <= this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_jit", action="store_true", help="do not XLA-compile the step")
    parser.add_argument("--no_unroll", action="store_true", help="keep the RNN while loop")
    parser.add_argument("--out", default=None, help="directory for table.md/.csv, results.json")
    parser.add_argument("--merge", nargs="+", default=None, metavar="RUN_DIR",
                        help="only combine the results.json of these --out directories into "
                             "one table in --out (no training)")
    args = parser.parse_args(argv)
    if args.merge:
        if not args.out:
            parser.error("--merge needs --out")
        print(format_table(merge_tables(args.merge, args.out)))
        return
    run_table(models=args.models.split(","), units_list=[int(u) for u in args.units.split(",")],
              out_dir=args.out, pairs=args.pairs, seed=args.seed, steps=args.steps,
              batch_size=args.batch_size, learning_rate=args.learning_rate,
              clip_norm=args.clip_norm, eval_interval=args.eval_interval,
              input_units=args.input_units, readout_units=args.readout_units,
              **({"final_learning_rate": args.final_learning_rate, "decay_steps": args.steps}
                 if args.final_learning_rate else {}),
              target_error=args.target_error, jit_compile=not args.no_jit,
              unroll=not args.no_unroll, log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
