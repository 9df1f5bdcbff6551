"""Training-step cost of the sparse layers against their dense counterparts, measured side by side.

Each case compares a model with a sparse layer against the same model with the dense layer it
replaces, on one training step (forward + backward + Adam update) compiled with `tf.function`
(graph mode, `jit_compile=False`: the CPU path). Variants are interleaved (each repetition runs
every variant back to back, in a rotating order) and timed after warm-up. The table gives the
median ms per step of each variant and the median over repetitions of the per-repetition ratio
sparse / dense, so load from other processes affects both sides alike; every figure is given
with its quartiles over the repetitions, and a 2048³ float32 matmul timed among the variants of
every case shows the load the machine was under (see `side_by_side.machine_line`).

Cases (targets from the project brief):

* ``dense_kwinners``: Dense(2048) -> KWinners(percent_on=0.05) vs Dense(2048) -> ReLU, batch 256,
  input 2048; target <= 1.15x.
* ``conv_kwinners2d``: Conv2D(64, 3x3, same) -> KWinners2D(percent_on=0.1), local and global, vs
  Conv2D(64) -> ReLU, batch 64, 32x32x64 input; target <= 1.5x.
* ``sparse_dense``: SparseDense(2048, sparsity=0.9) vs Dense(2048), batch 256, input 2048;
  target <= 1.2x.

Usage::

    python benchmarks/sparse_layers.py                 # 9 repetitions
    python benchmarks/sparse_layers.py --repeats 21 --steps 1
    python benchmarks/sparse_layers.py --profile       # kernel time per layer and op type
    python benchmarks/sparse_layers.py --cases dense_kwinners sparse_dense
"""
import argparse
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from op_profile import op_profile, print_profile, scope_path  # noqa: E402
from side_by_side import (describe, interleaved, machine_line, matmul_variant, median,  # noqa: E402
                          ratios)
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


def run_case(name, repeats, steps, warmup):
    """Per variant: wall ms per step, and the per-repetition ratios to the case's baseline.

    Every repetition times each variant back to back (rotating the order) and the matmul
    reference, so each ratio compares measurements taken seconds apart; medians over
    repetitions discard bursts of load from other processes. Ratios of process CPU time are
    reported too: on a shared machine they are less sensitive to waiting for a core.
    """
    batch, shape, variants, target = CASES[name]
    keras.utils.set_random_seed(0)
    x = tf.constant(np.random.default_rng(0).standard_normal((batch,) + shape), tf.float32)
    fns = [(label, (lambda step=make_step(factory()): step(x))) for label, factory in variants]
    matmul_label, matmul, matmul_flops = matmul_variant()
    times = interleaved(fns + [(matmul_label, matmul)], repeats, steps=steps, warmup=warmup)
    base = fns[0][0]
    rows = []
    for label, _ in fns[1:]:
        rows.append(dict(case=name, base=base, base_ms=times[base]["wall"], label=label,
                         ms=times[label]["wall"], ratio=ratios(times, label, base),
                         cpu_ratio=ratios(times, label, base, "cpu"), target=target,
                         machine=machine_line(times, matmul_flops)))
    return rows


def profile_case(name, steps=5):
    """Kernel time of each variant's training step per layer scope and op type."""
    batch, shape, variants, _ = CASES[name]
    x = tf.constant(np.random.default_rng(0).standard_normal((batch,) + shape), tf.float32)
    for label, factory in variants:
        model = factory()
        step = make_step(model)
        for _ in range(2):
            step(x).numpy()
        categories = [(layer.name, f"(^|/){re.escape(scope_path(layer.name))}/")
                      for layer in model.layers]
        categories.append(("optimizer update", r"(^|/)adam/"))
        print_profile(f"{name}: {label}", *op_profile(lambda: step(x), categories, steps))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9,
                        help="interleaved repetitions per variant (medians taken); default 9")
    parser.add_argument("--steps", type=int, default=1,
                        help="training steps timed per repetition; default 1")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--profile", action="store_true",
                        help="print the kernel time per layer and op type instead")
    args = parser.parse_args(argv)
    if args.profile:
        for name in args.cases:
            profile_case(name)
        return None
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}; tf.function (jit off), "
          f"repeats={args.repeats}, steps/repeat={args.steps}, warmup={args.warmup}")
    rows = []
    for name in args.cases:
        rows += run_case(name, args.repeats, args.steps, args.warmup)
    for name in args.cases:
        case_rows = [r for r in rows if r["case"] == name]
        print(f"{name} ({case_rows[0]['machine']})")
        print(f"  {case_rows[0]['base']:<24} {describe(case_rows[0]['base_ms'], ' ms', 2)}")
        for r in case_rows:
            result = "PASS" if median(r["ratio"]) <= r["target"] else "MISS"
            print(f"  {r['label']:<24} {describe(r['ms'], ' ms', 2)}  ratio "
                  f"{describe(r['ratio'], 'x', 3)}  cpu ratio {describe(r['cpu_ratio'], 'x', 3)}"
                  f"  target <= {r['target']:.2f}x {result}")
    print("ms: wall time per step; ratio: variant / baseline wall time per repetition (PASS if "
          "the median <= target); cpu ratio: the same with process CPU time; median "
          "[quartiles] over the repetitions.")
    return rows


if __name__ == "__main__":
    main()
