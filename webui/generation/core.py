"""The generation core: GenerationRequest -> GenerationResult. The only place that calls a pipeline.

Flow per job: validate the request, apply styles, hold the active model for the whole job
(a swap waits), build the A1111 sampler, encode prompts A1111's way, then for each batch
make per-image CPU noise, run the pipeline to latents, decode with our own VAE call (so
the VAE may run in another dtype and NaNs fall back to float32), save PNGs with infotext.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from webui.generation import conditioning, controlnet_job, previews, samplers, seeds
from webui.generation.progress import Progress
from webui.generation.request import FieldError, GenerationRequest, GenerationResult, RequestError
from webui.generation.styles import StyleStore, apply_styles
from webui.images import ImageSaver, NameFields, expand_pattern, image_grid
from webui.infotext import build_infotext
from webui.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class CoreContext:
    """Everything generate() needs, passed explicitly (no global state)."""

    models: Any  # webui.models.manager.ModelManager
    settings: Settings
    saver: ImageSaver
    data_dir: Path
    styles: StyleStore | None = None
    version: str | None = None
    controlnets: Any = None  # webui.models.controlnet.ControlNetManager (None: ControlNet off)


def _setting(request: GenerationRequest, settings: Settings, key: str):
    """A1111's override_settings win over the saved settings for one request."""
    overrides = request.override_settings or {}
    return overrides[key] if key in overrides else settings.get(key)


