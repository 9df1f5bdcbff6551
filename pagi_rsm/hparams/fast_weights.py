"""Constants of `FastWeightsCell` that definitions check without importing TensorFlow."""

IMPLEMENTATIONS = ("explicit", "attention")
"""Valid values of `FastWeightsCell(implementation=...)`: docs/fast_weights.md compares them."""
