"""LayerNormGRUCell: a GRU cell with layer normalisation of every gate (the GRU-LN baseline).

The associative-retrieval baselines of the fast-weights work include a GRU with layer norm
(docs/fast_weights.md#baselines); Keras has none, so it is here, as a cell.
"""
import numbers

import keras
from keras import ops

from pagi_rsm.ops.layer_norm import layer_norm

__all__ = ["LayerNormGRUCell"]


@keras.saving.register_keras_serializable(package="pagi_rsm")
class LayerNormGRUCell(keras.layers.Layer):
    """GRU cell whose three pre-activations are each layer-normalised per sample.

    With x the input, h the previous state, and LN_g the layer norm of gate g (its own learned
    gain and bias, statistics over the `units` features of one sample; the LN biases take the
    place of the GRU biases):

        r  = sigmoid(LN_r(x W_r + h U_r))                 reset gate
        z  = sigmoid(LN_z(x W_z + h U_z))                 update gate
        c  = tanh(LN_c(x W_c + r * (h U_c)))              candidate (reset after U, as Keras'
                                                          ``reset_after=True``)
        h' = z * h + (1 - z) * c

    The gate order in the kernels is (z, r, c), as in `keras.layers.GRUCell`. Layer norm is
    computed in float32 under mixed precision (`pagi_rsm.ops.layer_norm`).

    Args:
      units: positive int, hidden size.
      epsilon: positive float added to the variance in layer norm (default 1e-5).
      kernel_initializer: initializer of W `[features, 3*units]` (default glorot_uniform).
      recurrent_initializer: initializer of U `[units, 3*units]` (default orthogonal).
      **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
      inputs: `[batch, features]`, one time step.
      states: ``[h]`` with h `[batch, units]`.
      training: unused.

    Returns:
      ``(h', [h'])``.

    Example:
      >>> import numpy as np, keras
      >>> rnn = keras.layers.RNN(LayerNormGRUCell(8))
      >>> tuple(rnn(np.zeros((2, 11, 37), "float32")).shape)
      (2, 8)
    """

    def __init__(self, units, epsilon=1e-5, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, numbers.Integral) or isinstance(units, bool) or units < 1:
            raise ValueError(f"units must be an integer >= 1, got {units!r}")
        if not isinstance(epsilon, numbers.Real) or isinstance(epsilon, bool) or not epsilon > 0:
            raise ValueError(f"epsilon must be a number > 0, got {epsilon!r}")
        self.units = int(units)
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "LayerNormGRUCell expects the input of one time step with shape [batch, features] "
                f"(rank 2, known features; wrap it in keras.layers.RNN), got {tuple(input_shape)}")
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], 3 * self.units),
                                      initializer=self.kernel_initializer)
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(self.units, 3 * self.units),
            initializer=self.recurrent_initializer)
        self.ln_gain = self.add_weight(name="ln_gain", shape=(3, self.units), initializer="ones")
        self.ln_bias = self.add_weight(name="ln_bias", shape=(3, self.units),
                                       initializer="zeros")

    def call(self, inputs, states, training=None):
        del training
        h = states[0] if isinstance(states, (list, tuple)) else states
        x_z, x_r, x_c = ops.split(ops.matmul(inputs, self.kernel), 3, axis=-1)
        h_z, h_r, h_c = ops.split(ops.matmul(h, self.recurrent_kernel), 3, axis=-1)

        def norm(v, i):
            return layer_norm(v, self.ln_gain[i], self.ln_bias[i], self.epsilon)

        z = ops.sigmoid(norm(x_z + h_z, 0))
        r = ops.sigmoid(norm(x_r + h_r, 1))
        c = ops.tanh(norm(x_c + r * h_c, 2))
        h_new = z * h + (1.0 - z) * c
        return h_new, [h_new]

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "epsilon": self.epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
        })
        return config
