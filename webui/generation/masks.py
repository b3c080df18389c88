"""A1111's image and mask operations for img2img/inpaint, as plain PIL/numpy (no torch, no model).

- ``resize_image``: the four resize modes of the img2img tab;
- ``binary_mask``, ``blur_mask``: mask from an upload/brush layer, then A1111's separable blur;
- ``crop_region`` + ``expand_crop_region``: "Only masked" (the masked bounding box plus padding,
  grown to the processing aspect ratio);
- ``fill``: "Masked content: fill" (the hole painted from ever less blurred copies of its surroundings);
- ``make_overlay`` / ``apply_overlay``: the final paste that keeps every pixel outside the mask the original's.
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps

LANCZOS = Image.Resampling.LANCZOS


def flatten(image: Image.Image, background: str = "#ffffff") -> Image.Image:
    """RGB image; transparency is composited onto ``background`` (A1111's img2img background colour)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background)
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def resize_image(mode: int, image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's resize modes: 0 stretch, 1 cover + centre crop, 2 contain + stretch the edges into the bands.

    Mode 3 (latent upscale) resizes latents, not pixels; for pixels (masks) it stretches like 0.
    """
    if mode in (0, 3):
        return image.resize((width, height), LANCZOS)
    target_ratio, source_ratio = width / height, image.width / image.height
    if mode == 1:
        src_w = width if target_ratio > source_ratio else image.width * height // image.height
        src_h = height if target_ratio <= source_ratio else image.height * width // image.width
    else:
        src_w = width if target_ratio < source_ratio else image.width * height // image.height
        src_h = height if target_ratio >= source_ratio else image.height * width // image.width
    resized = image.resize((src_w, src_h), LANCZOS)
    out = Image.new(image.mode if image.mode in ("L", "RGB", "RGBA") else "RGB", (width, height))
    left, top = width // 2 - src_w // 2, height // 2 - src_h // 2
    out.paste(resized, (left, top))
    if mode == 2:
        # Fill the empty bands by stretching the outermost row/column of the image across them.
        if target_ratio < source_ratio and top > 0:
            out.paste(resized.crop((0, 0, src_w, 1)).resize((width, top)), (0, 0))
            bottom = height - (top + src_h)
            if bottom > 0:
                out.paste(resized.crop((0, src_h - 1, src_w, src_h)).resize((width, bottom)), (0, top + src_h))
        elif target_ratio > source_ratio and left > 0:
            out.paste(resized.crop((0, 0, 1, src_h)).resize((left, height)), (0, 0))
            right = width - (left + src_w)
            if right > 0:
                out.paste(resized.crop((src_w - 1, 0, src_w, src_h)).resize((right, height)), (left + src_w, 0))
    return out


def binary_mask(mask: Image.Image, round_mask: bool = True) -> Image.Image:
    """An 'L' mask, 255 = repaint. An RGBA mask with real transparency uses its alpha (thresholded at 128)."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        alpha = mask.getchannel("A")
        return alpha.point(lambda v: 255 if v > 128 else 0) if round_mask else alpha
    return mask.convert("L")


def _kernel(sigma: float) -> int:
    return 2 * int(2.5 * sigma + 0.5) + 1


def blur_mask(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    """A1111's mask blur: a Gaussian along x, then along y, each with kernel 2*int(2.5*s+0.5)+1."""
    array = np.asarray(mask.convert("L"))
    if blur_x > 0:
        array = cv2.GaussianBlur(array, (_kernel(blur_x), 1), blur_x)
    if blur_y > 0:
        array = cv2.GaussianBlur(array, (1, _kernel(blur_y)), blur_y)
    return Image.fromarray(np.ascontiguousarray(array))


def crop_region(mask: Image.Image, padding: int = 0) -> tuple[int, int, int, int] | None:
    """Bounding box (x1, y1, x2, y2) of the non-zero mask plus ``padding``, clamped; None for an empty mask."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    if not padding:
        return box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def _grow(a: int, b: int, want: float, limit: int) -> tuple[int, int]:
    diff = int(want - (b - a))
    a -= diff // 2
    b += diff - diff // 2
    if b >= limit:
        a, b = a - (b - limit), limit
    if a < 0:
        a, b = 0, b - a
    return a, min(b, limit)


def expand_crop_region(region, width: int, height: int, image_width: int, image_height: int):
    """Grow ``region`` to the processing aspect ratio (width/height), shifting it back inside the image."""
    x1, y1, x2, y2 = region
    target = width / height
    if (x2 - x1) / (y2 - y1) > target:
        y1, y2 = _grow(y1, y2, (x2 - x1) / target, image_height)
    else:
        x1, x2 = _grow(x1, x2, (y2 - y1) * target, image_width)
    return x1, y1, x2, y2


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Paint the masked area from blurred copies of what surrounds it (A1111's "Masked content: fill").

    The kept pixels, premultiplied by their alpha (0 in the hole), are blurred at radii 256 down
    to 0 and stacked with alpha compositing, so each hole pixel gets the colour of the nearest
    kept area at the finest scale that reaches it.
    """
    keep = ImageOps.invert(mask.convert("L"))
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=keep)
    out = Image.new("RGBA", image.size)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        layer = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            out.alpha_composite(layer)
    return out.convert("RGB")


def make_overlay(image: Image.Image, mask_for_overlay: Image.Image) -> Image.Image:
    """The original as RGBA whose alpha is the inverted mask: opaque where nothing is repainted."""
    overlay = image.convert("RGBA")
    overlay.putalpha(ImageOps.invert(mask_for_overlay.convert("L")))
    return overlay


def apply_overlay(image: Image.Image, paste_to: tuple[int, int, int, int] | None, overlay: Image.Image | None):
    """Put a generated image back: un-crop it to ``paste_to`` ("Only masked") and composite the overlay."""
    if overlay is None:
        return image
    if paste_to is not None:
        x, y, w, h = paste_to
        canvas = Image.new("RGBA", overlay.size)
        canvas.paste(resize_image(1, image, w, h).convert("RGBA"), (x, y))
        image = canvas
    image = image.convert("RGBA")
    image.alpha_composite(overlay)
    return image.convert("RGB")
