"""The timeseries workflow: next-value prediction with DeepHTM, beside two baselines.

A series (a generated sine wave by default, so ``pagi run --workflow=timeseries`` needs no
download, or a CSV / whitespace file) is split by time into train / validation / test,
scaled to [-1, 1] on the training part, and the component (`DeepHTM` by default) is trained
on random windows of the training part (`pagi_rsm.datasets.timeseries`). After training:

* next-value MSE and MAE on the validation part and on the held-out tail (test part), in the
  series' original units, for the component, for persistence (predict the last value) and for
  a Keras LSTM with about the component's parameter count trained on the same windows for the
  same number of batches (``lstm_batches``; ``lstm: false`` skips it). Every model reads the
  whole series from its start, so its state is warm when the scored part begins.
* a free-running forecast: from ``forecast_starts`` points of the test part, after a
  teacher-forced warm-up of ``forecast_warmup`` steps, the component's predictions are fed
  back for ``forecast_steps`` steps in one compiled loop (`pagi_rsm.generation.free_run`); the
  MSE per horizon (original units, over the starts) is reported and written as the
  TensorBoard scalars ``forecast/mse`` (step = horizon) and ``forecast.json``.
* TensorBoard images: prediction vs truth on the test part, the forecast from the first start,
  and the SP column / TM cell activity rasters; the same figures as PNG files in the summary
  directory; the scaling in ``scaling.json``.

Headline: ``test_mse`` (the component's next-value MSE on the test part, original units).

Example:

```python
from pagi_rsm import definitions
[config] = definitions.resolve(workflow="timeseries", experiment_overrides={"batches": 50})
results = config.workflow_class(config).run()
print(results["evaluation"]["test_mse"], results["evaluation"]["persistence_test_mse"])
```
"""
import json
import os

import numpy as np

from pagi_rsm.datasets.timeseries import LAYOUTS, MISSING
from pagi_rsm.options import Option
from pagi_rsm.workflows.workflow import Workflow

HORIZONS = (1, 10, 25, 50, 100)
"""Forecast horizons reported as ``forecast_mse_h<h>`` (those within forecast_steps)."""


def lstm_units_for(parameters, input_dim):
    """LSTM units u whose model (LSTM(u) + Dense(input_dim)) has about `parameters` weights."""
    # 4u(u + D + 1) + (u + 1) D = P  ->  4u² + (4D + 4 + D) u + D - P = 0
    a, b, c = 4.0, 5.0 * input_dim + 4.0, float(input_dim - parameters)
    return max(1, int(round((-b + (b * b - 4 * a * c) ** 0.5) / (2 * a))))


def build_lstm(units, input_dim, learning_rate, streams=0):
    """The LSTM baseline: LSTM(units) over the sequence, a linear readout per step, compiled
    with Adam(`learning_rate`, a float or a schedule) and mean squared error. `streams` > 0:
    a stateful LSTM for that many continuing streams (Keras `stateful=True`)."""
    import keras
    inputs = (keras.Input(batch_shape=(streams, None, input_dim)) if streams
              else keras.Input((None, input_dim)))
    model = keras.Sequential([inputs,
                              keras.layers.LSTM(units, return_sequences=True,
                                                stateful=bool(streams), name="lstm"),
                              keras.layers.Dense(input_dim, name="readout")], name="lstm_baseline")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


def errors(predictions, truth):
    """(MSE, MAE) over every step and feature."""
    diff = np.asarray(predictions, "float64") - np.asarray(truth, "float64")
    return float(np.mean(diff ** 2)), float(np.mean(np.abs(diff)))


