"""Measurements about models (nupic.torch `duty_cycle_metrics` style): they live beside the
layers, not inside training loops."""
from pagi_rsm.metrics.duty_cycle import binary_entropy, max_entropy
from pagi_rsm.metrics.linear_probe import LinearProbe

__all__ = ["binary_entropy", "max_entropy", "LinearProbe"]
