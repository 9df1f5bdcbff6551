"""Hyperparameter declarations of layers and components (`pagi_rsm.options.Options`).

Each module declares the options of one layer or component, once: the layer or component
checks its arguments with them, definitions are validated against them, and `pagi show`,
`pagi run --help` and docs/options.md are made from them. These modules import no TensorFlow,
so resolving a definition needs none.
"""
