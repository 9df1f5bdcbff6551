"""pagi-rsm: sparse, biologically inspired sequence memory for TensorFlow 2 / Keras 3.

Layers live in :mod:`pagi_rsm.layers` and are re-exported here, so
``pagi_rsm.KWinners`` and ``pagi_rsm.layers.KWinners`` are the same class.
``pagi_rsm.load_run(summary_dir)`` loads a finished run (`pagi_rsm.run`).
"""
from pagi_rsm import callbacks, layers, metrics  # noqa: F401
from pagi_rsm.layers import *  # noqa: F401,F403
from pagi_rsm.run import LoadedRun, load_run  # noqa: F401

__version__ = "0.1.0"
