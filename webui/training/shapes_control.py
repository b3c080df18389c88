"""Control maps for the shapes dataset: what the demo ControlNet learns from and is graded on.

Two kinds of map, both white lines on black as sd-webui-controlnet's canny and scribble
models expect:

- ``canny``: OpenCV's Canny (thresholds 100/200, the canny preprocessor's defaults) of the
  rendered shape image, i.e. exactly what the canny preprocessor gives for a shapes picture;
- ``scribble``: a hand-drawn-looking outline of the shape, corners jittered and the stroke
  1 to 3 px wide, anti-aliased, like a user's scribble scaled down to 64 px.

``map_centroid`` and ``shape_centroid`` are the two ends of the position check in
``bench/eval_controlnet.py``.
"""
from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageDraw

from webui.training.shapes import PALETTE, SIZE, SUPERSAMPLE, ShapeSpec, _nearest, classify, render

MAP_KINDS = ("canny", "scribble")


def canny_map(spec: ShapeSpec, low: int = 100, high: int = 200) -> np.ndarray:
    """Canny edges (uint8 HxW, 0/255) of the rendered shape image."""
    import cv2

    return cv2.Canny(np.asarray(render(spec)), low, high)


def _outline_points(spec: ShapeSpec, rng: random.Random, jitter: float) -> list[tuple[float, float]]:
    half = spec.size / 2
    j = lambda: rng.uniform(-jitter, jitter)  # noqa: E731
    if spec.shape == "circle":
        n = 20
        wobble = [1 + rng.uniform(-0.06, 0.06) for _ in range(n)]
        return [(spec.cx + half * wobble[k] * math.cos(2 * math.pi * k / n),
                 spec.cy + half * wobble[k] * math.sin(2 * math.pi * k / n)) for k in range(n)]
    if spec.shape == "square":
        corners = [(-half, -half), (half, -half), (half, half), (-half, half)]
    else:
        corners = [(0, -half), (half, half), (-half, half)]
    return [(spec.cx + dx + j(), spec.cy + dy + j()) for dx, dy in corners]


def scribble_map(spec: ShapeSpec, rng: random.Random) -> np.ndarray:
    """A jittered, anti-aliased outline of the shape (uint8 HxW, white on black)."""
    s = SUPERSAMPLE
    img = Image.new("L", (SIZE * s, SIZE * s), 0)
    draw = ImageDraw.Draw(img)
    points = _outline_points(spec, rng, jitter=spec.size * 0.05)
    width = max(1, round(rng.uniform(1.0, 3.0) * s))
    scaled = [(x * s, y * s) for x, y in points]
    draw.line(scaled + scaled[:1], fill=255, width=width, joint="curve")
    return np.asarray(img.resize((SIZE, SIZE), Image.Resampling.BOX))


def control_map(spec: ShapeSpec, rng: random.Random, kind: str | None = None) -> np.ndarray:
    """A map of ``kind`` (random when None) for ``spec``."""
    kind = kind or rng.choice(MAP_KINDS)
    if kind == "canny":
        return canny_map(spec)
    if kind == "scribble":
        return scribble_map(spec, rng)
    raise ValueError(f"unknown map kind {kind!r}; expected one of {MAP_KINDS}")


def map_to_image(control: np.ndarray) -> Image.Image:
    """A single-channel map as the RGB image a ControlNet unit takes."""
    return Image.fromarray(control).convert("RGB")


def map_centroid(control: np.ndarray) -> tuple[float, float] | None:
    """Centroid (x, y) of the region a line map outlines: the lines plus what they enclose.

    Enclosed pixels are those a flood fill from the border cannot reach; an outline with a gap
    encloses nothing and the lines alone are used, which still sit around the same centre.
    """
    import cv2

    lines = (np.asarray(control) > 64).astype(np.uint8)
    if lines.sum() == 0:
        return None
    lines = cv2.dilate(lines, np.ones((2, 2), np.uint8))
    h, w = lines.shape
    reach = lines.copy() * 2  # 2 = line, 0 = unvisited, 1 = outside
    mask = np.zeros((h + 2, w + 2), np.uint8)
    for x, y in [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)]:
        if reach[y, x] == 0:
            cv2.floodFill(reach, mask, (x, y), 1)
    region = reach != 1
    ys, xs = np.nonzero(region)
    return float(xs.mean()), float(ys.mean())


def shape_centroid(image: Image.Image) -> tuple[float, float] | None:
    """Centroid (x, y) of the shape the classifier sees in a generated image (None: no shape)."""
    reading = classify(image)
    if reading.colour is None:
        return None
    rgb = np.asarray(image.convert("RGB").resize((SIZE, SIZE)), dtype=np.float32)
    names = list(PALETTE)
    mask = (_nearest(rgb) == names.index(reading.colour)).astype(np.uint8)
    # The largest blob only: anti-aliased edges elsewhere can pass for the shape colour.
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return None
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    ys, xs = np.nonzero(labels == biggest)
    return float(xs.mean()), float(ys.mean())
