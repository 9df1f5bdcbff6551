"""FastWeightsCell: an RNN with layer norm and a per-sample fast-weight memory (Ba et al. 2016).

"Using Fast Weights to Attend to the Recent Past" (Ba, Hinton, Mnih, Leibo, Ionescu, NIPS 2016).
The recurrence, the choices made where peer ports differ, and the two implementations are in the
docstring of `FastWeightsCell` and explained in docs/fast_weights.md; the stateless maths is in
`pagi_rsm.ops.fast_weights` and `pagi_rsm.ops.layer_norm`.
"""

import keras
from keras import ops

from pagi_rsm import checks
from pagi_rsm.deprecation import deprecated_name
from pagi_rsm.hparams.fast_weights import IMPLEMENTATIONS
from pagi_rsm.ops.fast_weights import (apply_fast_weights, attend_and_normalise, attend_history,
                                       slot_weights, update_fast_weights, write_history)
from pagi_rsm.ops.layer_norm import layer_norm

__all__ = ["FastWeightsCell", "IMPLEMENTATIONS"]


DEFAULT_RECURRENT_GAIN = 0.05
"""The slow recurrent kernel W starts as ``0.05 * I`` (Ba et al.; Goku's port)."""


_EXACT_INTEGERS = {"float16": 2048, "bfloat16": 256}
"""Largest whole number each low-precision dtype holds exactly (the ring position state)."""


