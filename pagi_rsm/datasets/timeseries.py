"""Time series for next-value prediction: generated sine waves and real series read from files.

* `sine_wave`: sine waves, one per feature, deterministic by seed (the noise).
* `read_series`: a numeric series from a CSV file (comma-separated, optional header, the value
  column chosen by name or index) or from a whitespace table, including the "year + 12 monthly
  values" layout of monthly sunspot tables. Mistakes (a missing file, a non-numeric value, a
  ragged row) raise ValueError naming the file, the line and the problem.
* `Scaling`: min-max scaling of each feature to [-1, 1], fitted on the training split, with
  its inverse (metrics are reported in original units) and a JSON-able form.
* `split_by_time`: train / validation / test as consecutive parts of the series.
* `make_stream_dataset`: the training stream, B continuing streams through the training
  split, `window` steps per batch (the component keeps each stream's state across batches).
* `make_window_dataset`: the alternative, batches of independent random windows of the
  training split
  (inputs x[s:s+W], targets x[s+1:s+W+1], per-step weights that skip the first `warmup`
  steps), a pure function of (seed, batch index), so a resumed run sees the batches an
  uninterrupted one sees.
* `make_dataset`: the registered dataset ``timeseries`` (what the workflow calls).

Example:

```python
values = sine_wave(2000, frequency=1 / 40, seed=0)               # [2000, 1]
train, validation, test = split_by_time(values, 0.1, 0.1)
scaling = Scaling.fit(train)
stream = make_window_dataset(scaling.transform(train), window=64, batch_size=32, seed=0)
```
"""
import csv
import dataclasses
import math
import os
import re

import numpy as np

from pagi_rsm.checks import check_int

__all__ = ["sine_wave", "read_series", "Scaling", "split_by_time", "make_window_dataset",
           "make_stream_dataset",
           "make_dataset", "load_series", "LAYOUTS", "MISSING"]

LAYOUTS = ("auto", "csv", "whitespace", "year_months")
MISSING = ("error", "interpolate", "drop")
_MISSING_TOKENS = ("", "na", "nan", "n/a", "null", "-")
_YEAR = re.compile(r"^\d{3,4}$")


# --- generated ---------------------------------------------------------------------------------

