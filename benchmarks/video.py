"""Video benchmark: compiled generation loop vs a Python frame loop, ConvRSM paths, quality.

1. Generation frames/s: `pagi_rsm.generation.make_generator` (priming + self-looping in ONE
   `tf.while_loop` inside one `tf.function`) against the original's design, a Python loop
   calling a compiled one-frame function and passing the state back through numpy every
   frame. Both at batch 1 and batch 200 (``--batches``), same model, same frames; the
   ratio is loop / while_loop time (> 1: the compiled loop is faster). The model is the
   paper's two-layer convolutional stack when this checkout's `SequenceMemoryStack` has
   ``step`` (the ConvRSM stack), else a stand-in conv predictor (said in the output).
   ``--feedback_order`` also times the compiled loop with the feedback resized before its
   kernel instead of multiplied on the coarse grid (docs/conv_rsm.md).
2. The ConvRSM training step at the paper shapes, dense vs sparse recurrent path: runs
   ``benchmarks/conv_rsm.py`` (imported, when present) with ``--conv_args``.
3. Quality of a finished video run (``--results``: its results.json): the next-frame squared
   error per frame of the GAN output and of the RSM prediction during priming, each over the
   copy-last-frame baseline.
4. How that error falls with training (``--curve DIR``): the memory of every checkpoint
   ``ckpt-<batch>`` in DIR (copies of an rsm run's checkpoints; a run keeps only the last
   `max_to_keep`) predicts the next frame of the first ``--curve_sequences`` test sequences
   from true frames over ``--curve_frames`` frames; prints its error per frame beside
   copy-last's.

Variants are timed interleaved (`side_by_side.interleaved`), so machine load hits both alike.

Usage::

    python benchmarks/video.py --batches 1,200 --prime 10 --steps 30
    python benchmarks/video.py --batches 1 --feedback_order
    python benchmarks/video.py --skip_generation --results runs/video/results.json
    python benchmarks/video.py --skip_generation --curve runs/rsm_checkpoint_copies
"""
import argparse
import json
import os
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side  # noqa: E402
from side_by_side import describe, machine_line, matmul_variant, ratios  # noqa: E402

from pagi_rsm.generation import make_generator  # noqa: E402