@keras.saving.register_keras_serializable(package="pagi_rsm")
class FastWeightsCell(keras.layers.Layer):
    """RNN cell with layer normalisation and fast weights ("RNN-LN-FW", Ba et al. 2016).

    Equations (one call = one time step t; x(t) is the input, h(t) the incoming hidden state):

    1. Fast-weight update, from the incoming hidden state h(t) (the newest state, so A(t) already
       holds it when h(t+1) is computed; A is per sample and starts at 0 for every sequence):

           A(t) = decay * A(t-1) + fast_learning_rate * h(t) h(t)^T

    2. Sustained boundary term, computed once and reused at every inner step (W and C are the
       slow weights, trained by backprop):

           z = W h(t) + C x(t) + b

    3. Preliminary vector and inner loop of S = `inner_steps` steps, with f = `activation`
       (ReLU) and LN the layer normalisation of each sample over its features (learned gain and
       bias, shared by all inner steps):

           h_0(t+1)     = f(z)                            (the paper's preliminary vector)
           h_{s+1}(t+1) = f(LN(z + A(t) h_s(t+1)))        for s = 0 .. S-1
           h(t+1)       = h_S(t+1)

       The paper layer-normalises the inner loop only; some summaries also normalise the
       preliminary vector, h_0 = f(LN(z)): ``preliminary_layer_norm=True``. That reading trains
       badly (docs/fast_weights.md#readings-that-differ explains why, with the measurement).

    With ``fast_learning_rate=0`` A stays 0, the inner loop gives f(LN(z)), and the cell is the
    paper's RNN-LN baseline; it then carries only h (no memory state) and computes f(LN(z))
    once. With ``layer_norm=False`` LN is the identity (the ablation that peers report does not
    train).

    Implementations (same outputs to float tolerance; both carry the memory in the state, so
    fast weights never mix across samples of a batch):

    * ``"explicit"``: the state holds A(t-1) as a `[B, H, H]` matrix (flattened to `H*H`).
      Cost per step O(B H^2) (update) + O(S B H^2) (products).
    * ``"attention"``: the state holds the last L = `max_length` hidden states h(t-L+1) .. h(t)
      in a ring buffer of L slots: the step writes h(t) over the oldest slot (one scatter; the
      other slots do not move) and computes
      ``A(t) h_s = fast_learning_rate * sum_tau decay^(t-tau) h(tau) (h(tau)^T h_s)``
      without materialising A, each slot weighted by its age. Cost O(S B L H) per step. Exact
      for sequences of at most `max_length` + 1 steps from the zero initial state (the initial
      h(0) = 0 adds nothing to A, so a T-step sequence needs only h(1) .. h(T-1)); from a
      non-zero initial state, for at most `max_length` steps. On longer sequences the terms
      older than `max_length` steps (weight <= decay^max_length) are dropped. With layer norm
      each inner step is one `pagi_rsm.ops.fast_weights.attend_and_normalise` (batched
      mat-vec products and a hand-written gradient: the same values, a much smaller graph than
      automatic differentiation of the composed ops).

    States (in the order of `state_size`): ``h`` `[B, units]`, then the memory: ``A`` flattened
    `[B, units*units]` ("explicit"), or ("attention") the ring buffer flattened
    `[B, max_length*units]` (slot l is ``ring[:, l*units:(l+1)*units]``) and the position
    `[B, 1]`, the slot the next h goes into (a whole number stored as a float, read modulo
    `max_length`; the slots in time order, oldest first, are ``position, position + 1, ...``);
    no memory when ``fast_learning_rate == 0``. The zero initial state of
    `keras.layers.RNN` is the paper's "A = 0 at the start of each sequence". Under mixed
    precision the matmuls run in the compute dtype (float16) while layer norm and the fast-weight
    products run in float32; the states are stored in the compute dtype.

    Args:
      units: positive int, hidden size H (R in the paper's Table 1).
      decay: lambda in [0, 1], how fast the fast weights forget (default 0.95).
      fast_learning_rate: eta >= 0, the fast-weight learning rate (default 0.5; 0 disables the
        memory).
      inner_steps: int S >= 1, inner-loop steps per time step (default 1).
      implementation: ``"explicit"`` (default) or ``"attention"``, see above.
      max_length: int >= 1, history length of the ``"attention"`` implementation (required
        there; the sequence length minus one is exact from the zero initial state, the
        sequence length from any initial state). Must be None or >= 1 otherwise.
      layer_norm: bool, apply layer normalisation in the inner loop (default True).
      preliminary_layer_norm: bool, also layer-normalise the preliminary vector,
        h_0 = f(LN(z)) instead of the paper's f(z) (default False; see above). Needs
        `layer_norm`.
      activation: activation f (default ``"relu"``).
      epsilon: positive float added to the variance in layer norm (default 1e-5).
      kernel_initializer: initializer of the input kernel C `[features, units]`.
      recurrent_initializer: initializer of the slow recurrent kernel W `[units, units]`;
        default ``Identity(gain=0.05)``.
      bias_initializer: initializer of b `[units]` (default zeros).
      **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
      inputs: `[batch, features]` input x(t) of one time step.
      states: list of state tensors as described above.
      training: unused (no dropout); accepted for the `RNN` API.

    Returns:
      ``(h(t+1), new_states)``: output `[batch, units]` and the list of next states.

    Input shape of the wrapping RNN: `[batch, time, features]`; output `[batch, units]` or
    `[batch, time, units]` with ``return_sequences=True``.

    Example:
      >>> import numpy as np, keras
      >>> cell = FastWeightsCell(8, implementation="attention", max_length=11)
      >>> rnn = keras.layers.RNN(cell)
      >>> tuple(rnn(np.zeros((2, 11, 37), "float32")).shape)
      (2, 8)
    """

    def __init__(self, units, decay=0.95, fast_learning_rate=0.5, inner_steps=1,
                 implementation="explicit", max_length=None, layer_norm=True,
                 preliminary_layer_norm=False, activation="relu",
                 epsilon=1e-5, kernel_initializer="glorot_uniform", recurrent_initializer=None,
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        checks.check_int("units", units, low=1)
        checks.check_condition(checks.is_number(decay) and 0.0 <= decay <= 1.0,
                               f"decay must be in [0, 1], got {decay!r}")
        checks.check_condition(
            checks.is_number(fast_learning_rate) and 0.0 <= fast_learning_rate < float("inf"),
            f"fast_learning_rate must be a finite number >= 0, got {fast_learning_rate!r}")
        checks.check_int("inner_steps", inner_steps, low=1)
        checks.check_choice("implementation", implementation, IMPLEMENTATIONS)
        checks.check_int("max_length", max_length, low=1, nullable=True)
        if implementation == "attention" and max_length is None:
            raise ValueError(
                "max_length must be an integer >= 1 when implementation='attention' (the number "
                "of past hidden states kept; the sequence length makes it exact), got None")
        checks.check_bool("layer_norm", layer_norm)
        checks.check_bool("preliminary_layer_norm", preliminary_layer_norm)
        if preliminary_layer_norm and not layer_norm:
            raise ValueError("preliminary_layer_norm=True needs layer_norm=True")
        checks.check_number("epsilon", epsilon, low=0, low_open=True)
        self.units = int(units)
        self.decay = float(decay)
        self.fast_learning_rate = float(fast_learning_rate)
        self.inner_steps = int(inner_steps)
        self.implementation = implementation
        self.max_length = None if max_length is None else int(max_length)
        self.layer_norm = layer_norm
        self.preliminary_layer_norm = preliminary_layer_norm
        self.activation = keras.activations.get(activation)
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(
            recurrent_initializer if recurrent_initializer is not None
            else keras.initializers.Identity(gain=DEFAULT_RECURRENT_GAIN))
        self.bias_initializer = keras.initializers.get(bias_initializer)

    @property
    def uses_memory(self):
        """False when ``fast_learning_rate == 0``: the cell is then a plain RNN-LN."""
        return self.fast_learning_rate > 0.0

    @property
    def state_size(self):
        if not self.uses_memory:
            return [self.units]
        if self.implementation == "explicit":
            return [self.units, self.units * self.units]
        return [self.units, self.max_length * self.units, 1]

    @property
    def output_size(self):
        return self.units

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                "FastWeightsCell expects the input of one time step with shape "
                f"[batch, features] (rank 2; wrap the cell in keras.layers.RNN for "
                f"[batch, time, features]), got shape {tuple(input_shape)}")
        features = input_shape[-1]
        if features is None:
            raise ValueError("the feature axis of the FastWeightsCell input must be known")
        exact = _EXACT_INTEGERS.get(self.compute_dtype)
        if (self.implementation == "attention" and self.uses_memory and exact is not None
                and self.max_length > exact):
            raise ValueError(
                f"max_length must be <= {exact} under the compute dtype {self.compute_dtype} "
                f"(the ring-buffer position is a state of that dtype, exact up to {exact}), got "
                f"{self.max_length}")
        self.kernel = self.add_weight(
            name="kernel", shape=(features, self.units), initializer=self.kernel_initializer)
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(self.units, self.units),
            initializer=self.recurrent_initializer)
        self.bias = self.add_weight(
            name="bias", shape=(self.units,), initializer=self.bias_initializer)
        if self.layer_norm:
            self.ln_gain = self.add_weight(name="ln_gain", shape=(self.units,),
                                           initializer="ones")
            self.ln_bias = self.add_weight(name="ln_bias", shape=(self.units,),
                                           initializer="zeros")

    def _normalise_activate(self, z):
        """f(LN(z)) in float32."""
        if self.layer_norm:
            z = layer_norm(z, self.ln_gain, self.ln_bias, self.epsilon)
        return self.activation(z)

    def call(self, inputs, states, training=None):
        del training  # no dropout
        hidden = states[0]
        boundary = (ops.matmul(inputs, self.kernel) + ops.matmul(hidden, self.recurrent_kernel)
                    + self.bias)
        boundary = ops.cast(boundary, "float32")
        if not self.uses_memory:  # A = 0: the inner loop gives f(LN(z))
            h_new = ops.cast(self._normalise_activate(boundary), self.compute_dtype)
            return h_new, [h_new]
        h_s = (self._normalise_activate(boundary) if self.preliminary_layer_norm
               else self.activation(boundary))

        if self.implementation == "explicit":
            fast_weights = ops.reshape(ops.cast(states[1], "float32"),
                                       (-1, self.units, self.units))
            fast_weights = update_fast_weights(fast_weights, ops.cast(hidden, "float32"),
                                               self.decay, self.fast_learning_rate)
            for _ in range(self.inner_steps):
                h_s = self._normalise_activate(
                    boundary + apply_fast_weights(fast_weights, h_s))
            memory = [ops.cast(ops.reshape(fast_weights, (-1, self.units * self.units)),
                               self.compute_dtype)]
        else:
            length = self.max_length
            position = states[2]  # modulo: a position from a user's initial state stays in range
            slot = ops.mod(ops.cast(position[:, 0], "int32"), length)
            ring = write_history(ops.reshape(states[1], (-1, length, self.units)), hidden, slot)
            history = ops.cast(ring, "float32")
            weights = slot_weights(slot, length, self.decay, self.fast_learning_rate)
            memory = [ops.reshape(ring, (-1, length * self.units)),
                      ops.cast(ops.mod(slot + 1, length), position.dtype)[:, None]]
            if self.layer_norm:  # the same values, with a cheaper hand-written gradient
                gain = ops.cast(self.ln_gain, "float32")
                bias = ops.cast(self.ln_bias, "float32")
                for _ in range(self.inner_steps):
                    h_s = self.activation(attend_and_normalise(
                        boundary, h_s, history, weights, gain, bias, self.epsilon))
            else:
                for _ in range(self.inner_steps):
                    h_s = self.activation(boundary + attend_history(history, h_s, weights))
        h_new = ops.cast(h_s, self.compute_dtype)
        return h_new, [h_new] + list(memory)

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "decay": self.decay,
            "fast_learning_rate": self.fast_learning_rate,
            "inner_steps": self.inner_steps,
            "implementation": self.implementation,
            "max_length": self.max_length,
            "layer_norm": self.layer_norm,
            "preliminary_layer_norm": self.preliminary_layer_norm,
            "activation": keras.activations.serialize(self.activation),
            "epsilon": self.epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config


def __getattr__(name):
    """`FastWeightsRNNLN`: the deprecated name of `FastWeightsCell` (it is a cell, not an RNN
    layer), kept for one release (pagi_rsm.deprecation)."""
    if name == "FastWeightsRNNLN":
        return deprecated_name("FastWeightsRNNLN", "FastWeightsCell", FastWeightsCell)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
