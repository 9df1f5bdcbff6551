"""Compiled step loops shared by the workflows: free-running generation and streaming.

Both run a model's one-step function `step_fn(x, state) -> (output, new_state)` inside ONE
`tf.while_loop` (one graph for the whole loop, no Python per step). Call them inside a
`tf.function` (`compiled_free_run` / `compiled_stream` make one) or from code that is already
traced; eagerly they still work, a step at a time.

* `free_run(step_fn, state, first_input, steps)`: feeds each output back as the next input
  (multi-step forecasting, sampling a sequence).
* `stream(step_fn, state, inputs)`: feeds the given inputs one step at a time (streaming
  inference: the state carries over, each output is the prediction made at that step).

`state` and the outputs may be any nest of tensors (`tf.nest`), so a model with several state
tensors passes them as a list or dict. The outputs are stacked along axis 1 (time), as Keras
sequence outputs are.

Example:

```python
def step_fn(x, state):             # a toy linear recurrence: output = next input
    return 0.9 * x + state, state
outputs, state = compiled_free_run(step_fn)(tf.zeros([2, 1]), tf.ones([2, 1]), 100)
outputs.shape                      # [2, 100, 1]
```
"""
import tensorflow as tf


def _loop(step_fn, state, steps, input_at, feed_back):
    """The shared while loop: returns (outputs stacked on axis 1, final state)."""
    steps = tf.convert_to_tensor(steps, tf.int32)
    x0 = input_at(0, None)
    # One traced call outside the loop fixes the output structure (shapes and dtypes) for the
    # TensorArrays; its result is the loop's first step, so nothing is computed twice.
    first, state = step_fn(x0, state)
    flat_first = tf.nest.flatten(first)
    arrays = [tf.TensorArray(t.dtype, size=steps, element_shape=t.shape).write(0, t)
              for t in flat_first]

    def body(i, x, state, arrays):
        out, state = step_fn(x, state)
        flat = tf.nest.flatten(out)
        arrays = [a.write(i, t) for a, t in zip(arrays, flat)]
        return i + 1, out if feed_back else input_at(i + 1, out), state, arrays

    x1 = first if feed_back else input_at(1, first)
    _, _, state, arrays = tf.while_loop(
        lambda i, *_: i < steps, body, (tf.constant(1), x1, state, arrays),
        maximum_iterations=steps)
    stacked = [tf.transpose(a.stack(), [1, 0] + list(range(2, t.shape.rank + 1)))
               for a, t in zip(arrays, flat_first)]
    return tf.nest.pack_sequence_as(first, stacked), state


def free_run(step_fn, state, first_input, steps):
    """Runs `step_fn` for `steps` steps, each output fed back as the next input.

    Args:
      step_fn: `(x [B, ...], state) -> (output, new_state)`; the output must have the input's
        structure, shape and dtype (it becomes the next input); state: any nest of tensors whose
        shapes do not change from step to step.
      state: the initial state (e.g. after a teacher-forced warm-up with `stream`).
      first_input: the first input `[B, ...]` (e.g. the last observed value).
      steps: number of steps >= 1 (Python int or int32 scalar tensor).

    Returns:
      `(outputs, state)`: the outputs stacked on axis 1 (`[B, steps, ...]`; output t is the
      prediction made after seeing input t, so `outputs[:, t]` forecasts t + 1 steps after
      `first_input`) and the final state.
    """
    return _loop(step_fn, state, steps, lambda i, out: first_input, feed_back=True)


def stream(step_fn, state, inputs):
    """Runs `step_fn` over `inputs` `[B, T, ...]` one step at a time (teacher forcing).

    Args:
      step_fn: `(x [B, ...], state) -> (output, new_state)`.
      state: the initial state.
      inputs: `[B, T, ...]` with T >= 1.

    Returns:
      `(outputs, state)`: the outputs stacked on axis 1 (`[B, T, ...]`) and the final state.
    """
    inputs = tf.convert_to_tensor(inputs)
    steps = tf.shape(inputs)[1]
    last = steps - 1
    return _loop(step_fn, state, steps,
                 lambda i, out: tf.gather(inputs, tf.minimum(i, last), axis=1),
                 feed_back=False)


def compiled_free_run(step_fn, jit_compile=False):
    """`free_run` as a `tf.function` for `step_fn` (one graph for the whole loop)."""
    return tf.function(lambda state, first_input, steps: free_run(step_fn, state, first_input,
                                                                 steps),
                       jit_compile=jit_compile)


def compiled_stream(step_fn, jit_compile=False):
    """`stream` as a `tf.function` for `step_fn` (one graph for the whole loop)."""
    return tf.function(lambda state, inputs: stream(step_fn, state, inputs),
                       jit_compile=jit_compile)
