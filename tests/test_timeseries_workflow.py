"""The timeseries workflow on a tiny setting: metrics beside the baselines, figures, resume
after an interruption, MirroredStrategy, clear errors for bad data options."""
import json

import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm import definitions
from pagi_rsm.workflows.timeseries import lstm_units_for
from tests.toy_workflow import restore_op_determinism  # noqa: F401 (autouse)

TINY_HPARAMS = {"encoder_units": [8], "columns": 16, "active_columns": 2, "cells_per_column": 2,
                "decoder_units": [8]}
TINY_OPTIONS = {"length": 300, "window": 8, "warmup": 2, "batch_size": 4, "forecast_steps": 10,
                "forecast_starts": 2, "forecast_warmup": 6, "checkpoint_interval": 2,
                "image_interval": 2, "summary_interval": 1, "lstm_units": 4, "progress": False}


def _config(tmp_path, name, options=None, **experiment):
    experiment.setdefault("summary_dir", str(tmp_path / name))
    [config] = definitions.resolve(workflow="timeseries", experiment_overrides=experiment,
                                   hparams_overrides=TINY_HPARAMS,
                                   workflow_option_overrides={**TINY_OPTIONS, **(options or {})})
    return config


def _run(tmp_path, name, **kwargs):
    config = _config(tmp_path, name, **kwargs)
    return config.workflow_class(config).run()


def test_tiny_run_reports_baselines_forecast_and_figures(tmp_path):
    results = _run(tmp_path, "run", batches=4)
    ev = results["evaluation"]
    for key in ("test_mse", "test_mae", "validation_mse", "persistence_test_mse",
                "lstm_test_mse", "forecast_mse", "forecast_mse_h1", "forecast_mse_h10"):
        assert np.isfinite(ev[key]), key
    assert results["headline"]["value"] == pytest.approx(ev["test_mse"])
    # persistence, in original units: the mean squared one-step change of the test tail
    from pagi_rsm.datasets.timeseries import sine_wave
    values = sine_wave(300, frequency=0.025)
    assert ev["persistence_test_mse"] == pytest.approx(np.mean(np.diff(values[239:, 0]) ** 2))
    run = tmp_path / "run"
    for name in ("test_prediction", "forecast", "sp_columns", "tm_cells"):
        assert (run / f"{name}.png").stat().st_size > 100
    assert len(json.loads((run / "forecast.json").read_text())["mse_per_horizon"]) == 10
    assert json.loads((run / "scaling.json").read_text())["columns"] == ["sine_0"]


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    options = {"lstm": False}
    full = _run(tmp_path, "full", batches=4, options=options)
    _run(tmp_path, "cut", batches=2, options=options)        # "killed" after checkpoint 2
    resumed = _run(tmp_path, "cut", batches=4, options=options)
    assert resumed["resumed_from"] == 2
    assert resumed["evaluation"]["test_mse"] == pytest.approx(full["evaluation"]["test_mse"],
                                                              rel=1e-6)


def test_mirrored_matches_one_device(tmp_path):
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs 2 logical CPU devices (tests/conftest.py)")
    options = {"lstm": False}
    one = _run(tmp_path, "one", batches=3, options=options)
    two = _run(tmp_path, "two", batches=3, options=options, distribution="mirrored")
    assert two["replicas"] == 2
    np.testing.assert_allclose(two["evaluation"]["test_mse"], one["evaluation"]["test_mse"],
                               rtol=1e-4)


def test_bad_data_options_fail_before_the_run(tmp_path):
    with pytest.raises(definitions.DefinitionError, match="workflow-options.path must name"):
        _config(tmp_path, "x", options={"source": "file"})
    with pytest.raises(definitions.DefinitionError, match="workflow-options.source must be"):
        _config(tmp_path, "x", options={"source": "wav"})
    config = _config(tmp_path, "x", options={"source": "file", "path": str(tmp_path / "no.csv")})
    with pytest.raises(ValueError, match=r"time series file .*no.csv' does not exist"):
        config.workflow_class(config).run()


def test_lstm_units_match_the_parameter_count():
    import keras
    from pagi_rsm.workflows.timeseries import build_lstm
    units = lstm_units_for(100_000, 3)
    params = build_lstm(units, 3, 1e-3).count_params()
    assert abs(params - 100_000) < 0.01 * 100_000
    keras.backend.clear_session()
