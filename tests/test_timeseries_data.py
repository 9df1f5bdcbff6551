"""Time-series data: sine waves, file reading (the real sunspot and CO2 files), clear errors,
scaling, the split by time and the deterministic window stream."""
import numpy as np
import pytest

from pagi_rsm.datasets import timeseries as ts


def test_sine_wave_values_and_determinism():
    v = ts.sine_wave(80, frequency=0.05, phase=0.5, amplitude=2.0, offset=1.0)
    t = np.arange(80)
    np.testing.assert_allclose(v[:, 0], 2.0 * np.sin(2 * np.pi * 0.05 * t + 0.5) + 1.0)
    a = ts.sine_wave(50, noise=0.1, seed=3, features=2, frequency=[0.1, 0.2])
    np.testing.assert_array_equal(a, ts.sine_wave(50, noise=0.1, seed=3, features=2,
                                                  frequency=[0.1, 0.2]))
    assert not np.array_equal(a, ts.sine_wave(50, noise=0.1, seed=4, features=2,
                                              frequency=[0.1, 0.2]))
    assert a.shape == (50, 2)
    with pytest.raises(ValueError, match="frequency must be a number or a list of 2"):
        ts.sine_wave(50, features=2, frequency=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"frequency must be in \(0, 0.5\]"):
        ts.sine_wave(50, frequency=0.7)


def test_reads_the_real_series(shared_data):
    d = shared_data / "timeseries"
    monthly, names = ts.read_series(d / "sunspots_monthly.dat")   # layout auto: year_months
    assert monthly.shape == (3126, 1) and names == ["monthly"]
    np.testing.assert_allclose(monthly[:3, 0], [58.0, 62.6, 70.0])     # Jan-Mar 1749
    np.testing.assert_allclose(monthly[-3:, 0], [1.2, 2.9, 2.6])       # Apr-Jun 2009
    yearly, names = ts.read_series(d / "sunspots.csv")
    assert names == ["SUNACTIVITY"] and yearly.shape == (309, 1) and yearly[0, 0] == 5
    co2, names = ts.read_series(d / "co2.csv", columns="co2")
    assert names == ["co2"] and co2.shape == (2284, 1) and np.all(np.isfinite(co2))
    # missing weeks: interpolated by default, an error on request
    assert co2[6, 0] == pytest.approx((316.9 + 317.5) / 2)    # 1958-05-10 is empty
    with pytest.raises(ValueError, match=r"co2.csv: \d+ missing values"):
        ts.read_series(d / "co2.csv", missing="error")
    dropped, _ = ts.read_series(d / "co2.csv", missing="drop")
    assert len(dropped) < len(co2)


def test_csv_columns_and_interpolation(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("t,a,b\n0,1,10\n1,,20\n2,3,30\n")
    values, names = ts.read_series(f, columns=["a", "b"])
    assert names == ["a", "b"]
    np.testing.assert_allclose(values, [[1, 10], [2, 20], [3, 30]])
    values, _ = ts.read_series(f, columns=1)
    np.testing.assert_allclose(values[:, 0], [1, 2, 3])
    w = tmp_path / "s.txt"
    w.write_text("# comment\n1 2\n3 4\n")
    values, _ = ts.read_series(w)
    np.testing.assert_allclose(values[:, 0], [2, 4])


@pytest.mark.parametrize("text, kwargs, message", [
    ("t,v\n0,1\n1,abc\n", {}, r"bad.csv, line 3: column 'v' has the non-numeric value 'abc'"),
    ("t,v\n0,1\n1,2,3\n", {}, r"bad.csv, line 3: 3 fields, expected 2"),
    ("t,v\n0,1\n", {"columns": "x"}, r"bad.csv: no column 'x'; the header has 't', 'v'"),
    ("t,v\n", {}, r"bad.csv: the file has a header but no data rows"),
    ("t,v\n0,1\n", {"layout": "tsv"}, r"layout must be one of"),
])
def test_malformed_files_name_the_file_and_problem(tmp_path, text, kwargs, message):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(ValueError, match=message):
        ts.read_series(f, **kwargs)


def test_missing_file_and_bad_year_rows(tmp_path):
    with pytest.raises(ValueError, match=r"time series file '.*nope.csv' does not exist"):
        ts.read_series(tmp_path / "nope.csv")
    f = tmp_path / "m.dat"
    f.write_text("Year Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec\n"
                 "1900 " + " ".join(["1"] * 12) + "\n1901 1 2 x\n")
    with pytest.raises(ValueError, match=r"m.dat, line 3: the non-numeric monthly value 'x'"):
        ts.read_series(f)
    f.write_text("Year Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec\n1900 1 2\n"
                 "1901 " + " ".join(["1"] * 12) + "\n")
    with pytest.raises(ValueError, match=r"line 2: 2 monthly values, expected 12"):
        ts.read_series(f)


def test_scaling_split_and_short_series():
    values = np.arange(20, dtype="float64")[:, None] * 3
    train, validation, test = ts.split_by_time(values, 0.25, 0.25)
    assert (len(train), len(validation), len(test)) == (10, 5, 5)
    np.testing.assert_array_equal(np.concatenate([train, validation, test]), values)
    scaling = ts.Scaling.fit(train)
    scaled = scaling.transform(train)
    assert scaled.min() == -1 and scaled.max() == 1
    np.testing.assert_allclose(scaling.inverse(scaling.transform(values)), values)
    assert ts.Scaling.from_dict(scaling.to_dict()) == scaling
    with pytest.raises(ValueError, match=r"series.csv: the training split has 10 steps, fewer "
                                         r"than window \+ 1 = 11"):
        ts.make_window_dataset(scaled, window=10, batch_size=2, seed=0, source="series.csv")
    with pytest.raises(ValueError, match="leave no training data"):
        ts.split_by_time(values, 0.5, 0.5)


def test_window_stream_targets_weights_and_resume():
    values = ts.sine_wave(200)
    stream = ts.make_window_dataset(values, window=8, batch_size=4, seed=5, warmup=3)
    batches = [tuple(t.numpy() for t in b) for b in stream.take(3)]
    x, y, w = batches[2]
    assert x.shape == (4, 8, 1) and w.shape == (4, 8)
    np.testing.assert_array_equal(w[:, :3], 0)
    np.testing.assert_array_equal(w[:, 3:], 1)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])        # targets are the next values
    resumed = ts.make_window_dataset(values, window=8, batch_size=4, seed=5, warmup=3,
                                     start_batch=2)
    for a, b in zip(batches[2], next(iter(resumed))):
        np.testing.assert_array_equal(a, b.numpy())
    assert not np.array_equal(batches[0][0], batches[1][0])
