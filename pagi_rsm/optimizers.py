"""`FusedAdam`: Keras' Adam with one fused kernel per variable update on TensorFlow."""
import keras
import tensorflow as tf


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable (the replica's own one inside a
    `tf.distribute` update)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


@keras.saving.register_keras_serializable(package="pagi_rsm")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose dense update is TensorFlow's fused `ResourceApplyAdam`.

    Same hyper-parameters, variables (iterations, momentums, velocities) and checkpoints as
    Keras' Adam, and the same update rule,
    ``m += (g − m)(1 − β1); v += (g² − v)(1 − β2); θ −= α m / (√v + ε)`` with
    ``α = lr √(1 − β2^t) / (1 − β1^t)``, computed in one pass over the variable instead of
    about ten element-wise kernels (the kernel forms 1 − β1 in the variable's dtype, so results
    agree with Keras' Adam to float rounding, ~1e-7 relative). Sparse gradients (IndexedSlices)
    and ``amsgrad`` use Keras' update. docs/performance.md has the measurements.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]), beta1_power=tf.pow(beta_1, local_step),
            beta2_power=tf.pow(beta_2, local_step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))
        return None
