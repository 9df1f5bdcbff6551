"""k-winners-take-all layers with boosting by duty cycle: `KWinners` and `KWinners2D`.

Keras 3 form of nupic.torch `KWinners` / `KWinners2d` (explained in docs/sparse.md). The maths
is in `pagi_rsm.ops.k_winners`; this module holds the state (duty cycles, samples seen, boost
strength) and the training / inference switch.
"""
import numbers

import keras
import tensorflow as tf

from pagi_rsm import checks
from pagi_rsm.distribute import replica_sum
from pagi_rsm.metrics import duty_cycle as duty_cycle_metrics
from pagi_rsm.ops import k_winners as kw_ops


def _check_args(percent_on, k_inference_factor, boost_strength, boost_strength_factor,
                duty_cycle_period, break_ties, relu):
    """Raise ValueError naming the first invalid constructor argument."""
    if not isinstance(percent_on, numbers.Real) or not 0.0 < percent_on < 1.0:
        raise ValueError(f"percent_on must be in (0, 1), got {percent_on!r}")
    if not isinstance(k_inference_factor, numbers.Real):
        raise ValueError(f"k_inference_factor must be a number, got {k_inference_factor!r}")
    if not 0.0 < percent_on * k_inference_factor < 1.0:
        raise ValueError(
            "percent_on * k_inference_factor must be in (0, 1), got "
            f"{percent_on} * {k_inference_factor} = {percent_on * k_inference_factor}")
    if not isinstance(boost_strength, numbers.Real) or not boost_strength >= 0.0:
        raise ValueError(f"boost_strength must be >= 0, got {boost_strength!r}")
    if (not isinstance(boost_strength_factor, numbers.Real)
            or not 0.0 <= boost_strength_factor <= 1.0):
        raise ValueError(f"boost_strength_factor must be in [0, 1], got {boost_strength_factor!r}")
    checks.check_int("duty_cycle_period", duty_cycle_period, low=1)
    checks.check_bool("break_ties", break_ties)
    checks.check_bool("relu", relu)


class _KWinnersBase(keras.layers.Layer):
    """State and bookkeeping shared by `KWinners` and `KWinners2D` (not for direct use).

    Subclasses set `self.n`, `self.k`, `self.k_inference` and the duty-cycle shape in `build`,
    and implement `_select(x, k)` and `_active_count(outputs)`.
    """

    def __init__(self, percent_on, k_inference_factor=1.5, boost_strength=1.0,
                 boost_strength_factor=0.9, duty_cycle_period=1000, break_ties=False, relu=False,
                 **kwargs):
        super().__init__(**kwargs)
        _check_args(percent_on, k_inference_factor, boost_strength, boost_strength_factor,
                    duty_cycle_period, break_ties, relu)
        self.percent_on = float(percent_on)
        self.k_inference_factor = float(k_inference_factor)
        self.initial_boost_strength = float(boost_strength)
        self.boost_strength_factor = float(boost_strength_factor)
        self.duty_cycle_period = int(duty_cycle_period)
        self.break_ties = break_ties
        self.relu = relu
        self.n = None
        self.k = None
        self.k_inference = None

    def _make_state(self, duty_cycle_shape):
        # Statistics of the forward pass. Under tf.distribute every replica computes the same
        # update from all-reduced counts (see `_update_duty_cycles`), so the first replica's
        # value is the value of all ("only_first_replica"). They stay float32 under mixed
        # precision (autocast=False).
        self.duty_cycles = self.add_weight(
            name="duty_cycles", shape=duty_cycle_shape, initializer="zeros", dtype="float32",
            trainable=False, autocast=False, aggregation="only_first_replica")
        self.learning_iterations = self.add_weight(
            name="learning_iterations", shape=(), initializer="zeros", dtype="int64",
            trainable=False, autocast=False, aggregation="only_first_replica")
        self.boost_strength = self.add_weight(
            name="boost_strength", shape=(),
            initializer=keras.initializers.Constant(self.initial_boost_strength),
            dtype="float32", trainable=False, autocast=False, aggregation="only_first_replica")

    def call(self, inputs, training=None):
        training = bool(training)
        x = tf.convert_to_tensor(inputs)
        outputs = self._select(x, self.k if training else self.k_inference)
        if training:
            self._update_duty_cycles(outputs)
        return outputs

    def _update_duty_cycles(self, outputs):
        count, batch = self._active_count(outputs)
        # Duty cycles are over the GLOBAL batch: sum counts and samples over replicas.
        count, batch = replica_sum([count, batch])
        duty, iterations = kw_ops.update_duty_cycles(
            self.duty_cycles.value, self.learning_iterations.value, count, batch,
            self.duty_cycle_period)
        self.duty_cycles.assign(duty)
        self.learning_iterations.assign(iterations)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def update_boost_strength(self):
        """Multiply the boost strength by `boost_strength_factor` (once per epoch, see
        `pagi_rsm.callbacks.BoostStrengthDecay`)."""
        self._check_built("update_boost_strength")
        self.boost_strength.assign(self.boost_strength * self.boost_strength_factor)

    def _entropy_scale(self):
        return 1.0

    def entropy(self):
        """Total binary entropy (bits) of the duty cycles, a float32 scalar tensor.

        nupic.torch `entropy()`: sum over units of H(duty); for `KWinners2D` the per-channel sum
        is multiplied by H*W (each channel stands for H*W units).
        """
        self._check_built("entropy")
        total = tf.reduce_sum(duty_cycle_metrics.binary_entropy(self.duty_cycles.value))
        return total * self._entropy_scale()

    def max_entropy(self):
        """Largest total entropy this layer can reach: `max_entropy(n, int(n * percent_on))`."""
        self._check_built("max_entropy")
        if self.n is None:
            raise ValueError(
                f"{self.name}: max_entropy() needs static input dimensions, got n=None")
        return duty_cycle_metrics.max_entropy(self.n, int(self.n * self.percent_on))

    def _check_built(self, what):
        if not self.built:
            raise ValueError(f"{self.name}: build the layer (call it once) before {what}()")

    def get_config(self):
        config = super().get_config()
        config.update({
            "percent_on": self.percent_on,
            "k_inference_factor": self.k_inference_factor,
            "boost_strength": self.initial_boost_strength,
            "boost_strength_factor": self.boost_strength_factor,
            "duty_cycle_period": self.duty_cycle_period,
            "break_ties": self.break_ties,
            "relu": self.relu,
        })
        return config


