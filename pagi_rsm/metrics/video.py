"""Next-frame metrics and pictures of the video experiment (docs/video.md#metrics).

All metrics are on the unpadded centre of the frames (``border`` pixels cut on every side):
squared error summed over the centre's pixels per frame (the benchmark's figure: 30x30 = 900
pixels, copy-last-frame ~11.8), and the ball mass (sum of intensity) of an output relative to
the truth. Pictures are numpy uint8 arrays, written with Pillow (PNG strips, animated GIFs)
and as TensorBoard images; nothing here needs matplotlib.
"""
import numpy as np


def centre(frames, border):
    """Frames [..., H, W, C] without `border` pixels on every side."""
    if border == 0:
        return frames
    return frames[..., border:-border, border:-border, :]


def frame_errors(truth, output, border=2):
    """Squared error per frame summed over the centre's pixels: [B, T, H, W, C] -> [B, T]."""
    diff = centre(np.asarray(truth, np.float64) - np.asarray(output, np.float64), border)
    return np.sum(diff ** 2, axis=(-3, -2, -1))


def frame_mass(frames, border=2):
    """Sum of intensity of the centre per frame: [B, T, H, W, C] -> [B, T]."""
    return np.sum(centre(np.asarray(frames, np.float64), border), axis=(-3, -2, -1))


def next_frame_report(frames, prediction, output, prime, border=2):
    """Per-frame and averaged metrics of one primed run (see `pagi_rsm.generation`).

    Args:
      frames: the true frames [B, T, H, W, C] (T = N + M, the frames the run covered).
      prediction, output: the predictor's and the rectified predictions of frames 1..T-1,
        [B, T - 1, H, W, C].
      prime: N; outputs of frames 1..N-1 are one step ahead from true frames.

    Returns:
      dict: per frame (lists over frames 1..T-1, averaged over the batch) ``error_output``,
      ``error_prediction``, ``error_copy_last`` and ``mass_ratio`` (output mass / true mass);
      averages ``priming_error_{output,prediction,copy_last}`` over frames 1..N-1 and
      ``looping_error_output``, ``looping_mass_ratio`` over frames N..T-1, and
      ``last50_mass_ratio`` over the last (up to) 50 self-looped frames.
    """
    frames = np.asarray(frames)
    truth = frames[:, 1:]
    per_frame = {
        "error_output": frame_errors(truth, output, border).mean(0),
        "error_prediction": frame_errors(truth, prediction, border).mean(0),
        "error_copy_last": frame_errors(truth, frames[:, :-1], border).mean(0),
        "mass_ratio": (frame_mass(output, border).mean(0)
                       / np.maximum(frame_mass(truth, border).mean(0), 1e-12)),
    }
    primed = slice(0, prime - 1)
    looped = slice(prime - 1, None)
    report = {key: [float(v) for v in values] for key, values in per_frame.items()}
    for name in ("output", "prediction", "copy_last"):
        report[f"priming_error_{name}"] = float(np.mean(per_frame[f"error_{name}"][primed]))
    report["looping_error_output"] = float(np.mean(per_frame["error_output"][looped]))
    report["looping_mass_ratio"] = float(np.mean(per_frame["mass_ratio"][looped]))
    report["last50_mass_ratio"] = float(np.mean(per_frame["mass_ratio"][looped][-50:]))
    return report


def to_uint8(frames):
    """Frames in [0, 1] (any shape) -> uint8 (clipped)."""
    return (np.clip(np.asarray(frames, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def strip(rows, gap=1):
    """One greyscale picture from rows of frames: list of [T, H, W(, 1)] -> [R*(H+gap), T*(W+gap)].

    Each row is a sequence of frames in [0, 1] laid left to right; a `gap` of mid-grey
    separates frames and rows.
    """
    rows = [np.asarray(r, np.float32).reshape(np.shape(r)[:3]) for r in rows]
    t, h, w = rows[0].shape
    out = np.full((len(rows) * (h + gap) - gap, t * (w + gap) - gap), 0.5, np.float32)
    for i, row in enumerate(rows):
        for j in range(t):
            out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = row[j]
    return to_uint8(out)


def truth_prediction_difference(truth, prediction, gap=1):
    """The strip truth / prediction / |difference| of one sequence [T, H, W(, 1)]."""
    truth = np.asarray(truth, np.float32)
    prediction = np.asarray(prediction, np.float32)
    return strip([truth, prediction, np.abs(truth - prediction)], gap)


def side_by_side_frames(truth, generated, scale=4):
    """Frames of a GIF: truth beside generated, [T, H, W(, 1)] each -> list of uint8 images."""
    truth = np.asarray(truth, np.float32).reshape(np.shape(truth)[:3])
    generated = np.asarray(generated, np.float32).reshape(np.shape(generated)[:3])
    frames = []
    for a, b in zip(truth, generated):
        pair = np.concatenate([a, np.full((a.shape[0], 1), 0.5, np.float32), b], axis=1)
        frames.append(np.kron(to_uint8(pair), np.ones((scale, scale), np.uint8)))
    return frames


def write_png(path, picture):
    """Writes a uint8 [H, W] or [H, W, 3] picture as PNG."""
    from PIL import Image
    Image.fromarray(picture).save(path)


def write_gif(path, pictures, duration_ms=80):
    """Writes uint8 [H, W] pictures as an animated GIF (looping forever)."""
    from PIL import Image
    images = [Image.fromarray(p) for p in pictures]
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms,
                   loop=0)


def error_plot(curves, prime, height=120, width=400):
    """A line plot of per-frame errors as an RGB uint8 picture (numpy only).

    Args:
      curves: list of 1-D arrays (same length; e.g. output, prediction, copy-last errors),
        drawn in red, green, blue, from 0 (bottom) to the largest value (top).
      prime: frames before index ``prime - 1`` are priming; a grey vertical line marks where
        self-looping starts.
    """
    colours = [(220, 40, 40), (40, 160, 40), (40, 40, 220), (200, 140, 0)]
    picture = np.full((height, width, 3), 255, np.uint8)
    length = len(curves[0])
    top = max(float(np.max(c)) for c in curves) or 1.0

    def x_of(i):
        return int(round(i * (width - 1) / max(length - 1, 1)))

    picture[:, min(x_of(prime - 1), width - 1)] = 160
    for curve, colour in zip(curves, colours):
        ys = [height - 1 - int(round(v / top * (height - 1))) for v in curve]
        for i in range(length - 1):
            x0, x1, y0, y1 = x_of(i), x_of(i + 1), ys[i], ys[i + 1]
            n = max(abs(x1 - x0), abs(y1 - y0), 1)
            for s in range(n + 1):
                picture[int(round(y0 + (y1 - y0) * s / n)),
                        int(round(x0 + (x1 - x0) * s / n))] = colour
    return picture
