"""Throughput of the language workflow's model: training and evaluation tokens/s, and the share
of a training step that the K-word output layer and softmax take (docs/language.md#speed).

Measures, for one `SequenceMemoryStack` configuration (default: definitions/language/cpu.yaml):

* training: `model.fit` on PTB training streams (`make_language_dataset`), tokens/s = B·T per
  batch over the timed batches (after one warm-up epoch that compiles);
* evaluation: the `Scorer` (model + caches + ensemble) on striped validation streams, tokens/s;
* the output layer alone, per chunk of T steps as the training step runs it (forward, loss,
  gradient of W and b): the stack's form (`Predictor` logits, `categorical_crossentropy` on a
  one-hot target, as the stack computes it with label smoothing) and the cheapest exact form
  (`sparse_softmax_cross_entropy_with_logits`, which the stack uses without label smoothing),
  and their share of a training step.

Reads ../shared/data/ptb (or --data-dir); without it uses random token ids. Example::

    python benchmarks/language.py --batches 20
    python benchmarks/language.py --definition language/rsm_paper --batches 5
    python benchmarks/language.py --definition language/brsm --hparams '{batch_size: 100}'

Each run also prints the machine's 2048³ matmul rate, so a loaded machine shows.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from side_by_side import interleaved, machine_line, matmul_variant  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data", "ptb")


def first(value):
    """The first layer's value of a per-layer hparam (a scalar or a list)."""
    return value[0] if isinstance(value, (list, tuple)) else value


def timed(fn, repeats):
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def output_layer_seconds(batch, hidden, classes, steps, repeats, sparse):
    """Seconds per chunk of `steps` steps of the output layer: logits, loss, grads of W, b."""
    import tensorflow as tf
    w = tf.Variable(tf.random.normal((hidden, classes), stddev=0.03))
    b = tf.Variable(tf.zeros((classes,)))
    h = tf.random.normal((steps, batch, hidden))
    labels = tf.random.uniform((steps, batch), 0, classes, tf.int32)

    @tf.function
    def chunk():
        total = 0.0
        for t in range(steps):
            with tf.GradientTape() as tape:
                logits = h[t] @ w + b
                if sparse:
                    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                        labels[t], logits))
                else:
                    import keras
                    loss = tf.reduce_mean(keras.losses.categorical_crossentropy(
                        tf.one_hot(labels[t], classes), logits, from_logits=True))
            gw, gb = tape.gradient(loss, [w, b])
            total += tf.reduce_sum(gw[0]) + tf.reduce_sum(gb)
        return total

    return timed(lambda: chunk().numpy(), repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--definition", default="language/cpu")
    parser.add_argument("--data-dir", default=DEFAULT_DATA)
    parser.add_argument("--batches", type=int, default=20, help="timed training batches")
    parser.add_argument("--eval-tokens", type=int, default=15000)
    parser.add_argument("--hparams", default="", help="hparams that differ from the "
                        "definition's, as YAML, e.g. '{predictor_hidden_size: [600]}'")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    import numpy as np
    from pagi_rsm import definitions
    from pagi_rsm.datasets import embeddings, ptb
    from pagi_rsm.metrics.language_model import Scorer

    [config] = definitions.resolve(
        definitions.load(args.definition), args.definition,
        hparams_overrides=definitions.parse_override(args.hparams, "--hparams"))
    hp, options = config.hparams, config.workflow_options
    classes = hp["num_classes"]
    if os.path.isdir(args.data_dir):
        corpus = ptb.load_ptb(args.data_dir)
        train, valid = corpus.train, corpus.valid
    else:
        rng = np.random.default_rng(0)
        train, valid = rng.integers(0, classes, 200000), rng.integers(0, classes, 20000)
    table = np.random.default_rng(0).standard_normal(
        (classes, hp["input_dim"])).astype(np.float32)   # the cost does not depend on the values
    batch, steps = hp["batch_size"], options["chunk_length"]

    model = config.component_class(**hp)
    model.compile()
    dataset = ptb.make_language_dataset(train, table, batch, steps, seed=1)
    model.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)            # compile
    started = time.perf_counter()
    model.fit(dataset, steps_per_epoch=args.batches, epochs=1, verbose=0)
    step_seconds = (time.perf_counter() - started) / args.batches
    train_tps = batch * steps / step_seconds

    eval_ids = valid[:args.eval_tokens]
    scorer = Scorer(model, classes, [options["cache_decay"]])
    masses = (options["layer_mass"], options["cache_mass"], options["uniform_mass"])
    evaluation = ptb.make_language_dataset(eval_ids, table, options["eval_batch_size"], steps,
                                           mode="eval")
    scorer.score(evaluation.take(1), masses, options["cache_decay"])      # compile
    started = time.perf_counter()
    scorer.score(evaluation, masses, options["cache_decay"])
    eval_tps = len(eval_ids) / (time.perf_counter() - started)

    hidden = hp["predictor_hidden_size"][-1]
    dense = output_layer_seconds(batch, hidden, classes, steps, 3, sparse=False)
    sparse = output_layer_seconds(batch, hidden, classes, steps, 3, sparse=True)
    figures = {
        "definition": args.definition, "batch": batch, "chunk_length": steps,
        "cells": first(hp["groups"]) * first(hp["cells_per_group"]), "predictor_hidden": hidden,
        "train_seconds_per_batch": round(step_seconds, 4),
        "train_tokens_per_s": round(train_tps, 1),
        "eval_tokens_per_s": round(eval_tps, 1),
        "output_layer_onehot_seconds_per_batch": round(dense, 4),
        "output_layer_sparse_seconds_per_batch": round(sparse, 4),
        "output_layer_share_of_step": round(sparse / step_seconds, 3),
    }
    for key, value in figures.items():
        print(f"{key:40s} {value}")
    label, matmul, flops = matmul_variant()
    print(machine_line(interleaved([(label, matmul)], repeats=5), flops))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
