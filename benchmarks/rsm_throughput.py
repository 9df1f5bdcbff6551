"""RSM training-step throughput, side by side with an LSTM and a large matmul, in one run.

At the paper's embedded-Reber shapes (batch B=400, g=200 groups × c=6 cells = 1200 cells,
k=25, input 784, predictor hidden 500, 7 classes) and a chunk of T=12 time steps:

* RSM training step (`SequenceMemoryStack.train_step` on a chunk of T steps, local losses):
  `rsm_dense` is the default (one Adam update per time step, dense recurrent matmul),
  `rsm_sparse` the same with the sparse recurrent path (only the k·B rows of W_r of the active
  cells, valid when ε = 0), `rsm_chunk` one update per chunk; vs a Keras LSTM with the same
  number of cells (1200) trained by BPTT over the same T steps (readout Dense(7), Adam): ratio
  LSTM time / RSM time (target ≥ 3×).
* Achieved FLOP/s of the RSM step, counting the dense formulation, over the FLOP/s of a
  2048×2048×2048 matmul measured in the same run (target ≥ 60%).

Usage::

    python benchmarks/rsm_throughput.py --repeats 7
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from side_by_side import interleaved, median, median_ratio  # noqa: E402
from pagi_rsm.components.sequence_memory_stack import SequenceMemoryStack  # noqa: E402

B, T, D, G, C, K, H, CLASSES = 400, 12, 784, 200, 6, 25, 500, 7
N = G * C


def rsm_dense_flops():
    """FLOPs of one RSM chunk step in the dense formulation (multiply-add = 2 FLOPs).

    Forward per time step: F = x W_f (2BDg), R = r W_r (2Bn²), decoder (2BgD), predictor
    (2B(nH + HK)). Backward: one weight-gradient matmul per forward matmul (same cost), plus
    the input gradients that are needed: decoder → y (2BgD) and predictor output → hidden
    (2BHK). States, masks and the published code are stop-gradient, so no other input
    gradients exist.
    """
    forward = 2 * B * (D * G + N * N + G * D + N * H + H * CLASSES)
    backward = forward + 2 * B * (G * D + H * CLASSES)
    return T * (forward + backward)


def make_batch(rng):
    labels = rng.integers(0, CLASSES, (B, T)).astype("int32")
    glyphs = rng.uniform(0, 1, (CLASSES, D)).astype("float32")
    reset = (rng.uniform(size=(B, T)) < 0.08).astype("float32")
    return dict(inputs=tf.constant(glyphs[labels]), labels=tf.constant(labels),
                reset=tf.constant(reset), test=tf.constant(np.zeros((B, T), "float32")))


def rsm_step(batch, path, schedule):
    keras.utils.set_random_seed(0)
    model = SequenceMemoryStack(
        input_dim=D, num_classes=CLASSES, batch_size=B, groups=[G], cells_per_group=[C],
        active_groups=[K], inhibition_decay=[0.98], predictor_hidden_size=[H],
        predictor_nonlinearity=["none", "none"], recurrent_path=[path],
        update_schedule=schedule)
    model.compile()
    return tf.function(lambda: model.train_step(batch)["loss"], jit_compile=False)


def lstm_step(batch):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((T, D)), keras.layers.LSTM(N, return_sequences=True),
                              keras.layers.Dense(CLASSES)])
    optimizer = keras.optimizers.Adam(5e-4)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=False)
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(batch["labels"], model(batch["inputs"], training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step, model.count_params()


def matmul_step(size=2048):
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    fn = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    return fn, 2 * size ** 3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    batch = make_batch(np.random.default_rng(0))
    lstm, lstm_params = lstm_step(batch)
    matmul, matmul_flops = matmul_step()
    variants = [("rsm_dense", rsm_step(batch, "dense", "step")),
                ("rsm_sparse", rsm_step(batch, "sparse", "step")),
                ("rsm_chunk", rsm_step(batch, "dense", "chunk")),
                ("lstm_1200", lstm), ("matmul_2048", matmul)]
    times = interleaved(variants, args.repeats, warmup=args.warmup)
    print(f"TensorFlow {tf.__version__}; B={B} T={T} g={G} c={C} k={K} D={D}; "
          f"repeats={args.repeats} (medians of interleaved repetitions)")
    for label, _ in variants:
        print(f"  {label:<12} {median(times[label]['wall']):9.1f} ms/step")
    matmul_rate = matmul_flops / (median(times["matmul_2048"]["wall"]) / 1e3)
    flops = rsm_dense_flops()
    print(f"matmul 2048^3: {matmul_rate / 1e9:.1f} GFLOP/s")
    print(f"RSM dense-formulation FLOPs per chunk step: {flops / 1e9:.2f} GFLOP; "
          f"LSTM parameters {lstm_params:,}")
    results = {}
    for label in ("rsm_dense", "rsm_sparse", "rsm_chunk"):
        speedup = median_ratio(times, "lstm_1200", label)
        rate = flops / (median(times[label]["wall"]) / 1e3)
        results[label] = (speedup, rate / matmul_rate)
        print(f"{label:<11} LSTM/RSM time ratio {speedup:5.2f}x (target >= 3: "
              f"{'PASS' if speedup >= 3 else 'MISS'});  achieved {rate / 1e9:6.1f} GFLOP/s = "
              f"{100 * rate / matmul_rate:5.1f}% of matmul (target >= 60%: "
              f"{'PASS' if rate >= 0.6 * matmul_rate else 'MISS'})")
    faster = min(("rsm_dense", "rsm_sparse"), key=lambda v: median(times[v]["wall"]))
    print(f"sparse/dense time ratio {median_ratio(times, 'rsm_sparse', 'rsm_dense'):.3f}; "
          f"faster: {faster} (recurrent_path='auto' takes the dense path)")
    return results


if __name__ == "__main__":
    main()
