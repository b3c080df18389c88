"""One job's ControlNet: prepare its enabled units, derive the ControlNet pipeline, add the call arguments.

The core asks ``prepare_job`` once per job; with no enabled unit it gets None and runs the
plain pipeline (no ControlNet is loaded, nothing is preprocessed: no cost). Otherwise the job
holds the prepared units, and:

- ``pipeline(base, kind)`` builds the diffusers ControlNet pipeline of the same family and kind
  from the base pipeline's own modules (the plain constructor: no weights copied, no dtype
  change) with the job's ``UnitControlNets``;
- ``call_kwargs(kind)`` gives the ControlNet arguments for that pipeline's call;
- ``infotext()`` the ``ControlNet N`` parameters, ``detected`` the maps for previews and the API;
- ``finish(images)`` pastes the untouched pixels back for ``inpaint_only`` units outside inpainting.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from webui.generation import controlnet_run as run
from webui.generation.controlnet import ControlNetUnit, infotext_params
from webui.models.controlnet import check_compatible

log = logging.getLogger(__name__)

_CLASSES = {
    (False, "txt2img"): "StableDiffusionControlNetPipeline",
    (False, "img2img"): "StableDiffusionControlNetImg2ImgPipeline",
    (False, "inpaint"): "StableDiffusionControlNetInpaintPipeline",
    (True, "txt2img"): "StableDiffusionXLControlNetPipeline",
    (True, "img2img"): "StableDiffusionXLControlNetImg2ImgPipeline",
    (True, "inpaint"): "StableDiffusionXLControlNetInpaintPipeline",
}


class ControlNetJobError(ValueError):
    """A unit cannot run (no image, missing model, wrong base, preprocessor failure)."""


@dataclass
class ControlNetJob:
    """The prepared units of one job."""

    prepared: list[run.PreparedUnit]
    detected: list[Image.Image] = field(default_factory=list)
    paste_back: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (picture, mask) per inpaint_only

    @property
    def nets(self) -> run.UnitControlNets:
        return run.UnitControlNets([p.net for p in self.prepared])

    def pipeline(self, base, kind: str = "txt2img"):
        """The ControlNet pipeline of ``kind`` over ``base``'s modules, with this job's units."""
        import diffusers

        xl = "text_encoder_2" in base.components
        cls = getattr(diffusers, _CLASSES[(xl, kind)])
        accepted = inspect.signature(cls.__init__).parameters
        parts = {k: v for k, v in base.components.items() if k in accepted}
        extras = {"requires_safety_checker": False, "add_watermarker": False}
        parts.update({k: v for k, v in extras.items() if k in accepted})
        for name in ("safety_checker", "feature_extractor", "image_encoder"):
            if name in accepted and name not in parts:
                parts[name] = None
        pipe = cls(**parts, controlnet=self.nets)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def call_kwargs(self, kind: str, device, dtype) -> dict:
        """ControlNet arguments for the pipeline call; img2img/inpaint pipelines call the map ``control_image``."""
        kwargs = run.pipeline_arguments(self.prepared, device, dtype)
        if kind != "txt2img":
            kwargs["control_image"] = kwargs.pop("image")
        return kwargs

    def infotext(self) -> dict[str, str]:
        return infotext_params([p.unit for p in self.prepared], [p.model_title for p in self.prepared])

    def finish(self, images: list[Image.Image]) -> list[Image.Image]:
        """inpaint_only outside inpainting: keep the picture's pixels where the mask is black."""
        for picture, mask in self.paste_back:
            out = []
            for image in images:
                w, h = image.size
                pic = run.fit(picture[:, :, :3], w, h, "Just Resize").astype(np.float32)
                alpha = run.fit(mask, w, h, "Just Resize").astype(np.float32)[:, :, None] / 255.0
                gen = np.asarray(image.convert("RGB"), dtype=np.float32)
                out.append(Image.fromarray((gen * alpha + pic * (1 - alpha)).round().astype(np.uint8)))
            images = out
        return images


def _cropped(picture: np.ndarray, mask: np.ndarray | None, size: tuple[int, int], crop) -> tuple:
    x1, y1, x2, y2 = crop
    w, h = size
    picture = run.fit(picture, w, h, "Just Resize")[y1:y2, x1:x2]
    if mask is not None:
        mask = run.fit(mask, w, h, "Just Resize")[y1:y2, x1:x2]
    return np.ascontiguousarray(picture), None if mask is None else np.ascontiguousarray(mask)


