"""Decay of the k-winners boost strength once per epoch (nupic.torch `update_boost_strength`)."""
import keras
import tensorflow as tf  # noqa: F401 (used by the docstring example)

from pagi_rsm.layers.k_winners import KWinners, KWinners2D


def k_winners_layers(model):
    """Every `KWinners` / `KWinners2D` inside `model` (itself included), found recursively.

    Sub-layers are walked the way Keras itself walks them (nested models, layers held as
    attributes of custom layers, RNN cells), each layer once.

    Args:
      model: a `keras.layers.Layer` (usually a `keras.Model`).

    Returns:
      list of layers, in Keras' flattening order.
    """
    # `_flatten_layers` is how Keras collects sub-layers (Model.layers, summary(), jit checks);
    # there is no public recursive equivalent in Keras 3.
    return [layer for layer in model._flatten_layers(include_self=True, recursive=True)
            if isinstance(layer, (KWinners, KWinners2D))]


class BoostStrengthDecay(keras.callbacks.Callback):
    """Calls `update_boost_strength()` of every k-winners layer of the model after each epoch.

    Each layer's boost strength is multiplied by its own `boost_strength_factor` at
    `on_epoch_end`, so after e epochs it is ``boost_strength * boost_strength_factor ** e``.
    Layers are found recursively (nested models included) each time, so layers added after
    the callback was created are covered.

    Example:
      >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8),
      ...                           KWinners(percent_on=0.25, boost_strength_factor=0.5)])
      >>> model.compile(optimizer="sgd", loss="mse")
      >>> x = tf.ones((4, 8))
      >>> _ = model.fit(x, x, epochs=2, verbose=0, callbacks=[BoostStrengthDecay()])
      >>> float(model.layers[-1].boost_strength.numpy())  # 1.0 * 0.5 ** 2
      0.25
    """

    def on_epoch_end(self, epoch, logs=None):
        for layer in k_winners_layers(self.model):
            if layer.built:
                layer.update_boost_strength()
