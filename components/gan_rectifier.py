"""The GAN rectifier of the bouncing-balls video experiment (docs/video.md).

A conditional GAN trained after the memory: its generator maps the memory's predicted next
frame to a sharper frame, its discriminator tells true next frames from rectified ones given a
condition (by default the prediction itself). With the default loss weights (MSE 1, adversarial
0.0002) the generator is essentially an MSE-trained convolutional autoencoder that the
adversarial term nudges towards crisp balls.
"""
import keras
import tensorflow as tf
from keras import ops

from pagi_rsm.checks import check_int, check_number


def _leaky(negative_slope):
    return lambda x: keras.activations.leaky_relu(x, negative_slope=negative_slope)


def _offset(seed, offset):
    return None if seed is None else seed + offset


def _normal(stddev, seed, offset):
    """N(0, stddev²) initialiser of one layer: each layer needs its own instance, as a seeded
    instance repeats its values (None: a fresh random seed)."""
    return keras.initializers.RandomNormal(0.0, stddev, seed=_offset(seed, offset))


def _int_list(name, values):
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{name} must be a non-empty list of integers >= 1, got {values!r}")
    return [check_int(f"{name}[{i}]", v, 1) for i, v in enumerate(values)]


def _product(values):
    out = 1
    for v in values:
        out *= v
    return out


@keras.saving.register_keras_serializable(package="pagi_rsm")
class RectifierGenerator(keras.layers.Layer):
    """Convolutional autoencoder from a predicted frame to a rectified frame in [0, 1].

    Encoder: one Conv2D per `encoder_filters` entry (kernel `kernel_size`, stride from
    `encoder_strides`, SAME padding, leaky ReLU). Decoder: one Conv2DTranspose per
    `decoder_filters` entry (stride from `decoder_strides`, SAME, leaky ReLU), then an output
    Conv2DTranspose with `output_channels` filters (stride 1, linear) and a sigmoid. Kernels
    start from N(0, init_stddev), biases from 0. The defaults (64/128/256 with strides 1/2/1,
    128/64 with strides 2/1, 5x5, slope 0.2) map 34x34 -> 34 -> 17 -> 17 -> 34 -> 34 -> 34.

    Input: [B, H, W, C] with H and W multiples of the product of the encoder strides, which
    must equal the product of the decoder strides (so the output has the input's size).
    Output: [B, H, W, output_channels].
    """

    def __init__(self, encoder_filters=(64, 128, 256), encoder_strides=(1, 2, 1),
                 decoder_filters=(128, 64), decoder_strides=(2, 1), kernel_size=5,
                 output_channels=1, negative_slope=0.2, init_stddev=0.02, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder_filters = _int_list("encoder_filters", encoder_filters)
        self.encoder_strides = _int_list("encoder_strides", encoder_strides)
        self.decoder_filters = _int_list("decoder_filters", decoder_filters)
        self.decoder_strides = _int_list("decoder_strides", decoder_strides)
        for name, filters, strides in (("encoder", self.encoder_filters, self.encoder_strides),
                                       ("decoder", self.decoder_filters, self.decoder_strides)):
            if len(filters) != len(strides):
                raise ValueError(f"{name}_strides needs one entry per {name}_filters entry "
                                 f"({len(filters)}), got {len(strides)}")
        if _product(self.encoder_strides) != _product(self.decoder_strides):
            raise ValueError(
                f"the decoder must undo the encoder's down-sampling: the product of "
                f"encoder_strides {self.encoder_strides} must equal that of decoder_strides "
                f"{self.decoder_strides}")
        self.kernel_size = check_int("kernel_size", kernel_size, 1)
        self.output_channels = check_int("output_channels", output_channels, 1)
        self.negative_slope = check_number("negative_slope", negative_slope, 0.0, 1.0)
        self.init_stddev = check_number("init_stddev", init_stddev, 0.0, low_open=True)
        self.seed = seed
        layers = len(self.encoder_filters) + len(self.decoder_filters)
        inits = [_normal(self.init_stddev, seed, i) for i in range(layers + 1)]
        common = dict(kernel_size=self.kernel_size, padding="same")
        self.encoder = [keras.layers.Conv2D(f, strides=s, name=f"encoder_{i}",
                                            kernel_initializer=inits[i], **common)
                        for i, (f, s) in enumerate(zip(self.encoder_filters,
                                                       self.encoder_strides))]
        self.decoder = [keras.layers.Conv2DTranspose(
                            f, strides=s, name=f"decoder_{i}",
                            kernel_initializer=inits[len(self.encoder) + i], **common)
                        for i, (f, s) in enumerate(zip(self.decoder_filters,
                                                       self.decoder_strides))]
        self.output_layer = keras.layers.Conv2DTranspose(
            self.output_channels, strides=1, name="output", kernel_initializer=inits[-1],
            **common)
        self.activation = _leaky(self.negative_slope)

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 4:
            raise ValueError(f"RectifierGenerator takes frames [batch, height, width, "
                             f"channels], got shape {shape}")
        factor = _product(self.encoder_strides)
        for size in shape[1:3]:
            if size is not None and size % factor:
                raise ValueError(f"frame height and width must be multiples of {factor} (the "
                                 f"product of encoder_strides), got {shape[1:3]}")
        for layer in self.encoder + self.decoder + [self.output_layer]:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, frames):
        x = frames
        for layer in self.encoder + self.decoder:
            x = self.activation(layer(x))
        return ops.sigmoid(self.output_layer(x))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.output_channels,)

    def get_config(self):
        config = super().get_config()
        config.update(encoder_filters=self.encoder_filters,
                      encoder_strides=self.encoder_strides,
                      decoder_filters=self.decoder_filters,
                      decoder_strides=self.decoder_strides, kernel_size=self.kernel_size,
                      output_channels=self.output_channels,
                      negative_slope=self.negative_slope, init_stddev=self.init_stddev,
                      seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="pagi_rsm")
