"""Bouncing balls: physics, rendering, padding, determinism, streams, resume, test set."""
import doctest
import math

import numpy as np
import pytest

from pagi_rsm.datasets import bouncing_balls as bb


def collect(dataset, chunks):
    """Numpy arrays of `chunks` elements concatenated along time."""
    parts = [{k: v.numpy() for k, v in el.items()} for el in dataset.take(chunks)]
    return {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}


def kinetic_energy(v):
    return 0.5 * np.sum(v ** 2, axis=(-1, -2))          # unit masses


# --- physics ----------------------------------------------------------------------------------

def test_initial_states_in_box_without_overlap_at_the_given_speed():
    balls = bb.BouncingBalls()
    x, v = balls.initial_states(seed=3, indices=np.arange(300))
    assert x.shape == v.shape == (300, 3, 2)
    assert x.min() >= 2.0 and x.max() <= 10.0 - 1.2           # 2 + 8·U, inside the box
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert np.linalg.norm(x[:, i] - x[:, j], axis=-1).min() >= 2.4
    np.testing.assert_allclose(np.sqrt(np.sum(v ** 2, axis=(1, 2))), 0.5, rtol=1e-12)
    assert x[:, :, 0].std() > 1.0 and np.abs(v).max() > 0.2    # really random


def test_ball_ball_collision_conserves_momentum_and_energy():
    balls = bb.BouncingBalls(num_balls=2)
    x = np.array([[[4.0, 5.0], [6.3, 5.4]]])
    v = np.array([[[0.5, 0.05], [-0.3, 0.1]]])
    x_after, v_after = x.copy(), v.copy()
    balls.substep(x_after, v_after)
    np.testing.assert_allclose(x_after, x + v / 2)
    # Hand computation: the balls overlap after the move, so they swap their velocity
    # components along the line of centres (equal masses).
    line = x_after[0, 0] - x_after[0, 1]
    assert np.linalg.norm(line) < 2.4
    u = line / np.linalg.norm(line)
    a, b = v[0, 0] @ u, v[0, 1] @ u
    np.testing.assert_allclose(v_after[0, 0], v[0, 0] + (b - a) * u, atol=1e-15)
    np.testing.assert_allclose(v_after[0, 1], v[0, 1] + (a - b) * u, atol=1e-15)
    assert not np.allclose(v_after, v)
    np.testing.assert_allclose(v_after.sum(axis=1), v.sum(axis=1), atol=1e-15)   # momentum
    np.testing.assert_allclose(kinetic_energy(v_after), kinetic_energy(v), rtol=1e-14)


def test_kinetic_energy_constant_over_whole_trajectories():
    balls = bb.BouncingBalls()
    _, v = balls.simulate(*balls.initial_states(seed=5, indices=np.arange(50)), num_frames=300)
    energy = kinetic_energy(v)
    np.testing.assert_allclose(energy, np.broadcast_to(energy[:, :1], energy.shape), rtol=1e-12)
    # Collisions did happen: some ball's speed changed between frames.
    speeds = np.linalg.norm(v, axis=-1)
    assert np.abs(np.diff(speeds, axis=1)).max() > 0.05


@pytest.mark.parametrize("axis,start,velocity,flipped", [
    (0, 1.3, -0.4, 0.4),     # left wall: x - r < 0 after the move
    (0, 8.7, 0.3, -0.3),     # right wall: x + r > S
    (1, 1.25, -0.2, 0.2),    # coordinate 1, low wall
    (1, 8.75, 0.2, -0.2),    # coordinate 1, high wall
])
def test_wall_reflection_flips_the_normal_velocity(axis, start, velocity, flipped):
    balls = bb.BouncingBalls(num_balls=1)
    x = np.full((1, 1, 2), 5.0)
    v = np.full((1, 1, 2), 0.1)
    x[0, 0, axis], v[0, 0, axis] = start, velocity
    balls.substep(x, v)
    assert v[0, 0, axis] == pytest.approx(flipped)
    assert v[0, 0, 1 - axis] == pytest.approx(0.1)     # the tangential component is unchanged
    # A ball moving away from the wall is left alone.
    x[0, 0, axis], v[0, 0, axis] = start, -velocity
    balls.substep(x, v)
    assert v[0, 0, axis] == pytest.approx(-velocity)


