"""The Extras tab's work (A1111's "postprocessing"): upscale finished images, outside diffusion.

One `ExtrasRequest` holds the images and A1111's extras fields (the `/sdapi/v1/extra-*-image`
body names); `run_extras` upscales with upscaler 1, blends upscaler 2 at its visibility, and
saves to `outputs/extras-images/<date>/` with the original's `parameters` kept and A1111's
`postprocessing` text chunk (`Postprocess upscale by: 2, Postprocess upscaler: ...`) added.
It runs as a job on the shared queue, so it never competes with a generation for the device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from webui.generation.progress import Progress
from webui.generation.request import FieldError, RequestError
from webui.images import read_infotext
from webui.infotext import quote
from webui.models.upscalers import MAX_SIDE, UpscalerError, UpscalerManager

RESIZE_MODES = ("Scale by", "Scale to")
FACE_RESTORE_REASON = ("face restoration (GFPGAN / CodeFormer) needs face-detection weights that cannot be shipped "
                       "or downloaded here")


@dataclass
class ExtrasRequest:
    """A1111's extras fields; `images` are PIL images with optional names (for batch output names)."""

    images: list[Image.Image]
    names: list[str] = field(default_factory=list)
    resize_mode: int = 0  # 0 Scale by, 1 Scale to
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0
    gfpgan_visibility: float = 0.0
    codeformer_visibility: float = 0.0
    save_images: bool = True
    output_dir: Path | None = None  # batch from folder: write here instead of outputs/extras-images

    def validate(self, upscalers: UpscalerManager) -> "ExtrasRequest":
        """Raise RequestError with one message per bad field (A1111's names)."""
        errors: list[FieldError] = []
        if not self.images:
            errors.append(FieldError("image", "no image given"))
        if self.resize_mode not in (0, 1):
            errors.append(FieldError("resize_mode", f"must be 0 (scale by) or 1 (scale to), got {self.resize_mode!r}"))
        scale = self.upscaling_resize
        if self.resize_mode == 0 and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                                      or not math.isfinite(scale) or not 0 < scale <= 16):
            errors.append(FieldError("upscaling_resize", f"must be a number above 0 and at most 16, got {scale!r}"))
        if self.resize_mode == 1:
            for name in ("upscaling_resize_w", "upscaling_resize_h"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
                    errors.append(FieldError(name, f"must be a whole number from 1 to {MAX_SIDE}, got {value!r}"))
        visibility = self.extras_upscaler_2_visibility
        if isinstance(visibility, bool) or not isinstance(visibility, (int, float)) or not 0 <= visibility <= 1:
            errors.append(FieldError("extras_upscaler_2_visibility", f"must be from 0 to 1, got {visibility!r}"))
        for name in ("upscaler_1", "upscaler_2"):
            try:
                upscalers.get(getattr(self, name))
            except UpscalerError as exc:
                errors.append(FieldError(name, str(exc)))
        for name in ("gfpgan_visibility", "codeformer_visibility"):
            value = getattr(self, name)
            if value not in (0, 0.0, None):
                errors.append(FieldError(name, f"not available: {FACE_RESTORE_REASON}"))
        if errors:
            raise RequestError(errors)
        return self


@dataclass
class ExtrasResult:
    images: list[Image.Image]
    infotexts: list[str]  # the postprocessing text of each image
    paths: list[Path] = field(default_factory=list)
    interrupted: bool = False


def _target_size(req: ExtrasRequest, image: Image.Image) -> tuple[tuple[int, int], dict[str, Any]]:
    """Size to upscale to, and the infotext keys that say how (A1111's wording and rounding).

    "Scale to" scales by the larger of the two ratios (the image covers the box); with "crop to
    fit" the result is then centred on a canvas of exactly the asked size. Like A1111, the scaled
    size is rounded down to a multiple of 8.
    """
    if req.resize_mode == 1:
        scale = max(req.upscaling_resize_w / image.width, req.upscaling_resize_h / image.height)
        info: dict[str, Any] = {"Postprocess upscale to": f"{req.upscaling_resize_w}x{req.upscaling_resize_h}"}
        if req.upscaling_crop:
            info["Postprocess crop to fit"] = True
    else:
        scale = float(req.upscaling_resize)
        info = {"Postprocess upscale by": f"{scale:g}"}
    return (max(8, int(image.width * scale // 8 * 8)), max(8, int(image.height * scale // 8 * 8))), info


def _fit_canvas(image: Image.Image, width: int, height: int) -> Image.Image:
    """Centre the image on a black canvas of the asked size (A1111's crop to fit)."""
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image, (width // 2 - image.width // 2, height // 2 - image.height // 2))
    return canvas


def upscale_one(req: ExtrasRequest, image: Image.Image, upscalers: UpscalerManager,
                progress: Progress | None = None) -> tuple[Image.Image, str]:
    """One image through upscaler 1 (+ upscaler 2 at its visibility); returns it and its postprocessing text."""
    should_stop = progress.should_stop if progress is not None else None
    size, info = _target_size(req, image)
    source = image.convert("RGB")
    out = upscalers.upscale(source, req.upscaler_1, size=size, should_stop=should_stop)
    info["Postprocess upscaler"] = req.upscaler_1
    if req.upscaler_2 != "None" and req.extras_upscaler_2_visibility > 0:
        second = upscalers.upscale(source, req.upscaler_2, size=size, should_stop=should_stop)
        out = Image.blend(out, second, float(req.extras_upscaler_2_visibility))
        info["Postprocess upscaler 2"] = req.upscaler_2
        info["Postprocess upscaler 2 visibility"] = f"{req.extras_upscaler_2_visibility:g}"
    if req.resize_mode == 1 and req.upscaling_crop:
        out = _fit_canvas(out, req.upscaling_resize_w, req.upscaling_resize_h)
    text = ", ".join(f"{k}: {quote(v)}" for k, v in info.items())
    return out, text


def run_extras(req: ExtrasRequest, upscalers: UpscalerManager, saver, folder: Path,
               progress: Progress | None = None) -> ExtrasResult:
    """Upscale every image of the request and save them (unless asked not to); stops on interrupt."""
    progress = progress or Progress()
    result = ExtrasResult(images=[], infotexts=[])
    for index, image in enumerate(req.images):
        if progress.interrupted:
            result.interrupted = True
            break
        progress.begin_batch(index, len(req.images), 1)
        try:
            out, text = upscale_one(req, image, upscalers, progress)
        except InterruptedError:
            result.interrupted = True
            break
        progress.step(1)
        result.images.append(out)
        result.infotexts.append(text)
        if req.save_images:
            target = req.output_dir or (folder / datetime.now().strftime("%Y-%m-%d"))
            stem = Path(req.names[index]).stem if index < len(req.names) and req.names[index] else "extras"
            result.paths.append(saver.save(out, target, stem, read_infotext(image),
                                           extra_text={"postprocessing": text}))
    return result
