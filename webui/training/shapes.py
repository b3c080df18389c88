"""Procedural captioned shapes dataset and the pixel classifier that grades it.

Everything is drawn here from a seed; no files come from outside. The same
palette drives the generator and the classifier so the two cannot drift apart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# RGB values are far apart so a nearest-palette lookup is unambiguous even on
# the blurry output of a tiny model.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 170, 50),
    "blue": (35, 70, 225),
    "yellow": (245, 225, 35),
    "purple": (140, 45, 175),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
}
SHAPE_COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white")
BACKGROUNDS: tuple[str, ...] = tuple(PALETTE)
# Colours the demo model never saw, taught by the demo LoRA (tools/train_demo_lora.py): a deep
# pink and a dark cyan, chosen where the demo VAE's decoder can draw them on every background
# (measured by optimising latents; lighter cyans came out blue on gray and green) and far from PALETTE.
NEW_COLOURS: dict[str, tuple[int, int, int]] = {
    "pink": (215, 90, 160),
    "cyan": (30, 150, 160),
}
ALL_COLOURS: dict[str, tuple[int, int, int]] = {**PALETTE, **NEW_COLOURS}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

SIZE = 64
SUPERSAMPLE = 4  # drawn large then downsampled, for anti-aliased edges


@dataclass(frozen=True)
class ShapeSpec:
    """What one image shows: shape, its colour, the background, and where."""

    shape: str
    colour: str
    background: str
    cx: float
    cy: float
    size: float  # side of the bounding box in pixels


def article(word: str) -> str:
    """'an' before a vowel sound, else 'a' ('an orange circle')."""
    return "an" if word[0] in "aeiou" else "a"


def canonical_caption(shape: str, colour: str, background: str) -> str:
    """The canonical caption, e.g. 'a red circle on a blue background'."""
    return f"{article(colour)} {colour} {shape} on {article(background)} {background} background"


def random_spec(rng: random.Random) -> ShapeSpec:
    """Draw a random shape spec: any shape colour on any other background colour."""
    shape = rng.choice(SHAPES)
    colour = rng.choice(SHAPE_COLOURS)
    background = rng.choice([b for b in BACKGROUNDS if b != colour])
    size = rng.uniform(18, 46)
    half = size / 2
    cx = rng.uniform(half + 1, SIZE - half - 1)
    cy = rng.uniform(half + 1, SIZE - half - 1)
    return ShapeSpec(shape, colour, background, cx, cy, size)


def render(spec: ShapeSpec) -> Image.Image:
    """Render a spec to a 64x64 RGB image."""
    s = SUPERSAMPLE
    img = Image.new("RGB", (SIZE * s, SIZE * s), ALL_COLOURS[spec.background])
    draw = ImageDraw.Draw(img)
    half = spec.size / 2
    x0, y0 = (spec.cx - half) * s, (spec.cy - half) * s
    x1, y1 = (spec.cx + half) * s, (spec.cy + half) * s
    fill = ALL_COLOURS[spec.colour]
    if spec.shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=fill)
    elif spec.shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=fill)
    else:  # upright triangle filling half its bounding box, which the classifier relies on
        draw.polygon([(spec.cx * s, y0), (x1, y1), (x0, y1)], fill=fill)
    return img.resize((SIZE, SIZE), Image.Resampling.BOX)


def random_caption(spec: ShapeSpec, rng: random.Random) -> str:
    """A caption for the spec: mostly canonical, also short forms and paraphrases.

    Some captions leave out the colour, the background or the shape, so that
    partial prompts ("a circle on a blue background") and single-word negative
    prompts ("red") mean something to the model.
    """
    c, s, b = spec.colour, spec.shape, spec.background
    ac, ab = article(c), article(b)
    r = rng.random()
    if r < 0.45:
        return canonical_caption(s, c, b)
    if r < 0.65:
        return rng.choice([
            f"{c} {s} on {b}",
            f"{ab} {b} background with {ac} {c} {s}",
            f"{ac} {c} {s} against {ab} {b} background",
            f"a picture of {ac} {c} {s} on {ab} {b} background",
            f"{c} {s}, {b} background",
            f"{ac} {c} {s} on {b}",
        ])
    if r < 0.80:
        return rng.choice([f"{ac} {c} {s}", f"{c} {s}", f"a picture of {ac} {c} {s}"])
    if r < 0.90:
        return rng.choice([f"a {s} on {ab} {b} background", f"a {s}", f"{s} on {b}"])
    if r < 0.96:
        return rng.choice([f"{ac} {c} shape on {ab} {b} background", f"something {c}", c, f"{c} shape"])
    return rng.choice([f"{ab} {b} background", b])


def make_batch(seed: int, batch_size: int) -> tuple[np.ndarray, list[str], list[ShapeSpec]]:
    """A deterministic batch: images as float32 NCHW in [-1, 1], captions, specs.

    The seed fully determines the batch, so a resumed run sees the same data.
    """
    rng = random.Random(seed)
    specs = [random_spec(rng) for _ in range(batch_size)]
    captions = [random_caption(sp, rng) for sp in specs]
    arr = np.stack([np.asarray(render(sp), dtype=np.float32) for sp in specs])
    arr = arr.transpose(0, 3, 1, 2) / 127.5 - 1.0
    return arr, captions, specs


# ---------------------------------------------------------------- classifier

def _table(palette: dict[str, tuple[int, int, int]]) -> tuple[list[str], np.ndarray]:
    names = list(palette)
    return names, np.array([palette[n] for n in names], dtype=np.float32)


_NAMES, _COLOURS = _table(PALETTE)


@dataclass(frozen=True)
class Reading:
    """What the classifier sees in one image (None where it finds no shape)."""

    colour: str | None
    shape: str | None
    background: str
    fill_ratio: float


def _nearest(rgb: np.ndarray, colours: np.ndarray = _COLOURS) -> np.ndarray:
    d = ((rgb[..., None, :] - colours) ** 2).sum(-1)
    return d.argmin(-1)


def classify(image: Image.Image, palette: dict[str, tuple[int, int, int]] | None = None) -> Reading:
    """Read the shape colour, shape and background of an image by pixel analysis.

    Background: the most common palette colour on the border. Shape colour:
    the most common other palette colour. Shape, from that colour's bounding
    box: an upright triangle is narrow at the top and wide at the bottom
    (taper); a square fills the corners of its box, a circle does not. These
    two measures held up better than the plain fill ratio on the rounded,
    slightly blurred shapes an autoencoder gives back (measured on 256
    reconstructions: triangle taper <= 0.51, circle/square >= 0.82).

    ``palette`` defaults to the demo model's nine colours; pass ``ALL_COLOURS`` to also
    read pink and cyan (the demo LoRA's eval).
    """
    names, colours = (_NAMES, _COLOURS) if palette is None else _table(palette)
    rgb = np.asarray(image.convert("RGB").resize((SIZE, SIZE)), dtype=np.float32)
    labels = _nearest(rgb, colours)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    bg = int(np.bincount(border, minlength=len(names)).argmax())
    counts = np.bincount(labels.ravel(), minlength=len(names))
    counts[bg] = 0
    fg = int(counts.argmax())
    if counts[fg] < 12:  # a few stray pixels are not a shape
        return Reading(None, None, names[bg], 0.0)
    mask = labels == fg
    # Keep rows/columns that hold a real part of the shape, so isolated
    # specks of the same colour do not stretch the bounding box.
    rows = np.where(mask.sum(1) >= 2)[0]
    cols = np.where(mask.sum(0) >= 2)[0]
    if len(rows) < 3 or len(cols) < 3:
        return Reading(names[fg], None, names[bg], 0.0)
    box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = box.shape
    widths = box.sum(1)
    third = max(1, h // 3)
    taper = widths[:third].mean() / max(1.0, widths[-third:].mean())
    ch, cw = max(1, round(0.2 * h)), max(1, round(0.2 * w))
    corners = np.mean([box[:ch, :cw].mean(), box[:ch, -cw:].mean(), box[-ch:, :cw].mean(), box[-ch:, -cw:].mean()])
    if taper < 0.62:
        shape = "triangle"
    elif corners >= 0.5:
        shape = "square"
    else:
        shape = "circle"
    return Reading(names[fg], shape, names[bg], float(box.mean()))


def write_kohya_folder(root, subsets: dict[str, list[tuple[ShapeSpec, str]]], repeats: int = 1) -> int:
    """Write a kohya-style dataset: ``<root>/<repeats>_<subset>/<n>.png`` + ``<n>.txt`` caption.

    The same layout a user gives the Train tab; returns the number of images written.
    """
    from pathlib import Path

    count = 0
    for subset, items in subsets.items():
        folder = Path(root) / f"{repeats}_{subset}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, (spec, caption) in enumerate(items):
            render(spec).save(folder / f"{i:05d}.png")
            (folder / f"{i:05d}.txt").write_text(caption + "\n", encoding="utf-8")
            count += 1
    return count
