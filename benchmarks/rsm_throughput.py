"""RSM training-step throughput, side by side with an LSTM and a large matmul, in one run.

At the paper's embedded-Reber shapes (batch B=400, g=200 groups × c=6 cells = 1200 cells,
k=25, input 784, predictor hidden 500, 7 classes) and a chunk of T=12 time steps:

* RSM training step (`SequenceMemoryStack.train_step` on a chunk of T steps, local losses):
  `rsm_dense` is the default (one Adam update per time step, dense recurrent matmul),
  `rsm_sparse` the same with the sparse recurrent path (only the k·B non-zero entries of the
  recurrent input, valid when ε = 0), `rsm_chunk` one update per chunk; vs a Keras LSTM with
  the same number of cells (1200) trained by BPTT over the same T steps (readout Dense(7),
  Adam): ratio LSTM time / RSM time (target ≥ 3×).
* Achieved FLOP/s of the RSM step, counting the dense formulation, over the FLOP/s of a
  2048×2048×2048 matmul measured in the same run (target ≥ 60%; chunk schedule ≥ 70%).
* The recurrent paths at k = 2 (k/n = 0.17%): `rsm_dense_k2` vs `rsm_sparse_k2` (target:
  sparse faster) and which one `recurrent_path="auto"` picks at k = 25 and k = 2.

Every figure is the median over interleaved repetitions with its quartiles; the matmul rate of
the same run is printed first: it shows the load the machine was under.

``--profile`` prints, instead, where one training step's kernel time goes (TensorFlow
profiler, grouped by the name scopes of `RSMCell.step` and `SequenceMemoryStack`; see
op_profile.py).

Usage::

    python benchmarks/rsm_throughput.py               # 9 repetitions
    python benchmarks/rsm_throughput.py --profile
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


def rsm_model(path, schedule, k=K):
    keras.utils.set_random_seed(0)
    model = SequenceMemoryStack(
        input_dim=D, num_classes=CLASSES, batch_size=B, groups=[G], cells_per_group=[C],
        active_groups=[k], inhibition_decay=[0.98], predictor_hidden_size=[H],
        predictor_nonlinearity=["none", "none"], recurrent_path=[path],
        update_schedule=schedule)
    model.compile()
    return model


def rsm_step(batch, path, schedule, k=K):
    model = rsm_model(path, schedule, k)
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


# Categories of the profile: (label, regex on the op's scope path, see op_profile.scope_path).
CATEGORIES = [
    ("feed-forward", r"(^|/)feed_forward/"), ("recurrent", r"(^|/)recurrent/"),
    ("feedback", r"(^|/)feedback/"), ("selection (top-k, mask)", r"(^|/)selection/"),
    ("activation", r"(^|/)activation/"), ("decoder", r"(^|/)decoder/"),
    ("memory loss", r"^memory/loss/"), ("inhibition and state", r"^memory/state/"),
    ("predictor", r"^predictor/"), ("predictor loss", r"^predictor_loss/"),
    ("optimizer updates", r"^update/"), ("statistics", r"^statistics/"),
    ("metrics", r"^metrics/"),
]


def profile(batch, steps):
    for label, step in (("rsm_dense (step schedule)", rsm_step(batch, "dense", "step")),
                        ("rsm_chunk (chunk schedule)", rsm_step(batch, "dense", "chunk")),
                        ("rsm_sparse (step schedule)", rsm_step(batch, "sparse", "step"))):
        for _ in range(2):
            step().numpy()
        wall = interleaved([(label, step)], steps)[label]["wall"]
        per_category, per_type = op_profile(step, CATEGORIES, steps=steps)
        print_profile(f"{label}, B={B} T={T} g={G} c={C} k={K}", per_category, per_type,
                      wall_ms=median(wall))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--profile", action="store_true",
                        help="print the per-op profile of one step instead of the timings")
    args = parser.parse_args(argv)
    batch = make_batch(np.random.default_rng(0))
    if args.profile:
        profile(batch, steps=3)
        return None
    lstm, lstm_params = lstm_step(batch)
    matmul_label, matmul, matmul_flops = matmul_variant()
    variants = [("rsm_dense", rsm_step(batch, "dense", "step")),
                ("rsm_sparse", rsm_step(batch, "sparse", "step")),
                ("rsm_chunk", rsm_step(batch, "dense", "chunk")),
                ("rsm_dense_k2", rsm_step(batch, "dense", "step", k=2)),
                ("rsm_sparse_k2", rsm_step(batch, "sparse", "step", k=2)),
                ("lstm_1200", lstm), (matmul_label, matmul)]
    times = interleaved(variants, args.repeats, warmup=args.warmup)
    print(f"TensorFlow {tf.__version__}; B={B} T={T} g={G} c={C} k={K} D={D}; "
          f"repeats={args.repeats}: medians [quartiles] of interleaved repetitions")
    print(machine_line(times, matmul_flops))
    for label, _ in variants:
        print(f"  {label:<13} {describe(times[label]['wall'], ' ms/step', 1)}")
    matmul_rate = [matmul_flops / (ms / 1e3) for ms in times[matmul_label]["wall"]]
    print(f"RSM dense-formulation FLOPs per chunk step: {rsm_dense_flops() / 1e9:.2f} GFLOP; "
          f"LSTM parameters {lstm_params:,}")
    results = {}
    for label, target in (("rsm_dense", 0.6), ("rsm_sparse", 0.6), ("rsm_chunk", 0.7)):
        speedup = ratios(times, "lstm_1200", label)
        # Per repetition: achieved FLOP/s over the matmul's FLOP/s of the same repetition.
        share = [rsm_dense_flops() / (ms / 1e3) / rate
                 for ms, rate in zip(times[label]["wall"], matmul_rate)]
        results[label] = (median(speedup), median(share))
        print(f"{label:<11} LSTM/RSM time ratio {describe(speedup, 'x')} (target >= 3: "
              f"{'PASS' if median(speedup) >= 3 else 'MISS'}); achieved "
              f"{describe([100 * v for v in share], '%', 1)} of the matmul's FLOP/s (target >= "
              f"{100 * target:.0f}%: {'PASS' if median(share) >= target else 'MISS'})")
    for dense, sparse, k in (("rsm_dense", "rsm_sparse", K), ("rsm_dense_k2", "rsm_sparse_k2", 2)):
        ratio = ratios(times, sparse, dense)
        auto = rsm_model("auto", "step", k).cells[0].uses_sparse_recurrent_path
        print(f"k={k:<3} (k/n = {100 * k / N:.2f}%) sparse/dense time ratio {describe(ratio)}; "
              f"faster: {'sparse' if median(ratio) < 1 else 'dense'}; recurrent_path='auto' "
              f"takes the {'sparse' if auto else 'dense'} path")
    return results


if __name__ == "__main__":
    main()
