"""Classifiers for continual learning: an MLP and a small CNN, dense or sparse, one head per task.

`ContinualClassifier` is the component of the ``continual`` workflow (docs/continual.md):

- ``architecture="mlp"``: ``hidden_layers`` fully connected layers of ``hidden_units`` units.
  Dense: Linear -> ReLU -> Dropout. Sparse: Linear (`SparseDense` when ``weight_sparsity`` > 0)
  -> `KWinners` (``percent_on``) -> Dropout. KWinners works on the raw pre-activation, as
  nupic.torch's does (docs/sparse.md).
- ``architecture="cnn"``: conv 64 5x5, conv 128 5x5 (``conv_filters``), each followed by its
  activation and 2x2 max pooling, then ``hidden_layers`` FC layers as in the MLP. Dense: ReLU.
  Sparse: `SparseConv2D` when ``conv_weight_sparsity`` > 0, then ReLU and `KWinners2D`
  (local, ``conv_percent_on`` of the channels at every position).

Heads. The output layer holds ``num_heads`` heads of ``classes_per_head`` units as one kernel
``[features, num_heads * classes_per_head]``; each example's logits are its task's slice
(a gather by the ``task`` input), so one compiled step serves any mix of tasks and only the
example's own head gets a gradient from it. ``num_heads=1`` is the single-head layout.

Training: SGD (``learning_rate``, ``momentum``, ``nesterov``), or Adam with ``optimizer="adam"``
(``learning_rate``), on the softmax cross-entropy, and
``weight_decay`` as an L2 term ``weight_decay / 2 * ||w||^2`` on every kernel and bias: the
gradient gains ``weight_decay * w``, which is PyTorch's (coupled) SGD weight decay. Weights are
initialised like PyTorch's Linear/Conv2d (uniform in +-1/sqrt(fan_in), biases too).
"""
import math

import keras
import tensorflow as tf

from pagi_rsm.hparams.continual_models import OPTIONS
from pagi_rsm.layers import KWinners, KWinners2D, SparseConv2D, SparseDense


def _torch_like_initializers(fan_in):
    """Kernel and bias initialisers uniform in +-1/sqrt(fan_in) (PyTorch Linear/Conv2d)."""
    bound = 1.0 / math.sqrt(fan_in)
    return (keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            keras.initializers.RandomUniform(-bound, bound))


