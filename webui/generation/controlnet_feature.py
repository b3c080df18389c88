"""ControlNet as a core Feature: it registers a job's units into the job, never edits the core.

For a request with enabled units, ``prepare(p)``:

- prepares the units (``controlnet_job.prepare_job``): maps, models, wrappers;
- installs the wrappers into this model's ControlNet slot (one ``UnitControlNets`` object per
  loaded pipeline, so the core's PipelineCache builds each ControlNet pipeline variant once)
  and empties the slot again when the job ends (``p.enter``);
- selects the ControlNet variant (``p.extra_components``) and adds its call arguments,
  infotext, the inpaint_only paste-back (``p.on_image``) and the detected maps
  (``p.extra_images``).

A request without enabled units is left alone: the plain pipeline runs and nothing is loaded.
"""
from __future__ import annotations

import contextlib
import threading
import weakref

from webui.generation import controlnet_run as run
from webui.generation import pipelines
from webui.generation.controlnet_job import ControlNetJobError, prepare_job


def inpaint_crop(request) -> tuple[int, int, int, int] | None:
    """The "Only masked" crop box img2img.prepare uses for this request (None: whole picture)."""
    from PIL import ImageOps

    from webui.generation import masks

    if request.mode != "inpaint" or request.mask is None or not request.inpaint_full_res or not request.init_images:
        return None
    mask = masks.binary_mask(request.mask, request.mask_round)
    source = request.init_images[0]
    if mask.size != source.size:
        mask = mask.resize(source.size, masks.LANCZOS)
    if request.inpainting_mask_invert:
        mask = ImageOps.invert(mask)
    if mask.getbbox() is None:
        return None
    if request.mask_blur_x > 0 or request.mask_blur_y > 0:
        mask = masks.blur_mask(mask, request.mask_blur_x, request.mask_blur_y)
    region = masks.crop_region(mask, request.inpaint_full_res_padding)
    if region is None:
        return None
    return masks.expand_crop_region(region, request.width, request.height, mask.width, mask.height)


class ControlNetFeature:
    """The ControlNet units of every job (registered in CoreContext.features)."""

    name = "controlnet"

    def __init__(self, manager, settings):
        self.manager = manager
        self.settings = settings
        self._lock = threading.Lock()
        self._slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _slot(self, pipe) -> run.UnitControlNets:
        with self._lock:
            slot = self._slots.get(pipe)
            if slot is None:
                slot = self._slots[pipe] = run.UnitControlNets([])
            return slot

    def prepare(self, p) -> None:
        req = p.request
        if not any(getattr(u, "enabled", False) for u in req.controlnet_units or []):
            return
        pipe = p.model.pipe
        if pipelines.unet_channels(pipe) == 9:
            # diffusers' ControlNet inpaint pipelines encode the masked image themselves and take no
            # masked-image latents, which is how the core feeds 9-channel UNets; not wired yet.
            raise ControlNetJobError("ControlNet units with a 9-channel inpainting checkpoint are not supported yet; "
                                     "use a regular checkpoint (inpaint works with it, and inpaint_only for the unit)")
        device = getattr(pipe, "_execution_device", pipe.unet.device)  # offload hooks keep weights on the CPU
        init_image = req.init_images[0] if req.mode != "txt2img" and req.init_images else None
        job = prepare_job(req.controlnet_units, p.model, self.manager, req.width, req.height,
                          cfg=req.cfg_scale > 1, init_image=init_image,
                          job_mask=req.mask if req.mode == "inpaint" else None, kind=req.mode,
                          seed=p.seeds[0] if p.seeds else 0, device=device, dtype=pipe.unet.dtype,
                          settings=self.settings, crop=inpaint_crop(req))
        slot = self._slot(pipe)
        p.enter(_installed(slot, [u.net for u in job.prepared]))
        p.extra_components["controlnet"] = slot
        p.on_pass(lambda kind, job_pass: _pass_kwargs(job, kind, job_pass, device, pipe.unet.dtype))
        p.extra_infotext.update(job.infotext())
        if not self.settings.get("control_net_no_detectmap"):  # the extension's option hides them everywhere
            p.extra_images.extend(job.detected)
        if job.paste_back:
            p.on_image(lambda _p, _index, image: job.finish([image])[0])


def _pass_kwargs(job, kind: str, job_pass, device, dtype) -> dict:
    """The units' arguments for one pipeline call. Per call, since a hires pass is an img2img call
    after a txt2img one: the control image changes its keyword, and the img2img pipelines size it
    by ``width``/``height`` (default: the map's own size), so the hires pass passes its own."""
    kwargs = job.call_kwargs(kind, device, dtype)
    if kind != "txt2img":
        kwargs.update(width=job_pass.width, height=job_pass.height)
    return kwargs


@contextlib.contextmanager
def _installed(slot: run.UnitControlNets, nets: list):
    """The job's wrappers in the slot for the job's duration; emptied after (no model kept alive by it)."""
    import torch

    slot.nets = torch.nn.ModuleList(nets)
    try:
        yield slot
    finally:
        slot.nets = torch.nn.ModuleList([])
