"""Throughput of the embedded Reber grammar pipeline (`make_grammar_dataset`), side by side.

Variants, each an iterator built once and timed in interleaved rounds (median over rounds):

- pipeline/same, pipeline/onehot, pipeline/random: `make_grammar_dataset` at B=400, T=12;
- floor/render: a tf.data pipeline that only gathers the same-size [B, T, 784] float32 glyph
  tensor from fixed indices (no generation): the cost of producing the element at all;
- numpy/streams: `GrammarStreams.take(T)` alone (the Python side of the pipeline);
- original-style: the original design (one Python call per (image, label) of one stream and
  step, then `batch(B)`: one time step per batch), counted per T steps.

No variant uses `tf.data.Dataset.from_generator`: creating one lowers glibc's malloc trim
threshold for the whole process (TensorFlow logs "Memory patch applied: M_TRIM_THRESHOLD=128 kb"),
after which every fresh multi-megabyte tensor is page-faulted in; on this machine that cut the
floor/render rate several-fold, which is why the pipeline uses a numpy_function instead.

Prints chunks/s (wall clock) and chunks per CPU-second of this process (all threads; less
sensitive to other load on a shared machine), and the ratios pipeline/floor, pipeline/original-style and pipeline/100 (the
brief's target of well over 100 chunks/s at B=400, T=12, D=784).

    python benchmarks/grammar_dataset.py [--rounds 7] [--chunks 40] [--drain 16] [--mnist_dir DIR]
"""
import argparse
import os
import pathlib
import random
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pagi_rsm.datasets import grammar as gr  # noqa: E402
from pagi_rsm.datasets import mnist  # noqa: E402

DEFAULT_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def original_style(batch_size, glyphs, seed):
    """The original per-sample generator design: one element per (step, stream), then batch."""
    table = gr.EMBEDDED_REBER
    symbols = gr.as_grammar(None).symbols
    rng = random.Random(seed)

    def string():
        out, node = [], gr.START
        while node != -1:
            t = rng.choice(table["transitions"][node])
            out.append(t["state"])
            node = t["next"]
        return out

    strings = [string() for _ in range(batch_size)]
    pos = [b % len(s) for b, s in enumerate(strings)]
    counter = [0]

    def sample(_):
        b = counter[0] % batch_size
        counter[0] += 1
        if pos[b] >= len(strings[b]):
            strings[b], pos[b] = string(), 0
        label = symbols.index(table["states"][strings[b][pos[b]]]["symbol"])
        pos[b] += 1
        return glyphs[label], np.int32(label)

    # One Python call per sample, as the original generator; through numpy_function rather than
    # from_generator, whose malloc setting would slow every variant of this process down.
    def element(i):
        image, label = tf.numpy_function(sample, [i], [tf.float32, tf.int32], stateful=True)
        image.set_shape([784])
        label.set_shape([])
        return image, label

    ds = tf.data.Dataset.range(np.iinfo(np.int64).max).map(element)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunks", type=int, default=40, help="chunks timed per round")
    parser.add_argument("--drain", type=int, default=16,
                        help="untimed chunks before each timing (prefetched while idle)")
    parser.add_argument("--batch_size", type=int, default=400)
    parser.add_argument("--chunk_length", type=int, default=12)
    parser.add_argument("--mnist_dir", default=str(DEFAULT_MNIST))
    args = parser.parse_args()
    b, t = args.batch_size, args.chunk_length
    glyphs = mnist.load_glyphs()[:7].reshape(7, 784).astype(np.float32) / 255.0

    def pipeline(render):
        kwargs = {"mnist_dir": args.mnist_dir} if render == "random" else {}
        return iter(gr.make_grammar_dataset(batch_size=b, chunk_length=t, render=render, seed=1,
                                            **kwargs)[0])

    table = tf.constant(glyphs)
    fixed = tf.constant(np.random.default_rng(0).integers(0, 7, (b, t)), tf.int32)
    floor = iter(tf.data.Dataset.from_tensors(fixed).repeat()
                 .map(lambda i: tf.gather(table, i)).prefetch(tf.data.AUTOTUNE))
    streams = gr.GrammarStreams(None, batch_size=b, seed=1)
    original = iter(original_style(b, glyphs, 1))

    variants = {
        "pipeline/same": (lambda it=pipeline("same"): next(it), 1),
        "pipeline/onehot": (lambda it=pipeline("onehot"): next(it), 1),
        "floor/render": (lambda: next(floor), 1),
        "numpy/streams": (lambda: streams.take(t), 1),
        # One batch is one time step: T batches make a chunk; time fewer of them.
        "original-style": (lambda: next(original), t),
    }
    if pathlib.Path(args.mnist_dir).is_dir():
        variants["pipeline/random"] = (lambda it=pipeline("random"): next(it), 1)
    rates = {name: [] for name in variants}
    cpu_rates = {name: [] for name in variants}
    for fn, per_chunk in variants.values():   # warm-up (tracing, first strings, prefetch)
        for _ in range(3 * per_chunk):
            fn()
    for _ in range(args.rounds):
        for name, (fn, per_chunk) in variants.items():
            chunks = args.chunks if per_chunk == 1 else max(1, args.chunks // 10)
            for _ in range(args.drain if per_chunk == 1 else 0):
                fn()   # empty the prefetch buffer filled while the other variants ran
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(chunks * per_chunk):
                fn()
            rates[name].append(chunks / (time.perf_counter() - start))
            cpu_rates[name].append(chunks / max(time.process_time() - cpu_start, 1e-9))
    median = {name: statistics.median(r) for name, r in rates.items()}
    cpu = {name: statistics.median(r) for name, r in cpu_rates.items()}
    print(f"B={b} T={t} D=784, {args.rounds} interleaved rounds; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("  variant          chunks/s median (min..max)   chunks per CPU-second (all threads)")
    for name, r in rates.items():
        print(f"  {name:16s} {median[name]:9.1f}   ({min(r):.1f}..{max(r):.1f})"
              f"{cpu[name]:22.1f}")
    same = median["pipeline/same"]
    print(f"ratio pipeline/same / floor/render     = {same / median['floor/render']:.2f}")
    print(f"ratio pipeline/same / original-style   = {same / median['original-style']:.1f}")
    print(f"ratio pipeline/same / 100 chunks/s     = {same / 100:.2f}")
    print(f"ratio numpy/streams / pipeline/same    = {median['numpy/streams'] / same:.1f}")


if __name__ == "__main__":
    main()
