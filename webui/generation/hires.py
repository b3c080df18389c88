"""Hires fix: A1111's second txt2img pass, as one more img2img `core.sample` call per batch.

The first pass's latents are upscaled, either in latent space (the six "Latent ..." modes) or
through pixels (decode -> pixel upscaler -> encode), then redrawn at the target size by an
img2img pass that runs exactly ``hr_second_pass_steps`` (or the first pass's count) steps of a
schedule stretched by the denoising strength, with fresh noise from the same seeds (A1111's
``ImageRNG``), the hires sampler / schedule / prompts when given, else the first pass's.
The checkpoint for the second pass may differ (``hr_checkpoint_name``); it comes from the model
manager's cache as a companion model, so a second run does not reload it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from webui.generation import conditioning, img2img, samplers, seeds, vae_codec
from webui.generation.hires_fields import target_size
from webui.generation.request import FieldError, RequestError
from webui.infotext import format_number
from webui.models.upscalers import LATENT_MODES, UpscalerError, upscale_latents


@dataclass
class HiresPlan:
    """What the second pass of every batch of one job needs, worked out once per job."""

    width: int  # the second pass's size (what the saved image has)
    height: int
    truncate_x: int
    truncate_y: int
    upscaler: str
    schedule_steps: int
    run_steps: int
    sampler_name: str
    schedule: str
    cond: Any  # conditioning of the hires prompts (the first pass's when they are empty)
    model: Any  # LoadedModel of the second pass
    prompt: str = ""  # the second pass's prompts (the first pass's when hr_prompt is empty)
    negative_prompt: str = ""
    infotext: dict[str, Any] = field(default_factory=dict)

    @property
    def pixel_upscaler(self) -> bool:
        return self.upscaler not in LATENT_MODES


def plan(p, ctx, cond, clip_skip: int, comma_backtrack: int, model=None) -> HiresPlan | None:
    """The job's hires plan, or None when hires fix is off; RequestError names a bad upscaler."""
    req = p.request
    if not req.enable_hr or req.mode != "txt2img":
        return None
    upscaler = req.hr_upscaler or "Latent"
    if upscaler not in LATENT_MODES:
        try:
            ctx.upscalers.get(upscaler)
        except (UpscalerError, AttributeError) as exc:
            names = ", ".join(ctx.upscalers.names(latent=True)) if getattr(ctx, "upscalers", None) else \
                ", ".join(LATENT_MODES)
            raise RequestError([FieldError("hr_upscaler", f"unknown upscaler {upscaler!r}; available: {names}")]) \
                from exc
    up_w, up_h, excess_x, excess_y = target_size(req.width, req.height, req.hr_scale, req.hr_resize_x,
                                                  req.hr_resize_y)
    steps = req.hr_second_pass_steps or req.steps
    schedule_steps, run_steps = img2img.sampling_steps(steps, req.denoising_strength, fix_steps=True)
    model = model or (companion(p, ctx.models, req.hr_checkpoint_name, "hr_checkpoint_name")
                      if req.hr_checkpoint_name else p.model)
    sampler = req.hr_sampler_name or req.sampler_name
    schedule = req.hr_scheduler or (req.scheduler if not req.hr_sampler_name else samplers.AUTOMATIC)
    hr_prompt = req.hr_prompt or p.prompt
    hr_negative = req.hr_negative_prompt or p.negative_prompt
    if model is not p.model or (hr_prompt, hr_negative) != (p.prompt, p.negative_prompt):
        cond = conditioning.encode_prompts(model.pipe, hr_prompt, hr_negative, clip_skip=clip_skip, steps=steps,
                                           comma_backtrack=comma_backtrack, embeddings=p.embeddings)
    info: dict[str, Any] = {"Denoising strength": req.denoising_strength}
    if model is not p.model:
        info["Hires checkpoint"] = model.info.title
    if req.hr_sampler_name and req.hr_sampler_name != req.sampler_name:
        info["Hires sampler"] = req.hr_sampler_name
    if hr_prompt != p.prompt:
        info["Hires prompt"] = hr_prompt
    if hr_negative != p.negative_prompt:
        info["Hires negative prompt"] = hr_negative
    if req.hr_scheduler:
        info["Hires schedule type"] = samplers.effective_schedule(sampler, schedule)
    if req.hr_resize_x or req.hr_resize_y:
        info["Hires resize"] = f"{req.hr_resize_x}x{req.hr_resize_y}"
    else:
        info["Hires upscale"] = format_number(float(req.hr_scale))
    if req.hr_second_pass_steps:
        info["Hires steps"] = req.hr_second_pass_steps
    info["Hires upscaler"] = upscaler
    # The second pass works in latents: its size is the upscaled size, cropped, in whole latent pixels.
    factor = int(getattr(model.pipe, "vae_scale_factor", 8))
    truncate_x, truncate_y = excess_x // factor, excess_y // factor
    width = (up_w // factor - truncate_x) * factor
    height = (up_h // factor - truncate_y) * factor
    return HiresPlan(width=width, height=height, truncate_x=truncate_x, truncate_y=truncate_y, upscaler=upscaler,
                     schedule_steps=schedule_steps, run_steps=run_steps, sampler_name=sampler, schedule=schedule,
                     cond=cond, model=model, prompt=hr_prompt, negative_prompt=hr_negative, infotext=info)


def latent_family(arch: str) -> str:
    """Checkpoints whose latents are interchangeable: SD 1.x/2.x share one VAE space, SDXL another."""
    return "sdxl" if str(arch).startswith("sdxl") else "sd"


def companion(p, models, name: str, field: str):
    """A second checkpoint held for the rest of the job; RequestError (naming ``field``) if unusable."""
    from webui.models.errors import ModelLoadError

    if models.find(name) is None:
        titles = ", ".join(info.title for info in models.checkpoints())
        raise RequestError([FieldError(field, f"unknown checkpoint {name!r}; available: {titles}")])
    try:
        model = p.enter(models.companion(name))
    except ModelLoadError as exc:
        raise RequestError([FieldError(field, str(exc))]) from exc
    if latent_family(model.arch) != latent_family(p.model.arch):
        raise RequestError([FieldError(field, f"{model.info.title} is a {model.arch} model; it cannot continue "
                                              f"the latents of {p.model.info.title} ({p.model.arch})")])
    return model


def _upscaled_latents(hr: HiresPlan, ctx, first_pipe, latents: torch.Tensor, progress) -> torch.Tensor:
    """First-pass latents -> init latents at the hires size (before truncation)."""
    factor = int(getattr(hr.model.pipe, "vae_scale_factor", 8))
    up_h, up_w = (hr.height // factor + hr.truncate_y), (hr.width // factor + hr.truncate_x)
    if not hr.pixel_upscaler:
        return upscale_latents(latents.float(), hr.upscaler, (up_h, up_w))
    pixels = vae_codec.decode(first_pipe, latents)
    images = first_pipe.image_processor.postprocess(pixels.float(), output_type="pil")
    upscaled = [ctx.upscalers.upscale(image, hr.upscaler, size=(up_w * factor, up_h * factor),
                                      should_stop=progress.should_stop) for image in images]
    return vae_codec.encode(hr.model.pipe, vae_codec.pil_to_tensor(upscaled))


def _truncate(latents: torch.Tensor, truncate_x: int, truncate_y: int) -> torch.Tensor:
    """A1111's crop after "resize to" with both sides: half the excess off each side."""
    if not truncate_x and not truncate_y:
        return latents
    h, w = latents.shape[-2:]
    return latents[:, :, truncate_y // 2: h - (truncate_y + 1) // 2, truncate_x // 2: w - (truncate_x + 1) // 2]


def second_pass(hr: HiresPlan, p, ctx, latents: torch.Tensor, batch_seeds: list[int], batch_subseeds: list[int],
                batch_no: int, progress, sample, make_pass, guidance_plan=None) -> torch.Tensor:
    """Redraw one batch's first-pass latents at the hires size; returns the second pass's latents.

    ``sample`` and ``make_pass`` are the core's `sample` and `SamplingPass` (passed in, so this room
    does not import the core that calls it); ``guidance_plan`` the hires prompts' per-call conditioning.
    """
    req = p.request
    first_pipe = p.model.pipe
    progress.set_text(f"Hires fix: batch {batch_no + 1} of {req.n_iter}")
    init = _truncate(_upscaled_latents(hr, ctx, first_pipe, latents, progress), hr.truncate_x, hr.truncate_y)
    pipe = hr.model.pipe
    shape = (pipe.vae.config.latent_channels, init.shape[-2], init.shape[-1])
    generators = seeds.make_generators(batch_seeds)  # fresh noise from the same seeds, as A1111's ImageRNG
    noise = seeds.make_noise(shape, batch_seeds, batch_subseeds, req.subseed_strength, generators=generators)
    job_pass = make_pass(kind="img2img", noise=noise, seeds=batch_seeds, width=hr.width, height=hr.height,
                         steps=hr.schedule_steps, run=hr.run_steps, init=init, name="hires")
    from webui.generation import pipelines

    if pipelines.unet_channels(pipe) == 9:  # inpainting checkpoints: A1111's txt2img conditioning (full mask)
        job_pass.inpaint_mask, job_pass.masked_image_latents = img2img.inpaint_conditioning(
            pipe, None, len(batch_seeds), 0, hr.width, hr.height)
    scheduler = samplers.build_scheduler(hr.model.scheduler_config, hr.sampler_name, hr.schedule)
    progress.begin_batch(2 * batch_no + 1, 2 * req.n_iter, hr.run_steps)
    progress.set_text(f"Hires fix: batch {batch_no + 1} of {req.n_iter}")
    previous = p.model
    p.model = hr.model
    try:
        return sample(p, ctx, hr.cond, job_pass, scheduler, generators, batch_no, progress, guidance_plan)
    finally:
        p.model = previous