def _per_feature(name, value, features):
    values = np.atleast_1d(np.asarray(value, dtype="float64"))
    if values.ndim != 1 or len(values) not in (1, features):
        raise ValueError(f"{name} must be a number or a list of {features} numbers (one per "
                         f"feature), got {value!r}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return np.broadcast_to(values, (features,))


def sine_wave(length, frequency=1 / 40, phase=0.0, amplitude=1.0, noise=0.0, offset=0.0,
              features=1, seed=0):
    """Sine waves ``amplitude * sin(2π (frequency t) + phase) + offset + noise``, t = 0..length-1.

    Args:
      length: number of time steps >= 2.
      frequency: cycles per time step (a number, or one per feature), in (0, 0.5].
      phase: phase in radians at t = 0 (number or one per feature).
      amplitude: peak amplitude (number or one per feature).
      noise: standard deviation of added Gaussian noise, >= 0 (number or one per feature).
      offset: constant added (number or one per feature).
      features: D, number of series (columns) >= 1.
      seed: seed of the noise.

    Returns:
      float64 array `[length, features]`.
    """

    check_int("length", length, 2)
    check_int("features", features, 1)
    frequency = _per_feature("frequency", frequency, features)
    if np.any(frequency <= 0) or np.any(frequency > 0.5):
        raise ValueError(f"frequency must be in (0, 0.5] cycles per step, got {frequency}")
    noise = _per_feature("noise", noise, features)
    if np.any(noise < 0):
        raise ValueError(f"noise must be >= 0, got {noise}")
    t = np.arange(length, dtype="float64")[:, None]
    values = (_per_feature("amplitude", amplitude, features)
              * np.sin(2 * np.pi * frequency * t + _per_feature("phase", phase, features))
              + _per_feature("offset", offset, features))
    if np.any(noise > 0):
        values = values + np.random.default_rng(seed).standard_normal(values.shape) * noise
    return values


# --- files ----------------------------------------------------------------------------------------

def _number(token):
    """float(token), None for a missing-value token; raises ValueError for anything else."""
    text = token.strip().strip('"').strip("'")
    if text.lower() in _MISSING_TOKENS:
        return None
    value = float(text)
    return None if math.isnan(value) else value


def _is_number(token):
    try:
        _number(token)
        return True
    except ValueError:
        return False


def _detect_layout(path, lines):
    if path.lower().endswith(".csv") or any("," in line for line in lines[:5]):
        return "csv"
    for line in lines:
        tokens = line.split()
        if len(tokens) == 13 and tokens[0].lower() == "year" and tokens[1].lower() == "jan":
            return "year_months"
    return "whitespace"


def _rows(path, lines, layout):
    """(line number, tokens) of every non-empty line."""
    if layout == "csv":
        for number, row in enumerate(csv.reader(lines), start=1):
            if any(cell.strip() for cell in row):
                yield number, row
    else:
        for number, line in enumerate(lines, start=1):
            tokens = line.split()
            if tokens and not line.lstrip().startswith("#"):
                yield number, tokens


def _column_index(path, header, columns, width):
    """Indices of the requested columns (None: the last one)."""
    if columns is None:
        return [width - 1]
    requested = columns if isinstance(columns, (list, tuple)) else [columns]
    if not requested:
        raise ValueError(f"{path}: columns must name at least one column")
    names = [h.strip().strip('"') for h in header] if header else []
    out = []
    for column in requested:
        if isinstance(column, str) and not column.lstrip("-").isdigit():
            if column not in names:
                raise ValueError(f"{path}: no column {column!r}; the header has "
                                 f"{', '.join(repr(n) for n in names) or 'no names'}")
            out.append(names.index(column))
        else:
            index = int(column)
            if not -width <= index < width:
                raise ValueError(f"{path}: column index {index} is out of range for "
                                 f"{width} columns")
            out.append(index % width)
    return out


def _table(path, lines, layout, columns):
    rows = list(_rows(path, lines, layout))
    if not rows:
        raise ValueError(f"{path}: the file has no data rows")
    header = None
    if not all(_is_number(t) for t in rows[0][1]):
        header = rows[0][1]
        rows = rows[1:]
        if not rows:
            raise ValueError(f"{path}: the file has a header but no data rows")
    width = len(header) if header else len(rows[0][1])
    index = _column_index(path, header, columns, width)
    names = [header[i].strip().strip('"') if header else f"column {i}" for i in index]
    values = []
    for number, tokens in rows:
        if len(tokens) != width:
            raise ValueError(f"{path}, line {number}: {len(tokens)} fields, expected {width} "
                             f"(as the {'header' if header else 'first row'})")
        row = []
        for i, name in zip(index, names):
            try:
                row.append(_number(tokens[i]))
            except ValueError:
                raise ValueError(f"{path}, line {number}: column {name!r} has the non-numeric "
                                 f"value {tokens[i]!r}") from None
        values.append(row)
    return values, names


def _year_months(path, lines):
    """Rows 'year v1 .. v12' flattened in time order; text before and after them is skipped."""
    rows = [(n, t) for n, t in _rows(path, lines, "whitespace")]
    data = [i for i, (_, tokens) in enumerate(rows) if _YEAR.match(tokens[0])]
    if not data:
        raise ValueError(f"{path}: no 'year + monthly values' rows found (layout year_months)")
    values = []
    for position, i in enumerate(rows[data[0]:data[-1] + 1]):
        number, tokens = i
        if not _YEAR.match(tokens[0]):
            if set("".join(tokens)) <= set("-="):
                continue  # a ruler line
            raise ValueError(f"{path}, line {number}: expected 'year' and monthly values, got "
                             f"{' '.join(tokens)[:40]!r}")
        months = tokens[1:]
        last = data[0] + position == data[-1]
        if len(months) != 12 and not (last and 1 <= len(months) < 12):
            raise ValueError(f"{path}, line {number}: {len(months)} monthly values, expected "
                             f"12 (only the last year may be partial)")
        for token in months:
            try:
                values.append([_number(token)])
            except ValueError:
                raise ValueError(f"{path}, line {number}: the non-numeric monthly value "
                                 f"{token!r}") from None
    return values, ["monthly"]


def _fill_missing(path, values, missing):
    array = np.array([[np.nan if v is None else v for v in row] for row in values], "float64")
    gaps = np.isnan(array)
    if not gaps.any():
        return array
    if missing == "error":
        row = int(np.argwhere(gaps)[0][0])
        raise ValueError(f"{path}: {int(gaps.sum())} missing values (the first in data row "
                         f"{row + 1}); pass missing='interpolate' or 'drop'")
    if missing == "drop":
        return array[~gaps.any(axis=1)]
    t = np.arange(len(array))
    for j in range(array.shape[1]):
        known = ~gaps[:, j]
        if not known.any():
            raise ValueError(f"{path}: column {j} has no values")
        array[:, j] = np.interp(t, t[known], array[known, j])
    return array


def read_series(path, columns=None, layout="auto", missing="interpolate"):
    """Reads a numeric series `[T, D]` from a text file.

    Args:
      path: the file.
      columns: the value column(s): a header name, an index (negative counts from the end) or
        a list of them (a multivariate series). None: the last column (the first is usually
        the time stamp). Ignored by layout "year_months".
      layout: "csv" (comma-separated, `csv` quoting), "whitespace" (columns separated by
        spaces; lines starting with # are comments), "year_months" (rows of a year and up to
        12 monthly values, read in time order; text lines before the first and after the last
        such row, e.g. a title or notes, are skipped) or "auto" (csv for a .csv file or commas
        in the first lines, year_months when a 'Year Jan Feb ...' header is present, else
        whitespace). A first row that is not all numbers is a header.
      missing: what to do with empty / NA / NaN values: "interpolate" (linearly in time,
        default), "drop" (the row) or "error".

    Returns:
      `(values, names)`: float64 `[T, D]` and the column names.

    Raises:
      ValueError: the file is missing or unreadable, a value is not a number, rows are ragged,
        a column does not exist, or an option is invalid; the message names the file (and the
        line).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {', '.join(MISSING)}, got {missing!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"time series file {path!r} does not exist (or is not a file)")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"time series file {path!r} cannot be read as text: {e}") from None
    if layout == "auto":
        layout = _detect_layout(path, lines)
    if layout == "year_months":
        values, names = _year_months(path, lines)
    else:
        values, names = _table(path, lines, layout, columns)
    return _fill_missing(path, values, missing), names


# --- scaling and splits -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Scaling:
    """Per-feature affine map of [low, high] onto [-1, 1] (a constant feature maps to 0).

    Attributes:
      low, high: tuples of floats, one per feature (the fitted minimum and maximum).
    """
    low: tuple
    high: tuple

    @classmethod
    def fit(cls, values):
        """The scaling that maps the range of each column of `values` `[T, D]` onto [-1, 1]."""
        values = np.asarray(values, "float64")
        return cls(tuple(values.min(axis=0).tolist()), tuple(values.max(axis=0).tolist()))

    def _affine(self):
        low, high = np.asarray(self.low), np.asarray(self.high)
        half = (high - low) / 2
        return (high + low) / 2, np.where(half > 0, half, 1.0)

    def transform(self, values):
        """Original units -> scaled (float64)."""
        centre, half = self._affine()
        return (np.asarray(values, "float64") - centre) / half

    def inverse(self, values):
        """Scaled -> original units (float64)."""
        centre, half = self._affine()
        return np.asarray(values, "float64") * half + centre

    def to_dict(self):
        return {"low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_dict(cls, data):
        return cls(tuple(data["low"]), tuple(data["high"]))


def split_by_time(values, validation_fraction, test_fraction):
    """(train, validation, test): consecutive parts of `values` along axis 0, in that order.

    The test part is the last ``round(T * test_fraction)`` steps, validation the
    ``round(T * validation_fraction)`` before it; fractions in [0, 1) with a non-empty training
    part.
    """
    for name, fraction in (("validation_fraction", validation_fraction),
                           ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction!r}")
    length = len(values)
    n_test = int(round(length * test_fraction))
    n_val = int(round(length * validation_fraction))
    n_train = length - n_test - n_val
    if n_train < 1:
        raise ValueError(f"validation_fraction + test_fraction leave no training data "
                         f"({length} steps)")
    return values[:n_train], values[n_train:n_train + n_val], values[n_train + n_val:]


# --- the training stream --------------------------------------------------------------------------

def _checked_stream_args(values, window, batch_size, warmup, source):
    """`values` as float32 [T, D] after checking the training-stream arguments."""
    check_int("window", window, 1)
    check_int("batch_size", batch_size, 1)
    check_int("warmup", warmup, 0)
    if warmup >= window:
        raise ValueError(f"warmup must be < window ({window}), got {warmup}")
    values = np.asarray(values, "float32")
    if values.ndim != 2:
        raise ValueError(f"values must be [T, D], got shape {values.shape}")
    if len(values) < window + 1:
        raise ValueError(f"{source or 'the series'}: the training split has {len(values)} "
                         f"steps, fewer than window + 1 = {window + 1}; shorten the window or "
                         f"use a longer series")
    return values


def make_window_dataset(values, window, batch_size, seed, start_batch=0, warmup=0, source=""):
    """Endless batches of random windows of `values`, deterministic per batch index.

    Batch i holds `batch_size` windows whose starts are drawn uniformly from
    `[0, T - window - 1]` by a stateless generator seeded with (seed, i), so the stream from
    `start_batch` on is the same whether or not earlier batches were produced.

    Args:
      values: float array `[T, D]` (already scaled).
      window: W, steps per window (>= 1); needs T >= W + 1.
      batch_size: windows per batch.
      seed: integer seed.
      start_batch: index of the first batch.
      warmup: the first `warmup` steps of each window get weight 0 (the state is still
        settling there), 0 <= warmup < W.
      source: name of the series for error messages (e.g. the file).

    Returns:
      `tf.data.Dataset` of `(inputs [B, W, D], targets [B, W, D], weights [B, W])` float32.
    """
    import tensorflow as tf

    values = _checked_stream_args(values, window, batch_size, warmup, source)
    series = tf.constant(values)
    starts_max = len(values) - window  # exclusive bound of a start
    offsets = tf.range(window)
    weights = tf.constant(np.r_[np.zeros(warmup), np.ones(window - warmup)].astype("float32"))

    def batch(i):
        starts = tf.random.stateless_uniform([batch_size], seed=tf.stack([tf.cast(seed, tf.int64),
                                                                          i]),
                                             maxval=starts_max, dtype=tf.int32)
        index = starts[:, None] + offsets[None, :]
        inputs = tf.gather(series, index)
        targets = tf.gather(series, index + 1)
        return inputs, targets, tf.tile(weights[None], [batch_size, 1])

    return tf.data.Dataset.range(start_batch, 2 ** 62).map(batch).prefetch(2)


def make_stream_dataset(values, window, batch_size, seed, start_batch=0, warmup=0, source=""):
    """Batches of `batch_size` continuing streams through `values`, `window` steps per batch.

    Stream b starts at a seeded random offset and walks through the series: batch i holds its
    steps ``o_b + i·W .. o_b + (i+1)·W − 1`` modulo ``T − 1`` (the series is read as a loop,
    with one jump from the end back to the start per pass). Targets are the next values. Only
    the first `warmup` steps of batch 0 (where the state starts from zero) get weight 0. Batch
    i is a pure function of (seed, i), so `start_batch` resumes exactly.

    Args and returns: as `make_window_dataset` (row b of every batch is stream b).
    """
    import tensorflow as tf
    values = _checked_stream_args(values, window, batch_size, warmup, source)
    series = tf.constant(values)
    loop = len(values) - 1
    offsets = np.random.default_rng(seed).integers(0, loop, size=batch_size)
    offsets = tf.constant(offsets, tf.int64)
    steps = tf.range(window, dtype=tf.int64)
    first = tf.constant(np.r_[np.zeros(warmup), np.ones(window - warmup)].astype("float32"))

    def batch(i):
        index = (offsets[:, None] + i * window + steps[None, :]) % loop
        weights = tf.where(i == 0, first, tf.ones_like(first))
        return (tf.gather(series, index), tf.gather(series, index + 1),
                tf.tile(weights[None], [batch_size, 1]))

    return tf.data.Dataset.range(start_batch, 2 ** 62).map(batch).prefetch(2)


# --- the registered dataset ---------------------------------------------------------------------

def load_series(source="sine", path="", columns=None, layout="auto", missing="interpolate",
                length=4000, frequency=1 / 40, phase=0.0, amplitude=1.0, noise=0.0,
                features=1, seed=0):
    """The raw series `[T, D]` (original units) and its column names.

    Args:
      source: "sine" (generated by `sine_wave` with length ... features, seed) or "file"
        (`read_series(path, columns, layout, missing)`).
      Other arguments: see `sine_wave` and `read_series`.
    """
    if source == "sine":
        values = sine_wave(length, frequency=frequency, phase=phase, amplitude=amplitude,
                           noise=noise, features=features, seed=seed)
        return values, [f"sine_{j}" for j in range(values.shape[1])]
    if source == "file":
        if not path:
            raise ValueError("source 'file' needs a path")
        return read_series(path, columns=columns, layout=layout, missing=missing)
    raise ValueError(f"source must be one of sine, file, got {source!r}")


def make_dataset(values, window, batch_size, seed, start_batch=0, warmup=0,
                 validation_fraction=0.1, test_fraction=0.2, source="", streams=True):
    """Splits `values` by time, fits the scaling on the training part, returns the stream:
    `make_stream_dataset` (continuing streams, `streams=True`) or `make_window_dataset`
    (independent random windows) over the scaled training part.

    Returns:
      `(dataset, meta)`: `make_window_dataset` over the scaled training part, and a dict with
      ``scaling`` (`Scaling`), ``scaled`` (the whole series scaled, float32 `[T, D]`),
      ``train_end`` and ``validation_end`` (indices where the validation and test parts start).
    """
    values = np.asarray(values, "float64")
    train, validation, _ = split_by_time(values, validation_fraction, test_fraction)
    scaling = Scaling.fit(train)
    scaled = scaling.transform(values).astype("float32")
    make = make_stream_dataset if streams else make_window_dataset
    dataset = make(scaled[:len(train)], window, batch_size, seed, start_batch=start_batch,
                   warmup=warmup, source=source)
    meta = {"scaling": scaling, "scaled": scaled, "train_end": len(train),
            "validation_end": len(train) + len(validation)}
    return dataset, meta