def test_balls_stay_in_the_box():
    balls = bb.BouncingBalls()
    x, _ = balls.simulate(*balls.initial_states(seed=2, indices=np.arange(100)), num_frames=200)
    # A ball is reflected after it crossed a wall, so it can poke through by at most one
    # sub-step of its speed (<= 0.5 / 2); its centre never leaves the box.
    assert x.min() >= 1.2 - 0.25 and x.max() <= 10.0 - 1.2 + 0.25
    assert x.min() < 1.2 + 0.05 and x.max() > 8.8 - 0.05    # the walls are reached


# --- rendering --------------------------------------------------------------------------------

def _pixel(ball, row, col, r=1.2, pixel=10.0 / 30):
    """The rendering rule for one ball, written out for one pixel."""
    cy, cx = (row + 0.5) * pixel, (col + 0.5) * pixel
    d2 = (cx - ball[0]) ** 2 + (cy - ball[1]) ** 2
    return math.exp(-((d2 / r ** 2) ** 4))


def test_render_one_ball_hand_cases():
    balls = bb.BouncingBalls(num_balls=1)
    frame = balls.render(np.array([[5.0, 5.0]]))
    assert frame.shape == (30, 30) and frame.dtype == np.float32
    # Pixel (14, 14) has centre (14.5/3, 14.5/3): d² = 2/36, value exp(-((2/36)/1.44)^4).
    assert frame[14, 14] == pytest.approx(math.exp(-((2 / 36 / 1.44) ** 4)), abs=1e-6)
    # Pixel (14, 17): d² = (2.5/3)² + (0.5/3)² = 0.7222, (0.7222/1.44)^4 = 0.06327.
    assert frame[14, 17] == pytest.approx(math.exp(-0.0632735), abs=1e-5)
    assert frame[0, 0] == pytest.approx(0.0, abs=1e-30)
    for row, col in [(10, 20), (15, 15), (13, 11), (16, 14)]:
        assert frame[row, col] == pytest.approx(_pixel((5.0, 5.0), row, col), abs=1e-6)
    # Orientation: coordinate 0 is the column, coordinate 1 the row.
    shifted = balls.render(np.array([[2.0, 7.0]]))
    assert shifted[20, 5] == pytest.approx(frame[14, 14], abs=1e-6)
    assert np.unravel_index(np.argmax(shifted), shifted.shape) in [(20, 5), (20, 6), (21, 5),
                                                                    (21, 6)]
    assert shifted[5, 20] < 1e-6


def test_render_sums_balls_and_clips_to_one():
    balls = bb.BouncingBalls(num_balls=2)
    together = balls.render(np.array([[5.0, 5.0], [5.0, 5.0]]))
    assert together.max() == 1.0 and together[14, 14] == 1.0   # 2·0.99999 clipped
    apart = balls.render(np.array([[3.0, 3.0], [7.0, 7.0]]))
    one = bb.BouncingBalls(num_balls=1)
    expected = (one.render(np.array([[3.0, 3.0]])) + one.render(np.array([[7.0, 7.0]])))
    np.testing.assert_allclose(apart, np.minimum(expected, 1.0), atol=1e-6)


def test_padding_and_crop():
    balls = bb.BouncingBalls(num_frames=4)
    frames = balls.sequences(seed=1, indices=[0])
    assert frames.shape == (1, 4, 34, 34) and balls.frame_size == 34
    border = np.ones((34, 34), bool)
    border[2:32, 2:32] = False
    assert np.all(frames[..., border] == 0.5)
    x, _ = balls.simulate(*balls.initial_states(1, [0]))
    np.testing.assert_array_equal(balls.crop(frames), balls.render(x))
    np.testing.assert_array_equal(balls.crop(frames[..., None], channels_last=True)[..., 0],
                                  balls.render(x))
    bare = bb.BouncingBalls(num_frames=4, padding=0, image_size=20).sequences(1, [0])
    assert bare.shape == (1, 4, 20, 20)
    other = bb.BouncingBalls(num_frames=2, padding=3, padding_value=0.0).sequences(1, [0])
    assert other.shape == (1, 2, 36, 36) and np.all(other[..., :3, :] == 0.0)


