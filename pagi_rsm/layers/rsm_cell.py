"""`RSMCell`: one layer of Recurrent Sparse Memory for one time step (explained in docs/rsm.md)."""
import collections

import keras
import tensorflow as tf
from keras import ops

from pagi_rsm.hparams.rsm_cell import OPTIONS
from pagi_rsm.deprecation import deprecated_alias
from pagi_rsm.ops import rsm as rsm_ops

# `pooled` is what the decoder reads (each group's cells pooled by `decoder_pooling`);
# `decoding` is None when `step(..., decode=False)` leaves the decoder to `decode(pooled)`.
RSMStep = collections.namedtuple("RSMStep", ["encoding", "decoding", "mask", "states", "pooled"],
                                 defaults=(None,))

# recurrent_path="auto" takes the sparse path when the active cells k are at most this fraction
# of the n cells (and there is no trace): docs/performance.md has the measurements.
AUTO_SPARSE_FRACTION = 0.01


@keras.saving.register_keras_serializable(package="pagi_rsm")
class RSMCell(keras.layers.Layer):
    """Recurrent Sparse Memory cell (Rawlinson, Ahmed & Kowadlo, arXiv 1905.11589).

    `groups` (g) groups of `cells_per_group` (c) cells, n = g·c cells in all. At step t the
    cell sees only previous-step quantities (docs/rsm.md#time-convention): the feed-forward
    drive uses the previous input x_{t−1} (held in the state), the recurrent drive the previous
    output y_{t−1}; the current input x_t is only the target of the decoder:

        F   = cond(x_{t−1}) W_f (+ b_f)                  one weight vector per group, [B, g]
        R   = cond_r(y_{t−1}) W_r (+ b_r)                one weight vector per cell,  [B, n]
        Bf  = cond_r(fb_{t−1}) W_b (+ b_b)               optional feedback from a higher layer
        Z   = tile_c(F) + R (+ Bf)
        ρ   = (Z − min Z + 1)·(1 − I_{t−1})              or Z·boost when boost_strength > 0
        M   = top-k groups of max_c ρ, best cell of each  exactly k cells
        y_t = tanh(Z ⊙ M);   I_t = max(γ·I_{t−1}, M)
        x̂_t = dec(max_cells(y_t) W_d + b_d)              predicts x_t

    cond_r(u) = N(max(ε·ψ_{t−1}, u)) is the recurrent trace with per-sample sum-normalisation N
    (ψ_t is the stored trace; ε = 0 gives N(u)); dropout with keep rate `recurrent_keep_rate`
    follows in training. The mask, every incoming state and the published encoding are
    `stop_gradient`: credit assignment is local and immediate (BPTT = 1). The decoder loss
    MSE(x_t, x̂_t) trains W_f, W_r, W_b, W_d and the biases; it is computed by the caller (e.g.
    `SequenceMemoryStack`), or in plain Keras from the decoding when `output_decoding=True`.

    Names follow the papers; the original pagi/rsm hparams map as follows:

    | here | original (`SequenceMemoryLayer`) | symbol |
    |---|---|---|
    | `groups` | `cols` | g |
    | `cells_per_group` | `cells_per_col` | c |
    | `active_groups` | `sparsity` | k |
    | `inhibition_decay` | `inhibition_decay` | γ |
    | `inhibition_with_mask` | `inhibition_with_mask` | |
    | `recurrent_decay` | `rb_decay_rate` (older: `feedback_decay_rate`) | ε |
    | `recurrent_decay_floor` | `rb_decay_floor` | |
    | `recurrent_norm`, `recurrent_norm_eps` | `rb_norm_type`, `rb_norm_eps` | |
    | `recurrent_keep_rate` | `rb_keep_rate` (older: `feedback_keep_rate`) | |
    | `input_decay`, `input_decay_floor` | `f_decay_rate`, `f_decay_floor` | ε_f |
    | `input_norm`, `input_norm_eps`, `input_keep_rate` | `f_norm_type`, `f_norm_eps`, `f_keep_rate` | |
    | `input_norm_first` | `input_norm_first` | |
    | `hidden_keep_rate` | `hidden_keep_rate` | |
    | `boost_strength` | `boost_factor` | |
    | `activation` | `hidden_nonlinearity` | φ |
    | `decoder_activation` | `decode_nonlinearity` | φ_d |
    | `decoder_units` | target area (`decode_mode='fc'`) | |
    | `use_input_bias`, `use_recurrent_bias`, `use_feedback_bias`, `use_decoder_bias` | `f_bias`, `r_bias`, `b_bias`, `d_bias` | |
    | `feedback_units` | feedback shape (`connectivity='bi'`) | n' |

    Decisions on the original's quirks (numbered as in docs/rsm.md#quirks):
    1. Resets: a per-sample `reset` zeroes every state (x_{t−1} included) *before* the step
       whose input starts a new sequence, i.e. the clean version; the original's grammar
       workflow leaked y of the final E into the next string.
    2. The decoder sees `max` over the cells of each group (faithful), so a winner with a
       negative value is invisible to the decoder when c > 1.
    3. The recurrent sum-normalisation divides by the signed sum + ε, as in the original.
    4. γ = 0 still gives a one-step refractory period (faithful: I_t = max(0, M_t)).
    5. The ranking shift uses the per-sample minimum over all cells (faithful).
    6. Ties go to the lowest index, by an explicit rule every device computes alike: groups
       tied at the k-th score and cells tied at their group's best score. This contains the
       original "all equal → cell 0" rule and keeps exactly k cells active where the original
       keeps every tied cell (right after a zero state); see `pagi_rsm.ops.rsm.group_cell_mask`.
    8. Dead features of the original (`boost_factor_decay` placeholder, lifetime sparsity,
       `dends_per_cell`) are not reproduced; boost updates are done by the caller through
       `update_duty_cycle` (docs/rsm.md#boosting), with no dead decay.
    11. Biases default to zeros (the original's `'none'` initialiser drew Glorot-uniform
       biases); pass `bias_initializer="glorot_uniform"` to match it.

    Args:
      groups: g, groups (columns), ≥ 1.
      cells_per_group: c, cells per group, ≥ 1.
      active_groups: k, active groups per step, 1 ≤ k ≤ g.
      inhibition_decay: γ in [0, 1].
      recurrent_decay: ε in [0, 1]; > 0 adds the recurrent (and feedback) trace states.
      recurrent_decay_floor: ≥ 0.
      recurrent_norm: "sum" (default, the original: divide by the signed sum), "abs_sum"
        (divide by the sum of |y|: the same for non-negative inputs, bounded when negative tanh
        winners make the signed sum cancel; docs/rsm.md#quirks item 3) or None.
      recurrent_norm_eps: > 0, default 1e-11.
      recurrent_keep_rate: dropout keep rate of the recurrent/feedback input, (0, 1].
      input_decay, input_decay_floor, input_norm, input_norm_eps, input_keep_rate: the same for
        the feed-forward input (defaults: no trace, no norm, keep 1).
      input_norm_first: order of norm and trace (default False, the original's).
      hidden_keep_rate: dropout keep rate of the refractory multiplier (1 − I) in training.
      inhibition_with_mask: I_t from the mask M (True) or from y (False).
      boost_strength: > 0 ranks by Z·boost instead of inhibition.
      activation: φ, default "tanh".
      decoder_units: size of the decoded target; default = the input size.
      decoder_activation: φ_d, default None (linear).
      use_input_bias, use_recurrent_bias, use_feedback_bias, use_decoder_bias: bias flags.
      input_initializer, recurrent_initializer, feedback_initializer, decoder_initializer,
        bias_initializer: Keras initialisers (kernels default Glorot-uniform, as the original).
      feedback_units: n' > 0 enables feedback input from a higher layer.
      reset_input: when used in `keras.layers.RNN`, the last input feature of each step is
        the per-sample reset flag (1 = new sequence).
      output_decoding: when used in `keras.layers.RNN`, the output is `concat([y, x̂])`
        instead of y, so a plain Keras loss can train the decoder.
      recurrent_path: "dense" computes R = r W_r as a matmul; "sparse" uses that r has at most
        k non-zeros per sample when ε = 0 (only the k winners of y_{t−1} are non-zero) and adds
        just their rows of W_r (`pagi_rsm.ops.rsm.sparse_input_matmul`: B·k·n multiply-adds
        instead of B·n², forward and gradient). Both give the same numbers up to float
        summation order (tested). "auto" (default) takes the sparse path when ε = 0 and
        k ≤ 1% of the n cells, where it is the faster one on CPU, else the dense path
        (docs/rsm.md#recurrent-path).
      decoder_pooling: how the decoder reads a group: "max" over its cells (the original;
        a winner with a negative value is then invisible to the decoder and gets no decoder
        gradient, docs/rsm.md#quirks item 2) or "sum" (the value of the one active cell,
        whatever its sign).
      seed: seed of the dropout draws.

    Call arguments (Keras RNN cell API, `call(inputs, states, training)`):
      inputs: [B, D] (+1 reset feature if `reset_input`, + n' feedback features if
        `feedback_units`), ordered `[x, reset, feedback]`.
      states: list as in `state_size`: [x_prev (D), y_prev (n), inhibition (n)] then the traces
        ψ_r (n) if ε > 0, ψ_f (D) if ε_f > 0, ψ_b (n') if feedback and ε > 0.
      Returns `(output, new_states)`; output is y [B, n] (stop-gradient) or `[y, x̂]`.
    `step(x, states, reset=None, feedback=None, training=False, decode=True)` returns the full
    `RSMStep` (encoding, decoding, mask, states, pooled) for callers that need all of them.
    With ``decode=False`` the decoder is left out (decoding None) and `decode(pooled)` runs it
    later, e.g. once over all the steps of a chunk when the weights do not change in between.

    Example:
    ```python
    cell = pagi_rsm.RSMCell(groups=20, cells_per_group=4, active_groups=3, inhibition_decay=0.9,
                            output_decoding=True)
    layer = keras.layers.RNN(cell, return_sequences=True)
    out = layer(np.random.rand(8, 10, 16).astype("float32"))  # [8, 10, 80 + 16]
    ```
    """

    def __init__(self, groups, cells_per_group, active_groups=None, inhibition_decay=0.1,
                 recurrent_decay=0.0, recurrent_decay_floor=0.0, recurrent_norm="sum",
                 recurrent_norm_eps=1e-11, recurrent_keep_rate=1.0, input_decay=0.0,
                 input_decay_floor=0.0, input_norm=None, input_norm_eps=1e-11,
                 input_keep_rate=1.0, input_norm_first=False, hidden_keep_rate=1.0,
                 inhibition_with_mask=True, boost_strength=0.0, activation="tanh",
                 decoder_units=None, decoder_activation=None, use_input_bias=False,
                 use_recurrent_bias=False, use_feedback_bias=False, use_decoder_bias=True,
                 input_initializer="glorot_uniform", recurrent_initializer="glorot_uniform",
                 feedback_initializer="glorot_uniform", decoder_initializer="glorot_uniform",
                 bias_initializer="zeros", feedback_units=0, reset_input=False,
                 output_decoding=False, recurrent_path="auto", decoder_pooling="max", seed=None,
                 **kwargs):
        active_groups = deprecated_alias(kwargs, "sparsity", "active_groups", active_groups)
        boost_strength = deprecated_alias(kwargs, "boost_factor", "boost_strength",
                                          boost_strength, default=0.0)
        super().__init__(**kwargs)
        OPTIONS.check(dict(
            groups=groups, cells_per_group=cells_per_group, active_groups=active_groups,
            inhibition_decay=inhibition_decay, recurrent_decay=recurrent_decay,
            recurrent_decay_floor=recurrent_decay_floor, recurrent_norm=recurrent_norm,
            recurrent_norm_eps=recurrent_norm_eps, recurrent_keep_rate=recurrent_keep_rate,
            input_decay=input_decay, input_decay_floor=input_decay_floor, input_norm=input_norm,
            input_norm_eps=input_norm_eps, input_keep_rate=input_keep_rate,
            hidden_keep_rate=hidden_keep_rate, boost_strength=boost_strength,
            use_input_bias=use_input_bias, use_recurrent_bias=use_recurrent_bias,
            use_feedback_bias=use_feedback_bias, use_decoder_bias=use_decoder_bias,
            recurrent_path=recurrent_path, decoder_pooling=decoder_pooling,
            inhibition_with_mask=inhibition_with_mask, input_norm_first=input_norm_first,
            decoder_units=decoder_units, feedback_units=feedback_units))
        self.recurrent_path = recurrent_path
        self.decoder_pooling = decoder_pooling
        self.groups = groups
        self.cells_per_group = cells_per_group
        self.active_groups = active_groups
        self.inhibition_decay = float(inhibition_decay)
        self.recurrent_decay = float(recurrent_decay)
        self.recurrent_decay_floor = float(recurrent_decay_floor)
        self.recurrent_norm = recurrent_norm
        self.recurrent_norm_eps = float(recurrent_norm_eps)
        self.recurrent_keep_rate = float(recurrent_keep_rate)
        self.input_decay = float(input_decay)
        self.input_decay_floor = float(input_decay_floor)
        self.input_norm = input_norm
        self.input_norm_eps = float(input_norm_eps)
        self.input_keep_rate = float(input_keep_rate)
        self.input_norm_first = bool(input_norm_first)
        self.hidden_keep_rate = float(hidden_keep_rate)
        self.inhibition_with_mask = bool(inhibition_with_mask)
        self.boost_strength = float(boost_strength)
        self.activation = keras.activations.get(activation)
        with tf.init_scope():  # eager even when the layer is made inside a tf.function
            self._activation_keeps_zero = bool(tf.reduce_all(tf.equal(
                self.activation(tf.zeros((1,), tf.float32)), 0.0)).numpy())
        self.decoder_units = decoder_units
        self.decoder_activation = keras.activations.get(decoder_activation)
        self.use_input_bias = use_input_bias
        self.use_recurrent_bias = use_recurrent_bias
        self.use_feedback_bias = use_feedback_bias
        self.use_decoder_bias = use_decoder_bias
        self.input_initializer = keras.initializers.get(input_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.feedback_initializer = keras.initializers.get(feedback_initializer)
        self.decoder_initializer = keras.initializers.get(decoder_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.feedback_units = feedback_units
        self.reset_input = bool(reset_input)
        self.output_decoding = bool(output_decoding)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.input_dim = None

    # ------------------------------------------------------------------ shapes
    @property
    def units(self):
        """n = g·c, the number of cells (the size of the encoding)."""
        return self.groups * self.cells_per_group

    def _extra_features(self):
        return int(self.reset_input) + self.feedback_units

    @property
    def state_size(self):
        # Input-sized states are None until the cell is built (the input size is unknown).
        sizes = [self.input_dim, self.units, self.units]
        if self.recurrent_decay > 0:
            sizes.append(self.units)
        if self.input_decay > 0:
            sizes.append(self.input_dim)
        if self.feedback_units and self.recurrent_decay > 0:
            sizes.append(self.feedback_units)
        return sizes

    @property
    def output_size(self):
        return self.units + (self.target_units if self.output_decoding else 0)

    @property
    def target_units(self):
        return self.decoder_units or self.input_dim

    def _pool_cells(self, y, mask):
        """What the decoder reads of each group (`pagi_rsm.ops.rsm.pool_cells`). When the
        activation maps 0 to exactly 0 (tanh, relu, linear), every inactive cell outputs 0 and
        the max over cells takes its gradient from the selection mask."""
        return rsm_ops.pool_cells(y, self.decoder_pooling,
                                  mask if self._activation_keeps_zero else None)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"RSMCell expects per-step inputs of rank 2 [batch, features], got shape "
                f"{tuple(input_shape)}")
        features = input_shape[-1]
        extra = self._extra_features()
        if features is None or features - extra < 1:
            raise ValueError(
                f"RSMCell input has {features} features but needs at least {extra + 1} "
                f"(input, reset flag if reset_input, feedback_units={self.feedback_units})")
        self.input_dim = int(features - extra)
        g, n = self.groups, self.units
        self.input_kernel = self.add_weight(
            name="input_kernel", shape=(self.input_dim, g), initializer=self.input_initializer)
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(n, n), initializer=self.recurrent_initializer)
        self.decoder_kernel = self.add_weight(
            name="decoder_kernel", shape=(g, self.target_units),
            initializer=self.decoder_initializer)
        self.input_bias = self._bias("input_bias", g, self.use_input_bias)
        self.recurrent_bias = self._bias("recurrent_bias", n, self.use_recurrent_bias)
        self.decoder_bias = self._bias("decoder_bias", self.target_units, self.use_decoder_bias)
        self.feedback_kernel = self.feedback_bias = None
        if self.feedback_units:
            self.feedback_kernel = self.add_weight(
                name="feedback_kernel", shape=(self.feedback_units, n),
                initializer=self.feedback_initializer)
            self.feedback_bias = self._bias("feedback_bias", n, self.use_feedback_bias)
        self._add_statistics(n)

    def _add_statistics(self, n):
        """The cell statistics (docs/rsm.md#duty-cycles), updated by `update_duty_cycle`, never
        by gradients."""
        self.duty_cycle = self.add_weight(
            name="duty_cycle", shape=(n,), initializer="zeros", trainable=False,
            aggregation="only_first_replica")
        self.boost = self.add_weight(
            name="boost", shape=(n,), initializer="ones", trainable=False,
            aggregation="only_first_replica")

    def _bias(self, name, size, enabled):
        if not enabled:
            return None
        return self.add_weight(name=name, shape=(size,), initializer=self.bias_initializer)

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, size), dtype=self.compute_dtype)
                for size in self.state_size]

    # ------------------------------------------------------------------ step
    def _dropout(self, x, keep_rate, training):
        if not training or keep_rate >= 1.0:
            return x
        return keras.random.dropout(x, 1.0 - keep_rate, seed=self.seed_generator)

    def _dense(self, x, kernel, bias):
        y = ops.matmul(x, ops.cast(kernel, x.dtype))
        return y if bias is None else y + ops.cast(bias, x.dtype)

    @property
    def uses_sparse_recurrent_path(self):
        """True when R = r W_r runs through the non-zero entries of r (see `recurrent_path`)."""
        if self.recurrent_path == "auto":
            return (self.recurrent_decay == 0
                    and self.active_groups <= AUTO_SPARSE_FRACTION * self.units)
        return self.recurrent_path == "sparse"

    def _drive(self, inputs, kernel, bias, sparse, max_nonzero, training):
        """dropout(inputs) W (+ b) with the recurrent keep rate: the recurrent (and, in
        `ConvRSM`, feedback) drive; `inputs` is [M, m].

        Dense: dropout on the whole input, then the matmul. Sparse (`sparse` True): the product
        of the non-zero entries only (at most `max_nonzero` per row), with the dropout drawn
        for them alone (a dropped zero stays zero): k random numbers per row instead of m.
        """
        if not sparse:
            inputs = self._dropout(inputs, self.recurrent_keep_rate, training)
            return self._dense(inputs, kernel, bias)
        drive = rsm_ops.sparse_input_matmul(
            inputs, ops.cast(kernel, inputs.dtype), max_nonzero,
            values_fn=lambda v: self._dropout(v, self.recurrent_keep_rate, training))
        return drive if bias is None else drive + ops.cast(bias, drive.dtype)

    def decode(self, pooled):
        """x̂ = φ_d(pooled W_d + b_d): the prediction of the input from the pooled code [M, g]
        (`RSMStep.pooled`; M may hold any number of steps' rows)."""
        with tf.name_scope("decoder"):
            decoded = self._dense(pooled, self.decoder_kernel, self.decoder_bias)
            return self.decoder_activation(decoded)

    def step(self, x, states, reset=None, feedback=None, training=False, decode=True):
        """One step of the memory; returns `RSMStep(encoding, decoding, mask, states, pooled)`.

        Args:
          x: current input x_t [B, D] (the decoder target; the drive uses the stored x_{t−1}).
          states: list of state tensors as in `state_size`.
          reset: optional [B] or [B, 1]; 1 zeroes the sample's state before the step.
          feedback: [B, n'] the higher layer's previous output, when `feedback_units`.
          training: enables dropout.
          decode: False leaves the decoder out (decoding None): see `decode`.
        """
        dtype = x.dtype
        states = [tf.stop_gradient(ops.cast(s, dtype)) for s in states]
        if reset is not None:
            states = rsm_ops.clear_rows(states, reset)
            if feedback is not None:
                [feedback] = rsm_ops.clear_rows([feedback], reset)
        x_prev, y_prev, inhibition, *traces = states
        traces = list(traces)
        r_trace = traces.pop(0) if self.recurrent_decay > 0 else None
        f_trace = traces.pop(0) if self.input_decay > 0 else None
        b_trace = traces.pop(0) if (self.feedback_units and self.recurrent_decay > 0) else None

        # Name scopes label the parts of a step in profiles (benchmarks/rsm_throughput.py
        # --profile); they do not change the computation.
        g, c = self.groups, self.cells_per_group
        with tf.name_scope("feed_forward"):
            f_in, f_trace = rsm_ops.condition_input(
                x_prev, f_trace, decay=self.input_decay, floor=self.input_decay_floor,
                norm=self.input_norm, norm_eps=self.input_norm_eps,
                norm_first=self.input_norm_first)
            f_in = self._dropout(f_in, self.input_keep_rate, training)
            forward = self._dense(f_in, self.input_kernel, self.input_bias)        # [B, g]
        with tf.name_scope("recurrent"):
            r_in, r_trace = rsm_ops.condition_input(
                y_prev, r_trace, decay=self.recurrent_decay, floor=self.recurrent_decay_floor,
                norm=self.recurrent_norm, norm_eps=self.recurrent_norm_eps,
                norm_first=self.input_norm_first)
            drive = self._drive(r_in, self.recurrent_kernel, self.recurrent_bias,   # [B, n]
                                self.uses_sparse_recurrent_path, self.active_groups, training)
        if self.feedback_units:
            if feedback is None:
                raise ValueError("this RSMCell has feedback_units > 0: pass `feedback`")
            with tf.name_scope("feedback"):
                feedback = tf.stop_gradient(ops.cast(feedback, dtype))
                b_in, b_trace = rsm_ops.condition_input(
                    feedback, b_trace, decay=self.recurrent_decay,
                    floor=self.recurrent_decay_floor, norm=self.recurrent_norm,
                    norm_eps=self.recurrent_norm_eps, norm_first=self.input_norm_first)
                b_in = self._dropout(b_in, self.recurrent_keep_rate, training)
                drive = drive + self._dense(b_in, self.feedback_kernel, self.feedback_bias)
        with tf.name_scope("selection"):
            z = ops.reshape(drive, (-1, g, c)) + forward[:, :, None]               # [B, g, c]
            if self.boost_strength > 0:
                rho = z * ops.reshape(ops.cast(self.boost, dtype), (1, g, c))
            else:
                refractory = 1.0 - ops.reshape(inhibition, (-1, g, c))
                refractory = self._dropout(refractory, self.hidden_keep_rate, training)
                rho = rsm_ops.inhibition_ranking(z, refractory)
            mask = tf.stop_gradient(rsm_ops.group_cell_mask(rho, self.active_groups))
        with tf.name_scope("activation"):
            y = self.activation(z * mask)                                         # [B, g, c]
        with tf.name_scope("decoder"):
            pooled = self._pool_cells(y, mask)
        decoded = self.decode(pooled) if decode else None
        with tf.name_scope("state"):
            y_flat = ops.reshape(y, (-1, self.units))
            mask_flat = ops.reshape(mask, (-1, self.units))
            encoding = tf.stop_gradient(y_flat)
            new_inhibition = ops.maximum(self.inhibition_decay * inhibition,
                                         mask_flat if self.inhibition_with_mask else encoding)
            new_states = [x, encoding, new_inhibition]
            new_states += [t for t in (r_trace, f_trace, b_trace) if t is not None]
            new_states = [tf.stop_gradient(s) for s in new_states]
        return RSMStep(encoding, decoded, mask_flat, new_states, pooled)

    def call(self, inputs, states, training=False):
        x = inputs[:, :self.input_dim]
        reset = inputs[:, self.input_dim] if self.reset_input else None
        feedback = inputs[:, self.input_dim + int(self.reset_input):] \
            if self.feedback_units else None
        result = self.step(x, list(states), reset=reset, feedback=feedback, training=training)
        output = result.encoding
        if self.output_decoding:
            output = ops.concatenate([output, ops.cast(result.decoding, output.dtype)], axis=-1)
        return output, result.states

    # ------------------------------------------------------------------ statistics
    def update_duty_cycle(self, usage, slots, learning_rate=0.1, when=True, boost_scale=1.0):
        """EMA update of the cell win frequency (and boost) from a usage count.

        See docs/rsm.md#duty-cycles.

        Args:
          usage: [n] number of wins of each cell over the counted steps.
          slots: number of (sample, step) slots counted.
          learning_rate: a, freq ← a·usage/slots + (1 − a)·freq.
          when: boolean (tensor); False leaves the statistics unchanged. A select rather than
            a `tf.cond`, so it is safe inside a replica under `tf.distribute`.
          boost_scale: multiplies `boost_strength` in this update (a float or scalar tensor; the
            stack's boost decay schedule, docs/rsm.md#boosting).
        """
        observed = ops.cast(usage, "float32") / ops.maximum(ops.cast(slots, "float32"), 1.0)
        frequency = learning_rate * observed + (1.0 - learning_rate) * self.duty_cycle
        frequency = ops.where(when, frequency, self.duty_cycle)
        self.duty_cycle.assign(frequency)
        if self.boost_strength > 0:
            self.boost.assign(rsm_ops.boost_from_duty_cycle(
                frequency, self.active_groups / self.units,
                self.boost_strength * ops.cast(boost_scale, "float32")))

    def get_config(self):
        config = super().get_config()
        ser = keras.saving.serialize_keras_object
        config.update({
            "groups": self.groups, "cells_per_group": self.cells_per_group,
            "active_groups": self.active_groups, "inhibition_decay": self.inhibition_decay,
            "recurrent_decay": self.recurrent_decay,
            "recurrent_decay_floor": self.recurrent_decay_floor,
            "recurrent_norm": self.recurrent_norm, "recurrent_norm_eps": self.recurrent_norm_eps,
            "recurrent_keep_rate": self.recurrent_keep_rate, "input_decay": self.input_decay,
            "input_decay_floor": self.input_decay_floor, "input_norm": self.input_norm,
            "input_norm_eps": self.input_norm_eps, "input_keep_rate": self.input_keep_rate,
            "input_norm_first": self.input_norm_first, "hidden_keep_rate": self.hidden_keep_rate,
            "inhibition_with_mask": self.inhibition_with_mask, "boost_strength": self.boost_strength,
            "activation": keras.activations.serialize(self.activation),
            "decoder_units": self.decoder_units,
            "decoder_activation": keras.activations.serialize(self.decoder_activation),
            "use_input_bias": self.use_input_bias, "use_recurrent_bias": self.use_recurrent_bias,
            "use_feedback_bias": self.use_feedback_bias,
            "use_decoder_bias": self.use_decoder_bias,
            "input_initializer": ser(self.input_initializer),
            "recurrent_initializer": ser(self.recurrent_initializer),
            "feedback_initializer": ser(self.feedback_initializer),
            "decoder_initializer": ser(self.decoder_initializer),
            "bias_initializer": ser(self.bias_initializer),
            "feedback_units": self.feedback_units, "reset_input": self.reset_input,
            "output_decoding": self.output_decoding, "recurrent_path": self.recurrent_path,
            "decoder_pooling": self.decoder_pooling,
            "seed": self.seed,
        })
        return config
