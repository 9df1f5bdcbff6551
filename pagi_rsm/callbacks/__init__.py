"""Keras callbacks of pagi-rsm."""
from pagi_rsm.callbacks.boost_strength import BoostStrengthDecay, k_winners_layers

__all__ = ["BoostStrengthDecay", "k_winners_layers"]
