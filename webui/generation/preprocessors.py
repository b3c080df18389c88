"""ControlNet preprocessors ("modules"), with sd-webui-controlnet's names, sliders and maths.

Only preprocessors that need no downloaded weights run here (numpy + OpenCV). Those that need
annotator weights (OpenPose, depth, normals, HED/PiDiNet, learned line art, segmentation, MLSD)
are listed as unavailable with the reason, so the UI and /controlnet/module_list show them
greyed out instead of failing mid-job. ``lines_opencv`` is OpenCV's line-segment detector: it
makes MLSD-style maps (white straight lines on black) but it is not the MLSD network.

Every function takes an RGB (or RGBA) uint8 HxWxC image and returns an RGB uint8 map; the
map is later fitted to the generation size by the unit's resize mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable

import numpy as np


class PreprocessorError(ValueError):
    """A preprocessor could not run (unknown name, bad slider value, unusable image)."""


@dataclass(frozen=True)
class Slider:
    """One preprocessor parameter as sd-webui-controlnet shows it."""

    label: str
    value: float
    minimum: float
    maximum: float
    step: float = 1.0

    def as_api(self) -> dict:
        return {"name": self.label, "value": self.value, "min": self.minimum, "max": self.maximum, "step": self.step}


RESOLUTION = Slider("Preprocessor Resolution", 512, 64, 2048, 8)


@dataclass(frozen=True)
class Preprocessor:
    """A module: its API name, UI label, control types, sliders and function (None: unavailable)."""

    name: str
    label: str
    tags: tuple[str, ...]
    fn: Callable[..., np.ndarray] | None
    resolution: Slider | None = RESOLUTION
    slider_1: Slider | None = None
    slider_2: Slider | None = None
    unavailable: str = ""  # why it cannot run here
    needs_mask: bool = False
    priority: int = 0
    aliases: tuple[str, ...] = field(default=())

    @property
    def available(self) -> bool:
        return self.fn is not None

    def sliders(self) -> list[Slider]:
        return [s for s in (self.resolution, self.slider_1, self.slider_2) if s is not None]


# ----------------------------------------------------------------------------- helpers

def hwc3(image: np.ndarray) -> np.ndarray:
    """Any uint8 image as 3-channel RGB (gray repeated; alpha composited onto white)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise PreprocessorError(f"expected an 8-bit image, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise PreprocessorError(f"expected an image with 1, 3 or 4 channels, got shape {image.shape}")
    if image.shape[2] == 1:
        return np.concatenate([image] * 3, axis=2)
    if image.shape[2] == 3:
        return image
    color, alpha = image[:, :, :3].astype(np.float32), image[:, :, 3:4].astype(np.float32) / 255.0
    return (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)


def resize_short_side(image: np.ndarray, resolution: int) -> np.ndarray:
    """Scale so the short side is ``resolution`` (area filter down, cubic up), as the extension does."""
    import cv2

    h, w = image.shape[:2]
    k = float(resolution) / float(min(h, w))
    size = (max(1, int(round(w * k))), max(1, int(round(h * k))))
    if size == (w, h):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


# ----------------------------------------------------------------------------- the modules

def _none(img, res, a, b, rng):
    return hwc3(img)


def _invert(img, res, a, b, rng):
    return 255 - hwc3(img)


def _canny(img, res, a, b, rng):
    import cv2

    return _gray_to_rgb(cv2.Canny(resize_short_side(hwc3(img), res), int(a), int(b)))


def _scribble_xdog(img, res, a, b, rng):
    import cv2

    x = resize_short_side(hwc3(img), res).astype(np.float32)
    g1 = cv2.GaussianBlur(x, (0, 0), 0.5)
    g2 = cv2.GaussianBlur(x, (0, 0), 5.0)
    dog = (255 - np.min(g2 - g1, axis=2)).clip(0, 255).astype(np.uint8)
    out = np.zeros(dog.shape, np.uint8)
    out[2 * (255 - dog.astype(np.int32)) > a] = 255
    return _gray_to_rgb(out)


def _scribble(img, res, a, b, rng):
    """Dark strokes on a light background -> white strokes on black."""
    x = resize_short_side(hwc3(img), res)
    out = np.zeros(x.shape[:2], np.uint8)
    out[np.min(x, axis=2) < a] = 255
    return _gray_to_rgb(out)


def _threshold(img, res, a, b, rng):
    x = resize_short_side(hwc3(img), res)
    out = np.zeros(x.shape[:2], np.uint8)
    out[np.min(x, axis=2) > a] = 255
    return _gray_to_rgb(out)


def _binary(img, res, a, b, rng):
    import cv2

    gray = cv2.cvtColor(resize_short_side(hwc3(img), res), cv2.COLOR_RGB2GRAY)
    if int(a) in (0, 255):  # Otsu picks the threshold
        _, out = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    else:
        _, out = cv2.threshold(gray, int(a), 255, cv2.THRESH_BINARY_INV)
    return _gray_to_rgb(out)


def _lineart_standard(img, res, a, b, rng):
    import cv2

    x = resize_short_side(hwc3(img), res).astype(np.float32)
    g = cv2.GaussianBlur(x, (0, 0), 6.0)
    intensity = np.min(g - x, axis=2).clip(0, 255)
    strong = intensity[intensity > 8]
    intensity /= max(16.0, float(np.median(strong)) if strong.size else 16.0)
    return _gray_to_rgb((intensity * 127).clip(0, 255).astype(np.uint8))


def _tile_resample(img, res, a, b, rng):
    import cv2

    x = hwc3(img)
    if a < 1.1:
        return x
    h, w = x.shape[:2]
    return cv2.resize(x, (max(1, int(w / a)), max(1, int(h / a))), interpolation=cv2.INTER_AREA)


def _blur_gaussian(img, res, a, b, rng):
    import cv2

    return cv2.GaussianBlur(resize_short_side(hwc3(img), res), (0, 0), float(a))


def _noise_disk(h: int, w: int, f: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    noise = rng.uniform(0, 1, size=((h // f) + 2, (w // f) + 2)).astype(np.float64)
    noise = cv2.resize(noise, (w + 2 * f, h + 2 * f), interpolation=cv2.INTER_CUBIC)[f:f + h, f:f + w]
    noise -= noise.min()
    return noise / max(noise.max(), 1e-8)


def _shuffle(img, res, a, b, rng):
    """Content shuffle: remap pixels along two smooth random flow fields (seeded)."""
    import cv2

    x = resize_short_side(hwc3(img), res)
    h, w = x.shape[:2]
    fx = _noise_disk(h, w, 256, rng) * float(w - 1)
    fy = _noise_disk(h, w, 256, rng) * float(h - 1)
    flow = np.stack([fx, fy], axis=2).astype(np.float32)
    return cv2.remap(x, flow, None, cv2.INTER_LINEAR)


def _color(img, res, a, b, rng):
    """T2I-Adapter colour grid: the image shrunk to res/64 cells, then blown up with hard edges."""
    import cv2

    x = resize_short_side(hwc3(img), res)
    h, w = x.shape[:2]
    cells = cv2.resize(x, (max(1, w // 64), max(1, h // 64)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(cells, (w, h), interpolation=cv2.INTER_NEAREST)


def _lines_opencv(img, res, a, b, rng):
    """OpenCV's line-segment detector: segments at least ``a`` px long, drawn ``b`` px wide."""
    import cv2

    x = resize_short_side(hwc3(img), res)
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
    out = np.zeros(gray.shape, np.uint8)
    found = cv2.createLineSegmentDetector().detect(gray)[0]
    for x0, y0, x1, y1 in ([] if found is None else found.reshape(-1, 4)):
        if np.hypot(x1 - x0, y1 - y0) >= a:
            cv2.line(out, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))), 255, max(1, int(b)))
    return _gray_to_rgb(out)


def _inpaint_only(img, res, a, b, rng):
    # The mask travels separately (unit mask, alpha channel or the inpaint tab's mask); the map is
    # the picture itself and the masked pixels become -1 when the control tensor is built.
    return hwc3(img)


def _weights(name: str, label: str, tags: tuple[str, ...], what: str, priority: int = 0) -> Preprocessor:
    return Preprocessor(name, label, tags, None, unavailable=(
        f"needs the {what} annotator weights, which are not bundled and are never downloaded; "
        f"use a ready-made map with preprocessor none, or a weight-free preprocessor"), priority=priority)


_ALL = (
    Preprocessor("none", "none", (), _none, resolution=None, priority=1000),
    Preprocessor("invert", "invert (from white bg & black line)", ("Canny", "Lineart", "Scribble/Sketch", "MLSD"),
                 _invert, resolution=None, priority=20),
    Preprocessor("canny", "canny", ("Canny",), _canny, slider_1=Slider("Canny Low Threshold", 100, 1, 255),
                 slider_2=Slider("Canny High Threshold", 200, 1, 255), priority=100),
    Preprocessor("scribble_xdog", "scribble_xdog", ("Scribble/Sketch",), _scribble_xdog,
                 slider_1=Slider("XDoG Threshold", 32, 1, 64), priority=50),
    Preprocessor("scribble", "scribble (from white bg & black line)", ("Scribble/Sketch",), _scribble,
                 slider_1=Slider("Line Threshold", 127, 1, 255), priority=40, aliases=("scribble_thr",)),
    Preprocessor("threshold", "threshold", ("Scribble/Sketch",), _threshold,
                 slider_1=Slider("Binarization Threshold", 127, 0, 255)),
    Preprocessor("binary", "binary", ("Scribble/Sketch",), _binary,
                 slider_1=Slider("Binary Threshold (0: Otsu)", 0, 0, 255)),
    Preprocessor("lineart_standard", "lineart_standard (from white bg & black line)", ("Lineart",),
                 _lineart_standard, priority=100),
    Preprocessor("tile_resample", "tile_resample", ("Tile/Blur",), _tile_resample, resolution=None,
                 slider_1=Slider("Down Sampling Rate", 1.0, 1.0, 8.0, 0.01), priority=100),
    Preprocessor("blur_gaussian", "blur_gaussian", ("Tile/Blur",), _blur_gaussian,
                 slider_1=Slider("Sigma", 9.0, 0.01, 64.0, 0.01)),
    Preprocessor("shuffle", "shuffle", ("Shuffle",), _shuffle, priority=100),
    Preprocessor("color", "t2ia_color_grid", ("T2I-Adapter",), _color),
    Preprocessor("lines_opencv", "lines_opencv (OpenCV line segments, not MLSD)", ("MLSD",), _lines_opencv,
                 slider_1=Slider("Min Line Length (px)", 20, 1, 512), slider_2=Slider("Line Width (px)", 1, 1, 8),
                 priority=50),
    Preprocessor("inpaint_only", "inpaint_only", ("Inpaint",), _inpaint_only, resolution=None, needs_mask=True,
                 priority=100),
    _weights("openpose", "openpose", ("OpenPose",), "OpenPose body"),
    _weights("openpose_full", "openpose_full", ("OpenPose",), "OpenPose body/hand/face", 100),
    _weights("openpose_hand", "openpose_hand", ("OpenPose",), "OpenPose hand"),
    _weights("openpose_face", "openpose_face", ("OpenPose",), "OpenPose face"),
    _weights("dw_openpose_full", "dw_openpose_full", ("OpenPose",), "DWPose"),
    _weights("depth", "depth_midas", ("Depth",), "MiDaS depth", 100),
    _weights("depth_zoe", "depth_zoe", ("Depth",), "ZoeDepth"),
    _weights("depth_leres", "depth_leres", ("Depth",), "LeReS depth"),
    _weights("depth_anything", "depth_anything", ("Depth",), "Depth Anything"),
    _weights("normal_bae", "normal_bae", ("NormalMap",), "NormalBAE", 100),
    _weights("normal_map", "normal_midas", ("NormalMap",), "MiDaS"),
    _weights("hed", "softedge_hed", ("SoftEdge",), "HED"),
    _weights("pidinet", "softedge_pidinet", ("SoftEdge",), "PiDiNet", 100),
    _weights("scribble_hed", "scribble_hed", ("Scribble/Sketch",), "HED"),
    _weights("pidinet_scribble", "scribble_pidinet", ("Scribble/Sketch",), "PiDiNet"),
    _weights("lineart", "lineart_realistic", ("Lineart",), "learned line-art"),
    _weights("lineart_coarse", "lineart_coarse", ("Lineart",), "learned line-art"),
    _weights("lineart_anime", "lineart_anime", ("Lineart",), "anime line-art"),
    _weights("mlsd", "mlsd", ("MLSD",), "M-LSD", 100),
    _weights("oneformer_ade20k", "seg_ofade20k", ("Segmentation",), "OneFormer", 100),
    _weights("oneformer_coco", "seg_ofcoco", ("Segmentation",), "OneFormer"),
    _weights("segmentation", "seg_ufade20k", ("Segmentation",), "UniFormer"),
)
PREPROCESSORS: MappingProxyType = MappingProxyType({p.name: p for p in _ALL})
_BY_ANY_NAME = MappingProxyType({**{a: p for p in _ALL for a in p.aliases}, **{p.label: p for p in _ALL},
                                 **{p.name: p for p in _ALL}})


def find(name: str | None) -> Preprocessor | None:
    """A preprocessor by API name, UI label or alias (None/"" means none)."""
    if name is None or str(name).strip() == "":
        return PREPROCESSORS["none"]
    return _BY_ANY_NAME.get(str(name).strip())


def get(name: str | None) -> Preprocessor:
    """Like ``find`` but raises PreprocessorError naming the choices."""
    found = find(name)
    if found is None:
        raise PreprocessorError(f"unknown preprocessor (module) {name!r}; known: {', '.join(PREPROCESSORS)}")
    return found


def resolve_params(module: Preprocessor, processor_res: float | None, threshold_a: float | None,
                   threshold_b: float | None) -> tuple[int, float, float]:
    """Fill -1/None with the slider defaults and check ranges; raises PreprocessorError."""
    def pick(value, slider: Slider | None, what: str):
        if slider is None:
            return -1 if value is None else value
        if value is None or value == -1:
            return slider.value
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
            raise PreprocessorError(f"{module.name}: {what} ({slider.label}) must be a number, got {value!r}")
        if not slider.minimum <= value <= slider.maximum:
            raise PreprocessorError(f"{module.name}: {what} ({slider.label}) {value:g} is outside "
                                    f"{slider.minimum:g}..{slider.maximum:g}")
        return value

    res = pick(processor_res, module.resolution, "processor_res")
    return int(res), float(pick(threshold_a, module.slider_1, "threshold_a")), \
        float(pick(threshold_b, module.slider_2, "threshold_b"))


def run(name: str | Preprocessor, image: np.ndarray, processor_res: float | None = None,
        threshold_a: float | None = None, threshold_b: float | None = None, seed: int = 0) -> np.ndarray:
    """Run a preprocessor on an RGB(A) uint8 image; returns the RGB uint8 map."""
    module = name if isinstance(name, Preprocessor) else get(name)
    if not module.available:
        raise PreprocessorError(f"preprocessor {module.name} is unavailable: {module.unavailable}")
    res, a, b = resolve_params(module, processor_res, threshold_a, threshold_b)
    image = np.asarray(image)
    if image.ndim < 2 or min(image.shape[:2]) < 1:
        raise PreprocessorError(f"{module.name}: the control image is empty")
    try:
        out = module.fn(image, res if res > 0 else min(image.shape[:2]), a, b, np.random.default_rng(seed))
    except PreprocessorError:
        raise
    except Exception as exc:  # OpenCV raises cv2.error for odd inputs; say which step failed
        raise PreprocessorError(f"preprocessor {module.name} failed: {type(exc).__name__}: {exc}") from exc
    return np.ascontiguousarray(out)
