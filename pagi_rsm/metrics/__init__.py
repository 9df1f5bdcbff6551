"""Measurements about models (nupic.torch `duty_cycle_metrics` style): they live beside the
layers, not inside training loops."""
from pagi_rsm.metrics.duty_cycle import binary_entropy, max_entropy

__all__ = ["binary_entropy", "max_entropy"]