def check_request_units(units: list[ControlNetUnit], manager, settings=None) -> None:
    """The checks that need the app: how many units the settings allow, and that each model exists."""
    limit = int(settings.get("control_net_unit_count")) if settings is not None else None
    if limit is not None and len(units) > limit:
        raise ControlNetJobError(f"{len(units)} ControlNet units are enabled but the setting control_net_unit_count "
                                 f"allows {limit}")
    for i, unit in enumerate(units):
        if manager.find(unit.model) is None:
            raise ControlNetJobError(f"ControlNet unit {i}: model {unit.model!r} not found; known: "
                                     f"{', '.join(manager.titles()) or 'none'}")


def _image_for(unit: ControlNetUnit, index: int, init_image: Image.Image | None) -> np.ndarray:
    if unit.image is not None:
        return unit.image
    if init_image is not None:  # img2img / inpaint: a unit without its own image uses the input picture
        return np.asarray(init_image.convert("RGB"))
    raise ControlNetJobError(f"ControlNet unit {index}: no control image (upload one, or use img2img)")


def _inpaint_mask(unit: ControlNetUnit, picture: np.ndarray, job_mask: Image.Image | None) -> np.ndarray | None:
    if unit.mask is not None:
        return unit.mask
    if picture.ndim == 3 and picture.shape[2] == 4 and picture[:, :, 3].min() < 255:
        return 255 - picture[:, :, 3]  # transparent = erased = to be drawn
    if job_mask is not None:
        return np.asarray(job_mask.convert("L"))
    return None


def prepare_job(units: list[ControlNetUnit], model, manager, width: int, height: int, *, cfg: bool,
                init_image: Image.Image | None = None, job_mask: Image.Image | None = None,
                kind: str = "txt2img", seed: int = 0, device=None, dtype=None, settings=None,
                crop: tuple[int, int, int, int] | None = None) -> ControlNetJob | None:
    """Preprocess and load every enabled unit; None when none is enabled (the plain pipeline runs).

    ``crop``: inpainting "Only masked" generates the box (x1, y1, x2, y2) of the init image at the
    generation size, so each unit's picture and mask are cut the same way first (as
    sd-webui-controlnet does) and then simply resized.
    """
    enabled = [u for u in units if u.enabled]
    if not enabled:
        return None
    if manager is None:
        raise ControlNetJobError("ControlNet is not available in this app (no ControlNet manager)")
    check_request_units(enabled, manager, settings)
    unet = model.pipe.unet
    device = device or unet.device
    dtype = dtype or unet.dtype
    job = ControlNetJob([])
    for i, unit in enumerate(enabled):
        module = unit.preprocessor
        picture = _image_for(unit, i, init_image)
        unit_mask = unit.mask
        if crop is not None and init_image is not None:
            picture, unit_mask = _cropped(picture, unit_mask, init_image.size, crop)
            unit = replace(unit, mask=unit_mask, resize_mode="Just Resize")
        loaded = manager.get(unit.model, torch_dtype=dtype)
        check_compatible(loaded, unet, getattr(model.info, "title", "the loaded checkpoint"))
        try:
            detected = run.detect(unit, picture, width, height, seed=seed + i)
        except ValueError as exc:
            raise ControlNetJobError(f"ControlNet unit {i} ({module.name}): {exc}") from exc
        inpaint_mask = _inpaint_mask(unit, picture, job_mask) if module.needs_mask else None
        if module.needs_mask and inpaint_mask is None:
            raise ControlNetJobError(f"ControlNet unit {i}: inpaint_only needs a mask (draw one, or use inpaint)")
        control = run.control_tensor(detected, width, height, unit.resize_mode, inpaint_mask)
        region = None if module.needs_mask else run.region_tensor(unit.mask, width, height, unit.resize_mode)
        if not unit.low_vram:
            loaded.model.to(device)
        net = run.UnitControlNet(loaded.model, unit.control_mode, region, cfg=cfg, low_vram=unit.low_vram,
                                 device=device)
        title = next((info.title for info in manager.models() if info.filename == loaded.path), unit.model)
        fitted = run.fit(detected, width, height, unit.resize_mode)
        job.prepared.append(run.PreparedUnit(unit, net, control, fitted, title))
        job.detected.append(Image.fromarray(fitted))
        if module.needs_mask and kind != "inpaint":
            job.paste_back.append((picture, inpaint_mask))
    return job
