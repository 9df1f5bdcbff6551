"""The predictor of the sequence-memory stack (docs/rsm.md#predictor, docs/rsm.md#ensemble)."""
import math

import keras
import tensorflow as tf
from keras import ops

from pagi_rsm.ops.rsm import clear_rows, condition_input

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
    *including the output layer* (docs/rsm.md#quirks item 7: the default leaky-ReLU lands on the
    logits; the embedded-Reber definition uses linear layers). Dropout with `keep_rate` on every
    layer input in training. Weights and biases start from N(0, init_sd).

    Optional input trace (docs/rsm.md#predictor; the original's `predictor_input_decay_rate` δ and
    `predictor_input_norm_first`): with ``input_decay = δ > 0`` the MLP reads
    ``τ_t = max(δ·τ_{t−1}, N(y_t))`` (``input_norm_first=True``, the original's default) or
    ``τ_t = N(max(δ·τ_{t−1}, y_t))``, a max-decay trace of the codes of the last steps. τ is
    per-stream state that the caller keeps (`condition` takes and returns it). The original
    never clears it at sequence resets; with ``input_reset=True`` a sample's trace is cleared
    where `condition` gets its reset flag. With δ = 0 (default) the input is N(y_t).

    The ensemble distribution (docs/rsm.md#ensemble) mixes the predictor's softmax with a uniform
    distribution:
    P = layer_mass·softmax(logits) + uniform_mass/K.

    Args:
      num_classes: K.
      hidden_sizes: list of hidden layer sizes.
      nonlinearities: one name per layer (len(hidden_sizes) + 1), or one name for all.
      keep_rate: dropout keep rate, (0, 1].
      init_sd: standard deviation of the normal initialiser.
      norm: "sum" (the original: divide by the signed sum), "abs_sum" (divide by the sum of
        |y|: the same for non-negative codes, bounded when tanh outputs of opposite signs
        cancel, docs/rsm.md#quirks item 3) or None.
      norm_eps: η of the sum normalisation.
      input_decay: δ in [0, 1), the decay of the input trace (0: no trace).
      input_norm_first: order of normalisation and trace (see above).
      input_reset: clear a sample's trace at a reset (default False, the original).
      layer_mass, uniform_mass: ensemble masses, summing to 1.
    """

    def __init__(self, num_classes, hidden_sizes=(200,), nonlinearities=("leaky_relu",),
                 keep_rate=1.0, init_sd=0.03, norm="sum", norm_eps=1e-11, input_decay=0.0,
                 input_norm_first=True, input_reset=False, layer_mass=1.0, uniform_mass=0.0,
                 seed=None, **kwargs):
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
        if (isinstance(input_decay, bool) or not isinstance(input_decay, (int, float))
                or not 0.0 <= input_decay < 1.0):
            raise ValueError(f"predictor_input_decay must be a number in [0, 1), got "
                             f"{input_decay!r}")
        for name, value in (("input_norm_first", input_norm_first),
                            ("input_reset", input_reset)):
            if not isinstance(value, bool):
                raise ValueError(f"predictor_{name} must be true or false, got {value!r}")
        self.num_classes = int(num_classes)
        self.hidden_sizes = hidden_sizes
        self.nonlinearities = nonlinearities
        self.keep_rate = float(keep_rate)
        self.init_sd = float(init_sd)
        self.norm = norm
        self.norm_eps = float(norm_eps)
        self.input_decay = float(input_decay)
        self.input_norm_first = input_norm_first
        self.input_reset = input_reset
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

    @property
    def uses_trace(self):
        """True when the input is a trace (``input_decay > 0``): callers keep τ per stream."""
        return self.input_decay > 0.0

    def condition(self, encoding, trace=None, reset=None):
        """The MLP input from the code y_t: ``(N(y_t), None)``, or ``(τ_t, τ_t)`` with a trace.

        Args:
          encoding: y_t [B, n] (a stop-gradient is applied here).
          trace: τ_{t−1} [B, n]; required when `uses_trace`.
          reset: optional [B] flags of a new sequence; with `input_reset` they clear τ_{t−1}.
        """
        if self.uses_trace and trace is None:
            raise ValueError("this predictor has input_decay > 0: pass the previous trace")
        if self.uses_trace and self.input_reset and reset is not None:
            [trace] = clear_rows([trace], reset)
        return condition_input(tf.stop_gradient(encoding), trace, decay=self.input_decay,
                               floor=0.0, norm=self.norm, norm_eps=self.norm_eps,
                               norm_first=self.input_norm_first)

    def call(self, encoding, training=False):
        """Logits from y_t (no trace: ``input_decay == 0``); see `classify` for a trace."""
        return self.classify(self.condition(encoding)[0], training=training)

    def classify(self, x, training=False):
        """Logits of the MLP from an input already made by `condition`."""
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
                      input_decay=self.input_decay, input_norm_first=self.input_norm_first,
                      input_reset=self.input_reset,
                      layer_mass=self.layer_mass, uniform_mass=self.uniform_mass, seed=self.seed)
        return config
