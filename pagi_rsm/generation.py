"""Priming then self-looping a next-frame predictor in one compiled loop (docs/video.md).

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

from pagi_rsm.checks import check_int


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
    element = frames.shape[:1] + frames.shape[2:]

    def arrays():
        return tf.TensorArray(frames.dtype, size=steps, element_shape=element)

    def body(i, fed_back, state, predictions, outputs):
        # Input i is the true frame x_i while i <= N - 2, else the previous output o_i.
        x = tf.where(i <= prime - 2, tf.gather(frames, i, axis=1), fed_back)
        prediction, state = step_fn(x, state)
        prediction = tf.cast(prediction, frames.dtype)
        output = prediction if rectify is None else tf.cast(rectify(prediction), frames.dtype)
        output = tf.ensure_shape(output, fed_back.shape)
        return (i + 1, output, state, predictions.write(i, prediction),
                outputs.write(i, output))

    start = (tf.constant(0), tf.zeros_like(frames[:, 0]), state, arrays(), arrays())
    _, _, state, predictions, outputs = tf.while_loop(
        lambda i, *_: i < steps, body, start, maximum_iterations=steps)
    order = [1, 0] + list(range(2, frames.shape.rank))
    return {"prediction": tf.transpose(predictions.stack(), order),
            "output": tf.transpose(outputs.stack(), order), "state": state}


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


def check_lengths(prime, steps, num_frames=None):
    """Checks the priming length N and self-looped frames M; returns T = N + M.

    Raises:
      ValueError: N < 2, M < 1, or (given the sequence length) N + M > num_frames, naming the
        argument.
    """
    prime = check_int("prime", prime, 2)
    steps = check_int("steps", steps, 1)
    if num_frames is not None and prime >= num_frames:
        raise ValueError(f"prime must be < the sequence length {num_frames}, got {prime}")
    if num_frames is not None and prime + steps > num_frames:
        raise ValueError(f"prime + steps must be <= the sequence length {num_frames}, got "
                         f"{prime} + {steps}")
    return prime + steps


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