@keras.saving.register_keras_serializable(package="pagi_rsm")
class KWinners(_KWinnersBase):
    """k-winners-take-all over the last axis, with boosting by duty cycle (nupic.torch KWinners).

    Each sample keeps its k most active units (ranked on the boosted value
    ``x * exp(-boost_strength * duty_cycle)``) at their *unboosted* value and zeroes the rest.
    The gradient is the identity at winners and 0 at losers. With ``break_ties=False`` every
    unit equal to the k-th largest boosted value survives (possibly more than k winners); with
    ``break_ties=True`` exactly k survive (lowest index first among ties).

    In training (``training=True``) k = ``int(round(n * percent_on))`` units win and, after the
    output is computed, the duty cycles (running mean of ``output > 0`` per unit) are updated:
    ``learning_iterations += batch``; ``p = min(duty_cycle_period, learning_iterations)``;
    ``duty = (duty * (p - batch) + count) / p``. In inference ``k_inference = int(k *
    k_inference_factor)`` units win (floor, as nupic.torch) and nothing is updated. k and
    k_inference are clamped to n. Under `tf.distribute` the count and the batch are summed over
    replicas, so the duty cycles are those of the global batch.

    Inputs of rank > 2 (`[batch, ..., n]`, e.g. `[batch, time, n]`) are accepted: every leading
    position is ranked independently and counts as one sample in the duty-cycle update.

    Args:
      percent_on: fraction of units kept in training, in (0, 1).
      k_inference_factor: k is multiplied by this in inference; ``percent_on *
        k_inference_factor`` must be in (0, 1). Default 1.5.
      boost_strength: initial boost strength, >= 0 (0 disables boosting). Stored as a
        non-trainable weight `boost_strength` (saved with the model). Default 1.0.
      boost_strength_factor: `update_boost_strength()` multiplies the boost strength by this,
        in [0, 1]. Default 0.9.
      duty_cycle_period: averaging period of the duty cycles in samples, integer >= 1.
        Default 1000.
      break_ties: exact top-k instead of keeping ties at the threshold. Default False.
      relu: behave as if a ReLU came first (units below 0 never win). Default False.
      **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
      inputs: float tensor `[batch, ..., n]` with static n.
      training: Python bool; True selects k winners and updates the duty cycles.

    Input shape: `(batch, ..., n)`. Output shape: same as input, same dtype (the layer's
    compute dtype; duty cycles stay float32 under mixed precision).

    Weights (all non-trainable): `duty_cycles` `(n,)` float32, `learning_iterations` `()` int64,
    `boost_strength` `()` float32.

    Example:
      >>> layer = KWinners(percent_on=0.25, boost_strength=0.0)  # n=4: k=1, k_inference=1
      >>> layer(tf.constant([[0.5, -1.0, 2.0, 1.0]]), training=True).numpy()
      array([[0., 0., 2., 0.]], dtype=float32)
      >>> layer.duty_cycles.numpy()  # running mean of output > 0 over the samples seen
      array([0., 0., 1., 0.], dtype=float32)
    """

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank >= 2 (batch, ..., n), got shape "
                f"{tuple(input_shape)}")
        n = input_shape[-1]
        if n is None:
            raise ValueError(
                f"{type(self).__name__} needs a static last dimension n, got shape "
                f"{tuple(input_shape)}")
        self.n = int(n)
        k = int(round(self.n * self.percent_on))
        self.k = min(k, self.n)
        self.k_inference = min(int(k * self.k_inference_factor), self.n)
        self._make_state((self.n,))

    def _select(self, x, k):
        return kw_ops.k_winners(x, self.duty_cycles.value, k, self.boost_strength.value,
                                break_ties=self.break_ties, relu=self.relu)

    def _active_count(self, outputs):
        axes = list(range(len(outputs.shape) - 1))
        count = tf.reduce_sum(tf.cast(outputs > 0, tf.float32), axis=axes)
        samples = tf.cast(tf.reduce_prod(tf.shape(outputs)[:-1]), tf.float32)
        return count, samples


