"""Shared test setup.

Two logical CPU devices are configured before TensorFlow initialises its runtime, so
`tf.distribute.MirroredStrategy` tests can run on this CPU-only machine.
"""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # runtime already initialised (e.g. by a plugin); tests that need 2 skip
    pass

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("PAGI_RSM_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


_CI_OFF = ("", "0", "false", "no", "off")


def in_ci():
    """True when the environment variable CI is set to something other than empty/0/false/no."""
    return os.environ.get("CI", "").strip().lower() not in _CI_OFF


def require_shared_data():
    """`SHARED_DATA` if it is a directory; else skip the test, or fail it under CI.

    Outside CI a checkout without the data skips the tests that read it. In CI (``CI=true``) the
    data is expected, so its absence fails the test instead of passing silently as skips.
    """
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    message = (f"shared data not found at {SHARED_DATA}: put the data directory at "
               f"../shared/data beside the checkout or set PAGI_RSM_SHARED_DATA to it "
               f"(docs/data.md)")
    if in_ci():
        pytest.fail(f"{message}; CI is set, so the data is required", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def shared_data():
    """Path of the real data (../shared/data: MNIST, PTB, ...); see `require_shared_data`."""
    return require_shared_data()


@pytest.fixture
def strategies():
    """(OneDeviceStrategy on CPU 0, MirroredStrategy over 2 CPUs), shared by the whole process.

    Skips when the 2 logical CPUs are missing. The mirrored strategy is the one
    `pagi_rsm.runtime.make_strategy("mirrored")` caches: a fresh MirroredStrategy per test makes
    later collectives clash with earlier ones ("Shape mismatch in the collective instance").
    """
    from pagi_rsm import runtime
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) != 2:
        pytest.skip("needs exactly 2 logical CPU devices (configured in tests/conftest.py)")
    return tf.distribute.OneDeviceStrategy(cpus[0].name), runtime.make_strategy("mirrored")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts with a fresh Keras name scope and the default dtype policy."""
    import keras
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")
    # free_memory=False skips a full gc.collect() per test (10-30 s each once many graphs exist).
    keras.backend.clear_session(free_memory=False)