class RectifierDiscriminator(keras.layers.Layer):
    """Conditional discriminator: the logit that `frame` is a true frame, given `condition`.

    ``logit = Dense(1)([leaky(Dense(hidden_units)(flat(frame))),
                        leaky(Dense(condition_units)(flat(condition)))])``. The frame branch is
    a fully connected layer (the same function as a convolution whose kernel covers the whole
    frame); the condition branch is one layer shared by every call (true and rectified
    frames). The frame branch and the output start from N(0, init_stddev), the condition
    branch from Glorot uniform; biases from 0. The score is ``sigmoid(logit)``.
    """

    def __init__(self, hidden_units=128, condition_units=128, negative_slope=0.2,
                 init_stddev=0.02, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = check_int("hidden_units", hidden_units, 1)
        self.condition_units = check_int("condition_units", condition_units, 1)
        self.negative_slope = check_number("negative_slope", negative_slope, 0.0, 1.0)
        self.init_stddev = check_number("init_stddev", init_stddev, 0.0, low_open=True)
        self.seed = seed
        self.frame_layer = keras.layers.Dense(
            self.hidden_units, kernel_initializer=_normal(self.init_stddev, seed, 0),
            name="frame")
        self.condition_layer = keras.layers.Dense(
            self.condition_units,
            kernel_initializer=keras.initializers.GlorotUniform(_offset(seed, 1)),
            name="condition")
        self.output_layer = keras.layers.Dense(
            1, kernel_initializer=_normal(self.init_stddev, seed, 2), name="output")
        self.activation = _leaky(self.negative_slope)

    def build(self, frame_shape, condition_shape):
        self.frame_layer.build((None, _product(frame_shape[1:])))
        self.condition_layer.build((None, _product(condition_shape[1:])))
        self.output_layer.build((None, self.hidden_units + self.condition_units))

    def call(self, frame, condition):
        flat = ops.reshape(frame, (ops.shape(frame)[0], -1))
        flat_condition = ops.reshape(condition, (ops.shape(condition)[0], -1))
        hidden = ops.concatenate([self.activation(self.frame_layer(flat)),
                                  self.activation(self.condition_layer(flat_condition))],
                                 axis=-1)
        return self.output_layer(hidden)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, condition_units=self.condition_units,
                      negative_slope=self.negative_slope, init_stddev=self.init_stddev,
                      seed=self.seed)
        return config


