"""`ConvRSM`: the convolutional Recurrent Sparse Memory layer, one time step (docs/conv_rsm.md)."""
import math

import keras
import tensorflow as tf
from keras import ops

from pagi_rsm.checks import check_int
from pagi_rsm.layers.rsm_cell import AUTO_SPARSE_FRACTION, RSMCell, RSMStep
from pagi_rsm.ops import rsm as rsm_ops


def _pair(name, value):
    """(a, b) from an int or a pair of ints >= 1."""
    values = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(values, (list, tuple)) and len(values) == 2):
        raise ValueError(f"{name} must be an integer >= 1 or a pair of them, got {value!r}")
    return tuple(check_int(name, v, 1) for v in values)


def _shape3(name, value):
    """(H, W, D) of positive ints, or None."""
    if value is None:
        return None
    if not (isinstance(value, (list, tuple)) and len(value) == 3):
        raise ValueError(f"{name} must be None or (height, width, channels), got {value!r}")
    return tuple(check_int(name, v, 1) for v in value)


@keras.saving.register_keras_serializable(package="pagi_rsm")
class ConvRSM(RSMCell):
    """Convolutional Recurrent Sparse Memory layer (Rawlinson, Ahmed & Kowadlo, arXiv 1905.11589).

    The RSM cell of `RSMCell` at every position of a grid: the input x [B, H, W, D] is seen
    through a feed-forward kernel shared across positions (receptive field `kernel_size`, stride
    `strides`, SAME padding), giving an h × w grid, h = ceil(H / sh), w = ceil(W / sw), with
    g = `groups` groups of c = `cells_per_group` cells (n = g·c) at each position:

        F   = conv(cond(x_{t−1}), W_f, stride, SAME) (+ b_f)           [B, h, w, g]
        R   = cond_r(y_{t−1}) W_r (+ b_r)                  1×1: cells at a position only
        Bf  = cond_r(resize(fb_{t−1}, (h, w))) W_b (+ b_b)  optional feedback, 1×1
        Z   = tile_c(F) + R (+ Bf)                                     [B, h, w, g, c]
        ρ   = (Z − min Z + 1)·(1 − I_{t−1})        min over the whole sample; or Z·boost
        M   = top-k groups of max_c ρ per position, best cell of each  (k·h·w cells)
        y_t = tanh(Z ⊙ M);   I_t = max(γ·I_{t−1}, M)                 per position
        x̂_t = dec(convT(max_cells(y_t), W_d, stride, SAME) + b_d)     [B, H_t, W_t, D_t]

    cond_r is the recurrent trace and sum-normalisation of `RSMCell`; the sum runs over the whole
    sample (all positions and cells). `resize` is bilinear with half-pixel centres
    (`tf.image.resize`, the TF2 convention; the original's TF1 `resize_bilinear` used the
    asymmetric corner mapping, which shifts the upsampled map by up to half a higher-layer
    cell towards the bottom-right; see docs/conv_rsm.md). The decoder is a transposed
    convolution from the group-max map with a per-element bias b_d [H_t, W_t, D_t]; its output
    is exactly `decoder_shape` (default: the input shape). As in `RSMCell`, the mask, every
    incoming state and the published encoding are `stop_gradient` (BPTT = 1), and the decoder
    loss MSE(x_t, x̂_t) is computed by the caller. With a 1×1 input and field the layer
    computes the same numbers as `RSMCell` (tested).

    Arguments are those of `RSMCell` (same names, meanings and defaults) except:
      active_groups: k, active groups per position, 1 ≤ k ≤ g (`RSMCell`'s k).
      kernel_size: receptive field (fh, fw) of the feed-forward and decoder kernels.
      strides: (sh, sw), default 1.
      decoder_shape: (H_t, W_t, D_t) of the decoded target, default the input shape;
        ceil(H_t / sh) must equal h and ceil(W_t / sw) must equal w.
      feedback_shape: (h', w', n') of the higher layer's code, enabling feedback (replaces
        `feedback_units`). It is resized to (h, w) when h' × w' differs.
      feedback_max_active: the most non-zero entries per position of the feedback code (the
        higher layer's `active_groups`; the stack sets it). It bounds the non-zeros of the
        resized feedback (4× it, since a bilinear resize mixes 2 × 2 positions) and so enables
        the sparse feedback path. None (default): unknown, the feedback is a dense matmul.
      recurrent_path: "dense" computes R as a [B·h·w, n]×[n, n] matmul (a 1×1 convolution);
        "sparse" uses that y_{t−1} has k non-zeros of n at each position when ε = 0 and
        multiplies just those k rows of W_r per position (`pagi_rsm.ops.rsm.
        sparse_input_matmul`; the recurrent dropout is drawn for those k entries only). The
        feedback Bf takes the same path when `feedback_max_active` bounds its non-zeros. Both
        paths give the same numbers without dropout (tested). "auto" (default) takes the
        sparse path for an input whose non-zeros are at most 1% of its width when ε = 0 (as
        `RSMCell`), else the dense one (measured by benchmarks/conv_rsm.py, docs/conv_rsm.md).
      reset_input: in `keras.layers.RNN`, the last input channel is the per-sample reset flag
        (read at position (0, 0)).
      output_decoding: in `keras.layers.RNN`, the output is `concat([flat(y), flat(x̂)])`.

    States are flattened per sample (row-major), so they fit the Keras RNN state API and
    `pagi_rsm.models.stream_state.StreamState`: [x_prev (H·W·D), y_prev (h·w·n),
    inhibition (h·w·n)] then ψ_r (h·w·n) if ε > 0, ψ_f (H·W·D) if ε_f > 0, ψ_b (h·w·n') if
    feedback and ε > 0.

    Call arguments (Keras RNN cell API, `call(inputs, states, training)`):
      inputs: [B, H, W, D] (+1 reset channel if `reset_input`). Feedback needs `step`.
      Returns `(output, new_states)`; output is flat(y) [B, h·w·n] (stop-gradient), or
      `[flat(y), flat(x̂)]` with `output_decoding`.
    `step(x, states, reset=None, feedback=None, training=False, decode=True)` returns the full
    `RSMStep`: encoding [B, h, w, n], decoding [B, H_t, W_t, D_t], mask [B, h, w, n], the new
    states and pooled [B, h, w, g], the decoder's input (`decode(pooled)`, as in `RSMCell`).

    Example:
    ```python
    layer = pagi_rsm.ConvRSM(groups=64, cells_per_group=8, active_groups=3, kernel_size=5,
                             strides=2, inhibition_decay=0.0, decoder_activation="sigmoid")
    layer.build((None, 34, 34, 1))                    # grid 17 × 17, n = 512 per position
    states = layer.get_initial_state(batch_size=8)
    frames_t = np.random.rand(8, 34, 34, 1).astype("float32")
    out = layer.step(frames_t, states)                # out.decoding predicts frames_t
    ```
    """

    def __init__(self, groups, cells_per_group, active_groups, kernel_size, strides=1,
                 decoder_shape=None, feedback_shape=None, feedback_max_active=None, **kwargs):
        for name in ("sparsity", "decoder_units", "feedback_units"):
            if name in kwargs:
                raise ValueError(f"ConvRSM takes no {name!r} argument (see active_groups, "
                                 "decoder_shape, feedback_shape)")
        check_int("active_groups", active_groups, 1)
        if isinstance(groups, int) and active_groups > groups:
            raise ValueError(f"active_groups (k) must be <= groups ({groups}), got "
                             f"{active_groups}")
        super().__init__(groups, cells_per_group, active_groups, **kwargs)
        self.active_groups = active_groups
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.decoder_shape = _shape3("decoder_shape", decoder_shape)
        self.feedback_shape = _shape3("feedback_shape", feedback_shape)
        self.feedback_max_active = (None if feedback_max_active is None else
                                    check_int("feedback_max_active", feedback_max_active, 1))
        self.input_shape3 = None

    # ------------------------------------------------------------------ shapes
    @property
    def grid(self):
        """(h, w), the positions of the layer (known once built)."""
        height, width, _ = self.input_shape3
        return (math.ceil(height / self.strides[0]), math.ceil(width / self.strides[1]))

    @property
    def target_shape(self):
        return self.decoder_shape or self.input_shape3

    @property
    def encoding_shape(self):
        """(h, w, n), the per-sample shape of the encoding."""
        return (*self.grid, self.units)

    @property
    def state_size(self):
        if self.input_shape3 is None:
            return [None, None, None]
        inputs = math.prod(self.input_shape3)
        cells = math.prod(self.encoding_shape)
        sizes = [inputs, cells, cells]
        if self.recurrent_decay > 0:
            sizes.append(cells)
        if self.input_decay > 0:
            sizes.append(inputs)
        if self.feedback_shape and self.recurrent_decay > 0:
            sizes.append(math.prod(self.grid) * self.feedback_shape[2])
        return sizes

    @property
    def output_size(self):
        size = math.prod(self.encoding_shape)
        return size + (math.prod(self.target_shape) if self.output_decoding else 0)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"ConvRSM expects per-step inputs of rank 4 [batch, height, width, "
                             f"channels], got shape {tuple(input_shape)}")
        height, width, channels = input_shape[1:]
        extra = int(self.reset_input)
        if None in (height, width, channels) or channels - extra < 1:
            raise ValueError(f"ConvRSM input shape {tuple(input_shape)} needs static height, "
                             f"width and at least {extra + 1} channel(s) (input, reset flag if "
                             "reset_input)")
        self.input_shape3 = (int(height), int(width), int(channels - extra))
        h, w = self.grid
        th, tw, td = self.target_shape
        if (math.ceil(th / self.strides[0]), math.ceil(tw / self.strides[1])) != (h, w):
            raise ValueError(f"decoder_shape {self.target_shape} does not map onto the grid "
                             f"{h}×{w} with strides {self.strides}: ceil(H_t / s) must equal "
                             "the grid size")
        g, n = self.groups, self.units
        fh, fw = self.kernel_size
        self.input_kernel = self.add_weight(
            name="input_kernel", shape=(fh, fw, self.input_shape3[2], g),
            initializer=self.input_initializer)
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(n, n), initializer=self.recurrent_initializer)
        self.decoder_kernel = self.add_weight(
            name="decoder_kernel", shape=(fh, fw, td, g), initializer=self.decoder_initializer)
        self.input_bias = self._bias("input_bias", g, self.use_input_bias)
        self.recurrent_bias = self._bias("recurrent_bias", n, self.use_recurrent_bias)
        self.decoder_bias = None
        if self.use_decoder_bias:
            self.decoder_bias = self.add_weight(name="decoder_bias", shape=self.target_shape,
                                                initializer=self.bias_initializer)
        self.feedback_kernel = self.feedback_bias = None
        if self.feedback_shape:
            self.feedback_kernel = self.add_weight(
                name="feedback_kernel", shape=(self.feedback_shape[2], n),
                initializer=self.feedback_initializer)
            self.feedback_bias = self._bias("feedback_bias", n, self.use_feedback_bias)
        self._add_statistics(n)

    # ------------------------------------------------------------------ step
    @property
    def feedback_max_nonzero(self):
        """Bound on the non-zeros per position of the resized feedback input, or None.

        A bilinear resize mixes at most 2 × 2 positions of the higher layer's code, each with
        at most `feedback_max_active` non-zeros; an identity resize keeps them as they are.
        None when the bound is unknown or a trace (ε > 0) makes the input dense.
        """
        if not self.feedback_shape or self.feedback_max_active is None:
            return None
        if self.recurrent_decay > 0:
            return None
        same_grid = (self.input_shape3 is not None
                     and tuple(self.feedback_shape[:2]) == tuple(self.grid))
        return min(self.feedback_shape[2],
                   self.feedback_max_active * (1 if same_grid else 4))

    @property
    def uses_sparse_feedback_path(self):
        """True when Bf = b W_b runs through the non-zero entries of b (`recurrent_path`)."""
        return self._sparse_feedback_for(self.feedback_max_nonzero)

    def _sparse_feedback_for(self, bound):
        """The `recurrent_path` choice for a feedback input with at most `bound` non-zeros
        per position (None: unknown)."""
        if self.recurrent_path == "dense" or bound is None:
            return False
        if self.recurrent_path == "sparse":
            return True
        return bound <= AUTO_SPARSE_FRACTION * self.feedback_shape[2]

    # Set to False (tests only) to always resize the feedback before its kernel.
    _commute_feedback = True

    def feedback_commutes(self, training):
        """True when the feedback drive is computed on the higher layer's grid, then resized.

        Bf = N(resize(fb)) W_b equals resize(fb W_b) / (Σ resize(fb) + η): the bilinear resize
        is linear in each channel and the 1×1 kernel mixes channels at one position, so the
        two commute, and the signed sum of the resized map is the sum of the resized
        channel sum. Computing the product on the coarse grid (5 × 5 for the paper's layer 2)
        instead of the fine one (17 × 17) saves that ratio of multiply-adds (11.6× there).
        It holds when nothing element-wise and non-linear touches the resized map: no
        trace (ε = 0, the trace is a max), the signed `sum` norm or none (`abs_sum` takes
        |·| after the resize), and no dropout (not training, or recurrent keep rate 1).
        """
        return (self._commute_feedback
                and tuple(self.feedback_shape[:2]) != tuple(self.grid)
                and self.recurrent_decay <= 0
                and self.recurrent_norm in ("sum", None)
                and (not training or self.recurrent_keep_rate >= 1.0))

    def _feedback_drive(self, feedback, b_trace, training):
        """(Bf [B·h·w, n], new feedback trace): the feedback's share of the drive."""
        h, w = self.grid
        coarse = ops.reshape(feedback, (-1, *self.feedback_shape))
        if self.feedback_commutes(training):
            if self.recurrent_norm == "sum":
                channel_sum = ops.sum(coarse, axis=-1, keepdims=True)
                coarse = rsm_ops.sum_normalize(
                    coarse, self.recurrent_norm_eps,
                    total=ops.sum(rsm_ops.resize_bilinear(channel_sum, (h, w)), axis=(1, 2, 3)))
            product = self._drive(ops.reshape(coarse, (-1, self.feedback_shape[2])),
                                  self.feedback_kernel, None,
                                  self._sparse_feedback_for(self.feedback_max_active),
                                  self.feedback_max_active, training)
            drive = ops.reshape(rsm_ops.resize_bilinear(
                ops.reshape(product, (-1, *self.feedback_shape[:2], self.units)), (h, w)),
                (-1, self.units))
            if self.feedback_bias is not None:
                drive = drive + ops.cast(self.feedback_bias, drive.dtype)
            return drive, b_trace
        resized = rsm_ops.resize_bilinear(coarse, (h, w))
        b_in, b_trace = rsm_ops.condition_input(
            ops.reshape(resized, (-1, h * w * self.feedback_shape[2])), b_trace,
            decay=self.recurrent_decay, floor=self.recurrent_decay_floor,
            norm=self.recurrent_norm, norm_eps=self.recurrent_norm_eps,
            norm_first=self.input_norm_first)
        drive = self._drive(
            ops.reshape(b_in, (-1, self.feedback_shape[2])), self.feedback_kernel,
            self.feedback_bias, self.uses_sparse_feedback_path, self.feedback_max_nonzero,
            training)
        return drive, b_trace

    def decode(self, pooled):
        """x̂: the transposed-convolution decoder of the pooled code [M, h, w, g]."""
        with tf.name_scope("decoder"):
            decoded = rsm_ops.conv_decode(pooled, self.decoder_kernel, self.decoder_bias,
                                          self.target_shape, self.strides)
            return self.decoder_activation(decoded)

    def step(self, x, states, reset=None, feedback=None, training=False, decode=True):
        """One step of the memory; returns `RSMStep(encoding, decoding, mask, states, pooled)`.

        Args:
          x: current input x_t [B, H, W, D] (the decoder's target when `decoder_shape` is not
            set; the drive uses the stored x_{t−1}).
          states: list of flat state tensors as in `state_size`.
          reset: optional [B] or [B, 1]; 1 zeroes the sample's state (and feedback) first.
          feedback: the higher layer's previous code [B, h', w', n'] (or flattened), when
            `feedback_shape` is set.
          training: enables dropout.
          decode: False leaves the decoder out (decoding None): see `decode`.
        """
        dtype = x.dtype
        (height, width, depth), (h, w) = self.input_shape3, self.grid
        g, c, n = self.groups, self.cells_per_group, self.units
        states = [tf.stop_gradient(ops.cast(s, dtype)) for s in states]
        if self.feedback_shape:
            if feedback is None:
                raise ValueError("this ConvRSM has feedback_shape set: pass `feedback`")
            feedback = tf.stop_gradient(ops.reshape(ops.cast(feedback, dtype),
                                                    (-1, math.prod(self.feedback_shape))))
        if reset is not None:
            states = rsm_ops.clear_rows(states, reset)
            if feedback is not None:
                [feedback] = rsm_ops.clear_rows([feedback], reset)
        x_prev, y_prev, inhibition, *traces = states
        r_trace = traces.pop(0) if self.recurrent_decay > 0 else None
        f_trace = traces.pop(0) if self.input_decay > 0 else None
        b_trace = traces.pop(0) if (self.feedback_shape and self.recurrent_decay > 0) else None

        f_in, f_trace = rsm_ops.condition_input(
            x_prev, f_trace, decay=self.input_decay, floor=self.input_decay_floor,
            norm=self.input_norm, norm_eps=self.input_norm_eps, norm_first=self.input_norm_first)
        r_in, r_trace = rsm_ops.condition_input(
            y_prev, r_trace, decay=self.recurrent_decay, floor=self.recurrent_decay_floor,
            norm=self.recurrent_norm, norm_eps=self.recurrent_norm_eps,
            norm_first=self.input_norm_first)
        f_in = self._dropout(f_in, self.input_keep_rate, training)

        forward = tf.nn.conv2d(ops.reshape(f_in, (-1, height, width, depth)),
                               ops.cast(self.input_kernel, dtype), list(self.strides), "SAME")
        if self.input_bias is not None:
            forward = forward + ops.cast(self.input_bias, dtype)                  # [B, h, w, g]
        drive = self._drive(ops.reshape(r_in, (-1, n)), self.recurrent_kernel,   # [B·h·w, n]
                            self.recurrent_bias, self.uses_sparse_recurrent_path,
                            self.active_groups, training)
        if self.feedback_shape:
            feedback_drive, b_trace = self._feedback_drive(feedback, b_trace, training)
            drive = drive + feedback_drive
        z = ops.reshape(drive, (-1, h, w, g, c)) + forward[..., None]            # [B,h,w,g,c]

        if self.boost_strength > 0:
            rho = z * ops.reshape(ops.cast(self.boost, dtype), (g, c))
        else:
            refractory = 1.0 - ops.reshape(inhibition, (-1, h, w, g, c))
            refractory = self._dropout(refractory, self.hidden_keep_rate, training)
            rho = rsm_ops.inhibition_ranking(z, refractory)
        mask = tf.stop_gradient(rsm_ops.group_cell_mask(rho, self.active_groups))
        y = self.activation(z * mask)

        pooled = self._pool_cells(y, mask)                                        # [B, h, w, g]
        decoded = self.decode(pooled) if decode else None

        encoding = tf.stop_gradient(ops.reshape(y, (-1, h, w, n)))
        mask = ops.reshape(mask, (-1, h, w, n))
        cells = h * w * n
        new_inhibition = ops.maximum(
            self.inhibition_decay * inhibition,
            ops.reshape(mask if self.inhibition_with_mask else encoding, (-1, cells)))
        new_states = [ops.reshape(x, (-1, math.prod(x.shape[1:]))),
                      ops.reshape(encoding, (-1, cells)), new_inhibition]
        new_states += [t for t in (r_trace, f_trace, b_trace) if t is not None]
        new_states = [tf.stop_gradient(s) for s in new_states]
        return RSMStep(encoding, decoded, mask, new_states, pooled)

    def call(self, inputs, states, training=False):
        if self.feedback_shape:
            raise ValueError("a ConvRSM with feedback_shape runs through `step` (feedback is "
                             "a separate tensor), not as a keras.layers.RNN cell")
        depth = self.input_shape3[2]
        x = inputs[..., :depth]
        reset = inputs[:, 0, 0, depth] if self.reset_input else None
        result = self.step(x, list(states), reset=reset, training=training)
        output = ops.reshape(result.encoding, (-1, math.prod(self.encoding_shape)))
        if self.output_decoding:
            decoding = ops.reshape(ops.cast(result.decoding, output.dtype),
                                   (-1, math.prod(self.target_shape)))
            output = ops.concatenate([output, decoding], axis=-1)
        return output, result.states

    def get_config(self):
        config = super().get_config()
        for name in ("sparsity", "decoder_units", "feedback_units"):
            config.pop(name, None)
        config.update({
            "active_groups": self.active_groups, "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "decoder_shape": None if self.decoder_shape is None else list(self.decoder_shape),
            "feedback_shape": None if self.feedback_shape is None else list(self.feedback_shape),
            "feedback_max_active": self.feedback_max_active,
        })
        return config
