"""RSM vs the smallest LSTM on the embedded Reber grammar (MNIST `same` glyphs), in one script.

Parts (`--parts`, each runnable alone; every training run is its own subprocess, so that the
peak resident memory, `ru_maxrss`, of one model never mixes with another's):

* ``rsm``: the grammar workflow with its defaults (the paper values: g=200, c=6, k=25, γ=0.98,
  ε=0, B=400, predictor hidden 500; the workflow's chunk length, update schedule and learning
  rate, read at run time from `pagi_rsm.workflows.grammar`), i.e. `SequenceMemoryStack.fit` as
  `pagi run --workflow=grammar` runs it. Prints the test-state accuracy (over the last 2000
  test-state predictions) every ``--rsm-report-every`` time steps, and the time steps, batches
  and wall time at which it first reaches 99% and 99.5% with a full window.
* ``rsm_original``: the same with the original JSON's values
  (definitions/grammar/embedded_reber_original.yaml: c=8, one time step per batch, one update
  per step).
* ``lstm``: Keras LSTMs of growing hidden size (``--lstm-sizes``) trained by BPTT over whole
  strings with `model.fit` (`pagi_rsm.datasets.grammar_strings`: fresh strings, padded batches,
  masking, next-symbol prediction at every position, Adam) on the same glyph inputs, each run
  with a fixed budget of strings (``--lstm-max-strings``); after every ``--lstm-eval-every``
  batches the test-state accuracy (the prediction of the second-to-last symbol) is measured on
  ``--lstm-eval-strings`` freshly generated strings of their own seed. Per size the learning
  rates ``--lstm-learning-rates`` are tried in order; a (size, rate) succeeds when every seed
  reaches ``--lstm-target`` (99%), and its first failing seed ends it. The search stops at the
  first size with a successful rate.

For every model: parameter count; training memory, i.e. floats held for credit assignment in
one training step (the formulas are printed; see `rsm_training_floats` and
`lstm_training_floats`); the peak resident memory of its process. Then the LSTM / RSM ratios
(the paper claims that RSM needs 10-30x less memory than LSTM/GRU trained by BPTT).

The RSM runs take hours at the paper size on a 2-core machine; try the plumbing with e.g.::

    python benchmarks/grammar.py --parts rsm --rsm-time-steps 120 --rsm-report-every 24 \\
        --rsm-hparams batch_size=40 groups=20 active_groups=4 "predictor_hidden_size=[50]"
    python benchmarks/grammar.py --parts lstm --lstm-sizes 2,4 --lstm-max-strings 3200
    python benchmarks/grammar.py --json all.json     # everything, at the paper values

Runs done apart combine into one table: ``--from-json rsm.json lstm.json``.
"""
import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ORIGINAL_DEFINITION = os.path.join(REPO, "definitions", "grammar", "embedded_reber_original.yaml")
PARTS = ("rsm", "rsm_original", "lstm")
THRESHOLDS = (0.99, 0.995)


def rss_mib():
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --- training memory (floats held for credit assignment in one training step) ----------------

RSM_FORMULA = ("per stream and time step, layer l (input D_l, g_l groups, n_l cells): "
               "x_{t-1} (D_l, input of W_f) + recurrent input psi (n_l, input of W_r) + mask M "
               "(n_l) + y = tanh(Z*M) (n_l, for tanh') + group max a (g_l, input of the "
               "decoder) + decoder residual x_hat - x (D_l) = 2 D_l + 3 n_l + g_l; predictor: "
               "normalised input (n_L) + each hidden layer (H_i, twice with a nonlinearity) + "
               "softmax (K). BPTT = 1: nothing older than the current step is held, so a step "
               "holds B x that, and a chunk update (update_schedule=chunk) T x B x that")
LSTM_FORMULA = ("per string and time step (u units): x_t (D, input of W_x) + h_t (u, input of "
                "U at t+1 and of the readout) + c_t (u) + gates i, f, g, o (4u) + tanh(c_t) "
                "(u) + readout softmax (K) = D + 7u + K; BPTT over whole strings holds every "
                "position of the padded batch: B x L_pad x (D + 7u + K)")


