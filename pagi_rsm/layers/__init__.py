"""Keras 3 layers and RNN cells of pagi-rsm.

Every layer is registered with ``keras.saving.register_keras_serializable(package="pagi_rsm")``
so a ``.keras`` file that uses it loads after ``import pagi_rsm``.
"""
__all__ = []
# Each module adds its public names below (one import line per module).
from pagi_rsm.layers.sparse_weights import SparseConv2D, SparseDense  # noqa: E402
__all__ += ["SparseDense", "SparseConv2D"]
from pagi_rsm.layers.k_winners import KWinners, KWinners2D  # noqa: E402
__all__ += ["KWinners", "KWinners2D"]
from pagi_rsm.layers.rsm_cell import RSMCell  # noqa: E402
__all__ += ["RSMCell"]
from pagi_rsm.layers.conv_rsm import ConvRSM  # noqa: E402
__all__ += ["ConvRSM"]
from pagi_rsm.layers.fast_weights import FastWeightsCell  # noqa: E402
__all__ += ["FastWeightsCell"]
from pagi_rsm.layers.layer_norm_gru import LayerNormGRUCell  # noqa: E402
__all__ += ["LayerNormGRUCell"]


def __getattr__(name):
    if name == "FastWeightsRNNLN":  # deprecated name, kept for one release
        from pagi_rsm.layers import fast_weights
        return fast_weights.FastWeightsRNNLN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
