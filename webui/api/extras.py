"""A1111's upscaler and Extras routes: /upscalers, /latent-upscale-modes, /extra-single-image, /extra-batch-images.

Extras requests become an `ExtrasRequest` and run as a job on the shared queue (upscaling uses the
device). As in A1111's API, results are returned, not saved.
"""
from __future__ import annotations

import html
import re
from typing import Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from webui.api.errors import ApiError
from webui.generation.postprocess import ExtrasRequest
from webui.generation.request import RequestError
from webui.jobs import JobFailed
from webui.models.upscalers import LATENT_MODES, UpscalerManager

_SCALE_IN_NAME = re.compile(r"(?:^|[^0-9])(\d)x|x(\d)(?:[^0-9]|$)", re.IGNORECASE)


class ExtrasBase(BaseModel):
    """A1111's ExtrasBaseRequest fields and defaults."""

    resize_mode: Literal[0, 1] = Field(0, description="0: scale by upscaling_resize, 1: scale to upscaling_resize_w/h")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0, description="face restoration is not available here; must be 0")
    codeformer_visibility: float = Field(0, description="face restoration is not available here; must be 0")
    codeformer_weight: float = 0
    upscaling_resize: float = 2
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0
    upscale_first: bool = False


class ExtrasSingleImageRequest(ExtrasBase):
    image: str = Field("", description="base64 image (or data: URL)")


class FileData(BaseModel):
    data: str = Field(description="base64 image (or data: URL)")
    name: str = ""


class ExtrasBatchImagesRequest(ExtrasBase):
    imageList: list[FileData] = Field(default_factory=list)


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None
    model_path: str | None
    model_url: str | None
    scale: float | None


class LatentUpscalerModeItem(BaseModel):
    name: str


def _scale_from_name(name: str) -> float | None:
    """Model files are named like 4x-UltraSharp or RealESRGAN_x4plus; A1111 reports that scale."""
    match = _SCALE_IN_NAME.search(name)
    return float(match.group(1) or match.group(2)) if match else None


def _extras_request(body: ExtrasBase, images, names) -> ExtrasRequest:
    fields = body.model_dump(exclude={"image", "imageList", "show_extras_results", "codeformer_weight",
                                      "upscale_first"})
    return ExtrasRequest(images=images, names=names, save_images=False, **fields)


def build_extras_router(ctx, router: APIRouter, decode_image, wait_for, encode_png) -> None:
    """Add the routes to the /sdapi/v1 router (closures over ctx; helpers passed in, no module state)."""
    upscalers: UpscalerManager = ctx.upscalers

    @router.get("/upscalers", response_model=list[UpscalerItem])
    def upscaler_list():
        """Pixel upscalers: the built-ins, then model files from A1111's folders (models/ESRGAN, ...)."""
        return [UpscalerItem(**u.as_api(_scale_from_name(u.name) if u.kind == "model" else None))
                for u in upscalers.upscalers()]

    @router.get("/latent-upscale-modes", response_model=list[LatentUpscalerModeItem])
    def latent_modes():
        """Hires fix's latent upscale modes."""
        return [LatentUpscalerModeItem(name=name) for name in LATENT_MODES]

    async def run(request: ExtrasRequest):
        try:
            request.validate(upscalers)
        except RequestError as exc:
            raise ApiError(422, str(exc), exc.as_dicts()) from None
        job = ctx.submit_extras(request, source="api")
        try:
            result = await wait_for(job)
        except JobFailed as exc:
            raise ApiError(422 if "upscaler" in str(exc) else 500, f"extras failed: {exc}") from None
        encoded = await run_in_threadpool(lambda: [encode_png(im, None) for im in result.images])
        info = "".join(f"<p>{html.escape(text)}</p>" for text in result.infotexts)
        return encoded, info

    @router.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
    async def extra_single_image(body: ExtrasSingleImageRequest):
        """Upscale one image (A1111's Extras tab, single image)."""
        if not body.image.strip():
            raise ApiError.field(422, "image", "no image given")
        images, info = await run(_extras_request(body, [decode_image(body.image, "image")], []))
        return ExtrasSingleImageResponse(html_info=info, image=images[0])

    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    async def extra_batch_images(body: ExtrasBatchImagesRequest):
        """Upscale several images with the same settings (A1111's Extras tab, batch process)."""
        if not body.imageList:
            raise ApiError.field(422, "imageList", "no images given")
        images = [decode_image(item.data, f"imageList.{i}.data") for i, item in enumerate(body.imageList)]
        encoded, info = await run(_extras_request(body, images, [item.name for item in body.imageList]))
        return ExtrasBatchImagesResponse(html_info=info, images=encoded)