class TimeseriesWorkflow(Workflow):
    """Trains a next-value predictor on a time series (see the module docstring).

    Its options are declared in `options` (listed in docs/options.md and by
    ``pagi run --workflow=timeseries --help``). With ``streams`` (the default) the batches are
    `batch_size` continuing streams through the training part and the component keeps their
    state across batches, so it learns to run indefinitely, as evaluation and forecasting run
    it; trained on independent windows from the zero state it drifts once a stream runs past
    the window length (docs/deep_htm.md).
    """

    headline_metric = "test_mse"
    headline_mode = "min"
    options = Workflow.options.extend(
        Option("source", "sine", "the series: sine (generated) or file (path)",
               choices=("sine", "file")),
        Option("path", "", "the series file for source file (CSV or whitespace columns; "
               "relative to the working directory)"),
        Option("columns", None, "value column(s) of the file: a header name, an index, or a "
               "list of them (null: the last column)", kind="any"),
        Option("layout", "auto", "file layout (see pagi_rsm.datasets.timeseries.read_series)",
               choices=LAYOUTS),
        Option("missing", "interpolate", "missing values in the file", choices=MISSING),
        Option("length", 4000, "steps of the generated sine", low=2),
        Option("frequency", 0.025, "sine cycles per step", low=0.0, high=0.5, low_open=True),
        Option("phase", 0.0, "sine phase at t = 0 (radians)"),
        Option("amplitude", 1.0, "sine amplitude"),
        Option("noise", 0.0, "standard deviation of Gaussian noise added to the sine", low=0.0),
        Option("features", 1, "generated sines (features per step; frequencies equal)", low=1),
        Option("window", 32, "time steps per training batch", low=1),
        Option("warmup", 8, "unscored first steps (of each window; with streams, of the first "
               "batch only)", low=0),
        Option("batch_size", 16, "windows (streams) per batch", low=1),
        Option("streams", True, "batches are continuing streams whose state the component "
               "keeps (sets its streams hparam to batch_size); false: independent windows"),
        Option("validation_fraction", 0.1, "validation part of the series (before the test "
               "part)", low=0.0, high=1.0, high_open=True),
        Option("test_fraction", 0.2, "held-out tail of the series", low=0.0, high=1.0,
               high_open=True),
        Option("forecast_steps", 100, "steps of each free-running forecast", low=1),
        Option("forecast_starts", 8, "forecasts from this many points of the test part",
               low=1),
        Option("forecast_warmup", 64, "teacher-forced steps before each forecast", low=1),
        Option("stream_jit_compile", True, "compile the step-by-step loops (the forecasts) "
               "with XLA on every device: at batch 1 on a 2-core CPU about 2x faster than "
               "graph mode, same numbers (docs/deep_htm.md#speed)"),
        Option("lstm", True, "train the LSTM baseline"),
        Option("lstm_units", 0, "LSTM units (0: about the component's parameter count)",
               low=0),
        Option("lstm_batches", 0, "LSTM training batches (0: the run's batches)", low=0),
    ).with_defaults(checkpoint_interval=250, image_interval=250, summary_interval=10)

    @classmethod
    def default_experiment_options(cls):
        return {"component": "deep_htm", "dataset": "timeseries", "batches": 1500, "seed": 0,
                "hparams_override": {}}

    @classmethod
    def load_data_files(cls, config):
        """Reads the series file (source file), so a missing or malformed file fails first."""
        options = config.workflow_options
        if options["source"] == "file":
            from pagi_rsm.datasets.timeseries import read_series
            read_series(options["path"], columns=options["columns"], layout=options["layout"],
                        missing=options["missing"])

    @classmethod
    def complete_config(cls, config):
        """Checks the data options and derives ``input_dim`` (features per step)."""
        options = config.workflow_options
        if options["source"] == "file" and not options["path"]:
            raise ValueError("workflow-options.path must name the series file when source is "
                             "'file'")
        columns = options["columns"]
        if options["source"] == "sine":
            features = options["features"]
        else:
            features = len(columns) if isinstance(columns, (list, tuple)) else 1
        hparams = config.hparams
        if "streams" in hparams:
            hparams["streams"] = options["batch_size"] if options["streams"] else 0
        if hparams.get("input_dim") in (None, 1) or hparams["input_dim"] == features:
            hparams["input_dim"] = features
        else:
            raise ValueError(f"hparams_override.input_dim is {hparams['input_dim']} but the "
                             f"series has {features} features; leave it unset")

    def series(self):
        """The raw series `[T, D]` (original units), read or generated once per workflow."""
        if getattr(self, "_series", None) is None:
            from pagi_rsm.datasets.timeseries import load_series
            o = self.options
            self._series, self.names = load_series(
                source=o["source"], path=o["path"], columns=o["columns"], layout=o["layout"],
                missing=o["missing"], length=o["length"], frequency=o["frequency"],
                phase=o["phase"], amplitude=o["amplitude"], noise=o["noise"],
                features=o["features"], seed=self.config.seed)
        return self._series

    def build_dataset(self, start_batch):
        o = self.options
        dataset, self.meta = self.config.dataset_fn(
            self.series(), window=o["window"], batch_size=o["batch_size"],
            seed=self.config.seed, start_batch=start_batch, warmup=o["warmup"],
            validation_fraction=o["validation_fraction"], test_fraction=o["test_fraction"],
            source=o["path"] or "the sine wave", streams=o["streams"])
        return dataset

    # --- evaluation -----------------------------------------------------------------------------

    def _scores(self, predictions, prefix):
        """Validation and test MSE / MAE of next-value `predictions` `[T, D]` (scaled; row t
        predicts x_{t+1}), in original units."""
        meta, raw = self.meta, self.series()
        original = meta["scaling"].inverse(predictions)
        out = {}
        for part, begin, end in (("validation", meta["train_end"], meta["validation_end"]),
                                 ("test", meta["validation_end"], len(raw))):
            if end > begin:
                mse, mae = errors(original[begin - 1:end - 1], raw[begin:end])
                out[f"{prefix}{part}_mse"], out[f"{prefix}{part}_mae"] = mse, mae
        return out

    def _train_lstm(self, model):
        """The LSTM baseline, trained on the component's stream with its learning schedule."""
        import keras
        o = self.options
        units = o["lstm_units"] or lstm_units_for(model.count_params(),
                                                  self.hparams["input_dim"])
        keras.utils.set_random_seed(self.config.seed)
        # Keras' stateful LSTM cannot split its state across replicas: under a multi-replica
        # strategy the baseline trains from the zero state every batch.
        streams = (o["batch_size"] if o["streams"] and self.strategy.num_replicas_in_sync == 1
                   else 0)
        with self.strategy.scope():
            lstm = build_lstm(units, self.hparams["input_dim"], model.learning_schedule(),
                              streams=streams)
        batches = o["lstm_batches"] or self.batches
        lstm.fit(self.build_dataset(start_batch=0), steps_per_epoch=batches, epochs=1,
                 verbose=0, shuffle=False)
        if streams:
            trained, lstm = lstm, build_lstm(units, self.hparams["input_dim"], 1e-3)
            lstm.set_weights(trained.get_weights())
        return lstm, units

    def forecast(self, model):
        """Free-running forecasts from `forecast_starts` points of the test part.

        Returns:
          `(forecasts, truth, starts)`: original units `[starts, forecast_steps, D]` twice and
          the start indices (the first forecast value is the prediction of x[start]).
        """
        import tensorflow as tf
        from pagi_rsm import generation
        o, meta = self.options, self.meta
        scaled = meta["scaled"]
        steps, warm = o["forecast_steps"], o["forecast_warmup"]
        first = max(meta["validation_end"], warm + 1)
        last = len(scaled) - steps
        if last < first:
            raise ValueError(f"the test part ({len(scaled) - meta['validation_end']} steps) is "
                             f"too short for forecast_steps={steps} (after forecast_warmup="
                             f"{warm}); lower forecast_steps")
        starts = np.unique(np.linspace(first, last, o["forecast_starts"]).astype(int))
        warmup = np.stack([scaled[s - warm:s - 1] for s in starts])         # [S, warm-1, D]
        last_seen = np.stack([scaled[s - 1] for s in starts])               # [S, D]

        @tf.function(jit_compile=bool(o["stream_jit_compile"]))
        def run(warmup, last_seen):
            state = model.zero_state(tf.shape(warmup)[0])
            if warm > 1:
                _, state = generation.stream(model.step, state, warmup)
            outputs, _ = generation.free_run(model.step, state, last_seen, steps)
            return outputs

        outputs = run(tf.constant(warmup), tf.constant(last_seen)).numpy()
        scaling = meta["scaling"]
        forecasts = scaling.inverse(outputs)
        truth = np.stack([self.series()[s:s + steps] for s in starts])
        return forecasts, truth, starts

    def evaluate(self, model, training):
        """Next-value errors of the component and the baselines, the forecast, the figures."""
        import tensorflow as tf
        from pagi_rsm import plot
        results = super().evaluate(model, training)
        if training["status"] == "nan":
            return results
        o, meta = self.options, self.meta
        scaled = tf.constant(meta["scaled"][None])
        outputs = tf.function(lambda x: model.sequence_outputs(x))(scaled)
        predictions = outputs["predictions"][0].numpy()
        results.update(self._scores(predictions, ""))
        persistence = meta["scaled"]  # row t "predicts" x_{t+1} = x_t
        results.update(self._scores(persistence, "persistence_"))
        results["parameters"] = int(model.count_params())
        lstm_predictions = None
        if o["lstm"]:
            lstm, units = self._train_lstm(model)
            lstm_predictions = tf.function(lambda x: lstm(x))(scaled)[0].numpy()
            results.update(self._scores(lstm_predictions, "lstm_"))
            results["lstm_units"], results["lstm_parameters"] = units, int(lstm.count_params())
        forecasts, truth, starts = self.forecast(model)
        per_horizon = np.mean((forecasts - truth) ** 2, axis=(0, 2))
        results["forecast_mse"] = float(per_horizon.mean())
        for h in HORIZONS:
            if h <= len(per_horizon):
                results[f"forecast_mse_h{h}"] = float(per_horizon[h - 1])
        step = training["batches"]
        raw = self.series()
        begin = meta["validation_end"]
        shown = slice(begin, min(len(raw), begin + 400))
        lines = [raw[shown, 0], meta["scaling"].inverse(predictions)[shown.start - 1:
                                                                      shown.stop - 1, 0]]
        if lstm_predictions is not None:
            lines.append(meta["scaling"].inverse(lstm_predictions)[shown.start - 1:
                                                                   shown.stop - 1, 0])
        context = 50
        s0 = int(starts[0])
        forecast_plot = plot.line_plot(
            [raw[s0 - context:s0 + len(per_horizon), 0],
             np.r_[np.full(context, np.nan), forecasts[0, :, 0]]], marks=(context,))
        cells = outputs["cells"][0, begin:begin + 100].numpy()
        columns = outputs["columns"][0, begin:begin + 100].numpy()
        figures = {"test_prediction": plot.line_plot(lines),
                   "forecast": forecast_plot,
                   "forecast_mse_per_horizon": plot.line_plot([per_horizon]),
                   "sp_columns": plot.raster(columns),
                   "tm_cells": plot.raster(cells)}
        with self.writer.as_default():
            for name, image in figures.items():
                tf.summary.image(f"eval/{name}", image[None], step=step)
            for h, value in enumerate(per_horizon, start=1):
                tf.summary.scalar("forecast/mse", float(value), step=h)
            for key, value in results.items():
                if isinstance(value, float):
                    tf.summary.scalar(f"eval/{key}", value, step=step)
            tf.summary.scalar(f"train/{self.headline_metric}", results["test_mse"], step=step)
        self.writer.flush()
        if self.is_chief:
            for name, image in figures.items():
                plot.write_png(os.path.join(self.summary_dir, f"{name}.png"), image)
            with open(os.path.join(self.summary_dir, "scaling.json"), "w",
                      encoding="utf-8") as f:
                json.dump({"columns": list(self.names), **meta["scaling"].to_dict()}, f)
            with open(os.path.join(self.summary_dir, "forecast.json"), "w",
                      encoding="utf-8") as f:
                json.dump({"starts": starts.tolist(),
                           "mse_per_horizon": [float(v) for v in per_horizon]}, f)
        return results
