"""pagi-rsm: sparse, biologically inspired sequence memory for TensorFlow 2 / Keras 3.

Layers live in :mod:`pagi_rsm.layers` and are re-exported here, so
``pagi_rsm.KWinners`` and ``pagi_rsm.layers.KWinners`` are the same class. Importing the
package registers every layer with Keras, so ``keras.models.load_model`` reads ``.keras`` files
that use them.

The one exception is the ``pagi`` command: it imports the package without the layers (and so
without TensorFlow), so that ``pagi --help``, ``pagi list`` and ``pagi show`` answer at once;
the layers are imported on first use (``pagi_rsm.RSMCell``) or when a run starts.
"""
import importlib
import os
import sys

__version__ = "0.2.0"

_SUBMODULES = ("callbacks", "layers", "metrics")
_RUN = {"load_run": "pagi_rsm.run"}
# The names `pagi_rsm.layers` exports (tests/test_package.py keeps this list equal to its
# __all__), so that looking one up never imports Keras for a name that is not a layer.
_LAYER_NAMES = ("SparseDense", "SparseConv2D", "KWinners", "KWinners2D", "RSMCell",
                "FastWeightsCell", "LayerNormGRUCell", "ConvRSM", "FastWeightsRNNLN")


def _started_as_pagi_command():
    argv = getattr(sys, "argv", None) or [""]
    return os.path.basename(argv[0]) in ("pagi", "pagi.exe")


def __getattr__(name):  # PEP 562: lazy attributes
    if name in _RUN:
        return getattr(importlib.import_module(_RUN[name]), name)
    if name in _LAYER_NAMES:
        return getattr(importlib.import_module("pagi_rsm.layers"), name)
    if not name.startswith("__"):
        try:  # a submodule (also how `from pagi_rsm import registry` reaches it)
            return importlib.import_module(f"pagi_rsm.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"pagi_rsm.{name}":
                raise
    raise AttributeError(f"module 'pagi_rsm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_RUN) | set(_LAYER_NAMES))


if not _started_as_pagi_command():
    from pagi_rsm import callbacks, layers, metrics  # noqa: E402,F401  (registers the layers)
    from pagi_rsm.layers import *  # noqa: E402,F401,F403
    # (FastWeightsRNNLN, deprecated, is not in layers.__all__: __getattr__ serves it.)
