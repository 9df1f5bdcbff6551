"""free_run / stream: one compiled while loop, the same numbers as a Python loop."""
import numpy as np
import tensorflow as tf

from pagi_rsm import generation


def _step(x, state):
    # x_{t+1} = A x_t + state;  state_{t+1} = 0.5 state
    a = tf.constant([[0.9, -0.2], [0.3, 0.8]])
    return x @ a + state["s"], {"s": 0.5 * state["s"]}


def test_free_run_feeds_outputs_back_in_one_traced_loop():
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(3, 2)).astype("float32")
    s0 = rng.normal(size=(3, 2)).astype("float32")
    run = generation.compiled_free_run(_step)
    outputs, state = run({"s": tf.constant(s0)}, tf.constant(x0), 12)
    x, s, expected = x0, s0, []
    for _ in range(12):
        x, s = x @ np.array([[0.9, -0.2], [0.3, 0.8]], "float32") + s, 0.5 * s
        expected.append(x)
    np.testing.assert_allclose(outputs.numpy(), np.stack(expected, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["s"].numpy(), s, rtol=1e-6)
    run({"s": tf.constant(s0)}, tf.constant(x0), tf.constant(40))
    run({"s": tf.constant(s0)}, tf.constant(x0), tf.constant(3))
    # one graph whatever the number of steps (a tensor), no Python per step
    assert run.experimental_get_tracing_count() == 2   # the Python int 12, then the tensor
    graph = run.get_concrete_function({"s": tf.constant(s0)}, tf.constant(x0),
                                      tf.constant(5)).graph
    assert any(op.type in ("While", "StatelessWhile") for op in graph.get_operations())


def test_stream_is_teacher_forced():
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(2, 6, 2)).astype("float32")
    s0 = np.ones((2, 2), "float32")
    outputs, state = generation.compiled_stream(_step)({"s": tf.constant(s0)},
                                                       tf.constant(inputs))
    s, expected = s0, []
    for t in range(6):
        expected.append(inputs[:, t] @ np.array([[0.9, -0.2], [0.3, 0.8]], "float32") + s)
        s = 0.5 * s
    np.testing.assert_allclose(outputs.numpy(), np.stack(expected, 1), rtol=1e-5, atol=1e-6)
    single, _ = generation.stream(_step, {"s": tf.constant(s0)}, tf.constant(inputs[:, :1]))
    np.testing.assert_allclose(single.numpy()[:, 0], expected[0], rtol=1e-5)
