"""Plots drawn with numpy into RGB image arrays (for `tf.summary.image` and PNG files).

No plotting library is needed: `line_plot` draws polylines, `raster` shows an activity matrix,
`write_png` saves an image with TensorFlow's PNG encoder.

Example:

```python
t = np.arange(200)
image = line_plot([np.sin(t / 10), np.cos(t / 10)])      # uint8 [240, 640, 3]
write_png("sine.png", image)
```
"""
import numpy as np

__all__ = ["COLORS", "line_plot", "raster", "write_png", "stack"]

COLORS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))
"""Line colours in order: blue (usually the truth), red, green, purple, orange."""


def _draw_segment(image, x0, y0, x1, y1, color):
    steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.rint(np.linspace(x0, x1, steps)).astype(int)
    ys = np.rint(np.linspace(y0, y1, steps)).astype(int)
    h, w, _ = image.shape
    for dy in (0, 1):  # 2 pixels thick
        keep = (ys + dy >= 0) & (ys + dy < h) & (xs >= 0) & (xs < w)
        image[ys[keep] + dy, xs[keep]] = color


def line_plot(series, height=240, width=640, colors=COLORS, y_range=None, marks=()):
    """Polylines of the 1-D arrays in `series` over a white background with a zero line.

    Args:
      series: list of 1-D arrays (NaNs break the line); x spans each array's length scaled to
        the longest.
      height, width: image size in pixels.
      colors: RGB tuples, one per series (cycled).
      y_range: (low, high) of the vertical axis; default the range of all values (padded 5%).
      marks: x positions (indices) drawn as grey vertical lines (e.g. where a forecast starts).

    Returns:
      uint8 array `[height, width, 3]`.
    """
    series = [np.asarray(s, "float64").ravel() for s in series]
    image = np.full((height, width, 3), 255, np.uint8)
    finite = np.concatenate([s[np.isfinite(s)] for s in series]) if series else np.zeros(0)
    if y_range is None:
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
        pad = 0.05 * (high - low) or 1.0
        low, high = low - pad, high + pad
    else:
        low, high = map(float, y_range)
    length = max([len(s) for s in series] + [2])

    def to_y(v):
        return (height - 1) * (high - v) / (high - low)

    def to_x(i):
        return (width - 1) * i / (length - 1)

    if low < 0 < high:
        image[int(round(to_y(0.0)))] = (200, 200, 200)
    for m in marks:
        image[:, int(round(to_x(m))) % width] = (160, 160, 160)
    for k, s in enumerate(series):
        color = colors[k % len(colors)]
        for i in range(len(s) - 1):
            if np.isfinite(s[i]) and np.isfinite(s[i + 1]):
                _draw_segment(image, to_x(i), to_y(s[i]), to_x(i + 1), to_y(s[i + 1]), color)
    return image


def raster(activity, scale=4, max_width=1280):
    """Activity matrix `[time, units]` as an image: time down, units across, |value| in grey
    (black = most active), each step `scale` pixels tall; units are pooled (max) to at most
    `max_width` columns.

    Returns:
      uint8 array `[time * scale, min(units, max_width), 3]`.
    """
    a = np.abs(np.asarray(activity, "float64"))
    t, n = a.shape
    if n > max_width:
        factor = -(-n // max_width)
        a = np.pad(a, ((0, 0), (0, factor * max_width - n))).reshape(t, -1, factor).max(-1)
    peak = a.max() or 1.0
    grey = (255 * (1.0 - a / peak)).astype(np.uint8)
    return np.repeat(np.repeat(grey, scale, axis=0)[:, :, None], 3, axis=2)


def stack(images, gap=4):
    """Images stacked vertically (widths padded to the widest) with white gaps."""
    width = max(i.shape[1] for i in images)
    rows = []
    for i in images:
        rows.append(np.pad(i, ((0, gap), (0, width - i.shape[1]), (0, 0)), constant_values=255))
    return np.concatenate(rows, axis=0)


def write_png(path, image):
    """Writes a uint8 `[H, W, 3]` image to `path` as PNG."""
    import tensorflow as tf
    tf.io.write_file(path, tf.io.encode_png(np.asarray(image, np.uint8)))