def rsm_training_floats(hp):
    """Floats per stream held for one time step's local credit assignment (see RSM_FORMULA)."""
    dim, total = hp["input_dim"], 0
    for l in range(hp["num_layers"]):
        g = _layer_value(hp["groups"], l)
        n = g * _layer_value(hp["cells_per_group"], l)
        total += 2 * dim + 3 * n + g
        dim = n // _layer_value(hp["pool_size"], l)
    n_top = n
    hidden = _as_list(hp["predictor_hidden_size"])
    nonlin = _as_list(hp["predictor_nonlinearity"])
    total += n_top + hp["num_classes"]
    for i, size in enumerate(hidden):
        act = nonlin[i] if i < len(nonlin) else nonlin[-1]
        total += size * (1 if act in (None, "none", "linear") else 2)
    return total


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _layer_value(value, layer):
    """Layer `layer`'s value of a per-layer hparam (a scalar or a 1-element list: all layers)."""
    values = _as_list(value)
    return values[layer] if len(values) > 1 else values[0]


def lstm_training_floats(units, input_dim, num_classes):
    """Floats per string and time step held by BPTT (see LSTM_FORMULA)."""
    return input_dim + 7 * units + num_classes


# --- child: one RSM run --------------------------------------------------------------------------

def _parse_hparams(items):
    """`key=value` strings -> dict (values parsed as YAML: numbers, lists, strings)."""
    import yaml
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--rsm-hparams expects key=value, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def child_rsm(args):
    import keras
    from pagi_rsm import definitions
    baseline = rss_mib()
    experiment = {"seed": args.seed}
    summary_dir = tempfile.mkdtemp(prefix="grammar_bench_")
    experiment["summary_dir"] = summary_dir
    options = {"progress": False}
    if args.rsm_run_to_limit:
        options["stop_metric"] = ""
    hparams = _parse_hparams(args.rsm_hparams)
    if args.variant == "rsm_original":
        if not os.path.exists(ORIGINAL_DEFINITION):
            raise SystemExit(f"{ORIGINAL_DEFINITION} not found (the original-JSON variant reads "
                             "its values from it)")
        definition, source = definitions.load(ORIGINAL_DEFINITION), ORIGINAL_DEFINITION
    else:
        definition, source = None, None
    # Resolve once to learn the chunk length, then with the batch budget in time steps.
    [config] = definitions.resolve(definition, source, workflow="grammar",
                                   experiment_overrides=experiment, hparams_overrides=hparams,
                                   workflow_option_overrides=options)
    chunk = config.workflow_options["chunk_length"]
    if args.rsm_time_steps:
        experiment["batches"] = max(1, math.ceil(args.rsm_time_steps / chunk))
        [config] = definitions.resolve(definition, source, workflow="grammar",
                                       experiment_overrides=experiment,
                                       hparams_overrides=hparams,
                                       workflow_option_overrides=options)
    hp = config.hparams
    window = hp["accuracy_window"]
    report_every = max(1, round(args.rsm_report_every / chunk))
    tracker = make_rsm_tracker(chunk, hp["batch_size"], window, report_every, args.variant)

    class BenchWorkflow(config.workflow_class):
        def extra_callbacks(self):
            return [tracker]

    print(f"[{args.variant}] {source or 'grammar workflow defaults'}: batches={config.batches} "
          f"x chunk_length={chunk} time steps, B={hp['batch_size']}, g={_as_list(hp['groups'])}, "
          f"c={_as_list(hp['cells_per_group'])}, k={_as_list(hp['active_groups'])}, "
          f"gamma={_as_list(hp['inhibition_decay'])}, eps={_as_list(hp['recurrent_decay'])}, "
          f"predictor {_as_list(hp['predictor_hidden_size'])}, "
          f"update_schedule={hp['update_schedule']}, lr={hp['learning_rate']}, "
          f"render={config.workflow_options['render']}, seed={config.seed}", flush=True)
    tracker.start = time.perf_counter()
    try:
        results = BenchWorkflow(config).run()
    finally:
        shutil.rmtree(summary_dir, ignore_errors=True)
    wall = time.perf_counter() - tracker.start
    floats = rsm_training_floats(hp)
    per_tape = chunk if hp["update_schedule"] == "chunk" else 1
    return {
        "model": args.variant, "seed": config.seed, "status": results["status"],
        "batches": tracker.batch, "chunk_length": chunk, "batch_size": hp["batch_size"],
        "time_steps": tracker.batch * chunk, "wall_s": wall,
        "first_batch_s": tracker.first_batch_s,
        "reached": tracker.reached, "curve": tracker.curve,
        "final_accuracy": tracker.last_accuracy, "final_count": tracker.last_count,
        "min_accuracy_after_995": tracker.min_after,
        "params": tracker.param_count, "params_memory": tracker.params_memory,
        "params_predictor": tracker.params_predictor,
        "floats_per_sample_step": floats,
        "floats_per_training_step": floats * hp["batch_size"],
        "floats_per_tape_as_run": floats * hp["batch_size"] * per_tape,
        "update_schedule": hp["update_schedule"],
        "hparams": {k: _as_list(hp[k]) for k in ("groups", "cells_per_group", "active_groups",
                                                 "inhibition_decay", "recurrent_decay",
                                                 "predictor_hidden_size")},
        "learning_rate": hp["learning_rate"], "input_dim": hp["input_dim"],
        "num_classes": hp["num_classes"],
        "rss_baseline_mib": baseline, "rss_peak_mib": rss_mib(),
        "keras": keras.__version__,
    }


