"""What each img2img sub-tab hands the request: the init image and the mask, A1111's way.

Plain functions over PIL images and Gradio's ImageEditor value (a dict with "background",
"layers" and "composite"), so they are tested without a browser.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageEnhance, ImageFilter, ImageOps

SUBTABS = ("img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch")
IMG2IMG, SKETCH, INPAINT, INPAINT_SKETCH, INPAINT_UPLOAD, BATCH = range(len(SUBTABS))
SUBTAB_IDS = ("img2img_img2img_tab", "img2img_img2img_sketch_tab", "img2img_inpaint_tab",
              "img2img_inpaint_sketch_tab", "img2img_inpaint_upload_tab", "img2img_batch_tab")
INPAINT_MODES = (INPAINT, INPAINT_SKETCH, INPAINT_UPLOAD, BATCH)


class InputError(ValueError):
    """Nothing usable was given for the selected sub-tab; the message says what to do."""


def _part(value: Any, key: str):
    if value is None:
        return None
    if isinstance(value, Image.Image):
        return value if key in ("background", "composite") else None
    return value.get(key)


def editor_mask(value: Any) -> Image.Image | None:
    """The brush mask of an ImageEditor value ('L', 255 where painted), or None if nothing was painted.

    As in A1111, transparent areas of the uploaded image are masked too.
    """
    layers = [layer for layer in (_part(value, "layers") or []) if layer is not None]
    background = _part(value, "background")
    size = background.size if background is not None else (layers[0].size if layers else None)
    if size is None:
        return None
    mask = Image.new("L", size)
    for layer in layers:
        alpha = layer.convert("RGBA").getchannel("A")
        if alpha.size != size:
            alpha = alpha.resize(size)
        mask = ImageChops.lighter(mask, alpha.point(lambda v: 255 if v > 0 else 0))
    if background is not None and background.mode in ("RGBA", "LA"):
        transparent = ImageOps.invert(background.getchannel("A")).point(lambda v: 255 if v > 0 else 0)
        mask = ImageChops.lighter(mask, transparent)
    return mask if mask.getbbox() is not None else None


def inpaint_sketch(value: Any, mask_alpha: float, mask_blur: int) -> tuple[Image.Image, Image.Image]:
    """A1111's "Inpaint sketch": the mask is where the sketch changed the image (weakened by the mask
    transparency), and the init image is the sketch, blurred at its edges into the original."""
    sketched = _part(value, "composite")
    original = _part(value, "background")
    if sketched is None or original is None:
        raise InputError("Inpaint sketch: upload an image, then paint over what should change.")
    sketched, original = sketched.convert("RGB"), original.convert("RGB")
    changed = np.any(np.asarray(sketched) != np.asarray(original), axis=-1)
    mask = Image.fromarray(changed.astype(np.uint8) * 255, "L")
    mask = ImageEnhance.Brightness(mask).enhance(1 - float(mask_alpha) / 100)
    blur = ImageFilter.GaussianBlur(int(mask_blur))
    image = Image.composite(sketched.filter(blur), original, mask.filter(blur))
    return image, mask


def image_and_mask(mode: int, img2img_image, sketch, inpaint, inpaint_sketch_value, upload_image, upload_mask,
                   mask_alpha: float = 0, mask_blur: int = 4) -> tuple[Image.Image, Image.Image | None]:
    """(init image, mask or None) for the selected sub-tab; InputError when the tab has no image."""
    if mode == IMG2IMG:
        if img2img_image is None:
            raise InputError("img2img: upload an image first.")
        return img2img_image, None
    if mode == SKETCH:
        image = _part(sketch, "composite") or _part(sketch, "background")
        if image is None:
            raise InputError("Sketch: upload an image (or draw on the canvas) first.")
        return image, None
    if mode == INPAINT:
        image = _part(inpaint, "background")
        if image is None:
            raise InputError("Inpaint: upload an image, then paint the area to change with the brush.")
        mask = editor_mask(inpaint)
        return image, mask if mask is not None else Image.new("L", image.size)
    if mode == INPAINT_SKETCH:
        return inpaint_sketch(inpaint_sketch_value, mask_alpha, mask_blur)
    if mode == INPAINT_UPLOAD:
        if upload_image is None or upload_mask is None:
            raise InputError("Inpaint upload: upload both the image and its mask (white = change).")
        return upload_image, upload_mask
    raise InputError(f"unknown img2img sub-tab {mode!r}")