def _decode(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Latents -> image tensor in [-1, 1]; retries in float32 if the VAE overflows (A1111 does too)."""
    vae = pipe.vae
    scaled = latents / vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        scaled = scaled + shift
    with torch.no_grad():
        image = vae.decode(scaled.to(vae.dtype)).sample
        if vae.dtype != torch.float32 and torch.isnan(image).any():
            log.warning("VAE produced NaNs in %s; decoding again in float32 (use --no-half-vae to avoid this)",
                        vae.dtype)
            original = vae.dtype
            vae.to(torch.float32)
            try:
                image = vae.decode(scaled.to(torch.float32)).sample
            finally:
                vae.to(original)
    return image


def _output_folder(ctx: CoreContext, key: str, request: GenerationRequest) -> Path:
    base = Path(_setting(request, ctx.settings, key))
    folder = base if base.is_absolute() else ctx.data_dir / base
    return folder / datetime.now().strftime("%Y-%m-%d")


def generate(request: GenerationRequest, ctx: CoreContext, progress: Progress | None = None) -> GenerationResult:
    """Run one txt2img request to the end (or to an interrupt) and save what it made."""
    progress = progress or Progress()
    started = time.perf_counter()
    req = request.validate()
    prompt, negative = apply_styles(req.prompt, req.negative_prompt, req.styles, ctx.styles) if req.styles \
        else (req.prompt, req.negative_prompt)
    seed = seeds.resolve_seed(req.seed)
    subseed = seeds.resolve_seed(req.subseed) if req.subseed_strength > 0 else req.subseed
    clip_skip = req.clip_skip if req.clip_skip is not None else _setting(req, ctx.settings, "CLIP_stop_at_last_layers")
    if not isinstance(clip_skip, int) or not 1 <= clip_skip <= 12:
        raise RequestError([FieldError("override_settings", f"CLIP_stop_at_last_layers must be 1..12, got {clip_skip!r}")])
    timings: dict[str, float] = {}

    with ctx.models.active() as model:
        pipe = model.pipe
        info = ctx.models.ensure_hash(model.info)
        base_config = model.scheduler_config
        pipe.scheduler = samplers.build_scheduler(base_config, req.sampler_name, req.scheduler)
        pipe.set_progress_bar_config(disable=True)  # progress goes to the Progress object instead
        t0 = time.perf_counter()
        cond = conditioning.encode_prompts(pipe, prompt, negative, clip_skip=clip_skip, steps=req.steps,
                                           comma_backtrack=_setting(req, ctx.settings, "comma_padding_backtrack"))
        timings["encode"] = time.perf_counter() - t0
        progress.preview_every = (_setting(req, ctx.settings, "show_progress_every_n_steps")
                                  if _setting(req, ctx.settings, "live_previews_enable") else 0)
        progress.make_preview = previews.make_previewer(model)

        cn_job = controlnet_job.prepare_job(req.controlnet_units, model, ctx.controlnets, req.width, req.height,
                                            cfg=req.cfg_scale > 1, seed=seed, settings=ctx.settings)
        call_pipe = cn_job.pipeline(pipe) if cn_job else pipe
        cn_kwargs = cn_job.call_kwargs("txt2img", pipe.unet.device, pipe.unet.dtype) if cn_job else {}
        cn_info = cn_job.infotext() if cn_job else None

        info_request = replace(req, seed=seed, subseed=subseed, clip_skip=clip_skip)
        seed_list, subseed_list = seeds.batch_seeds(seed, subseed, req.subseed_strength, req.n_iter * req.batch_size)
        images, all_seeds, all_subseeds, infotexts = [], [], [], []
        latent_shape = (pipe.vae.config.latent_channels, req.height // pipe.vae_scale_factor,
                        req.width // pipe.vae_scale_factor)
        sampling = decoding = 0.0
        for batch_no in range(req.n_iter):
            if progress.interrupted:
                break
            batch = slice(batch_no * req.batch_size, (batch_no + 1) * req.batch_size)
            batch_seeds, batch_subseeds = seed_list[batch], subseed_list[batch]
            progress.begin_batch(batch_no, req.n_iter, req.steps)
            generators = seeds.make_generators(batch_seeds)
            noise = seeds.make_noise(latent_shape, batch_seeds, batch_subseeds, req.subseed_strength,
                                     generators=generators)

            def on_step(p, i, t, kwargs):
                progress.step(i + 1, kwargs.get("latents"))
                if progress.should_stop():
                    p._interrupt = True  # diffusers skips the remaining steps, then returns
                return kwargs

            samplers.seed_scheduler(pipe.scheduler, batch_seeds[0])
            t1 = time.perf_counter()
            # The one pipeline call site of the project.
            latents = call_pipe(**cond.as_pipeline_kwargs(), **cn_kwargs, num_images_per_prompt=req.batch_size,
                           num_inference_steps=req.steps, guidance_scale=req.cfg_scale, width=req.width,
                           height=req.height, latents=noise.to(pipe.unet.device, pipe.unet.dtype),
                           generator=generators, output_type="latent", callback_on_step_end=on_step,
                           callback_on_step_end_tensor_inputs=["latents"]).images
            sampling += time.perf_counter() - t1
            if progress.skipped and not progress.interrupted:
                continue  # A1111's Skip: drop this batch, go on with the next
            t2 = time.perf_counter()
            pixels = _decode(pipe, latents)
            batch_images = pipe.image_processor.postprocess(pixels.float(), output_type="pil")
            if cn_job:
                batch_images = cn_job.finish(batch_images)
            decoding += time.perf_counter() - t2
            for i, image in enumerate(batch_images):
                infotexts.append(build_infotext(info_request, seed=batch_seeds[i], subseed=batch_subseeds[i],
                                                model_name=info.model_name, model_hash=info.shorthash,
                                                prompt=prompt, negative_prompt=negative, version=ctx.version,
                                                extra=cn_info))
                images.append(image)
                all_seeds.append(batch_seeds[i])
                all_subseeds.append(batch_subseeds[i])
        timings.update(sampling=sampling, decode=decoding)
        detected = cn_job.detected if cn_job else []
        interrupted = progress.interrupted
        t3 = time.perf_counter()
        paths = _save(ctx, req, images, infotexts, all_seeds, info.model_name, prompt, interrupted)
        timings["save"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - started
    return GenerationResult(images=images, infotexts=infotexts, seeds=all_seeds, subseeds=all_subseeds,
                            prompts=[prompt] * len(images), negative_prompts=[negative] * len(images),
                            timings=timings, request=replace(req, seed=seed, subseed=subseed),
                            interrupted=interrupted, paths=paths, detected_maps=detected)


def _save(ctx: CoreContext, req: GenerationRequest, images, infotexts, all_seeds, model_name, prompt,
          interrupted: bool) -> list[Path]:
    """Save samples (and a grid for batches) when the settings and the request ask for it."""
    if not images or interrupted or not req.save_images or not _setting(req, ctx.settings, "samples_save"):
        return []  # A1111 does not save incomplete images by default
    write_info = _setting(req, ctx.settings, "enable_pnginfo")
    folder = _output_folder(ctx, "outdir_txt2img_samples", req)
    pattern = _setting(req, ctx.settings, "samples_filename_pattern")
    saved = []
    for image, text, s in zip(images, infotexts, all_seeds):
        fields = NameFields(seed=s, prompt=prompt, model_name=model_name, sampler=req.sampler_name, steps=req.steps,
                            cfg=req.cfg_scale, width=req.width, height=req.height)
        saved.append(ctx.saver.save(image, folder, expand_pattern(pattern, fields), text if write_info else None))
    if len(images) > 1 and _setting(req, ctx.settings, "grid_save"):
        grid = image_grid(images)
        ctx.saver.save_grid(grid, _output_folder(ctx, "outdir_txt2img_grids", req),
                            infotexts[0] if write_info else None)
    return saved