def test_copy_last_frame_and_trivial_baselines_match_the_published_generator():
    # Figures of the standard generator (re-simulated independently, 200 sequences of 100
    # frames, SSE over the 900 pixels of a frame): all zeros 93.2, mean image 74.8,
    # copy-last-frame 11.81.
    balls = bb.BouncingBalls(padding=0)
    frames = balls.sequences(seed=11, indices=np.arange(200), split="test")
    zeros = np.mean(np.sum(frames ** 2, axis=(-1, -2)))
    mean = np.mean(np.sum((frames - frames.mean(axis=(0, 1))) ** 2, axis=(-1, -2)))
    copy = np.mean(np.sum((frames[:, 1:] - frames[:, :-1]) ** 2, axis=(-1, -2)))
    assert zeros == pytest.approx(93.2, rel=0.01)
    assert mean == pytest.approx(74.8, rel=0.02)
    assert copy == pytest.approx(11.81, rel=0.03)


# --- determinism ------------------------------------------------------------------------------

def test_sequence_is_a_function_of_seed_split_and_index():
    balls = bb.BouncingBalls(num_frames=6)
    batch = balls.sequences(seed=7, indices=[3, 5, 9])
    np.testing.assert_array_equal(balls.sequences(seed=7, indices=[5])[0], batch[1])
    np.testing.assert_array_equal(balls.sequences(seed=7, indices=[9, 3])[1], batch[0])
    assert not np.array_equal(balls.sequences(seed=8, indices=[5])[0], batch[1])
    assert not np.array_equal(balls.sequences(seed=7, indices=[5], split="test")[0], batch[1])
    assert not np.array_equal(batch[0], batch[1])


# --- training streams -------------------------------------------------------------------------

def test_stream_layout_stagger_and_reset():
    B, T, L = 10, 4, 7
    ds, meta = bb.make_bouncing_balls_dataset(batch_size=B, chunk_length=T, seed=3,
                                              num_frames=L)
    assert meta.frame_shape == (34, 34, 1) and meta.split == "train"
    el = next(iter(ds))
    assert el["inputs"].shape == (B, T, 34, 34, 1) and el["reset"].shape == (B, T)
    data = collect(ds, 6)
    balls = bb.BouncingBalls(num_frames=L)
    for b in range(B):
        offset = b % L
        position = np.arange(6 * T) + offset
        expected_reset = (position % L == 0) | (np.arange(6 * T) == 0)
        np.testing.assert_array_equal(data["reset"][b], expected_reset.astype(np.float32))
        # Stream b plays training sequence j·B + b as its j-th sequence.
        for t in (0, 5, 13, 23):
            j, f = divmod(position[t], L)
            frame = balls.sequences(seed=3, indices=[j * B + b])[0, f]
            np.testing.assert_array_equal(data["inputs"][b, t, ..., 0], frame)


