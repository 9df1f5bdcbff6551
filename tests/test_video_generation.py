"""Priming then self-looping (pagi_rsm.generation) and the video metrics/pictures."""
import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm import generation
from pagi_rsm.metrics import video as vm

KERNEL = np.random.default_rng(0).normal(0, 0.3, (3, 3, 1, 1)).astype(np.float32)


def _step(x, state):
    """A toy stateful frame predictor: conv of the frame plus a decaying state."""
    y = tf.nn.conv2d(x, KERNEL, 1, "SAME")
    new = 0.5 * state + y
    return tf.sigmoid(new), new


def _step_np(x, state):
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = np.zeros_like(x)
    for i in range(3):
        for j in range(3):
            y += pad[:, i:i + x.shape[1], j:j + x.shape[2]] * KERNEL[i, j, 0, 0]
    new = 0.5 * state + y
    return 1 / (1 + np.exp(-new)), new


def _reference(frames, prime, rectify=lambda p: p):
    """The original's loop: input x_i while i <= N-2, else the previous output."""
    state = np.zeros_like(frames[:, 0])
    fed, preds, outs = None, [], []
    for i in range(frames.shape[1] - 1):
        x = frames[:, i] if i <= prime - 2 else fed
        p, state = _step_np(x, state)
        fed = rectify(p)
        preds.append(p)
        outs.append(fed)
    return np.stack(preds, 1), np.stack(outs, 1)


@pytest.fixture
def frames():
    return np.random.default_rng(1).uniform(0, 1, (2, 9, 6, 6, 1)).astype(np.float32)


@pytest.mark.parametrize("prime", [2, 5, 8])
def test_primed_run_matches_numpy_loop(frames, prime):
    rect = lambda p: p * p  # noqa: E731
    run = generation.make_generator(_step, lambda b: tf.zeros([b, 6, 6, 1]), rect,
                                    jit_compile=False)
    out = run(frames, prime)
    want_p, want_o = _reference(frames, prime, rect)
    np.testing.assert_allclose(out["prediction"].numpy(), want_p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["output"].numpy(), want_o, rtol=1e-5, atol=1e-6)
    # Priming outputs do not depend on the frames after x_{N-2}; self-looped ones do not
    # depend on any frame after x_{N-2} either.
    changed = frames.copy()
    changed[:, max(prime - 1, 0):] = 0.0
    again = run(changed, prime)
    np.testing.assert_allclose(again["output"].numpy(), out["output"].numpy(), atol=1e-6)


def test_xla_gives_the_same_frames(frames):
    make = lambda jit: generation.make_generator(  # noqa: E731
        _step, lambda b: tf.zeros([b, 6, 6, 1]), jit_compile=jit)
    plain = make(False)(frames, 4)
    xla = make(True)(frames, 4)
    np.testing.assert_allclose(xla["output"].numpy(), plain["output"].numpy(), atol=1e-5)


def test_one_while_loop_no_retrace(frames):
    run = generation.make_generator(_step, lambda b: tf.zeros([b, 6, 6, 1]), jit_compile=False)
    graph = run.get_concrete_function(tf.TensorSpec([2, 9, 6, 6, 1]),
                                      tf.TensorSpec([], tf.int32)).graph
    loops = [op for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]
    assert len(loops) == 1
    run(frames, tf.constant(3))
    run(frames, tf.constant(5))
    assert run.experimental_get_tracing_count() == 1


class _Model:
    def step(self, x, s):
        return _step(x, s)

    def zero_states(self, b):
        return tf.zeros([b, 6, 6, 1])


def test_generate_from_python(frames):
    out = generation.generate(_Model(), frames, prime=3, steps=5, jit_compile=False)
    assert out["output"].shape == (2, 7, 6, 6, 1)
    np.testing.assert_allclose(out["output"], _reference(frames[:, :8], 3)[1], atol=1e-5)


@pytest.mark.parametrize("prime, steps, match", [
    (9, 1, "prime must be < the sequence length 9"), (5, 5, "prime \\+ steps"),
    (1, 3, "prime"), (3, 0, "steps")])
def test_generate_errors(frames, prime, steps, match):
    with pytest.raises(ValueError, match=match):
        generation.generate(_Model(), frames, prime=prime, steps=steps)


def test_frame_metrics_hand_cases():
    truth = np.zeros((1, 3, 34, 34, 1), np.float32)
    truth[0, :, 10, 10] = 1.0
    out = np.zeros((1, 2, 34, 34, 1), np.float32)
    out[0, 0, 10, 10] = 0.5          # error 0.25, mass 0.5
    out[0, 1, 0, 0] = 1.0            # in the border: ignored; error 1 (missing ball), mass 0
    report = vm.next_frame_report(truth, out, out, prime=2)
    assert report["error_output"] == pytest.approx([0.25, 1.0])
    assert report["error_copy_last"] == pytest.approx([0.0, 0.0])
    assert report["mass_ratio"] == pytest.approx([0.5, 0.0])
    assert report["priming_error_output"] == pytest.approx(0.25)
    assert report["looping_error_output"] == pytest.approx(1.0)


def test_pictures(tmp_path):
    seq = np.random.default_rng(0).uniform(0, 1, (4, 5, 5, 1))
    picture = vm.truth_prediction_difference(seq, seq * 0)
    assert picture.shape == (3 * 6 - 1, 4 * 6 - 1) and picture.dtype == np.uint8
    np.testing.assert_array_equal(picture[12:, :5], vm.to_uint8(seq[0, :, :, 0]))
    vm.write_png(tmp_path / "s.png", picture)
    vm.write_gif(tmp_path / "s.gif", vm.side_by_side_frames(seq, seq))
    from PIL import Image
    with Image.open(tmp_path / "s.gif") as gif:
        assert gif.n_frames == 4 and gif.size == (11 * 4, 5 * 4)
    plot = vm.error_plot([np.arange(10.0), np.ones(10)], prime=4)
    assert plot.shape == (120, 400, 3) and (plot == [220, 40, 40]).all(-1).any()