def _bce(logits, label):
    """Mean binary cross-entropy of sigmoid(logits) against a constant label, in float32."""
    logits = ops.cast(logits, "float32")
    return ops.mean(keras.losses.binary_crossentropy(ops.full_like(logits, label), logits,
                                                     from_logits=True))


_GENERATOR_ARGS = ("encoder_filters", "encoder_strides", "decoder_filters", "decoder_strides",
                   "kernel_size")


@keras.saving.register_keras_serializable(package="pagi_rsm")
class GANRectifier(keras.Model):
    """Conditional GAN that turns the memory's predicted frame into a sharper frame.

    Batches (dicts; `model.fit` drives `train_step`):

    - `prediction` [B, H, W, C]: the memory's predicted frame, the generator's input;
    - `target` [B, H, W, C]: the true frame it predicts;
    - `condition` (optional) [B, *condition_shape]: what the discriminator is conditioned on;
      by default the prediction (as the original rectifier).

    One training step: the generator rectifies g = G(prediction); the discriminator takes one
    plain SGD step on ``L_D = BCE(D(target + n), 1 − label_smoothing) + BCE(D(g + n), 0)``
    (one-sided label smoothing; n ~ N(0, input_noise_stddev²) one sample shared by both
    terms; g held constant); then the generator takes one Adam step on
    ``L_G = mse_weight · mean((target − g)²) + adversarial_weight · BCE(D(g + n'), 1)``, with
    the updated discriminator and a fresh noise sample n'. Label smoothing and the noise are
    discriminator-side only: the generator's MSE sees the clean frames and its adversarial
    target is 1. Evaluation (`test_step`) uses no noise and changes nothing.

    `call(prediction)` returns the rectified frame G(prediction).

    Logged: generator_loss, generator_mse, generator_adversarial_loss, discriminator_loss,
    real_score and fake_score (mean sigmoid outputs of the discriminator on true and
    rectified frames).

    Args:
      frame_shape: (H, W, C) of the frames.
      condition_shape: shape of one `condition`; None means `frame_shape` (the prediction).
      encoder_filters, encoder_strides, decoder_filters, decoder_strides, kernel_size: the
        generator (`RectifierGenerator`).
      hidden_units, condition_units: the discriminator (`RectifierDiscriminator`).
      negative_slope: of every leaky ReLU.
      init_stddev: of the normal initialisers.
      mse_weight, adversarial_weight: λ of the generator's two losses.
      label_smoothing: in [0, 1); the discriminator's target for true frames is 1 − it.
      input_noise_stddev: σ >= 0 of the noise on the discriminator's inputs in training.
      generator_learning_rate: Adam's. discriminator_learning_rate: SGD's.
      seed: of the initialisers and the noise.
    """

    def __init__(self, frame_shape=(34, 34, 1), condition_shape=None,
                 encoder_filters=(64, 128, 256), encoder_strides=(1, 2, 1),
                 decoder_filters=(128, 64), decoder_strides=(2, 1), kernel_size=5,
                 hidden_units=128, condition_units=128, negative_slope=0.2, init_stddev=0.02,
                 mse_weight=1.0, adversarial_weight=0.0002, label_smoothing=0.1,
                 input_noise_stddev=0.1, generator_learning_rate=0.0005,
                 discriminator_learning_rate=0.0005, seed=None, name="gan_rectifier",
                 **kwargs):
        for key in ("trainable", "dtype"):
            kwargs.pop(key, None)
        if kwargs:
            raise ValueError(f"unknown GANRectifier argument(s) {sorted(kwargs)}")
        super().__init__(name=name)
        self.frame_shape = _int_list("frame_shape", frame_shape)
        if len(self.frame_shape) != 3:
            raise ValueError(f"frame_shape must be (height, width, channels), got {frame_shape}")
        self.condition_shape = (list(self.frame_shape) if condition_shape is None
                                else _int_list("condition_shape", condition_shape))
        self._condition_given = condition_shape is not None
        self.mse_weight = check_number("mse_weight", mse_weight, 0.0)
        self.adversarial_weight = check_number("adversarial_weight", adversarial_weight, 0.0)
        self.label_smoothing = check_number("label_smoothing", label_smoothing, 0.0, 1.0,
                                            high_open=True)
        self.input_noise_stddev = check_number("input_noise_stddev", input_noise_stddev, 0.0)
        self.generator_learning_rate = check_number("generator_learning_rate",
                                                    generator_learning_rate, 0.0)
        self.discriminator_learning_rate = check_number("discriminator_learning_rate",
                                                        discriminator_learning_rate, 0.0)
        self.seed = seed
        self.generator = RectifierGenerator(
            encoder_filters, encoder_strides, decoder_filters, decoder_strides, kernel_size,
            output_channels=self.frame_shape[-1], negative_slope=negative_slope,
            init_stddev=init_stddev, seed=seed, name="generator")
        self.discriminator = RectifierDiscriminator(
            hidden_units, condition_units, negative_slope=negative_slope,
            init_stddev=init_stddev, seed=_offset(seed, 100), name="discriminator")
        self.noise_seed = keras.random.SeedGenerator(_offset(seed, 200))
        self.generator.build((None, *self.frame_shape))
        self.discriminator.build((None, *self.frame_shape), (None, *self.condition_shape))
        self.trackers = {name: keras.metrics.Mean(name=name) for name in (
            "generator_loss", "generator_mse", "generator_adversarial_loss",
            "discriminator_loss", "real_score", "fake_score")}
        self.built = True

    # ------------------------------------------------------------------ configuration
    def get_config(self):
        g, d = self.generator, self.discriminator
        return {"frame_shape": list(self.frame_shape),
                "condition_shape": list(self.condition_shape) if self._condition_given else None,
                **{key: getattr(g, key) for key in _GENERATOR_ARGS},
                "hidden_units": d.hidden_units, "condition_units": d.condition_units,
                "negative_slope": g.negative_slope, "init_stddev": g.init_stddev,
                "mse_weight": self.mse_weight, "adversarial_weight": self.adversarial_weight,
                "label_smoothing": self.label_smoothing,
                "input_noise_stddev": self.input_noise_stddev,
                "generator_learning_rate": self.generator_learning_rate,
                "discriminator_learning_rate": self.discriminator_learning_rate,
                "seed": self.seed, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    _COMPILE_KEYS = ("jit_compile", "steps_per_execution", "run_eagerly")

    def compile(self, **kwargs):
        """Creates the generator's Adam and the discriminator's plain SGD (their own rates).

        Accepts Keras' `jit_compile`, `steps_per_execution` and `run_eagerly` (an `optimizer`
        is ignored; losses and metrics are the model's own).
        """
        kwargs.pop("optimizer", None)
        self._compile_kwargs = {k: v for k, v in kwargs.items() if k in self._COMPILE_KEYS}
        self.generator_optimizer = keras.optimizers.Adam(self.generator_learning_rate,
                                                         name="generator_adam")
        self.discriminator_optimizer = keras.optimizers.SGD(self.discriminator_learning_rate,
                                                            name="discriminator_sgd")
        if self.dtype_policy.name == "mixed_float16":   # float16 gradients need loss scaling
            self.generator_optimizer = keras.optimizers.LossScaleOptimizer(
                self.generator_optimizer)
            self.discriminator_optimizer = keras.optimizers.LossScaleOptimizer(
                self.discriminator_optimizer)
        self.generator_optimizer.build(self.generator.trainable_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)
        super().compile(optimizer=None, **kwargs)

    def get_compile_config(self):
        """Saved with the model so that a loaded model is compiled (the optimisers' slots
        start afresh)."""
        if not hasattr(self, "_compile_kwargs"):
            return None
        return {"compiled": True, **self._compile_kwargs}

    def compile_from_config(self, config):
        self.compile(**{k: v for k, v in config.items() if k in self._COMPILE_KEYS})

    @property
    def metrics(self):
        return list(self.trackers.values())

    # ------------------------------------------------------------------ losses
    def discriminator_loss(self, real_logits, fake_logits):
        """``BCE(real, 1 − label_smoothing) + BCE(fake, 0)``, each a batch mean."""
        return _bce(real_logits, 1.0 - self.label_smoothing) + _bce(fake_logits, 0.0)

    @staticmethod
    def adversarial_loss(fake_logits):
        """The generator's adversarial loss ``BCE(D(g), 1)`` (no label smoothing)."""
        return _bce(fake_logits, 1.0)

    # ------------------------------------------------------------------ steps
    def _unpack(self, data):
        if isinstance(data, tuple) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict):
            raise ValueError("GANRectifier batches are dicts with keys 'prediction', 'target' "
                             f"and optionally 'condition', got {type(data).__name__}")
        for key in ("prediction", "target"):
            if key not in data:
                raise ValueError(f"GANRectifier batch is missing {key!r} (keys: "
                                 f"{sorted(data)}); it needs 'prediction' and 'target'")
        prediction, target = data["prediction"], data["target"]
        condition = data.get("condition", prediction)
        for key, value, shape in (("prediction", prediction, self.frame_shape),
                                  ("target", target, self.frame_shape),
                                  ("condition", condition, self.condition_shape)):
            if tuple(value.shape[1:]) != tuple(shape):
                raise ValueError(f"GANRectifier batch {key!r} must have shape [batch, "
                                 f"{', '.join(map(str, shape))}], got {tuple(value.shape)}")
        return prediction, condition, target

    def _noise(self, like, training):
        if not training or self.input_noise_stddev == 0.0:
            return ops.zeros_like(like)
        return keras.random.normal(ops.shape(like), stddev=self.input_noise_stddev,
                                   dtype=like.dtype, seed=self.noise_seed)

    def _step(self, data, training):
        prediction, condition, target = self._unpack(data)
        target = ops.cast(target, self.compute_dtype)
        # Each replica's losses are means over its part of the batch; the optimisers sum the
        # replicas' gradients, so scale them to the gradient of the global mean.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as generator_tape:
            fake = self.generator(prediction, training=training)
        # The discriminator's step, outside the generator's tape (g is a constant here).
        noise = self._noise(target, training)
        with tf.GradientTape() as discriminator_tape:
            real_logits = self.discriminator(target + noise, condition)
            fake_logits = self.discriminator(ops.stop_gradient(fake) + noise, condition)
            d_loss = self.discriminator_loss(real_logits, fake_logits)
            scaled = self.discriminator_optimizer.scale_loss(d_loss / replicas)
        if training:
            variables = self.discriminator.trainable_variables
            grads = discriminator_tape.gradient(scaled, variables)
            self.discriminator_optimizer.apply(grads, variables)
        with generator_tape:   # records again: the generator's loss, with the updated D
            adversarial_logits = self.discriminator(fake + self._noise(fake, training),
                                                    condition)
            mse = ops.mean(ops.square(ops.cast(target, "float32") - ops.cast(fake, "float32")))
            adversarial = self.adversarial_loss(adversarial_logits)
            g_loss = self.mse_weight * mse + self.adversarial_weight * adversarial
            scaled = self.generator_optimizer.scale_loss(g_loss / replicas)
        if training:
            variables = self.generator.trainable_variables
            grads = generator_tape.gradient(scaled, variables)
            self.generator_optimizer.apply(grads, variables)
        values = {"generator_loss": g_loss, "generator_mse": mse,
                  "generator_adversarial_loss": adversarial, "discriminator_loss": d_loss,
                  "real_score": ops.mean(ops.sigmoid(ops.cast(real_logits, "float32"))),
                  "fake_score": ops.mean(ops.sigmoid(ops.cast(fake_logits, "float32")))}
        for key, value in values.items():
            self.trackers[key].update_state(value)
        return {key: tracker.result() for key, tracker in self.trackers.items()}

    def train_step(self, data):
        return self._step(data, training=True)

    def test_step(self, data):
        return self._step(data, training=False)

    def call(self, prediction, training=False):
        """The rectified frame G(prediction), [B, H, W, C] in [0, 1].

        `prediction` is the predicted frame, or a batch dict holding it under 'prediction'
        (so `model.predict` takes the training batches too).
        """
        if isinstance(prediction, dict):
            prediction = prediction["prediction"]
        return self.generator(prediction, training=training)
