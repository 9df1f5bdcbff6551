"""The one registry of every layer of pagi-rsm, checked by `test_conformance.py`.

A layer joins every conformance check (eager == tf.function == XLA, `.keras` round trip,
get_config/from_config, MirroredStrategy == one device, mixed_float16, no retracing) by adding
one `Entry` to `ENTRIES` below. Keep entries small: the suite builds and trains each a few times.
"""
import dataclasses
from typing import Callable, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class Entry:
    """How to build and feed one layer.

    Attributes:
      name: test id.
      make_layer: returns a fresh, unbuilt layer (or an RNN cell when `rnn=True`).
      input_shape: per-sample input shape, without the batch axis (for cells: `(time, features)`).
      rnn: wrap the cell in `keras.layers.RNN(cell, return_sequences=True)`.
      batch_size: global batch (split across 2 replicas in the distribute test, so even).
      atol: absolute tolerance of every float comparison (float32).
      make_inputs: `(rng, batch_size) -> np.ndarray`; default standard normal of `input_shape`.
      training_deterministic: False if `training=True` draws random numbers (dropout), in which
        case training-mode outputs are not compared between execution modes.
    """
    name: str
    make_layer: Callable[[], object]
    input_shape: tuple
    rnn: bool = False
    batch_size: int = 4
    atol: float = 1e-5
    make_inputs: Optional[Callable[[np.random.Generator, int], np.ndarray]] = None
    training_deterministic: bool = True

    def inputs(self, seed=0, batch_size=None):
        rng = np.random.default_rng(seed)
        b = batch_size or self.batch_size
        if self.make_inputs is not None:
            return np.asarray(self.make_inputs(rng, b), dtype="float32")
        return rng.standard_normal((b,) + tuple(self.input_shape)).astype("float32")


def _uniform(shape):
    """Inputs in [0, 1) (non-negative like pixel intensities)."""
    return lambda rng, b: rng.uniform(size=(b,) + tuple(shape))


def _pagi():
    import pagi_rsm.layers as layers
    return layers


def _rectifier():
    import pagi_rsm.components.gan_rectifier as gan_rectifier
    return gan_rectifier


def _small_integers(shape):
    """Inputs in {-2, ..., 2}: many exact ties (zeros stay tied after the harness' Scale)."""
    return lambda rng, b: rng.integers(-2, 3, size=(b,) + tuple(shape))


# Add one entry per layer configuration worth checking (e.g. both `local` modes of KWinners2D).
ENTRIES = [
    # --- sparse weights (pagi_rsm/layers/sparse_weights.py) ---
    Entry("sparse_dense", lambda: _pagi().SparseDense(6, sparsity=0.7, activation="relu", seed=3),
          input_shape=(10,)),
    Entry("sparse_dense_unseeded_rank3", lambda: _pagi().SparseDense(5, sparsity=0.5),
          input_shape=(3, 8)),
    Entry("sparse_conv2d", lambda: _pagi().SparseConv2D(4, 3, sparsity=0.6, seed=1),
          input_shape=(6, 6, 3)),
    Entry("sparse_conv2d_same_strided",
          lambda: _pagi().SparseConv2D(3, (3, 2), strides=2, padding="same", sparsity=0.5,
                                       activation="tanh", seed=2),
          input_shape=(5, 6, 2)),
    # --- recurrent sparse memory (pagi_rsm/layers/rsm_cell.py) ---
    Entry("rsm_cell_trace",
          lambda: _pagi().RSMCell(groups=6, cells_per_group=3, active_groups=2, inhibition_decay=0.8,
                                  recurrent_decay=0.5, output_decoding=True),
          input_shape=(5, 4), rnn=True, make_inputs=_uniform((5, 4))),
    Entry("rsm_cell_boost_feedback_reset",
          lambda: _pagi().RSMCell(groups=6, cells_per_group=2, active_groups=3, boost_strength=1.0,
                                  feedback_units=3, reset_input=True, output_decoding=True,
                                  use_recurrent_bias=True),
          input_shape=(5, 4 + 1 + 3), rnn=True, make_inputs=_uniform((5, 8))),
    # --- convolutional recurrent sparse memory (pagi_rsm/layers/conv_rsm.py) ---
    Entry("conv_rsm_trace_reset",
          lambda: _pagi().ConvRSM(groups=4, cells_per_group=2, active_groups=2, kernel_size=3,
                                  strides=2, inhibition_decay=0.5, recurrent_decay=0.5,
                                  reset_input=True, output_decoding=True),
          input_shape=(4, 6, 6, 2), rnn=True, make_inputs=_uniform((4, 6, 6, 2))),
    Entry("conv_rsm_sparse_boost",
          lambda: _pagi().ConvRSM(groups=5, cells_per_group=2, active_groups=2, kernel_size=(3, 2),
                                  strides=(2, 1), boost_factor=1.0, recurrent_path="sparse",
                                  use_recurrent_bias=True, use_input_bias=True,
                                  output_decoding=True),
          input_shape=(4, 5, 4, 3), rnn=True, make_inputs=_uniform((4, 5, 4, 3))),
    # --- fast weights (pagi_rsm/layers/fast_weights.py) ---
    Entry("fast_weights_explicit",
          lambda: _pagi().FastWeightsCell(6, implementation="explicit", inner_steps=2),
          input_shape=(5, 3), rnn=True, atol=1e-4),
    Entry("fast_weights_attention",
          lambda: _pagi().FastWeightsCell(6, implementation="attention", max_length=5,
                                          inner_steps=2),
          input_shape=(5, 3), rnn=True, atol=1e-4),
    Entry("layer_norm_gru", lambda: _pagi().LayerNormGRUCell(6), input_shape=(5, 3), rnn=True,
          atol=1e-4),
    # --- k-winners (pagi_rsm/layers/k_winners.py) ---
    Entry("kwinners_boost", lambda: _pagi().KWinners(percent_on=0.25, boost_strength=1.5),
          input_shape=(16,)),
    Entry("kwinners_break_ties_relu",
          lambda: _pagi().KWinners(percent_on=0.25, break_ties=True, relu=True,
                                   duty_cycle_period=4),
          input_shape=(16,), make_inputs=_small_integers((16,))),
    Entry("kwinners_rank3", lambda: _pagi().KWinners(percent_on=0.25), input_shape=(3, 8)),
    Entry("kwinners2d_local", lambda: _pagi().KWinners2D(percent_on=0.25, local=True),
          input_shape=(4, 4, 8)),
    Entry("kwinners2d_global", lambda: _pagi().KWinners2D(percent_on=0.1, local=False),
          input_shape=(4, 4, 8)),
    Entry("kwinners2d_global_break_ties",
          lambda: _pagi().KWinners2D(percent_on=0.1, local=False, break_ties=True),
          input_shape=(4, 4, 8), make_inputs=_small_integers((4, 4, 8))),
    # --- GAN rectifier generator (components/gan_rectifier.py; the discriminator takes two
    # inputs and the GANRectifier model trains itself, so they are tested in
    # tests/test_gan_rectifier.py) ---
    Entry("rectifier_generator",
          lambda: _rectifier().RectifierGenerator(encoder_filters=(4, 8, 8),
                                                  decoder_filters=(8, 4), kernel_size=3,
                                                  seed=1),
          input_shape=(8, 8, 1), make_inputs=_uniform((8, 8, 1))),
]
