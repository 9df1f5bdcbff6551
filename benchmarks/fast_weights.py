"""Training-step cost of FastWeightsCell (both implementations) against keras.layers.LSTM.

One training step (forward over the sequence, softmax cross-entropy on the last hidden state,
backward, Adam update) at the associative-retrieval size: batch 128, R = 50 hidden units,
sequence length 11 (K = 4), 37 input features. Every variant sits in `keras.layers.RNN` (the
LSTM is `keras.layers.LSTM`) with the same readout. Steps are compiled with `tf.function`; the
default is graph mode with ``jit_compile=False`` and the RNN while loop (the CPU path the
project's target refers to: attention form <= 1.5x the LSTM time).

Variants are interleaved: each repetition times every variant back to back in a rotating order,
after warm-up. The table gives the median ms per step of each variant and the median over
repetitions of the per-repetition ratio variant / LSTM, so load from other processes affects
both sides alike.

Usage::

    python benchmarks/fast_weights.py                      # graph mode, jit off, while loop
    python benchmarks/fast_weights.py --jit --unroll       # the configuration used for training
    python benchmarks/fast_weights.py --repeats 31 --steps 5
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pagi_rsm.layers import FastWeightsCell  # noqa: E402

BATCH, UNITS, LENGTH, FEATURES, CLASSES = 128, 50, 11, 37, 10
TARGET = 1.5  # attention form / LSTM


def _variants(unroll):
    """(name, recurrent-layer factory); the first is the baseline."""
    return [
        ("lstm", lambda: keras.layers.LSTM(UNITS, unroll=unroll)),
        ("fast_weights_attention", lambda: keras.layers.RNN(
            FastWeightsCell(UNITS, implementation="attention", max_length=LENGTH),
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
    rng = np.random.default_rng(0)
    x = tf.constant(np.eye(FEATURES, dtype="float32")[rng.integers(0, FEATURES,
                                                                     (BATCH, LENGTH))])
    y = tf.constant(rng.integers(0, CLASSES, BATCH))
    variants = [(name, make_step(factory(), jit)) for name, factory in _variants(unroll)]
    for _, step in variants:
        for _ in range(warmup):
            step(x, y)
    times = {name: [] for name, _ in variants}
    for rep in range(repeats):
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]
        for name, step in order:
            start = time.perf_counter()
            for _ in range(steps):
                loss = step(x, y)
            float(loss)  # wait for the result
            times[name].append((time.perf_counter() - start) / steps)
    base = times[variants[0][0]]
    rows = []
    for name, _ in variants:
        ratio = statistics.median(t / b for t, b in zip(times[name], base))
        rows.append((name, 1000 * statistics.median(times[name]), ratio))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per repetition")
    parser.add_argument("--jit", action="store_true", help="jit_compile=True (default off)")
    parser.add_argument("--unroll", action="store_true", help="unroll the 11 time steps")
    args = parser.parse_args()
    rows = run(args.repeats, args.steps, args.jit, args.unroll)
    print(f"training step, batch {BATCH}, R={UNITS}, length {LENGTH}, graph mode, "
          f"jit_compile={args.jit}, unroll={args.unroll}, {args.repeats} interleaved "
          f"repetitions x {args.steps} steps")
    print(f"{'variant':28s} {'median ms/step':>15s} {'ratio vs lstm':>14s}")
    for name, ms, ratio in rows:
        print(f"{name:28s} {ms:15.2f} {ratio:14.2f}")
    attention = dict((n, r) for n, _, r in rows)["fast_weights_attention"]
    verdict = "meets" if attention <= TARGET else "MISSES"
    print(f"attention / lstm = {attention:.2f} ({verdict} the target <= {TARGET})")


if __name__ == "__main__":
    main()
