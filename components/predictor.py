"""The predictor of the sequence-memory stack (reference/rsm.md §3.2–§3.3)."""
import math

import keras
import tensorflow as tf
from keras import ops

from pagi_rsm.ops.rsm import sum_normalize

_ACTIVATIONS = {"none": None, "linear": None, "leaky_relu": "leaky_relu",
                "leaky-relu": "leaky_relu", "relu": "relu", "tanh": "tanh",
                "sigmoid": "sigmoid"}

NORMS = ("sum", "abs_sum", None)


def predictor_activation(name):
    """Activation callable for a predictor layer name (original spellings accepted)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"predictor_nonlinearity entries must be one of "
                         f"{sorted(_ACTIVATIONS)}, got {name!r}")
    key = _ACTIVATIONS[name]
    if key == "leaky_relu":
        return lambda x: keras.activations.leaky_relu(x, negative_slope=0.2)
    return keras.activations.get(key)


@keras.saving.register_keras_serializable(package="pagi_rsm")
class Predictor(keras.layers.Layer):
    """MLP that predicts the label of the current input from the memory code.

    Input: the memory encoding y_t [B, n] (stop-gradient), sum-normalised per sample (N), then
    `hidden_sizes + [num_classes]` dense layers; each layer i uses `nonlinearities[i]`,
    *including the output layer* (the original's quirk 7: the default leaky-ReLU lands on the
    logits; the embedded-Reber definition uses linear layers). Dropout with `keep_rate` on every
    layer input in training. Weights and biases start from N(0, init_sd).

    The ensemble distribution (§3.3) mixes the predictor's softmax with a uniform distribution:
    P = layer_mass·softmax(logits) + uniform_mass/K.

    Args:
      num_classes: K.
      hidden_sizes: list of hidden layer sizes.
      nonlinearities: one name per layer (len(hidden_sizes) + 1), or one name for all.
      keep_rate: dropout keep rate, (0, 1].
      init_sd: standard deviation of the normal initialiser.
      norm: "sum" (the original: divide by the signed sum), "abs_sum" (divide by the sum of
        |y|: the same for non-negative codes, bounded when tanh outputs of opposite signs
        cancel, quirk 4 of rsm.md §14) or None.
      norm_eps: η of the sum normalisation.
      layer_mass, uniform_mass: ensemble masses, summing to 1.
    """

    def __init__(self, num_classes, hidden_sizes=(200,), nonlinearities=("leaky_relu",),
                 keep_rate=1.0, init_sd=0.03, norm="sum", norm_eps=1e-11, layer_mass=1.0,
                 uniform_mass=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        hidden_sizes = list(hidden_sizes)
        nonlinearities = list(nonlinearities)
        if len(nonlinearities) == 1:
            nonlinearities = nonlinearities * (len(hidden_sizes) + 1)
        if len(nonlinearities) != len(hidden_sizes) + 1:
            raise ValueError(
                f"predictor_nonlinearity needs 1 or {len(hidden_sizes) + 1} entries (one per "
                f"layer incl. the output), got {len(nonlinearities)}")
        if not (0.0 < keep_rate <= 1.0):
            raise ValueError(f"predictor_keep_rate must be in (0, 1], got {keep_rate!r}")
        if abs(layer_mass + uniform_mass - 1.0) > 1e-6 or min(layer_mass, uniform_mass) < 0:
            raise ValueError(f"layer_mass and uniform_mass must be >= 0 and sum to 1, got "
                             f"{layer_mass} + {uniform_mass}")
        if norm not in NORMS:
            raise ValueError(f"predictor_norm must be one of {NORMS}, got {norm!r}")
        self.num_classes = int(num_classes)
        self.hidden_sizes = hidden_sizes
        self.nonlinearities = nonlinearities
        self.keep_rate = float(keep_rate)
        self.init_sd = float(init_sd)
        self.norm = norm
        self.norm_eps = float(norm_eps)
        self.layer_mass = float(layer_mass)
        self.uniform_mass = float(uniform_mass)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        init = keras.initializers.RandomNormal(0.0, self.init_sd, seed=seed)
        self.dense_layers = [
            keras.layers.Dense(size, kernel_initializer=init, bias_initializer=init,
                               name=f"dense_{i}")
            for i, size in enumerate(hidden_sizes + [self.num_classes])]
        self.activations = [predictor_activation(n) for n in nonlinearities]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.dense_layers:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)

    def call(self, encoding, training=False):
        x = tf.stop_gradient(encoding)
        if self.norm is not None:
            x = sum_normalize(x, self.norm_eps, absolute=self.norm == "abs_sum")
        for layer, activation in zip(self.dense_layers, self.activations):
            if training and self.keep_rate < 1.0:
                x = keras.random.dropout(x, 1.0 - self.keep_rate, seed=self.seed_generator)
            x = activation(layer(x))
        return x

    def distribution(self, logits):
        """The ensemble distribution P over the K classes (stop-gradient)."""
        return ops.exp(self.log_distribution(logits))

    def log_distribution(self, logits):
        """log P of the ensemble P = layer_mass·softmax(logits) + uniform_mass/K (stop-gradient).

        Computed as a logsumexp of the log terms: finite even where a softmax term underflows
        to 0 in float32 (a confident wrong prediction would otherwise give an infinite
        cross-entropy/perplexity)."""
        log_p = ops.log_softmax(tf.stop_gradient(ops.cast(logits, "float32")), axis=-1)
        terms = [log_p + math.log(self.layer_mass)] if self.layer_mass > 0 else []
        if self.uniform_mass > 0:
            terms.append(ops.full_like(log_p, math.log(self.uniform_mass / self.num_classes)))
        return ops.logsumexp(ops.stack(terms), axis=0)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, hidden_sizes=self.hidden_sizes,
                      nonlinearities=self.nonlinearities, keep_rate=self.keep_rate,
                      init_sd=self.init_sd, norm=self.norm, norm_eps=self.norm_eps,
                      layer_mass=self.layer_mass, uniform_mass=self.uniform_mass, seed=self.seed)
        return config
