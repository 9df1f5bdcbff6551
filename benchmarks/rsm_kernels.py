"""The kernels of an RSM training step, previous form vs current, side by side in one run.

At the paper's shapes (B = 400, g = 200, c = 6, n = 1200):

* ``selection``: 12 selections (one chunk) of `group_cell_mask` on [B, g, c] scores with k = 25:
  the previous form (`tf.math.top_k` + `one_hot` for the groups, `argmax` + `one_hot` for the
  cells) vs the explicit tie rule (k-th value threshold with an index-ordered tie fill, first
  maximum by a min over the cell index). Also checks that the masks are equal.
* ``recurrent``: 4 forward + kernel-gradient passes of R = r W_r with r holding k non-zeros per
  row, for k = 25, 12 and 2: the dense matmul, the previous sparse form (gather of the [B, k, n]
  rows of W_r, einsum; its gradient is IndexedSlices, densified here as Adam does) and
  `sparse_input_matmul` (one sparse-dense matmul).
* ``adam``: 12 Adam updates (one chunk, step schedule) of the memory layer's variables
  (W_r, W_f, W_d, b_d): `keras.optimizers.Adam` vs `pagi_rsm.optimizers.FusedAdam`; prints the
  largest difference of the variables after the 12 updates.

Each repetition times every variant and a 2048³ matmul (the load reference) back to back;
medians [quartiles] over repetitions.

Usage::

    python benchmarks/rsm_kernels.py                  # 9 repetitions
    python benchmarks/rsm_kernels.py --parts adam --repeats 15
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from side_by_side import (describe, interleaved, machine_line, matmul_variant,  # noqa: E402
                          ratios)
from pagi_rsm.ops import rsm as rsm_ops  # noqa: E402
from pagi_rsm.optimizers import FusedAdam  # noqa: E402

B, G, C, K, D, T = 400, 200, 6, 25, 784, 12
N = G * C


def previous_group_cell_mask(rho, k):
    """The previous form of `group_cell_mask` (top_k + one_hot, argmax + one_hot)."""
    _, indices = tf.math.top_k(tf.reduce_max(rho, axis=-1), k=k, sorted=False)
    group_mask = tf.reduce_sum(tf.one_hot(indices, rho.shape[1], dtype=rho.dtype), axis=-2)
    best_cell = tf.one_hot(tf.argmax(rho, axis=-1), rho.shape[-1], dtype=rho.dtype)
    return best_cell * group_mask[..., None]


def previous_sparse_matmul(inputs, kernel, k):
    """The previous sparse recurrent path: gather the k rows of each sample, weighted sum."""
    _, index = tf.math.top_k(tf.abs(inputs), k=k, sorted=False)
    values = tf.gather(inputs, index, batch_dims=1)
    return tf.einsum("bk,bkn->bn", values, tf.gather(kernel, index))


def _report(title, times, variants, base, flops):
    print(f"{title} ({machine_line(times, flops)})")
    for label, _ in variants:
        line = f"  {label:<22} {describe(times[label]['wall'], ' ms', 1)}"
        if label != base:
            line += f"  / {base}: {describe(ratios(times, label, base))}"
        print(line)


def selection(repeats):
    rho = tf.constant(np.random.default_rng(0).normal(size=(B, G, C)).astype("float32"))
    ties = tf.constant(np.random.default_rng(1).integers(0, 3, (B, G, C)).astype("float32"))
    for scores in (rho, ties):
        same = np.array_equal(previous_group_cell_mask(scores, K),
                              rsm_ops.group_cell_mask(scores, K))
        print(f"selection: masks equal to the previous form ({'random' if scores is rho else 'tied'}"
              f" scores): {same}")

    def chunk(fn):
        return tf.function(lambda: tf.add_n([tf.reduce_sum(fn(rho + float(t), K))
                                             for t in range(T)]))

    variants = [("previous", chunk(previous_group_cell_mask)),
                ("explicit_ties", chunk(rsm_ops.group_cell_mask))]
    label, matmul, flops = matmul_variant()
    times = interleaved(variants + [(label, matmul)], repeats, steps=3)
    _report(f"selection x{T}, [B={B}, g={G}, c={C}], k={K}", times, variants, "previous", flops)


def recurrent(repeats):
    kernel = tf.Variable(tf.random.normal((N, N), seed=0) * 0.03)
    rng = np.random.default_rng(0)
    for k in (25, 12, 2):
        r = np.zeros((B, N), "float32")
        for b in range(B):
            r[b, rng.choice(G, k, replace=False) * C + rng.integers(0, C, k)] = rng.uniform(
                0.1, 1, k)
        r = tf.constant(r / r.sum(axis=1, keepdims=True))

        def passes(fn, r=r, k=k):
            @tf.function
            def run():
                total = 0.0
                for _ in range(4):
                    with tf.GradientTape() as tape:
                        out = fn(r, kernel, k)
                        loss = tf.reduce_sum(out * out)
                    total += tf.reduce_sum(tf.convert_to_tensor(tape.gradient(loss, kernel)))
                return total
            return run

        variants = [("dense", passes(lambda r, w, k: tf.matmul(r, w))),
                    ("previous_gather", passes(previous_sparse_matmul)),
                    ("sparse_input_matmul", passes(rsm_ops.sparse_input_matmul))]
        label, matmul, flops = matmul_variant()
        times = interleaved(variants + [(label, matmul)], repeats, steps=2)
        _report(f"recurrent x4 fwd+grad, B={B}, n={N}, k={k} (k/n = {100 * k / N:.2f}%)",
                times, variants, "dense", flops)


def adam(repeats):
    shapes = [(N, N), (D, G), (G, D), (D,)]
    grads = [tf.constant(np.random.default_rng(i).normal(size=s).astype("float32"))
             for i, s in enumerate(shapes)]

    def make(cls):
        variables = [keras.Variable(np.random.default_rng(9).normal(size=s).astype("float32"))
                     for s in shapes]
        opt = cls(5e-4)
        opt.build(variables)

        @tf.function
        def run():
            for t in range(T):
                opt.apply([g * (1.0 + 0.01 * t) for g in grads], variables)
            return variables[0][0, 0]
        return run, variables

    keras_step, keras_vars = make(keras.optimizers.Adam)
    fused_step, fused_vars = make(FusedAdam)
    keras_step()
    fused_step()
    diff = max(float(np.max(np.abs(a.numpy() - b.numpy())))
               for a, b in zip(keras_vars, fused_vars))
    print(f"adam: largest |keras - fused| after {T} updates: {diff:.2e}")
    variants = [("keras_adam", keras_step), ("fused_adam", fused_step)]
    label, matmul, flops = matmul_variant()
    times = interleaved(variants + [(label, matmul)], repeats)
    _report(f"adam x{T} updates of W_r, W_f, W_d, b_d", times, variants, "keras_adam", flops)


PARTS = {"selection": selection, "recurrent": recurrent, "adam": adam}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=list(PARTS))
    args = parser.parse_args(argv)
    for part in args.parts:
        PARTS[part](args.repeats)


if __name__ == "__main__":
    main()
