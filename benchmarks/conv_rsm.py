"""ConvRSM training step at the paper's video shapes: dense vs sparse paths, one run.

Layer 1: 34×34×1 input, 5×5 field, stride 2 → 17×17 grid, g=64, c=8 (n=512), k=3, feedback
from layer 2's 5×5×1024 code. Layer 2: 9×9×512 input (layer 1 max-pooled), 3×3 field, stride
2 → 5×5 grid, g=128, c=8 (n=1024), k=5. Both γ=0, ε=0, recurrent keep rate 0.5 (training).

One training step = `ConvRSM.step` on a batch of B streams from realistic states (the output
of a previous step: k winners per position), MSE of the decoding against the input, gradient
and one Adam update, in one `tf.function`. The recurrent drive (and layer 1's feedback drive) is
computed either as a dense [B·h·w, n]×[n, n] matmul ("dense") or from the non-zero entries of
its input alone (`sparse_input_matmul`, "sparse": 3 of 512 recurrent entries per position at
layer 1, 5 of 1024 at layer 2; up to 20 of 1024 feedback entries at layer 1); "auto" is what
`recurrent_path="auto"` chooses (layer 1: sparse recurrent, dense feedback). Variants are timed
interleaved with the 2048³ matmul that shows the machine's load (benchmarks/side_by_side.py);
times and ratios to dense are medians [quartiles] over the repetitions (9 by default).

Usage::

    python benchmarks/conv_rsm.py --batch 64 --repeats 9 [--xla]
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
                          median_ratio, ratios)
from pagi_rsm import ConvRSM  # noqa: E402

LAYERS = {
    "layer1": dict(input=(34, 34, 1), groups=64, cells=8, k=3, kernel=5,
                   feedback=(5, 5, 1024), decoder_activation="sigmoid"),
    "layer2": dict(input=(9, 9, 512), groups=128, cells=8, k=5, kernel=3, feedback=None,
                   decoder_activation=None),
}


def make_layer(name, path):
    spec = LAYERS[name]
    return ConvRSM(groups=spec["groups"], cells_per_group=spec["cells"],
                   active_groups=spec["k"], kernel_size=spec["kernel"], strides=2,
                   inhibition_decay=0.0, recurrent_keep_rate=0.5,
                   feedback_shape=spec["feedback"],
                   feedback_max_active=5 if spec["feedback"] else None,   # layer 2's k
                   decoder_activation=spec["decoder_activation"],
                   use_input_bias=True, use_recurrent_bias=True, use_feedback_bias=True,
                   recurrent_path=path, seed=0)


def training_step(name, path, batch, xla):
    """A compiled training step of one paper layer with the given recurrent path."""
    spec = LAYERS[name]
    keras.utils.set_random_seed(0)
    layer = make_layer(name, path)
    layer.build((None,) + spec["input"])
    optimizer = keras.optimizers.Adam(5e-4)
    optimizer.build(layer.trainable_variables)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(batch,) + spec["input"]).astype("float32"))
    feedback = None
    if spec["feedback"]:
        # A k-sparse higher-layer code (5 of 1024 cells per position).
        fb = np.zeros((batch,) + spec["feedback"], "float32")
        idx = rng.integers(0, spec["feedback"][2], (batch,) + spec["feedback"][:2] + (5,))
        np.put_along_axis(fb, idx, rng.uniform(0.1, 1, idx.shape).astype("float32"), axis=-1)
        feedback = tf.constant(fb)
    states = [tf.constant(rng.uniform(size=(batch, s)).astype("float32"))
              for s in layer.state_size]
    states = layer.step(x, states, feedback=feedback).states   # y_{t-1}: k winners per position

    def step():
        with tf.GradientTape() as tape:
            out = layer.step(x, states, feedback=feedback, training=True)
            loss = tf.reduce_mean((out.decoding - x) ** 2)
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply(grads, layer.trainable_variables)
        return loss

    return tf.function(step, jit_compile=xla), layer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--layers", default="layer1,layer2")
    parser.add_argument("--xla", action="store_true")
    args = parser.parse_args(argv)
    print(f"TensorFlow {tf.__version__}; B={args.batch}; xla={args.xla}; "
          f"repeats={args.repeats} (medians [quartiles] of interleaved repetitions)")
    matmul_label, matmul, matmul_flops = matmul_variant()
    result = {}
    for name in args.layers.split(","):
        variants = []
        paths = ("dense", "sparse", "auto") if LAYERS[name]["feedback"] else ("dense", "sparse")
        for path in paths:
            step, layer = training_step(name, path, args.batch, args.xla)
            variants.append((f"{name}_{path}", step))
        times = interleaved(variants + [(matmul_label, matmul)], args.repeats,
                            warmup=args.warmup)
        h, w = layer.grid
        auto = make_layer(name, "auto")
        auto.build((None,) + LAYERS[name]["input"])
        chosen = f"recurrent {'sparse' if auto.uses_sparse_recurrent_path else 'dense'}"
        if LAYERS[name]["feedback"]:
            chosen += f", feedback {'sparse' if auto.uses_sparse_feedback_path else 'dense'}"
        print(f"{name}: grid {h}x{w}, n={layer.units}, k={layer.active_groups}; "
              f"recurrent_path='auto' takes: {chosen}")
        print("  " + machine_line(times, matmul_flops))
        for label, _ in variants:
            print(f"  {label:<16} {describe(times[label]['wall'], ' ms/step', 1)}")
        for path in paths[1:]:
            result[f"{name}_{path}"] = median_ratio(times, f"{name}_{path}", f"{name}_dense")
            print(f"  {path}/dense time ratio "
                  f"{describe(ratios(times, f'{name}_{path}', f'{name}_dense'), digits=3)}")
    return result


if __name__ == "__main__":
    main()