@keras.saving.register_keras_serializable(package="pagi_rsm")
class KWinners2D(_KWinnersBase):
    """k-winners-take-all on channels-last feature maps (nupic.torch KWinners2d).

    Same selection rule as `KWinners` (boosted ranking, unboosted output, ties, relu), with
    per-channel duty cycles:

    * ``local=True``: at every position (h, w) the k channels with the largest boosted value win;
      ``k = int(round(C * percent_on))``, ``k_inference = int(round(C * percent_on *
      k_inference_factor))``.
    * ``local=False`` (global): the k largest of all H*W*C units of each sample win;
      ``n = H*W*C``, ``k = int(round(n * percent_on))``, ``k_inference = int(round(n *
      percent_on * k_inference_factor))``. (Rounding differs from 1-D `KWinners`, as in
      nupic.torch.)

    Duty update in training: ``count[c] = sum over batch, H, W of (output > 0) / (H*W)``, then
    the same running mean as `KWinners` with ``batch`` = number of samples.

    Args:
      percent_on: fraction of units kept in training, in (0, 1). Default 0.1.
      k_inference_factor: see `KWinners`. Default 1.5.
      boost_strength: see `KWinners`. Default 1.0.
      boost_strength_factor: see `KWinners`. Default 0.9.
      duty_cycle_period: see `KWinners`. Default 1000.
      local: winners per position over channels (True) or per sample over everything (False).
        Default False.
      break_ties: see `KWinners`. Default False.
      relu: see `KWinners`. Default False.
      **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
      inputs: float tensor `[batch, height, width, channels]`; C must be static, and H, W too
        when ``local=False``.
      training: Python bool; True selects k winners and updates the duty cycles.

    Input shape: `(batch, H, W, C)`. Output shape: same.

    Weights (all non-trainable): `duty_cycles` `(C,)` float32, `learning_iterations` `()`
    int64, `boost_strength` `()` float32.

    Example:
      >>> layer = KWinners2D(percent_on=0.5, local=True, boost_strength=0.0)
      >>> x = tf.constant([[[[1.0, 3.0, 2.0, 0.0]]]])  # [1, 1, 1, 4]: k = 2 of 4 channels
      >>> layer(x, training=True).numpy()
      array([[[[0., 3., 2., 0.]]]], dtype=float32)
    """

    def __init__(self, percent_on=0.1, k_inference_factor=1.5, boost_strength=1.0,
                 boost_strength_factor=0.9, duty_cycle_period=1000, local=False,
                 break_ties=False, relu=False, **kwargs):
        super().__init__(percent_on=percent_on, k_inference_factor=k_inference_factor,
                         boost_strength=boost_strength,
                         boost_strength_factor=boost_strength_factor,
                         duty_cycle_period=duty_cycle_period, break_ties=break_ties, relu=relu,
                         **kwargs)
        checks.check_bool("local", local)
        self.local = local

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "KWinners2D expects inputs of rank 4 (batch, height, width, channels), got "
                f"shape {tuple(input_shape)}")
        _, h, w, c = input_shape
        if c is None or (not self.local and (h is None or w is None)):
            raise ValueError(
                "KWinners2D needs static channels (and static height and width when "
                f"local=False), got shape {tuple(input_shape)}")
        self.channels = int(c)
        self.n = None if h is None or w is None else int(h) * int(w) * self.channels
        on_inference = self.percent_on * self.k_inference_factor
        size = self.channels if self.local else self.n
        self.k = min(int(round(size * self.percent_on)), size)
        self.k_inference = min(int(round(size * on_inference)), size)
        self._make_state((self.channels,))

    def _select(self, x, k):
        return kw_ops.k_winners2d(x, self.duty_cycles.value, k, self.boost_strength.value,
                                  local=self.local, break_ties=self.break_ties, relu=self.relu)

    def _active_count(self, outputs):
        shape = tf.shape(outputs)
        positions = tf.cast(shape[1] * shape[2], tf.float32)
        count = tf.reduce_sum(tf.cast(outputs > 0, tf.float32), axis=[0, 1, 2]) / positions
        return count, tf.cast(shape[0], tf.float32)

    def _entropy_scale(self):
        if self.n is None:
            raise ValueError(f"{self.name}: entropy() needs static height and width")
        return float(self.n // self.channels)

    def get_config(self):
        config = super().get_config()
        config["local"] = self.local
        return config