def make_rsm_tracker(chunk, batch_size, window, report_every, label):
    """A Keras callback (keras is imported in the child only) that counts batches over the
    workflow's `fit` calls, prints the accuracy curve and records the first batch at which each
    threshold is reached with a full window."""
    import keras

    class RSMTracker(keras.callbacks.Callback):
        def __init__(self, chunk, batch_size, window, report_every, label):
            super().__init__()
            self.chunk, self.batch_size, self.window = chunk, batch_size, window
            self.report_every, self.label = report_every, label
            self.batch = 0
            self.start = None
            self.first_batch_s = None
            self.reached = {}
            self.curve = []
            self.last_accuracy = self.last_count = None
            self.min_after = None
            self.param_count = self.params_memory = self.params_predictor = None

        def on_train_begin(self, logs=None):
            if self.param_count is not None:
                return
            model = self.model
            self.param_count = _count(model.trainable_weights)
            cells = getattr(model, "cells", None)
            predictor = getattr(model, "predictor", None)
            if cells is not None and predictor is not None:
                self.params_memory = sum(_count(c.trainable_weights) for c in cells)
                self.params_predictor = _count(predictor.trainable_weights)

        def on_train_batch_end(self, batch, logs=None):
            self.batch += 1
            now = time.perf_counter() - self.start
            if self.first_batch_s is None:
                self.first_batch_s = now
            logs = logs or {}
            accuracy = float(logs.get("test_state_accuracy", float("nan")))
            count = float(logs.get("test_state_count", 0.0))
            self.last_accuracy, self.last_count = accuracy, count
            full = count >= self.window
            steps = self.batch * self.chunk
            for threshold in THRESHOLDS:
                key = f"{threshold:g}"
                if full and accuracy >= threshold and key not in self.reached:
                    self.reached[key] = {"batches": self.batch, "time_steps": steps,
                                         "wall_s": now, "accuracy": accuracy}
                    print(f"[{self.label}] reached {100 * threshold:g}% at batch {self.batch} "
                          f"({steps} time steps, {steps * self.batch_size} stream symbols), "
                          f"{now:.0f} s", flush=True)
            if "0.995" in self.reached and full:
                self.min_after = accuracy if self.min_after is None else min(self.min_after,
                                                                             accuracy)
            if self.batch % self.report_every == 0:
                self.curve.append((self.batch, steps, round(now, 2), accuracy, count))
                print(f"[{self.label}] batch {self.batch:6d}  time steps {steps:7d}  "
                      f"{now:7.0f} s  test-state accuracy {accuracy:.4f} over {count:.0f}  "
                      f"loss {float(logs.get('loss', float('nan'))):.4f}", flush=True)

    return RSMTracker(chunk, batch_size, window, report_every, label)


def _count(weights):
    import numpy as np
    return int(sum(np.prod(w.shape) for w in weights))


# --- child: one LSTM run -------------------------------------------------------------------------

