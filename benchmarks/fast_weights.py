"""Training-step cost of FastWeightsCell (both implementations) against keras.layers.LSTM.

One training step (forward over the sequence, softmax cross-entropy on the last hidden state,
backward, Adam update) at the associative-retrieval size: batch 128, R = 50 hidden units,
sequence length 11 (K = 4), 37 input features. Every variant sits in `keras.layers.RNN` (the
LSTM is `keras.layers.LSTM`) with the same readout. Steps are compiled with `tf.function`; the
default is graph mode with ``jit_compile=False`` and the RNN while loop (the CPU path the
project's target refers to: attention form <= 1.5x the LSTM time).

Variants are timed side by side with the shared helper `side_by_side.interleaved` (each
repetition times every variant back to back in a rotating order, after warm-up). The table gives
the median ms per step of each variant and the median over repetitions of the per-repetition
ratio variant / LSTM, so load from other processes affects both sides alike.

Threads: by default TensorFlow splits large ops over its intra-op thread pool. On a CPU that
other jobs keep busy, waiting for those threads can cost more than the split saves, so the
ratio then measures the machine's load as well as the cell. ``--intra_op_threads 1`` runs
every op on the calling thread (both sides alike); the line printed first says which setting
was used. Report both on a shared machine.

What the attention form costs here: per time step two broadcast products reduced over one axis
forward and three backward over the `[B, L, H]` history, plus one scatter writing h(t) into the
ring buffer (`pagi_rsm.ops.fast_weights.write_history`). Keeping the history in time order
instead (L states stacked every step) measured 1.37-1.56x the LSTM on a quiet AVX2 machine. The
two sums over the history were batched matrix-vector products until oneDNN, on a quiet 2-core
AVX-512 machine, spread those tiny products over its threads: 1.98-2.04x the LSTM there
(1.24x with one intra-op thread), 1.36-1.43x with the broadcast form (docs/performance.md).

Usage::

    python benchmarks/fast_weights.py                      # graph mode, jit off, while loop
    python benchmarks/fast_weights.py --intra_op_threads 1 # no intra-op thread pool
    python benchmarks/fast_weights.py --jit --unroll       # the configuration used for training
    python benchmarks/fast_weights.py --repeats 31 --steps 5
    python benchmarks/fast_weights.py --profile            # kernel time per scope and op type
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from op_profile import op_profile, print_profile  # noqa: E402
from side_by_side import (describe, interleaved, machine_line, matmul_variant, median,  # noqa: E402
                          ratios)
from pagi_rsm.layers import FastWeightsCell  # noqa: E402

BATCH, UNITS, LENGTH, FEATURES, CLASSES = 128, 50, 11, 37, 10
TARGET = 1.5  # attention form / LSTM


def _variants(unroll):
    """(name, recurrent-layer factory); the first is the baseline."""
    return [
        ("lstm", lambda: keras.layers.LSTM(UNITS, unroll=unroll)),
        ("fast_weights_attention", lambda: keras.layers.RNN(
            # LENGTH - 1 past states: exact from the zero initial state (h(0) = 0 adds nothing;
            # tests/test_fast_weights.py::test_attention_history_window)
            FastWeightsCell(UNITS, implementation="attention", max_length=LENGTH - 1),
            unroll=unroll)),
        ("fast_weights_explicit", lambda: keras.layers.RNN(
            FastWeightsCell(UNITS, implementation="explicit"), unroll=unroll)),
        ("rnn_ln (eta=0)", lambda: keras.layers.RNN(
            FastWeightsCell(UNITS, fast_learning_rate=0.0), unroll=unroll)),
    ]


def make_step(recurrent, jit):
    model = keras.Sequential([keras.Input((LENGTH, FEATURES)), recurrent,
                              keras.layers.Dense(CLASSES)])
    optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    return step


def run(repeats, steps, jit, unroll, warmup=3):
    """Times every variant; returns [(name, median ms per step, median ratio vs lstm)]."""
    rng = np.random.default_rng(0)
    x = tf.constant(np.eye(FEATURES, dtype="float32")[rng.integers(0, FEATURES,
                                                                     (BATCH, LENGTH))])
    y = tf.constant(rng.integers(0, CLASSES, BATCH))
    variants = []
    for name, factory in _variants(unroll):
        step = make_step(factory(), jit)
        variants.append((name, lambda step=step: step(x, y)))
    matmul_label, matmul, matmul_flops = matmul_variant()
    times = _with_matmul(variants, matmul_label, matmul, repeats, steps, warmup)
    base = variants[0][0]
    rows = [(name, times[name]["wall"], ratios(times, name, base)) for name, _ in variants]
    return rows, machine_line(times, matmul_flops)


def _with_matmul(variants, matmul_label, matmul, repeats, steps, warmup):
    """`interleaved` with `steps` calls per repetition, the matmul reference called once."""
    def repeated(step):
        def run():
            out = None
            for _ in range(steps):
                out = step()
            return out
        return run
    times = interleaved([(n, repeated(f)) for n, f in variants] + [(matmul_label, matmul)],
                        repeats, steps=1, warmup=warmup)
    for name, _ in variants:
        times[name] = {kind: [v / steps for v in values]
                       for kind, values in times[name].items()}
    return times


def profile(jit, unroll, steps=5):
    """Kernel time of each variant's training step per scope (recurrent layer, readout, Adam)."""
    rng = np.random.default_rng(0)
    x = tf.constant(np.eye(FEATURES, dtype="float32")[rng.integers(0, FEATURES,
                                                                     (BATCH, LENGTH))])
    y = tf.constant(rng.integers(0, CLASSES, BATCH))
    categories = [("recurrent layer", r"(^|/)(lstm|rnn)/"), ("readout", r"(^|/)dense/"),
                  ("optimizer update", r"(^|/)adam/"), ("loss", r"(^|/)sparse_categorical")]
    for name, factory in _variants(unroll):
        step = make_step(factory(), jit)
        for _ in range(2):
            step(x, y).numpy()
        print_profile(name, *op_profile(lambda step=step: step(x, y), categories, steps),
                      top_types=6)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per repetition")
    parser.add_argument("--jit", action="store_true", help="jit_compile=True (default off)")
    parser.add_argument("--unroll", action="store_true", help="unroll the 11 time steps")
    parser.add_argument("--intra_op_threads", type=int, default=0,
                        help="TensorFlow intra-op threads (default 0: TensorFlow's choice)")
    parser.add_argument("--profile", action="store_true",
                        help="print the kernel time per scope and op type instead")
    args = parser.parse_args()
    if args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    if args.profile:
        profile(args.jit, args.unroll)
        return
    rows, machine = run(args.repeats, args.steps, args.jit, args.unroll)
    print(f"training step, batch {BATCH}, R={UNITS}, length {LENGTH}, graph mode, "
          f"jit_compile={args.jit}, unroll={args.unroll}, intra-op threads "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}, "
          f"{args.repeats} interleaved repetitions x {args.steps} steps")
    print(machine)
    print(f"{'variant':28s} {'ms/step, median [quartiles]':>30s} {'ratio vs lstm':>22s}")
    for name, ms, ratio in rows:
        print(f"{name:28s} {describe(ms, '', 2):>30s} {describe(ratio):>22s}")
    attention = median(dict((n, r) for n, _, r in rows)["fast_weights_attention"])
    verdict = "meets" if attention <= TARGET else "MISSES"
    print(f"attention / lstm = {attention:.2f} ({verdict} the target <= {TARGET})")


if __name__ == "__main__":
    main()