@pytest.mark.parametrize("start_chunk,chunk_length", [(1, 10), (7, 3), (30, 1)])
def test_start_chunk_equals_skipping_chunks(start_chunk, chunk_length):
    kwargs = dict(batch_size=6, chunk_length=chunk_length, seed=4, num_frames=9)
    full, _ = bb.make_bouncing_balls_dataset(**kwargs)
    resumed, _ = bb.make_bouncing_balls_dataset(start_chunk=start_chunk, **kwargs)
    a = collect(full.skip(start_chunk), 3)
    b = collect(resumed, 3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_two_iterators_and_a_second_pass_see_the_same_stream():
    ds, _ = bb.make_bouncing_balls_dataset(batch_size=3, chunk_length=4, seed=12, num_frames=5)
    a, b = iter(ds), iter(ds)
    mixed = [(next(a)["inputs"].numpy(), next(b)["inputs"].numpy()) for _ in range(3)]
    reference = [el["inputs"].numpy() for el in ds.take(3)]
    np.testing.assert_array_equal(np.stack([m[0] for m in mixed]), np.stack(reference))
    np.testing.assert_array_equal(np.stack([m[1] for m in mixed]), np.stack(reference))


# --- test set ---------------------------------------------------------------------------------

def test_test_set_is_one_synchronised_pass_of_fixed_sequences():
    ds, meta = bb.make_bouncing_balls_test_dataset(num_sequences=4, chunk_length=4, seed=3,
                                                   num_frames=10)
    chunks = [{k: v.numpy() for k, v in el.items()} for el in ds]
    assert meta.num_chunks == 3 and len(chunks) == 3        # ceil(10 / 4)
    inputs = np.concatenate([c["inputs"] for c in chunks], axis=1)[..., 0]
    reset = np.concatenate([c["reset"] for c in chunks], axis=1)
    frames = bb.make_test_sequences(num_sequences=4, seed=3, num_frames=10)[..., 0]
    np.testing.assert_array_equal(inputs[:, :10], frames)
    np.testing.assert_array_equal(inputs[:, 10:], frames[:, :2])      # the replay begins
    np.testing.assert_array_equal(reset[:, 0], 1.0)
    np.testing.assert_array_equal(reset[:, 10], 1.0)
    assert reset.sum() == 8
    # The test sequences are not training sequences of the same seed.
    train = bb.BouncingBalls(num_frames=10).sequences(seed=3, indices=np.arange(4))
    assert not np.any(np.all(train[:, 0] == frames[:, 0][:, None], axis=(-1, -2)))
    resumed, _ = bb.make_bouncing_balls_test_dataset(num_sequences=4, chunk_length=4, seed=3,
                                                     num_frames=10, start_chunk=2)
    [last] = [el["inputs"].numpy() for el in resumed]
    np.testing.assert_array_equal(last, chunks[2]["inputs"])


def test_default_test_set_allows_priming_and_self_looping():
    _, meta = bb.make_bouncing_balls_test_dataset(chunk_length=25)
    assert meta.batch_size == 200 and meta.balls.num_frames >= 50 + 150 + 1
    assert meta.num_chunks == 9


# --- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    (dict(batch_size=0), r"batch_size must be an integer >= 1, got 0"),
    (dict(chunk_length=2.5), r"chunk_length must be an integer >= 1"),
    (dict(seed=-1), r"seed must be an integer >= 0"),
    (dict(start_chunk=-3), r"start_chunk must be an integer >= 0"),
    (dict(num_balls=0), r"num_balls must be an integer >= 1"),
    (dict(radius=0.0), r"radius must be a number > 0"),
    (dict(radius="big"), r"radius must be a number > 0"),
    (dict(radius=6.0), r"radius 6.0 does not fit box_size 10.0"),
    (dict(num_balls=30), r"could not place num_balls=30 balls of radius 1.2"),
    (dict(padding=-1), r"padding must be an integer >= 0"),
    (dict(padding_value=1.5), r"padding_value must be a number in \[0, 1\]"),
    (dict(num_frames=0), r"num_frames must be an integer >= 1"),
    (dict(speed=True), r"speed must be a number > 0"),
    (dict(gravity=1.0), r"unknown bouncing-balls option\(s\) \['gravity'\]"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bb.make_bouncing_balls_dataset(**kwargs)


def test_bad_split_and_test_set_arguments():
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\)"):
        bb.BouncingBalls().sequences(1, [0], split="valid")
    with pytest.raises(ValueError, match=r"num_sequences must be an integer >= 1"):
        bb.make_bouncing_balls_test_dataset(num_sequences=0)
    with pytest.raises(ValueError, match=r"num_chunks must be an integer >= 1"):
        bb.make_bouncing_balls_test_dataset(num_chunks=0)


def test_docstring_examples_run():
    result = doctest.testmod(bb, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0
