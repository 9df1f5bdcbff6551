"""Compiled step loops shared by the workflows: free-running generation and streaming.

Both run a model's one-step function `step_fn(x, state) -> (output, new_state)` inside ONE
`tf.while_loop` (one graph for the whole loop, no Python per step). Call them inside a
`tf.function` (`compiled_free_run` / `compiled_stream` make one) or from code that is already
traced; eagerly they still work, a step at a time.

* `free_run(step_fn, state, first_input, steps)`: feeds each output back as the next input
  (multi-step forecasting, sampling a sequence).
* `stream(step_fn, state, inputs)`: feeds the given inputs one step at a time (streaming
  inference: the state carries over, each output is the prediction made at that step).
* `primed_run(step_fn, state, frames, prime)`: true frames first, then its own (optionally
  rectified) output: priming and self-looping of video generation in one loop (below).

All three are the same loop (`_loop`): they differ only in where each step's input comes from.

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

Priming then self-looping (docs/video.md).

`primed_run` drives a one-step function ``step_fn(x_t, state) -> (prediction of x_{t+1},
state)`` over a sequence of true frames: for the first `prime` frames it consumes the true
frames, afterwards its own (optionally rectified) output. The whole pass, priming and
self-looping, is ONE `tf.while_loop` (no Python per frame); `make_generator` wraps it in one
`tf.function`, compiled with XLA when asked (by default on a GPU or TPU).

Semantics (the original's): with N = `prime`, the predictor consumes the true frames
x_0 … x_{N−2}; from then on its input is its own output, so the first true frame replaced is
x_{N−1} (the output o_{N−1} predicted from x_{N−2} is fed in its place). Output t (t = 1 … T−1)
is the prediction of frame t: o_1 … o_{N−1} are one step ahead from true frames (priming),
o_N … o_{T−1} are self-looped.

Example:

```python
import tensorflow as tf
from pagi_rsm.generation import primed_run
step = lambda x, s: (0.5 * x + s, s)               # a toy predictor
out = primed_run(step, tf.zeros([2, 1]), tf.ones([2, 8, 1]), prime=3)
out["output"].shape                                # [2, 7, 1]: predictions of frames 1..7
```
"""
import tensorflow as tf

from pagi_rsm.checks import check_lengths


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


def primed_run(step_fn, state, frames, prime, rectify=None):
    """Primes `step_fn` on `frames[:, :prime - 1]`, then feeds its output back (see module).

    Call it inside a `tf.function` (`make_generator` makes one); eagerly it still works.

    Args:
      step_fn: ``(x [B, ...], state) -> (prediction [B, ...], new_state)``; state is any nest of
        tensors whose shapes do not change.
      state: the initial state (e.g. the model's zero state).
      frames: the true frames [B, T, ...], T >= 2.
      prime: N, 2 <= N < T (an int or int32 scalar tensor): the number of true frames before
        the output replaces the input (x_{N−1} is the first replaced frame).
      rectify: optional ``prediction -> output`` applied to every prediction (the GAN
        rectifier); the output is what is fed back. None: the prediction itself.

    Returns:
      dict of [B, T − 1, ...] tensors for frames 1 … T−1: ``prediction`` (the predictor's) and
      ``output`` (rectified, or the prediction again), and ``state``, the final state.
    """
    frames = tf.convert_to_tensor(frames)
    steps = tf.shape(frames)[1] - 1
    prime = tf.convert_to_tensor(prime, tf.int32)

    def step(x, state):
        prediction, state = step_fn(x, state)
        prediction = tf.cast(prediction, frames.dtype)
        output = prediction if rectify is None else tf.cast(rectify(prediction), frames.dtype)
        return {"prediction": prediction, "output": output}, state

    def input_at(i, previous):
        # Input i is the true frame x_i while i <= N - 2, else the previous output o_i.
        true = tf.gather(frames, tf.minimum(i, steps), axis=1)
        if previous is None:
            return true
        return tf.where(i <= prime - 2, true, tf.ensure_shape(previous["output"], true.shape))

    outputs, state = _loop(step, state, steps, input_at, feed_back=False)
    return {**outputs, "state": state}


def make_generator(step_fn, zero_state, rectify=None, jit_compile=None):
    """One `tf.function` ``(frames [B, T, ...], prime) -> primed_run(...)`` from a zero state.

    Args:
      step_fn, rectify: as `primed_run`.
      zero_state: ``batch_size -> state`` (e.g. a stack's ``zero_states``).
      jit_compile: True/False, or None for XLA on a GPU or TPU only.
    """
    if jit_compile is None:
        from pagi_rsm.runtime import has_accelerator
        jit_compile = has_accelerator()

    @tf.function(jit_compile=bool(jit_compile))
    def run(frames, prime):
        return primed_run(step_fn, zero_state(tf.shape(frames)[0]), frames, prime, rectify)

    return run


def generate(model, frames, prime=50, steps=150, rectifier=None, jit_compile=None):
    """Primes `model` on N = `prime` true frames of `frames`, then self-loops M = `steps`.

    Args:
      model: has ``step(frame, states) -> (next-frame prediction, states)`` and
        ``zero_states(batch_size)`` (a `SequenceMemoryStack`).
      frames: the true frames [B, T, H, W, C] with T >= N + M (only the first N + M are used).
      rectifier: optional callable prediction -> rectified frame (a `GANRectifier`), whose
        output is fed back.
      jit_compile: True/False, or None for XLA on a GPU or TPU only.

    Returns:
      dict of numpy arrays [B, N + M − 1, H, W, C] for frames 1 … N+M−1: ``prediction`` and
      ``output`` (see `primed_run`).
    """
    frames = tf.convert_to_tensor(frames)
    total = check_lengths(prime, steps, frames.shape[1])
    rectify = None if rectifier is None else (lambda p: rectifier(p, training=False))
    run = make_generator(lambda x, s: model.step(x, s), model.zero_states, rectify,
                         jit_compile)
    out = run(frames[:, :total], tf.constant(prime, tf.int32))
    return {key: out[key].numpy() for key in ("prediction", "output")}