class StandIn:
    """A stateful conv next-frame predictor with the stack's step/zero_states interface."""

    def __init__(self, frame=(34, 34, 1), channels=64, seed=0):
        rng = np.random.default_rng(seed)
        self.frame = frame
        self.down = tf.constant(rng.normal(0, 0.1, (5, 5, frame[2], channels)), tf.float32)
        self.rec = tf.constant(rng.normal(0, 0.1, (channels, channels)), tf.float32)
        self.up = tf.constant(rng.normal(0, 0.1, (5, 5, frame[2], channels)), tf.float32)
        self.channels = channels

    def zero_states(self, batch):
        h = -(-self.frame[0] // 2)
        return tf.zeros(tf.stack([batch, h, h, self.channels]))

    def step(self, x, state):
        y = tf.nn.conv2d(x, self.down, 2, "SAME")
        state = tf.tanh(y + tf.einsum("bhwc,cd->bhwd", state, self.rec))
        out = tf.nn.conv2d_transpose(state, self.up, tf.shape(x), 2, "SAME")
        return tf.sigmoid(out), state


def paper_stack(batch):
    """The paper's conv stack when this checkout has it (step/zero_states), else None."""
    from pagi_rsm.components.sequence_memory_stack import SequenceMemoryStack
    if not hasattr(SequenceMemoryStack, "step"):
        return None
    from pagi_rsm.workflows.video import PAPER_HPARAMS
    hp = dict(PAPER_HPARAMS, batch_size=batch)
    model = SequenceMemoryStack(**hp)
    model.build({"inputs": [batch, 2, 34, 34, 1], "reset": [batch, 2]})
    return model


def python_loop(model, jit):
    """The original's design: a compiled one-frame function, state through numpy per frame."""
    one = tf.function(lambda x, s: model.step(x, s), jit_compile=jit)

    def run(frames, prime):
        state = tf.nest.map_structure(np.asarray, model.zero_states(frames.shape[0]))
        fed, outputs = None, []
        for i in range(frames.shape[1] - 1):
            x = frames[:, i] if i <= prime - 2 else fed
            out, state = one(x, state)
            fed = out.numpy()
            state = tf.nest.map_structure(np.asarray, state)
            outputs.append(fed)
        return np.stack(outputs, 1)
    return run


def generation(args):
    print(f"generation: {args.prime} priming + {args.steps} self-looped frames, XLA={args.xla}")
    for batch in (int(b) for b in args.batches.split(",")):
        model = paper_stack(batch)
        label = "paper conv stack"
        if model is None:
            model, label = StandIn(), "stand-in conv predictor (no ConvRSM stack here)"
        frames = np.random.default_rng(0).uniform(
            0, 1, (batch, args.prime + args.steps, 34, 34, 1)).astype(np.float32)
        compiled = make_generator(model.step, model.zero_states, jit_compile=args.xla)
        loop = python_loop(model, args.xla)
        a = compiled(frames, args.prime)["output"].numpy()
        b = loop(frames, args.prime)
        diff = float(np.max(np.abs(a - b)))
        matmul_label, matmul, matmul_flops = matmul_variant()
        variants = [("while_loop", lambda: compiled(frames, args.prime)["output"]),
                    ("python_loop", lambda: loop(frames, args.prime)),
                    (matmul_label, matmul)]
        if args.feedback_order and label == "paper conv stack":
            fine = resize_first_copy(model, batch)
            fine_gen = make_generator(fine.step, fine.zero_states, jit_compile=args.xla)
            fine_diff = float(np.max(np.abs(fine_gen(frames, args.prime)["output"].numpy() - a)))
            variants.append(("while_loop_resize_first",
                             lambda: fine_gen(frames, args.prime)["output"]))
        times = side_by_side.interleaved(variants, repeats=args.repeats, warmup=1)
        n = batch * (frames.shape[1] - 1)
        w, p = (side_by_side.median(times[k]["wall"]) for k in ("while_loop", "python_loop"))
        print(f"  batch {batch} ({label}): while_loop {n / w * 1e3:.0f} frames/s, python loop "
              f"{n / p * 1e3:.0f} frames/s, max |diff| {diff:.1e}")
        print("    " + machine_line(times, matmul_flops))
        print(f"    python/while time ratio "
              f"{describe(ratios(times, 'python_loop', 'while_loop'))} (median [quartiles] of "
              f"{args.repeats} interleaved repetitions)")
        if "while_loop_resize_first" in times:
            print(f"    feedback resized before W_b / on the coarse grid (the default here): "
                  f"{describe(ratios(times, 'while_loop_resize_first', 'while_loop'))} "
                  f"(max |diff| of the frames {fine_diff:.1e})")


def resize_first_copy(model, batch):
    """The same stack with every ConvRSM's feedback resized before its kernel (the order
    of the original; docs/conv_rsm.md#feedback-on-the-coarse-grid)."""
    fine = paper_stack(batch)
    fine.set_weights(model.get_weights())
    for cell in fine.cells:
        cell._commute_feedback = False          # pylint: disable=protected-access
    return fine


def quality(path):
    with open(path, encoding="utf-8") as f:
        r = json.load(f)
    base = r["priming_error_copy_last"]
    print(f"quality ({path}): priming SSE/frame: GAN {r['priming_error_output']:.2f}, RSM "
          f"{r['priming_error_prediction']:.2f}, copy-last {base:.2f}; GAN/copy-last "
          f"{r['priming_error_output'] / base:.2f}, RSM/copy-last "
          f"{r['priming_error_prediction'] / base:.2f}; last-50 self-looped mass ratio "
          f"{r['last50_mass_ratio']:.2f}")


def curve(args):
    """The memory's one-step-ahead error per frame at every checkpoint in `args.curve`."""
    import glob
    import re
    from pagi_rsm import definitions
    from pagi_rsm.datasets.bouncing_balls import make_test_sequences
    from pagi_rsm.generation import generate
    from pagi_rsm.metrics import video as vm
    from pagi_rsm.workflows.video import restore_memory
    [config] = definitions.resolve(definitions.load(args.definition))
    frames = np.asarray(make_test_sequences(num_sequences=args.curve_sequences,
                                            num_frames=args.curve_frames + 1), np.float32)
    if frames.ndim == 4:
        frames = frames[..., None]
    paths = sorted(glob.glob(os.path.join(args.curve, "ckpt-*.index")),
                   key=lambda p: int(re.search(r"ckpt-(\d+)\.index$", p).group(1)))
    print(f"curve: {args.definition}'s memory, {args.curve_sequences} test sequences, frames "
          f"1..{args.curve_frames - 1} one step ahead from true frames (squared error per "
          "frame over the 900 pixels)")
    rows = []
    for path in paths:
        prefix = path[:-len(".index")]
        memory = restore_memory(config, prefix, "--curve")
        out = generate(memory, frames, prime=args.curve_frames, steps=1, jit_compile=False)
        report = vm.next_frame_report(frames, out["prediction"], out["output"],
                                      args.curve_frames)
        batch = int(re.search(r"ckpt-(\d+)$", prefix).group(1))
        error, base = report["priming_error_prediction"], report["priming_error_copy_last"]
        rows.append((batch, error, base))
        print(f"  batch {batch:6d}: memory {error:7.3f}  copy-last {base:7.3f}  "
              f"memory/copy-last {error / base:.3f}", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="1,200")
    parser.add_argument("--prime", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--feedback_order", action="store_true",
                        help="also time generation with the feedback resized before W_b")
    parser.add_argument("--skip_generation", action="store_true")
    parser.add_argument("--conv_args", default=None,
                        help="run benchmarks/conv_rsm.py with these arguments (e.g. '--batch 8')")
    parser.add_argument("--results", default=None, help="results.json of a video run")
    parser.add_argument("--curve", default=None,
                        help="a directory of rsm checkpoints ckpt-<batch> (see the docstring)")
    parser.add_argument("--definition", default="video/chain_cpu",
                        help="the definition whose memory the --curve checkpoints hold")
    parser.add_argument("--curve_sequences", type=int, default=50)
    parser.add_argument("--curve_frames", type=int, default=50)
    args = parser.parse_args(argv)
    if not args.skip_generation:
        generation(args)
    if args.conv_args is not None:
        try:
            import conv_rsm
        except ImportError:
            print("conv_rsm: benchmarks/conv_rsm.py is not in this checkout")
        else:
            conv_rsm.main(args.conv_args.split())
    if args.results:
        quality(args.results)
    if args.curve:
        curve(args)


if __name__ == "__main__":
    main()
