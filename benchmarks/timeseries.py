"""DeepHTM throughput beside an LSTM of about the same parameter count, in one run.

* Streaming inference: steps/s at batch 1, one step at a time through a compiled loop
  (`pagi_rsm.generation.stream`: one `tf.function` holding one `tf.while_loop`; each step runs
  encoder, spatial pooler, temporal memory and decoder on the step's input alone). The LSTM
  runs the same loop with its cell.
* Batched training: time steps per second of `model.fit` on continuing streams (batch B,
  window W), DeepHTM and the LSTM.

Prints one line per measurement and the ratios DeepHTM / LSTM; `--json` writes them.

    python benchmarks/timeseries.py --steps 2000 --batches 30
"""
import argparse
import json
import time

import keras
import numpy as np
import tensorflow as tf

from pagi_rsm import generation
from pagi_rsm.components.deep_htm import DeepHTM
from pagi_rsm.datasets import timeseries as ts
from pagi_rsm.workflows.timeseries import build_lstm, lstm_units_for


def _lstm_step_fn(lstm_model):
    cell = lstm_model.get_layer("lstm").cell
    readout = lstm_model.get_layer("readout")

    def step(x, state):
        h, state = cell(x, state)
        return readout(h), state
    return step, cell


def streaming_rate(step_fn, state, inputs, repeats=3, jit_compile=False):
    """Best steps/s over `repeats` runs of the compiled stream loop over `inputs` [1, T, D]."""
    run = generation.compiled_stream(step_fn, jit_compile=jit_compile)
    run(state, inputs)  # trace and warm up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        outputs, _ = run(state, inputs)
        outputs.numpy()
        best = max(best, inputs.shape[1] / (time.perf_counter() - start))
    return best


def training_rate(model, dataset, batches, steps_per_batch):
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=batches, epochs=1, verbose=0, shuffle=False)
    return batches * steps_per_batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="streamed steps per repeat")
    parser.add_argument("--batches", type=int, default=20, help="timed training batches")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--jit_compile", action="store_true", help="XLA for the stream loop")
    parser.add_argument("--stream_only", action="store_true", help="skip the training rates")
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    values = ts.sine_wave(args.steps + 1, frequency=0.025).astype("float32")
    inputs = tf.constant(values[None, :args.steps])

    model = DeepHTM(input_dim=1, streams=args.batch_size)
    model.build((args.batch_size, args.window, 1))
    model.compile()
    units = lstm_units_for(model.count_params(), 1)
    lstm = build_lstm(units, 1, 1e-3, streams=args.batch_size)
    lstm_single = build_lstm(units, 1, 1e-3)
    step_fn, cell = _lstm_step_fn(lstm_single)
    results = {"deep_htm_parameters": model.count_params(), "lstm_units": units,
               "lstm_parameters": lstm_single.count_params()}

    results["deep_htm_stream_steps_per_s"] = streaming_rate(
        model.step, model.zero_state(1), inputs, jit_compile=args.jit_compile)
    results["lstm_stream_steps_per_s"] = streaming_rate(
        step_fn, [tf.zeros([1, units]), tf.zeros([1, units])], inputs,
        jit_compile=args.jit_compile)

    if args.stream_only:
        for key, value in results.items():
            print(f"{key:36s} {value:12.1f}")
        return results
    dataset, _ = ts.make_dataset(ts.sine_wave(4000), window=args.window,
                                 batch_size=args.batch_size, seed=0)
    steps = args.batch_size * args.window
    results["deep_htm_train_steps_per_s"] = training_rate(model, dataset, args.batches, steps)
    results["lstm_train_steps_per_s"] = training_rate(lstm, dataset, args.batches, steps)
    results["stream_ratio_deep_htm_over_lstm"] = (results["deep_htm_stream_steps_per_s"]
                                                  / results["lstm_stream_steps_per_s"])
    results["train_ratio_deep_htm_over_lstm"] = (results["deep_htm_train_steps_per_s"]
                                                 / results["lstm_train_steps_per_s"])
    for key, value in results.items():
        print(f"{key:36s} {value:12.1f}" if isinstance(value, float) else
              f"{key:36s} {value:12d}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
