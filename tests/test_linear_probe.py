"""LinearProbe (ridge readout, streamed normal equations) and the ProbeSummaries callback."""
import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm.callbacks.probe_summaries import ProbeSummaries
from pagi_rsm.metrics.linear_probe import LinearProbe


def _reference_predictions(train_x, train_y, test_x, classes, l2):
    """Ridge onto one-hot targets with an unpenalised bias, solved directly in float64."""
    x = np.concatenate([train_x, np.ones((len(train_x), 1))], axis=1)
    penalty = l2 * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0
    w = np.linalg.solve(x.T @ x + penalty, x.T @ np.eye(classes)[train_y])
    return np.argmax(np.concatenate([test_x, np.ones((len(test_x), 1))], axis=1) @ w, axis=1)


def test_matches_a_direct_solve_and_streams_in_pieces(rng):
    classes, dim = 4, 6
    centres = rng.standard_normal((classes, dim)) * 1.5
    y = rng.integers(0, classes, 300)
    x = centres[y] + rng.standard_normal((300, dim))
    expected = _reference_predictions(x[:200], y[:200], x[200:], classes, 0.5)
    probe = LinearProbe(classes, l2=0.5)
    for part in np.array_split(np.arange(200), 7):    # uneven pieces = one piece
        probe.add_train(x[part], y[part])
    correct = np.concatenate([probe.add_test(x[part], y[part])
                              for part in np.array_split(np.arange(200, 300), 3)])
    np.testing.assert_array_equal(correct, (expected == y[200:]).astype(float))
    accuracy, count = probe.result()
    assert count == 100 and accuracy == pytest.approx(np.mean(expected == y[200:]))
    assert 0.5 < accuracy < 1.0   # a real, imperfect fit: the check is not vacuous


def test_hand_cases_and_weights():
    probe = LinearProbe(2, l2=1e-6)
    probe.add_train([[1.0, 0.0], [0.0, 1.0]], [0, 1])   # exactly separable
    correct = probe.add_test([[2.0, 0.0], [0.0, 3.0], [0.0, 2.0]], [0, 1, 0],
                             weights=[1.0, 0.0, 1.0])
    np.testing.assert_array_equal(correct, [1.0, 1.0, 0.0])
    assert probe.result() == (0.5, 2)   # the weight-0 sample is not scored
    assert LinearProbe(3).result() == (0.0, 0)


def test_bad_use_names_the_problem():
    with pytest.raises(ValueError, match="num_classes"):
        LinearProbe(1)
    with pytest.raises(ValueError, match="l2"):
        LinearProbe(2, l2=-1.0)
    probe = LinearProbe(3)
    with pytest.raises(RuntimeError, match="add_train must come before"):
        probe.add_test(np.ones((2, 4)), [0, 1])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        probe.add_train(np.ones((2, 4)), [0, 3])
    with pytest.raises(ValueError, match="one entry per feature row"):
        probe.add_train(np.ones((2, 4)), [0, 1, 2])
    probe.add_train(np.ones((2, 4)), [0, 1])
    with pytest.raises(ValueError, match="4 columns"):
        probe.add_train(np.ones((2, 5)), [0, 1])
    probe.add_test(np.ones((1, 4)), [2])
    with pytest.raises(RuntimeError, match="already solved"):
        probe.add_train(np.ones((2, 4)), [0, 1])


class _CodeIsInput:
    """A stand-in model whose code at step t is its input (a one-hot of the label), plus a
    state counting the chunks it has seen from a fresh start."""

    def __init__(self, noise):
        self.noise = noise
        self.seen = []

    def zero_states(self, batch):
        return [tf.zeros((batch, 1))]

    def unroll(self, data, states):
        codes = data["inputs"] + self.noise * tf.random.stateless_normal(
            tf.shape(data["inputs"]), seed=[1, 2])
        return {"code": codes}, [states[0] + 1.0]


class _Clock:
    batch = 0


def _chunks(rng, count, batch=6, steps=5, classes=3):
    labels = rng.integers(0, classes, (count, batch, steps)).astype("int32")
    return [dict(inputs=np.eye(classes, dtype="float32")[y], reset=np.zeros((batch, steps),
                 "float32"), labels=y, test=(np.arange(steps)[None] % 2).repeat(batch, 0)
                 .astype("float32")) for y in labels]


def test_probe_summaries_logs_the_probe(tmp_path, rng):
    chunks = _chunks(rng, 5)
    writer = tf.summary.create_file_writer(str(tmp_path))
    clock = _Clock()
    callback = ProbeSummaries(writer, clock, 2, lambda: iter(chunks), num_classes=3,
                              feature="code", train_chunks=3, test_chunks=2, mask_key="test",
                              mask_name="test_state", l2=1e-3)
    callback.set_model(_CodeIsInput(noise=0.0))
    clock.batch = 1
    callback.on_train_batch_end(0)
    assert callback.last is None          # not due
    clock.batch = 2
    callback.on_train_batch_end(1)
    assert callback.last == {"probe/accuracy": 1.0, "probe/test_state_accuracy": 1.0}
    writer.flush()
    from tensorboard.backend.event_processing import event_accumulator as ea
    acc = ea.EventAccumulator(str(tmp_path), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    assert {"probe/accuracy", "probe/test_state_accuracy"} <= set(acc.Tags()["tensors"])
    assert acc.Tensors("probe/accuracy")[0].step == 2
    # A code that is mostly noise is not linearly readable: the probe says so.
    noisy = ProbeSummaries(writer, clock, 1, lambda: iter(_chunks(rng, 40)), num_classes=3,
                           feature="code", train_chunks=30, test_chunks=10)
    noisy.set_model(_CodeIsInput(noise=30.0))
    assert noisy.probe()["probe/accuracy"] < 0.6


def test_probe_summaries_validates():
    with pytest.raises(ValueError, match="interval must be an integer >= 1"):
        ProbeSummaries(None, _Clock(), 0, list, 3, "code")
    with pytest.raises(ValueError, match="test_chunks"):
        ProbeSummaries(None, _Clock(), 1, list, 3, "code", test_chunks=0)
