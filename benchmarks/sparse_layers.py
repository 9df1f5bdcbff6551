"""Training-step cost of the sparse layers against their dense counterparts, measured side by side.

Each case compares a model with a sparse layer against the same model with the dense layer it
replaces, on one training step (forward + backward + Adam update) compiled with `tf.function`
(graph mode, `jit_compile=False`: the CPU path). Variants are interleaved (each repetition runs
every variant back to back, in a rotating order) and timed after warm-up. The table gives the
median ms per step of each variant and the median over repetitions of the per-repetition ratio
sparse / dense, so load from other processes affects both sides alike.

Cases (targets from the project brief):

* ``dense_kwinners``: Dense(2048) -> KWinners(percent_on=0.05) vs Dense(2048) -> ReLU, batch 256,
  input 2048; target <= 1.15x.
* ``conv_kwinners2d``: Conv2D(64, 3x3, same) -> KWinners2D(percent_on=0.1), local and global, vs
  Conv2D(64) -> ReLU, batch 64, 32x32x64 input; target <= 1.5x.
* ``sparse_dense``: SparseDense(2048, sparsity=0.9) vs Dense(2048), batch 256, input 2048;
  target <= 1.2x.

Usage::

    python benchmarks/sparse_layers.py --repeats 21 --steps 1
    python benchmarks/sparse_layers.py --cases dense_kwinners sparse_dense
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pagi_rsm.layers import KWinners, KWinners2D, SparseDense  # noqa: E402


def _dense_relu():
    return keras.Sequential([keras.Input((2048,)), keras.layers.Dense(2048),
                             keras.layers.ReLU()])


def _dense_kwinners():
    return keras.Sequential([keras.Input((2048,)), keras.layers.Dense(2048),
                             KWinners(percent_on=0.05)])


def _conv(head):
    return lambda: keras.Sequential([keras.Input((32, 32, 64)),
                                     keras.layers.Conv2D(64, 3, padding="same"), head()])


def _plain_dense():
    return keras.Sequential([keras.Input((2048,)), keras.layers.Dense(2048)])


def _sparse_dense():
    return keras.Sequential([keras.Input((2048,)), SparseDense(2048, sparsity=0.9)])


# name -> (batch, input shape, [(variant, model factory)], target ratio); the first variant is
# the baseline, the others are compared with it.
CASES = {
    "dense_kwinners": (256, (2048,), [("dense+relu", _dense_relu),
                                      ("dense+kwinners", _dense_kwinners)], 1.15),
    "conv_kwinners2d": (64, (32, 32, 64), [
        ("conv+relu", _conv(keras.layers.ReLU)),
        ("conv+kwinners2d_local", _conv(lambda: KWinners2D(percent_on=0.1, local=True))),
        ("conv+kwinners2d_global", _conv(lambda: KWinners2D(percent_on=0.1, local=False)))],
        1.5),
    "sparse_dense": (256, (2048,), [("dense", _plain_dense),
                                    ("sparse_dense(0.9)", _sparse_dense)], 1.2),
}


def make_step(model):
    """One compiled training step: forward, MSE to zeros, backward, Adam update."""
    optimizer = keras.optimizers.Adam(1e-4)

    @tf.function(jit_compile=False)
    def step(x):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = tf.reduce_mean(tf.square(out))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def _timed(step, x, steps):
    """(wall ms, process CPU ms) per step over `steps` consecutive steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = step(x)
    loss.numpy()  # wait for the last step
    return ((time.perf_counter() - wall) / steps * 1e3,
            (time.process_time() - cpu) / steps * 1e3)


def run_case(name, repeats, steps, warmup):
    """Median ms per step of each variant and the median of the per-repetition ratios.

    Every repetition times each variant back to back (rotating the order), so each ratio
    compares measurements taken seconds apart; the median over repetitions discards bursts of
    load from other processes. Ratios of process CPU time are reported too: on a shared machine
    they are less sensitive to waiting for a core than wall time.
    """
    batch, shape, variants, target = CASES[name]
    keras.utils.set_random_seed(0)
    x = tf.constant(np.random.default_rng(0).standard_normal((batch,) + shape), tf.float32)
    fns = []
    for label, factory in variants:
        step = make_step(factory())
        for _ in range(warmup):
            step(x).numpy()
        fns.append((label, step))
    wall = {label: [] for label, _ in fns}
    cpu = {label: [] for label, _ in fns}
    for rep in range(repeats):
        shift = rep % len(fns)
        for label, step in fns[shift:] + fns[:shift]:  # rotate the order every repetition
            w, c = _timed(step, x, steps)
            wall[label].append(w)
            cpu[label].append(c)
    base = fns[0][0]
    rows = []
    for label, _ in fns[1:]:
        wall_ratio = statistics.median(v / b for v, b in zip(wall[label], wall[base]))
        cpu_ratio = statistics.median(v / b for v, b in zip(cpu[label], cpu[base]))
        rows.append((name, base, statistics.median(wall[base]), label,
                     statistics.median(wall[label]), wall_ratio, cpu_ratio, target))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21,
                        help="interleaved repetitions per variant (medians taken); default 21")
    parser.add_argument("--steps", type=int, default=1,
                        help="training steps timed per repetition; default 1")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args(argv)
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}; tf.function (jit off), "
          f"repeats={args.repeats}, steps/repeat={args.steps}, warmup={args.warmup}")
    rows = []
    for name in args.cases:
        rows += run_case(name, args.repeats, args.steps, args.warmup)
    header = (f"{'case':<24} {'baseline':<11} {'ms/step':>8}  {'variant':<24} {'ms/step':>8} "
              f"{'ratio':>6} {'cpu ratio':>9} {'target':>7}  result")
    print(header)
    print("-" * len(header))
    for name, base, base_ms, label, ms, ratio, cpu_ratio, target in rows:
        result = "PASS" if ratio <= target else "MISS"
        print(f"{name:<24} {base:<11} {base_ms:8.2f}  {label:<24} {ms:8.2f} {ratio:6.3f} "
              f"{cpu_ratio:9.3f} {target:6.2f}x  {result}")
    print("ms/step: median wall time; ratio: median over repetitions of variant / baseline wall "
          "time (PASS if <= target); cpu ratio: the same with process CPU time.")
    return rows


if __name__ == "__main__":
    main()
