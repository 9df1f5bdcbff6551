"""The GAN rectifier trained on a frozen memory (the video workflow's gan phase, docs/video.md).

Each batch the memory runs the chunk forward from its stream state without learning (its
weights never change; the stream state goes on, resets included), then the rectifier takes
one discriminator and one generator step on (the memory's prediction of frame t, frame t).
"""
import keras
import tensorflow as tf


class FrozenMemoryGAN(keras.Model):
    """`rectifier` trained on the predictions of the frozen `memory`.

    Args:
      memory: a built `SequenceMemoryStack` (its weights are not trained here).
      rectifier: a `GANRectifier`.
    """

    def __init__(self, memory, rectifier, name="frozen_memory_gan"):
        super().__init__(name=name)
        memory.trainable = False
        self.memory = memory
        self.rectifier = rectifier

    def compile(self, **kwargs):
        super().compile(**kwargs)
        self.rectifier.compile(**kwargs)

    def checkpoint_items(self):
        """The rectifier (weights and optimisers) and the memory's stream state."""
        items = {"rectifier": self.rectifier,
                 "memory_stream": {str(i): s for i, s in enumerate(self.memory.stream_states)}}
        for key in ("generator_optimizer", "discriminator_optimizer"):
            optimizer = getattr(self.rectifier, key, None)
            if optimizer is not None:
                items[key] = optimizer
        return items

    @property
    def metrics(self):
        return self.rectifier.metrics

    def pairs(self, data, move_on=True):
        """(prediction, real) frames [B*T, H, W, C] of one chunk; the stream state moves on
        unless `move_on` is False."""
        if isinstance(data, tuple):  # Keras packs (x, y, sample_weight)
            data = data[0]
        out, states = self.memory.unroll(data, training=False)
        if move_on:
            for state, values in zip(self.memory.stream_states, states):
                state.write(values)
        x = data["inputs"]
        frame = tuple(x.shape[2:])
        prediction = tf.reshape(tf.stop_gradient(out["decoding_0"]), (-1, *frame))
        return tf.cast(prediction, x.dtype), tf.reshape(x, (-1, *frame))

    def train_step(self, data):
        prediction, real = self.pairs(data)
        return self.rectifier.train_step({"prediction": prediction, "target": real})

    def test_step(self, data):
        prediction, real = self.pairs(data)
        return self.rectifier.test_step({"prediction": prediction, "target": real})

    def write_summaries(self, step, batch):
        """TensorBoard image of stream 0's first frames of `batch`: truth / the memory's
        prediction / the rectified prediction / |truth - rectified| (the stream state is left
        as it is)."""
        prediction, real = self.pairs(batch, move_on=False)
        steps = min(8, int(tf.shape(batch["inputs"])[1]))     # stream 0: the first T pairs
        rectified = self.rectifier(prediction[:steps], training=False)
        rows = [real[:steps], tf.clip_by_value(prediction[:steps], 0.0, 1.0), rectified,
                tf.abs(real[:steps] - rectified)]
        strip = tf.concat([tf.concat(tf.unstack(r[..., 0]), axis=1) for r in rows], axis=0)
        tf.summary.image("gan/truth_prediction_rectified_difference", strip[None, :, :, None],
                         step=step)

    def call(self, data, training=False):
        """The rectified predictions of one chunk; the streams' stored state is left as it is
        (Keras may call this to build the model, outside the training loop)."""
        prediction, _ = self.pairs(data, move_on=False)
        return self.rectifier(prediction, training=training)
