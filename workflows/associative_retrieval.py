"""Associative retrieval (Ba et al. 2016, Table 1): train the five models, report test error.

Recipe: generate the splits (`pagi_rsm.datasets.associative_retrieval`), build a model
(`pagi_rsm.components.retrieval_models`), train it with `model.fit` on shuffled minibatches of the
training split (Adam, gradient clipped by global norm, the norm logged as ``grad_norm``), validate
every `eval_interval` steps, keep the weights of the best validation error, and report the test
error of those weights.

`train_retrieval` is that recipe as one function; `run_table` runs it for several models and
hidden sizes and writes the paper's Table 1 layout (markdown + CSV + JSON). From the shell:

    python -m pagi_rsm.workflows.associative_retrieval --models fast_weights,lstm,rnn_ln \\
        --units 20,50 --steps 30000 --out runs/retrieval_table
"""
import argparse
import csv
import json
import math
import os
import time

import keras
import numpy as np

from pagi_rsm.components.retrieval_models import KINDS, build_model
from pagi_rsm.datasets import associative_retrieval as ar

__all__ = ["train_retrieval", "error_rate", "run_table", "format_table", "PAPER_TABLE"]

PAPER_TABLE = {
    # Ba et al. 2016, Table 1, test error (%) with K = 4 pairs, as recalled in
    # reference/peers.md §2.3 ("verify against the PDF"); the paper has no RNN-LN / GRU-LN row.
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


class _BestValidation(keras.callbacks.Callback):
    """Every epoch (= `eval_interval` steps): validation error; keeps the best weights; stops
    once the error is <= `target_error`."""

    def __init__(self, tokens, targets, target_error=None, log=None):
        super().__init__()
        self.tokens, self.targets = tokens, targets
        self.target_error = target_error
        self.log = log
        self.best_error, self.best_step, self.best_weights = math.inf, 0, None
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        error = error_rate(self.model, self.tokens, self.targets)
        step = int(self.model.optimizer.iterations.numpy())
        logs = dict(logs or {})
        logs["val_error"] = error
        self.history.append({"step": step, **{k: float(v) for k, v in logs.items()}})
        if error < self.best_error:
            self.best_error, self.best_step = error, step
            self.best_weights = self.model.get_weights()
        if self.log:
            self.log(f"  step {step:6d}  loss {logs.get('loss', float('nan')):.4f}  "
                     f"train acc {logs.get('accuracy', float('nan')):.4f}  "
                     f"grad_norm {logs.get('grad_norm', float('nan')):.3f}  "
                     f"val error {100 * error:.2f}%")
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
      train_seconds, seconds_per_step, parameters, history (per-evaluation metrics).
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
    train = ar.make_tf_dataset(*splits["train"], batch_size, shuffle=True, seed=seed,
                               repeat=True, drop_remainder=True)
    monitor = _BestValidation(*splits["validation"], target_error=target_error, log=log)
    epochs = math.ceil(steps / eval_interval)
    if log:
        log(f"{kind} R={units} K={pairs}: {model.count_params()} parameters, up to {steps} "
            f"steps of {batch_size}")
    start = time.perf_counter()
    model.fit(train, steps_per_epoch=eval_interval, epochs=epochs, verbose=0,
              callbacks=[monitor])
    seconds = time.perf_counter() - start
    steps_run = int(model.optimizer.iterations.numpy())
    final_test = error_rate(model, *splits["test"])
    if monitor.best_weights is not None:
        model.set_weights(monitor.best_weights)
    test = error_rate(model, *splits["test"])
    result = {
        "kind": kind, "units": units, "pairs": pairs, "seed": seed, "batch_size": batch_size,
        "learning_rate": learning_rate, "clip_norm": clip_norm, "unroll": unroll,
        "jit_compile": jit_compile, "steps_run": steps_run,
        "best_step": monitor.best_step, "validation_error": monitor.best_error,
        "test_error": test, "final_test_error": final_test, "train_seconds": seconds,
        "seconds_per_step": seconds / max(steps_run, 1), "parameters": model.count_params(),
        "history": monitor.history, "model": model,
    }
    if log:
        log(f"{kind} R={units}: test error {100 * test:.2f}% (best validation "
            f"{100 * monitor.best_error:.2f}% at step {monitor.best_step}), {steps_run} steps "
            f"in {seconds:.0f} s")
    return result


def format_table(results, units_list):
    """Markdown table of test error (%) per model (rows) and R (columns), with the paper's
    numbers beside ours where it has them."""
    kinds = [k for k in KINDS if any(r["kind"] == k for r in results)]
    head = "| model | " + " | ".join(f"R={u}" for u in units_list) + " |"
    lines = [head, "|---" * (len(units_list) + 1) + "|"]
    for kind in kinds:
        cells = []
        for units in units_list:
            found = [r for r in results if r["kind"] == kind and r["units"] == units]
            paper = PAPER_TABLE.get(kind, {}).get(units)
            paper_text = f" (paper {paper:g}%)" if paper is not None else ""
            cells.append(f"{100 * found[0]['test_error']:.2f}%{paper_text}" if found else "-")
        lines.append(f"| {MODEL_NAMES[kind]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_table(models=("fast_weights", "lstm", "rnn_ln"), units_list=(20, 50), out_dir=None,
              pairs=ar.DEFAULT_PAIRS, seed=0, log=print, **train_options):
    """Trains every (model, R) with `train_retrieval`; writes table.md, table.csv and
    results.json to `out_dir` (if given) after each run. Returns the list of results."""
    splits = ar.load_splits(pairs, seed)
    results = []
    for units in units_list:
        for kind in models:
            result = train_retrieval(kind, units, pairs=pairs, seed=seed, splits=splits,
                                     log=log, **train_options)
            result.pop("model")
            results.append(result)
            if out_dir:
                write_table(results, list(units_list), out_dir)
    if log:
        log(format_table(results, list(units_list)))
    return results


def write_table(results, units_list, out_dir):
    """Writes table.md, table.csv (one row per run) and results.json into `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "table.md"), "w", encoding="utf-8") as f:
        f.write(format_table(results, units_list) + "\n")
    fields = ["kind", "units", "pairs", "seed", "test_error_percent", "validation_error_percent",
              "final_test_error_percent", "best_step", "steps_run", "train_seconds",
              "seconds_per_step", "parameters"]
    with open(os.path.join(out_dir, "table.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in results:
            writer.writerow({
                **{k: r[k] for k in fields if k in r},
                "test_error_percent": round(100 * r["test_error"], 3),
                "validation_error_percent": round(100 * r["validation_error"], 3),
                "final_test_error_percent": round(100 * r["final_test_error"], 3),
                "train_seconds": round(r["train_seconds"], 1),
                "seconds_per_step": round(r["seconds_per_step"], 5)})
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="fast_weights,lstm,rnn_ln",
                        help=f"comma-separated kinds from {', '.join(KINDS)}")
    parser.add_argument("--units", default="20,50", help="comma-separated hidden sizes R")
    parser.add_argument("--pairs", type=int, default=ar.DEFAULT_PAIRS)
    parser.add_argument("--steps", type=int, default=30000)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--clip_norm", type=float, default=5.0)
    parser.add_argument("--eval_interval", type=int, default=1000)
    parser.add_argument("--target_error", type=float, default=None,
                        help="stop a run once its validation error (fraction) is <= this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_jit", action="store_true", help="do not XLA-compile the step")
    parser.add_argument("--no_unroll", action="store_true", help="keep the RNN while loop")
    parser.add_argument("--out", default=None, help="directory for table.md/.csv, results.json")
    args = parser.parse_args(argv)
    run_table(models=args.models.split(","), units_list=[int(u) for u in args.units.split(",")],
              out_dir=args.out, pairs=args.pairs, seed=args.seed, steps=args.steps,
              batch_size=args.batch_size, learning_rate=args.learning_rate,
              clip_norm=args.clip_norm, eval_interval=args.eval_interval,
              target_error=args.target_error, jit_compile=not args.no_jit,
              unroll=not args.no_unroll,
              log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