def build_lstm(units, input_dim, num_classes, learning_rate):
    """Masking -> LSTM(units, whole sequences) -> Dense(num_classes) logits, compiled with Adam
    and masked sparse cross-entropy."""
    import keras
    model = keras.Sequential([
        keras.Input((None, input_dim)),
        keras.layers.Masking(0.0),
        keras.layers.LSTM(units, return_sequences=True),
        keras.layers.Dense(num_classes),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def child_lstm(args):
    import keras
    import numpy as np
    import tensorflow as tf
    from pagi_rsm.datasets.grammar_strings import make_string_dataset, sample_strings
    baseline = rss_mib()
    keras.utils.set_random_seed(args.seed)
    train, meta = make_string_dataset(batch_size=args.lstm_batch_size, render="same",
                                      seed=args.seed)
    train = train.map(lambda b: (b["inputs"], b["labels"], b["mask"]))
    # Evaluation strings: a finite dataset with its own seed, regenerated identically (and
    # rendered batch by batch) at every evaluation, so it never holds all of them at once.
    eval_batch = 100
    evaluation, _ = make_string_dataset(
        batch_size=eval_batch, render="same", seed=1_000_003 + args.seed,
        num_batches=max(1, math.ceil(args.lstm_eval_strings / eval_batch)))
    model = build_lstm(args.units, meta.input_dim, meta.num_classes, args.lstm_learning_rate)

    @tf.function(reduce_retracing=True)
    def scored(inputs, labels, test):
        predicted = tf.argmax(model(inputs, training=False), axis=-1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predicted, labels), tf.float32)
        return tf.reduce_sum(correct * test), tf.reduce_sum(test)

    def test_state_accuracy():
        hits = total = 0.0
        for b in evaluation:
            h, t = scored(b["inputs"], b["labels"], b["test"])
            hits, total = hits + float(h), total + float(t)
        return hits / total, int(total)

    label = f"lstm{args.units}/seed{args.seed}"
    per_epoch = args.lstm_eval_every
    epochs = max(1, math.ceil(args.lstm_max_strings / (per_epoch * args.lstm_batch_size)))
    state = {"reached": None, "curve": [], "start": time.perf_counter(), "best": 0.0}

    class Evaluate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            accuracy, count = test_state_accuracy()
            batches = (epoch + 1) * per_epoch
            strings = batches * args.lstm_batch_size
            now = time.perf_counter() - state["start"]
            state["curve"].append((batches, strings, round(now, 2), accuracy))
            state["best"] = max(state["best"], accuracy)
            if args.verbose:
                print(f"[{label}] {strings:7d} strings  {now:6.0f} s  loss "
                      f"{float(logs['loss']):.4f}  test-state accuracy {accuracy:.4f} "
                      f"over {count}", flush=True)
            if accuracy >= args.lstm_target and state["reached"] is None:
                state["reached"] = {"batches": batches, "strings": strings, "wall_s": now,
                                    "accuracy": accuracy}
                self.model.stop_training = True

    model.fit(train, steps_per_epoch=per_epoch, epochs=epochs, verbose=0, shuffle=False,
              callbacks=[Evaluate()])
    wall = time.perf_counter() - state["start"]
    # Padded length of a training batch (its longest string minus one), estimated on 2000
    # batches of the same generator family.
    _, lengths = sample_strings(None, 2000 * args.lstm_batch_size, rng=args.seed + 7)
    padded = lengths.reshape(2000, args.lstm_batch_size).max(axis=1) - 1
    floats = lstm_training_floats(args.units, meta.input_dim, meta.num_classes)
    final, _ = test_state_accuracy()
    return {
        "model": f"lstm{args.units}", "units": args.units, "seed": args.seed,
        "reached": state["reached"], "curve": state["curve"], "best_accuracy": state["best"],
        "final_accuracy": final, "wall_s": wall, "params": model.count_params(),
        "batch_size": args.lstm_batch_size, "learning_rate": args.lstm_learning_rate,
        "max_strings": args.lstm_max_strings, "eval_every": args.lstm_eval_every,
        "eval_strings": args.lstm_eval_strings,
        "mean_padded_length": float(padded.mean()), "max_padded_length": int(padded.max()),
        "mean_string_length": float(meta.mean_length),
        "floats_per_string_step": floats,
        "floats_per_string": floats * float(padded.mean()),
        "floats_per_training_step": floats * float(padded.mean()) * args.lstm_batch_size,
        "rss_baseline_mib": baseline, "rss_peak_mib": rss_mib(),
    }


# --- parent: subprocesses, search, table ---------------------------------------------------------

def run_child(argv):
    """Runs this script as a child with `argv`; returns its JSON result (None if it failed)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        cmd = [sys.executable, os.path.abspath(__file__), *argv, "--child-out", out]
        code = subprocess.call(cmd)
        if code != 0:
            print(f"child {' '.join(argv)} failed with exit code {code}", flush=True)
            return None
        with open(out, encoding="utf-8") as f:
            return json.load(f)
    finally:
        os.unlink(out)


def forward(args, names):
    """The parent's options named in `names`, as child argv."""
    argv = []
    for name in names:
        value = getattr(args, name)
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif isinstance(value, list):
            argv += [flag, *map(str, value)] if value else []
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def run_rsm(args, variant):
    results = []
    for seed in args.rsm_seeds:
        argv = ["--child", variant, "--seed", str(seed)] + forward(
            args, ["rsm_time_steps", "rsm_report_every", "rsm_run_to_limit", "rsm_hparams"])
        result = run_child(argv)
        if result:
            results.append(result)
            print(rsm_summary(result), flush=True)
    return results


def rsm_summary(r):
    reach = ", ".join(
        f"{100 * float(k):g}% at {v['time_steps']} time steps ({v['batches']} batches, "
        f"{v['wall_s'] / 60:.1f} min)" for k, v in sorted(r["reached"].items()))
    reach = reach or "99% not reached"
    stability = ("" if r["min_accuracy_after_995"] is None else
                 f"; min accuracy after reaching 99.5%: {r['min_accuracy_after_995']:.4f}")
    return (f"[{r['model']}] seed {r['seed']}: {r['status']} after {r['batches']} batches "
            f"({r['time_steps']} time steps x {r['batch_size']} streams) in "
            f"{r['wall_s'] / 60:.1f} min (first batch incl. tracing {r['first_batch_s']:.0f} s); "
            f"{reach}; final test-state accuracy {r['final_accuracy']:.4f} over "
            f"{r['final_count']:.0f}{stability}; params {r['params']:,} (memory "
            f"{r['params_memory']:,} + predictor {r['params_predictor']:,}); peak RSS "
            f"{r['rss_peak_mib']:.0f} MiB (after imports {r['rss_baseline_mib']:.0f})")


def run_lstm(args):
    """The search: hidden sizes in increasing order, for each the learning rates in order, for
    each the seeds. A (size, learning rate) succeeds when every seed reaches the target within
    the budget; its first failing seed ends it. The search stops at the first size with a
    successful learning rate (unless --lstm-all-sizes).

    Returns:
      (all runs, (smallest size, its learning rate) or None).
    """
    runs, smallest = [], None
    for units in args.lstm_sizes:
        for lr in args.lstm_learning_rates:
            success = True
            for seed in args.lstm_seeds:
                argv = ["--child", "lstm", "--units", str(units), "--seed", str(seed),
                        "--lstm-learning-rate", str(lr)] + forward(
                    args, ["lstm_batch_size", "lstm_max_strings", "lstm_eval_every",
                           "lstm_eval_strings", "lstm_target", "verbose"])
                r = run_child(argv)
                if r is None:
                    success = False
                    break
                runs.append(r)
                hit = r["reached"]
                print(f"[lstm] units {units:4d} lr {lr:g} seed {seed}: params {r['params']:,}; "
                      + (f"reached {100 * hit['accuracy']:.2f}% after {hit['strings']} strings "
                         f"({hit['wall_s']:.0f} s)" if hit else
                         f"not reached within {args.lstm_max_strings} strings (best "
                         f"{100 * r['best_accuracy']:.2f}%)")
                      + f"; peak RSS {r['rss_peak_mib']:.0f} MiB", flush=True)
                if not hit:
                    success = False
                    break
            if success:
                if smallest is None:
                    smallest = (units, lr)
                break
        if smallest is not None and not args.lstm_all_sizes:
            break
    return runs, smallest


def _median(values):
    values = sorted(values)
    n = len(values)
    return None if not n else (values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1]
                                                                    + values[n // 2]))


def _row(name, params, per_seq, per_step, r, to99, final):
    print(f"{name:<24}{params:>10,}{per_seq:>12,.0f}{per_step:>13,.0f}"
          f"{r['rss_peak_mib']:>9.0f}M{r['rss_peak_mib'] - r['rss_baseline_mib']:>7.0f}M"
          f"{to99:>30}{final:>10.4f}")


def final_table(rsm, lstm_runs, smallest, args):
    """Prints the table of every run and the LSTM / RSM ratios."""
    print("\n" + "=" * 110)
    print("Embedded Reber grammar, MNIST 'same' glyphs: RSM vs the smallest LSTM (BPTT)")
    print("Training memory = floats held for credit assignment in one training step.")
    print("  RSM : " + RSM_FORMULA)
    print("  LSTM: " + LSTM_FORMULA)
    header = (f"{'model':<24}{'params':>10}{'floats/seq':>12}{'floats/step':>13}"
              f"{'peak RSS':>10}{'dRSS':>8}{'to 99%: symbols, wall':>30}{'final acc':>10}")
    print(header)
    print("-" * len(header))
    first = {}
    for variant, results in rsm.items():
        for r in results:
            hit = r["reached"].get("0.99")
            to99 = (f"{hit['time_steps'] * r['batch_size']:,}, {hit['wall_s'] / 60:.1f} min"
                    if hit else "-")
            name = f"{variant} c={r['hparams']['cells_per_group'][0]} seed {r['seed']}"
            _row(name, r["params"], r["floats_per_sample_step"], r["floats_per_training_step"],
                 r, to99, r["final_accuracy"])
            first.setdefault(variant, r)
    for r in lstm_runs:
        hit = r["reached"]
        to99 = (f"{hit['strings'] * r['mean_string_length']:,.0f}, {hit['wall_s'] / 60:.1f} min"
                if hit else "-")
        star = " *" if smallest and (r["units"], r["learning_rate"]) == tuple(smallest) else ""
        name = f"lstm u={r['units']} lr={r['learning_rate']:g} s{r['seed']}{star}"
        _row(name, r["params"], r["floats_per_string"], r["floats_per_training_step"], r, to99,
             r["final_accuracy"])
    print("floats/seq: RSM per stream (one time step, BPTT = 1), LSTM per string (mean padded "
          "length); floats/step: the whole batch of one training step; dRSS: peak RSS minus RSS "
          "after the imports; symbols: RSM time steps x streams, LSTM strings x mean length; "
          "wall: from the start of the run (build and tracing included); * = the smallest LSTM "
          "(and its learning rate) that reached the target with every seed.")
    if lstm_runs:
        r = lstm_runs[0]
        print(f"LSTM training: batches of {r['batch_size']} strings, padded length mean "
              f"{r['mean_padded_length']:.1f} (max {r['max_padded_length']}), mean string "
              f"length {r['mean_string_length']:.1f}; Adam; budget {r['max_strings']} strings "
              f"per run; test-state accuracy on {r['eval_strings']} fresh strings every "
              f"{r['eval_every']} batches.")
        if smallest is None:
            print(f"No LSTM size in {sorted({x['units'] for x in lstm_runs})} reached the "
                  f"target with every seed at any learning rate tried.")
    for variant, r in first.items():
        if r["update_schedule"] == "chunk":
            print(f"{variant}: update_schedule=chunk keeps the T={r['chunk_length']} steps of a "
                  f"chunk in one gradient tape: {r['floats_per_tape_as_run']:,} floats per "
                  f"training step as run (T x floats/step).")
    chosen = [r for r in lstm_runs
              if smallest and (r["units"], r["learning_rate"]) == tuple(smallest)]
    if not chosen or not first:
        return
    lstm = {k: _median([r[k] for r in chosen]) for k in
            ("params", "floats_per_string", "floats_per_training_step", "rss_peak_mib")}
    lstm_delta = _median([r["rss_peak_mib"] - r["rss_baseline_mib"] for r in chosen])
    print(f"\nLSTM / RSM ratios (LSTM u={smallest[0]}, lr {smallest[1]:g}; medians over its "
          f"{len(chosen)} seeds):")
    for variant, r in first.items():
        delta = r["rss_peak_mib"] - r["rss_baseline_mib"]
        print(f"  vs {variant}: parameters {lstm['params'] / r['params']:.4f}x; training memory "
              f"per sequence {lstm['floats_per_string'] / r['floats_per_sample_step']:.2f}x, "
              f"per training step "
              f"{lstm['floats_per_training_step'] / r['floats_per_training_step']:.3f}x "
              f"(LSTM batch {chosen[0]['batch_size']} strings, RSM {r['batch_size']} streams); "
              f"peak RSS {lstm['rss_peak_mib'] / r['rss_peak_mib']:.2f}x (above the imports "
              f"{lstm_delta / max(delta, 1e-9):.2f}x)")
        n = r["hparams"]["groups"][0] * r["hparams"]["cells_per_group"][0]
        same_cells = lstm_training_floats(n, r["input_dim"], r["num_classes"]) * \
            chosen[0]["mean_padded_length"]
        print(f"     for scale (formula only, not trained): an LSTM with as many cells as the "
              f"RSM (u = {n}) holds {same_cells:,.0f} floats per string = "
              f"{same_cells / r['floats_per_sample_step']:.1f}x the RSM's")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--json", help="also write every result to this JSON file")
    parser.add_argument("--from-json", nargs="+", metavar="FILE",
                        help="train nothing: print the table of results saved by earlier "
                             "--json runs (e.g. an RSM run and an LSTM search done apart)")
    parser.add_argument("--verbose", action="store_true", help="print the LSTM curves")
    g = parser.add_argument_group("RSM")
    g.add_argument("--rsm-seeds", type=int, nargs="+", default=[1234])
    g.add_argument("--rsm-time-steps", type=int, default=None,
                   help="budget in time steps (default: the definition's batches x chunk)")
    g.add_argument("--rsm-report-every", type=int, default=1200,
                   help="print the accuracy every this many time steps")
    g.add_argument("--rsm-run-to-limit", action="store_true",
                   help="do not stop at the workflow's target (watch stability)")
    g.add_argument("--rsm-hparams", nargs="*", default=[],
                   help="key=value overrides, values in YAML, e.g. predictor_hidden_size=[50] "
                        "(only to try the plumbing at small sizes)")
    g = parser.add_argument_group("LSTM")
    g.add_argument("--lstm-sizes", default="2,4,8,16,32,64,128",
                   help="hidden sizes to try, increasing")
    g.add_argument("--lstm-seeds", type=int, nargs="+", default=[0, 1, 2])
    g.add_argument("--lstm-all-sizes", action="store_true",
                   help="train every size, not only up to the first that reaches the target")
    g.add_argument("--lstm-batch-size", type=int, default=32)
    g.add_argument("--lstm-learning-rates", default="0.003,0.001,0.01",
                   help="Adam learning rates tried per size, in order")
    g.add_argument("--lstm-max-strings", type=int, default=200000,
                   help="training budget per run, in strings")
    g.add_argument("--lstm-eval-every", type=int, default=100,
                   help="batches between evaluations")
    g.add_argument("--lstm-eval-strings", type=int, default=2000)
    g.add_argument("--lstm-target", type=float, default=0.99)
    # internal: one run in this (child) process
    parser.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--units", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--lstm-learning-rate", type=float, default=0.001, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        if args.child == "lstm":
            result = child_lstm(args)
        else:
            args.variant = args.child
            result = child_rsm(args)
        with open(args.child_out, "w", encoding="utf-8") as f:
            json.dump(result, f)
        return result

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    args.lstm_sizes = [int(s) for s in args.lstm_sizes.split(",")]
    args.lstm_learning_rates = [float(s) for s in args.lstm_learning_rates.split(",")]
    if args.from_json:
        rsm, lstm_runs, smallest = {}, [], None
        for path in args.from_json:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            for variant, results in saved["rsm"].items():
                rsm.setdefault(variant, []).extend(results)
            lstm_runs += saved["lstm"]
            smallest = smallest or saved["smallest_lstm"]
        final_table(rsm, lstm_runs, smallest, args)
        return rsm, lstm_runs, smallest
    started = time.perf_counter()
    rsm = {}
    for variant in ("rsm", "rsm_original"):
        if variant in parts:
            rsm[variant] = run_rsm(args, variant)
    lstm_runs, smallest = run_lstm(args) if "lstm" in parts else ([], None)
    final_table(rsm, lstm_runs, smallest, args)
    print(f"total wall time {(time.perf_counter() - started) / 60:.1f} min")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rsm": rsm, "lstm": lstm_runs, "smallest_lstm": smallest,
                       "args": vars(args)}, f, indent=1)
    return rsm, lstm_runs, smallest


if __name__ == "__main__":
    main()
