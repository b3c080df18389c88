"""POST /sdapi/v1/img2img: A1111's img2img body -> our GenerationRequest (img2img or inpaint mode).

Everything txt2img's planner checks (refused fields, override_settings, infotext, styles)
applies here too (`plan_request`); this module adds the images: base64 `init_images` and
`mask` are decoded with a 400 naming the broken one, a `mask` makes the request an inpaint,
and `include_init_images` decides whether they are echoed in `parameters` (A1111 drops them).
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from webui.api import models as m
from webui.api.errors import ApiError
from webui.api.txt2img import Plan, plan_request

MAX_INIT_IMAGES = 8  # the batch size limit: A1111 refuses more images than the batch holds


def _decode(decode_image, text: Any, field: str):
    if not isinstance(text, str) or not text.strip():
        raise ApiError.field(400, field, "must be a base64 image (or a data: URL), got an empty value")
    return decode_image(text, field)


def plan_img2img(body: m.Img2ImgRequest, ctx, decode_image) -> Plan:
    """Decode the images, then validate like txt2img; ApiError(400) for broken images, 422 for bad fields."""
    if not body.init_images:
        raise ApiError.field(422, "init_images", "img2img needs at least one image in init_images")
    if len(body.init_images) > MAX_INIT_IMAGES:
        raise ApiError.field(422, "init_images", f"at most {MAX_INIT_IMAGES} images, got {len(body.init_images)}")
    images = [_decode(decode_image, text, f"init_images[{i}]") for i, text in enumerate(body.init_images)]
    mask = _decode(decode_image, body.mask, "mask") if body.mask is not None else None
    # A1111's built-in "Soft inpainting" arrives as an always-on script; other scripts are refused as in txt2img.
    scripts = dict(body.alwayson_scripts or {})
    soft_key = next((k for k in scripts if str(k).strip().lower() == "soft inpainting"), None)
    soft = None
    if soft_key is not None:
        entry = scripts.pop(soft_key)
        soft = entry.get("args") if isinstance(entry, dict) else entry
        body = body.model_copy(update={"alwayson_scripts": scripts})
    extra = {
        "mode": "inpaint" if mask is not None else "img2img", "init_images": images, "mask": mask,
        "resize_mode": body.resize_mode, "denoising_strength": body.denoising_strength,
        "mask_blur_x": body.mask_blur_x, "mask_blur_y": body.mask_blur_y, "mask_blur": body.mask_blur,
        "mask_round": body.mask_round, "inpainting_fill": body.inpainting_fill,
        "inpaint_full_res": body.inpaint_full_res, "inpaint_full_res_padding": body.inpaint_full_res_padding,
        "inpainting_mask_invert": body.inpainting_mask_invert,
        "initial_noise_multiplier": 1.0 if body.initial_noise_multiplier is None else body.initial_noise_multiplier,
        "soft_inpainting": soft,
    }
    if body.denoising_strength is None:
        extra["denoising_strength"] = 0.75
    return plan_request(body, ctx, extra=extra, used=("denoising_strength",), what="img2img")


def echoed_parameters(body: m.Img2ImgRequest) -> dict[str, Any]:
    """The body as A1111 echoes it: without the images unless include_init_images."""
    parameters = body.model_dump(mode="json", exclude=set(body.model_extra or {}))  # unknown keys are not echoed
    if not body.include_init_images:
        parameters["init_images"] = None
        parameters["mask"] = None
    return parameters


def add_img2img_route(router: APIRouter, ctx, *, decode_image, run_generation) -> None:
    """Register POST /img2img on the /sdapi/v1 router (helpers come from routes.py, so there is one of each)."""

    @router.post("/img2img", response_model=m.Img2ImgResponse)
    async def img2img(body: m.Img2ImgRequest, response: Response):
        """Change an image (A1111's img2img; with a mask, inpaint); queued FIFO with every other job."""
        plan = await run_in_threadpool(plan_img2img, body, ctx, decode_image)  # decoding big images takes a while
        return await run_generation(plan, response, echoed_parameters(body))
