"""The img2img / inpaint fields of GenerationRequest: A1111's choice names and their validation.

Choices accept A1111's API integers and its UI labels alike ("Only masked", "latent noise",
"Inpaint not masked", ...), and validation normalises them to the API integers (booleans for
``inpaint_full_res``), so the core and the infotext read one form.
"""
from __future__ import annotations

from typing import Any

from PIL import Image

MODES = ("txt2img", "img2img", "inpaint")
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
MASK_MODES = ("Inpaint masked", "Inpaint not masked")
INPAINT_AREAS = ("Whole picture", "Only masked")
MAX_MASK_BLUR = 64
MAX_PADDING = 256


def _choice(name: str, raw: Any, labels: tuple[str, ...], errors: list, show) -> Any:
    """An index into ``labels`` from an int, a whole float, a numeric string or a label (any case)."""
    from webui.generation.request import FieldError, _to_int

    if isinstance(raw, bool):
        raw = int(raw)
    if isinstance(raw, str):
        lowered = raw.strip().lower()
        for i, label in enumerate(labels):
            if lowered == label.lower():
                return i
    value = _to_int(raw)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
        return value
    options = ", ".join(f"{i} ({label!r})" for i, label in enumerate(labels))
    errors.append(FieldError(name, f"must be one of {options}; got {show(raw)}"))
    return raw


def validate_image_fields(req, out: dict[str, Any], errors: list) -> None:
    """Check the img2img/inpaint fields of ``req`` into ``out`` (normalised values), appending FieldErrors."""
    from webui.generation.request import FieldError, _check_float, _check_int, _show, _to_float

    mode = req.mode
    if mode not in MODES:
        errors.append(FieldError("mode", f"must be one of {', '.join(MODES)}; got {_show(mode)}"))
    out["resize_mode"] = _choice("resize_mode", req.resize_mode, RESIZE_MODES, errors, _show)
    out["inpainting_fill"] = _choice("inpainting_fill", req.inpainting_fill, MASKED_CONTENT, errors, _show)
    out["inpainting_mask_invert"] = _choice("inpainting_mask_invert", req.inpainting_mask_invert, MASK_MODES,
                                            errors, _show)
    area = _choice("inpaint_full_res", req.inpaint_full_res, INPAINT_AREAS, errors, _show)
    out["inpaint_full_res"] = bool(area) if isinstance(area, int) else area
    out["inpaint_full_res_padding"] = _check_int("inpaint_full_res_padding", req.inpaint_full_res_padding, 0,
                                                 MAX_PADDING, errors)
    out["denoising_strength"] = _check_float("denoising_strength", req.denoising_strength, 0.0, 1.0, errors)
    out["initial_noise_multiplier"] = _check_float("initial_noise_multiplier", req.initial_noise_multiplier, 0.0,
                                                   2.0, errors)
    if not isinstance(req.mask_round, bool):
        errors.append(FieldError("mask_round", f"must be true or false, got {_show(req.mask_round)}"))
    if req.mask_blur is not None:  # A1111: mask_blur sets both directions
        blur = _check_int("mask_blur", req.mask_blur, 0, MAX_MASK_BLUR, errors)
        out["mask_blur"] = None
        out["mask_blur_x"] = out["mask_blur_y"] = blur
    else:
        for name in ("mask_blur_x", "mask_blur_y"):
            out[name] = _check_int(name, getattr(req, name), 0, MAX_MASK_BLUR, errors)

    from webui.generation.soft_inpaint import SoftInpainting

    try:
        out["soft_inpainting"] = SoftInpainting.from_value(req.soft_inpainting) \
            if not isinstance(req.soft_inpainting, SoftInpainting) else req.soft_inpainting
    except ValueError as exc:
        errors.append(FieldError("soft_inpainting", str(exc)))

    images = req.init_images if req.init_images is not None else []
    if not isinstance(images, (list, tuple)) or not all(isinstance(i, Image.Image) for i in images):
        errors.append(FieldError("init_images", f"must be a list of images, got {_show(images)}"))
        images = []
    out["init_images"] = list(images)
    for name in ("mask", "latent_mask"):
        value = getattr(req, name)
        if value is not None and not isinstance(value, Image.Image):
            errors.append(FieldError(name, f"must be an image, got {_show(value)}"))
    if mode in ("img2img", "inpaint") and not images:
        errors.append(FieldError("init_images", f"{mode} needs an initial image"))
    if mode == "txt2img" and images:
        errors.append(FieldError("mode", "init_images were given with mode txt2img; use mode img2img or inpaint"))
    if mode == "inpaint" and req.mask is None:
        errors.append(FieldError("mask", "inpaint needs a mask (white = repaint); draw one or upload it"))
    if mode in ("txt2img", "img2img") and req.mask is not None:
        errors.append(FieldError("mode", f"a mask was given with mode {mode}; use mode inpaint"))

    batch = out.get("batch_size")
    if len(images) > 1 and isinstance(batch, int) and not isinstance(batch, bool):
        if len(images) > batch:
            errors.append(FieldError("init_images", f"{len(images)} images for a batch size of {batch}; send at "
                                                    "most batch-size images (A1111 refuses more too)"))
        else:
            out["batch_size"] = len(images)  # A1111: one batch of the given images

    scale = req.scale_by
    if scale is not None and scale != 0:
        value = _to_float(scale)
        if isinstance(value, bool) or not isinstance(value, float) or not 0.05 <= value <= 8.0:
            errors.append(FieldError("scale_by", f"must be a number from 0.05 to 8, got {_show(scale)}"))
        elif images:
            # A1111's "Resize by": the size follows the first image; we keep it a multiple of 8.
            first = images[0]
            out["width"] = max(64, int(first.width * value) // 8 * 8)
            out["height"] = max(64, int(first.height * value) // 8 * 8)
            out["scale_by"] = value
    elif scale == 0:
        out["scale_by"] = None