@keras.saving.register_keras_serializable(package="pagi_rsm")
class ContinualClassifier(keras.Model):
    """MLP or CNN classifier, dense or sparse, with per-task heads (see the module docstring).

    Args:
      architecture: "mlp" or "cnn".
      hidden_units: units of each fully connected hidden layer (integer >= 1).
      hidden_layers: number of fully connected hidden layers (integer >= 0 for the CNN, >= 1
        for the MLP).
      conv_filters: filters of the CNN's conv layers (list of integers >= 1; default [64, 128]).
      kernel_size: the conv kernels' size (default 5).
      dropout: dropout rate after each FC hidden layer, in [0, 1).
      sparse: k-winners activations (and sparse weights if their sparsity > 0) instead of ReLU.
      percent_on: fraction of FC units that win, in (0, 1) (sparse only).
      conv_percent_on: fraction of channels that win at each position, in (0, 1) (sparse CNN).
      k_inference_factor: k is multiplied by this at test time (default 1.5).
      boost_strength: initial boost strength >= 0 (0: no boosting).
      boost_strength_factor: boost strength decay per epoch, in [0, 1].
      duty_cycle_period: duty-cycle averaging period in samples (integer >= 1).
      weight_sparsity: fraction of zero weights of the FC hidden layers, in [0, 1) (sparse only).
      conv_weight_sparsity: fraction of zero weights of the conv layers, in [0, 1) (sparse only).
      optimizer: "sgd" or "adam", the optimizer `compile()` creates.
      learning_rate: its learning rate; momentum, nesterov: SGD settings.
      weight_decay: L2 coefficient (PyTorch's coupled weight_decay semantics), >= 0.
      num_heads: number of output heads (1: single head; the number of tasks: multi-head).
      classes_per_head: output units of each head (integer >= 2).
      input_shape: (H, W, C) of the images (derived from the benchmark by the workflow).
      **kwargs: `keras.Model` arguments.

    Call arguments:
      inputs: ``{"inputs": float [B, H, W, C], "task": int [B]}``.
      training: Python bool (dropout, k-winners k and duty-cycle updates).

    Returns:
      float32 logits ``[B, classes_per_head]`` of each example's own head.
    """

    options = OPTIONS
    """The declared hparams (`pagi_rsm.hparams.continual_models.OPTIONS`)."""

    _ATTRIBUTES = {"input_shape": "image_shape", "optimizer": "optimizer_name"}
    """Hparams stored under another attribute name (keras.Model owns these two)."""

    def __init__(self, architecture="mlp", hidden_units=2000, hidden_layers=1,
                 conv_filters=(64, 128), kernel_size=5, dropout=0.0, sparse=False,
                 percent_on=0.1, conv_percent_on=0.1, k_inference_factor=1.5, boost_strength=0.0,
                 boost_strength_factor=0.9, duty_cycle_period=1000, weight_sparsity=0.0,
                 conv_weight_sparsity=0.0, optimizer="sgd", learning_rate=0.1, momentum=0.9,
                 nesterov=True, weight_decay=1e-4, num_heads=1, classes_per_head=10, input_shape=(28, 28, 1),
                 **kwargs):
        super().__init__(**kwargs)
        values = OPTIONS.check(dict(
            architecture=architecture, hidden_units=hidden_units, hidden_layers=hidden_layers,
            conv_filters=list(conv_filters), kernel_size=kernel_size, dropout=dropout,
            sparse=sparse, percent_on=percent_on, conv_percent_on=conv_percent_on,
            k_inference_factor=k_inference_factor, boost_strength=boost_strength,
            boost_strength_factor=boost_strength_factor, duty_cycle_period=duty_cycle_period,
            weight_sparsity=weight_sparsity, conv_weight_sparsity=conv_weight_sparsity,
            optimizer=optimizer, learning_rate=learning_rate, momentum=momentum,
            nesterov=nesterov, weight_decay=weight_decay, num_heads=num_heads, classes_per_head=classes_per_head,
            input_shape=list(input_shape)))
        for key, value in values.items():
            setattr(self, self._ATTRIBUTES.get(key, key), value)
        self.body = self._make_body()
        self.head = self._dense(self.num_heads * self.classes_per_head, self._features(),
                                name="heads")

    # --- layers ----------------------------------------------------------------------------------

    def _regularizer(self):
        return keras.regularizers.L2(self.weight_decay / 2.0) if self.weight_decay else None

    def _dense(self, units, fan_in, name, sparsity=0.0):
        common = {"kernel_regularizer": self._regularizer(),
                  "bias_regularizer": self._regularizer(), "name": name}
        if sparsity > 0.0:
            return SparseDense(units, sparsity=sparsity, **common)
        kernel_init, bias_init = _torch_like_initializers(fan_in)
        return keras.layers.Dense(units, kernel_initializer=kernel_init,
                                  bias_initializer=bias_init, **common)

    def _k_winners(self, name):
        return KWinners(percent_on=self.percent_on, k_inference_factor=self.k_inference_factor,
                        boost_strength=self.boost_strength,
                        boost_strength_factor=self.boost_strength_factor,
                        duty_cycle_period=self.duty_cycle_period, name=name)

    def _conv_output_size(self):
        h, w, _ = self.image_shape
        for _ in self.conv_filters:
            h, w = (h - self.kernel_size + 1) // 2, (w - self.kernel_size + 1) // 2
            if h < 1 or w < 1:
                raise ValueError(f"conv_filters: {len(self.conv_filters)} conv layers of "
                                 f"kernel_size {self.kernel_size} with 2x2 pooling do not fit "
                                 f"input_shape {self.image_shape}")
        return h * w * self.conv_filters[-1]

    def _features(self):
        if self.hidden_layers:
            return self.hidden_units
        return self._conv_output_size()

    def _make_body(self):
        """The hidden layers in order; `self.activity_layers` are those whose outputs are the
        hidden code (their fraction of non-zero units is reported)."""
        layers, self.activity_layers = [], []
        fan_in = math.prod(self.image_shape)
        if self.architecture == "cnn":
            channels = self.image_shape[-1]
            for i, filters in enumerate(self.conv_filters):
                conv_fan_in = self.kernel_size ** 2 * channels
                common = {"kernel_regularizer": self._regularizer(),
                          "bias_regularizer": self._regularizer(), "name": f"conv_{i}"}
                if self.sparse and self.conv_weight_sparsity > 0.0:
                    conv = SparseConv2D(filters, self.kernel_size,
                                        sparsity=self.conv_weight_sparsity, **common)
                else:
                    kernel_init, bias_init = _torch_like_initializers(conv_fan_in)
                    conv = keras.layers.Conv2D(filters, self.kernel_size,
                                               kernel_initializer=kernel_init,
                                               bias_initializer=bias_init, **common)
                if self.sparse:
                    act = KWinners2D(percent_on=self.conv_percent_on,
                                     k_inference_factor=self.k_inference_factor,
                                     boost_strength=self.boost_strength,
                                     boost_strength_factor=self.boost_strength_factor,
                                     duty_cycle_period=self.duty_cycle_period, local=True,
                                     relu=True, name=f"conv_kwinners_{i}")
                else:
                    act = keras.layers.ReLU(name=f"conv_relu_{i}")
                layers += [conv, act, keras.layers.MaxPooling2D(2, name=f"pool_{i}")]
                self.activity_layers.append(act)
                channels = filters
            fan_in = self._conv_output_size()
        layers.append(keras.layers.Flatten(name="flatten"))
        for i in range(self.hidden_layers):
            sparsity = self.weight_sparsity if self.sparse else 0.0
            layers.append(self._dense(self.hidden_units, fan_in, f"hidden_{i}", sparsity))
            act = (self._k_winners(f"kwinners_{i}") if self.sparse
                   else keras.layers.ReLU(name=f"relu_{i}"))
            layers.append(act)
            self.activity_layers.append(act)
            if self.dropout:
                layers.append(keras.layers.Dropout(self.dropout, name=f"dropout_{i}"))
            fan_in = self.hidden_units
        return layers

    # --- forward -----------------------------------------------------------------------------------

    def build(self, input_shape=None):
        if self.built:
            return
        shape = [1] + self.image_shape
        self._forward({"inputs": tf.zeros(shape, self.compute_dtype),
                       "task": tf.zeros([1], tf.int32)}, training=False)
        self.built = True

    def _forward(self, inputs, training):
        x = tf.cast(inputs["inputs"], self.compute_dtype)
        activities = []
        for layer in self.body:
            x = layer(x, training=training)
            if any(layer is a for a in self.activity_layers):
                activities.append(x)
        logits = tf.cast(self.head(x), tf.float32)
        if self.num_heads == 1:
            return logits, activities
        logits = tf.reshape(logits, [-1, self.num_heads, self.classes_per_head])
        task = tf.cast(tf.reshape(inputs["task"], [-1]), tf.int32)
        return tf.gather(logits, task, axis=1, batch_dims=1), activities

    def call(self, inputs, training=None):
        return self._forward(inputs, bool(training))[0]

    def active_fractions(self, inputs):
        """Fraction of non-zero units of each hidden code (conv and FC) at inference, averaged
        over the batch: a list of float32 scalars, one per activity layer."""
        _, activities = self._forward(inputs, False)
        return [tf.reduce_mean(tf.cast(a > 0, tf.float32)) for a in activities]

    # --- training ---------------------------------------------------------------------------------

    def compile(self, optimizer=None, loss=None, metrics=None, **kwargs):
        """`keras.Model.compile` with the hparams' optimizer, cross-entropy on logits, accuracy."""
        if optimizer is None and self.optimizer_name == "adam":
            optimizer = keras.optimizers.Adam(self.learning_rate)
        elif optimizer is None:
            optimizer = keras.optimizers.SGD(self.learning_rate, momentum=self.momentum,
                                             nesterov=self.nesterov)
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics is None:
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        """Restores the compile settings saved in a `.keras` file (custom `compile` above)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        config = {"name": self.name}
        for key in OPTIONS:
            config[key] = getattr(self, self._ATTRIBUTES.get(key, key))
        return config
