"""The generation core: GenerationRequest -> GenerationResult, for txt2img, img2img and inpaint.

Flow per job: validate the request, apply styles, hold the active model for the whole job
(a swap waits), open the job's ExitStack and let every registered Feature prepare (see
``processing``), build the A1111 sampler, encode prompts A1111's way, prepare img2img/inpaint
inputs (``img2img``), then for each batch make per-image CPU noise, run ``sample`` (the one
pipeline call, through ``pipelines.call``), decode with our own VAE call, put inpainted
images back over the original, and save PNGs with infotext.
"""
from __future__ import annotations

import contextlib
import time
from functools import partial
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from webui.generation import (conditioning, guidance, hires, img2img, pipelines, previews, samplers, seeds, soft_inpaint,
                              tiling)
from webui.generation.interruptible_decode import decode_latents  # hardening: interrupt between images/tiles
from webui.generation.plan import GenerationPlan, batch_conditioning, hires_for_batch
from webui.generation.processing import (Feature, Processing, SaveParams, StepState, chain_steps,
                                         registered_step)
from webui.generation.progress import Progress
from webui.generation.request import FieldError, GenerationRequest, GenerationResult, RequestError
from webui.generation.styles import StyleStore, apply_styles
from webui.images import ImageSaver, NameFields, expand_pattern, image_grid
from webui.infotext import build_infotext
from webui.settings import Settings

# Where each mode saves (settings keys, with A1111's defaults when the settings lack them).
OUTPUT_FOLDERS = {
    "txt2img": (("outdir_txt2img_samples", "outputs/txt2img-images"), ("outdir_txt2img_grids", "outputs/txt2img-grids")),
    "img2img": (("outdir_img2img_samples", "outputs/img2img-images"), ("outdir_img2img_grids", "outputs/img2img-grids")),
}


@dataclass
class CoreContext:
    """Everything generate() needs, passed explicitly (no global state)."""

    models: Any  # webui.models.manager.ModelManager
    settings: Settings
    saver: ImageSaver
    data_dir: Path
    styles: StyleStore | None = None
    version: str | None = None
    features: list[Feature] = field(default_factory=list)  # prepared into every job, in order
    pipelines: pipelines.PipelineCache = field(default_factory=pipelines.PipelineCache)
    upscalers: Any = None  # webui.models.upscalers.UpscalerManager (hires fix's pixel upscalers)


@dataclass
class SamplingPass:
    """One pipeline call's inputs besides the prompt: the unit hires fix reuses for its second pass.

    ``kind`` is the request mode; 9-channel checkpoints run it through their inpaint pipeline.
    ``noise`` is the initial noise (already times the noise multiplier); ``init`` the scaled init
    latents (None: start from pure noise); ``steps`` the schedule length, ``run`` how many of its
    last steps are run; ``latent_mask`` [1,1,h,w] is where the image is repainted (None: all of it).
    """

    kind: str
    noise: torch.Tensor
    seeds: list[int]  # the batch's seeds (SDE samplers seed one Brownian tree per image)
    width: int
    height: int
    steps: int
    run: int
    init: torch.Tensor | None = None
    latent_mask: torch.Tensor | None = None
    soft: Any = None  # soft_inpaint.SoftInpainting: soft per-step blend, no hard final blend
    inpaint_mask: torch.Tensor | None = None  # 9-channel UNets: [B,1,H,W] conditioning mask
    masked_image_latents: torch.Tensor | None = None  # 9-channel UNets: [B,C,h,w]
    name: str = "main"


def setting(request: GenerationRequest, settings: Settings, key: str, default: Any = None):
    """A1111's override_settings win over the saved settings for one request."""
    overrides = request.override_settings or {}
    if key in overrides:
        return overrides[key]
    return settings.get(key) if key in settings.options else default


def _output_folder(ctx: CoreContext, request: GenerationRequest, grids: bool) -> Path:
    key, default = OUTPUT_FOLDERS["txt2img" if request.mode == "txt2img" else "img2img"][1 if grids else 0]
    base = Path(setting(request, ctx.settings, key, default))
    folder = base if base.is_absolute() else ctx.data_dir / base
    if not setting(request, ctx.settings, "save_to_dirs", True):
        return folder  # A1111's img2img batch with an output folder saves straight into it
    return folder / datetime.now().strftime("%Y-%m-%d")


def _noised_init(state: StepState, init, noise, skip_start: int):
    """The original noised to the level the latents have after this step (None after the last step)."""
    schedule = state.pipe.scheduler.timesteps[skip_start * state.pipe.scheduler.order:]
    if state.step + 1 >= len(schedule):
        return None, None
    latents = state.tensors["latents"]
    t_next = schedule[state.step + 1: state.step + 2]
    return state.pipe.scheduler.add_noise(init.to(latents), noise.to(latents), t_next), t_next


def _blend_step(init: torch.Tensor, noise: torch.Tensor, repaint: torch.Tensor, skip_start: int, soft=None):
    """A1111's inpaint blend per step: outside the mask the latents follow the noised original."""

    def blend(state: StepState):
        noised, _ = _noised_init(state, init, noise, skip_start)
        if noised is None:
            return None  # the final blend after sampling covers the last step
        latents = state.tensors["latents"]
        keep = (1 - repaint).to(latents)
        return {"latents": noised * keep + latents * repaint.to(latents)}

    return blend


def _soft_blend_step(init: torch.Tensor, noise: torch.Tensor, repaint: torch.Tensor, skip_start: int, soft=None):
    """Soft inpainting's blend: the mask, raised to a power that follows the noise level, mixes the
    latents with the noised original, magnitudes interpolated separately (A1111's latent_blend)."""

    def blend(state: StepState):
        noised, _ = _noised_init(state, init, noise, skip_start)
        latents = state.tensors["latents"]
        if noised is None:
            noised = init.to(latents)  # after the last step the latents are clean: blend with the original
        # A1111 raises the mask by the noise level the model denoised from this step.
        sigma = soft_inpaint.step_sigma(state.pipe.scheduler, state.timestep)
        weight = soft_inpaint.blend_weight(soft, repaint.to(latents), sigma)
        return {"latents": soft_inpaint.latent_blend(soft, noised, latents, weight)}

    return blend


def sample(p: Processing, ctx: CoreContext, cond, job_pass: SamplingPass, scheduler, generators, batch_no: int,
           progress: Progress, plan: guidance.GuidancePlan | None = None) -> torch.Tensor:
    """Run one pipeline call for ``p`` (every mode and hires pass goes through here); returns latents.

    ``plan`` is the per-model-call conditioning (prompt editing, alternation, AND; see guidance).
    """
    base = p.model.pipe
    kind = pipelines.effective_kind(base, job_pass.kind)
    pipe = ctx.pipelines.get(base, kind, p.extra_components)
    pipe.scheduler = scheduler
    pipe.set_progress_bar_config(disable=True)  # progress goes to the Progress object instead
    samplers.seed_scheduler(scheduler, job_pass.seeds)
    batch = job_pass.noise.shape[0]
    device, dtype = base.unet.device, base.unet.dtype
    per_prompt = batch // cond.prompt_embeds.shape[0]  # 1 when the plan gave every image its own prompt
    kwargs: dict[str, Any] = dict(cond.as_pipeline_kwargs(), num_images_per_prompt=per_prompt,
                                  num_inference_steps=job_pass.steps, guidance_scale=p.request.cfg_scale,
                                  generator=generators, output_type="latent")
    given = None
    if kind == "txt2img":
        kwargs.update(width=job_pass.width, height=job_pass.height, latents=job_pass.noise.to(device, dtype))
    else:
        strength = img2img.diffusers_strength(job_pass.steps, job_pass.run) if job_pass.init is not None else 1.0
        init = job_pass.init if job_pass.init is not None else torch.zeros_like(job_pass.noise)
        given = pipelines.GivenLatents(noise=job_pass.noise, init=job_pass.init)
        kwargs.update(image=init, strength=strength)
        if kind == "inpaint":
            kwargs.update(width=job_pass.width, height=job_pass.height, mask_image=job_pass.inpaint_mask,
                          masked_image_latents=job_pass.masked_image_latents)
    kwargs.update(p.pipeline_kwargs)
    kwargs.update(p.pass_kwargs(kind, job_pass))  # per call: a hires pass is img2img after a txt2img one

    callbacks = []
    if job_pass.latent_mask is not None and job_pass.init is not None:
        skip = job_pass.steps - job_pass.run
        blend = _soft_blend_step if job_pass.soft is not None else _blend_step
        callbacks.append(registered_step(blend(job_pass.init, job_pass.noise, job_pass.latent_mask, skip,
                                               job_pass.soft)))
    callbacks += p.step_callbacks()

    def report(state: StepState):
        progress.step(min(state.step + 1, job_pass.run), state.tensors.get("latents"))
        # A sampler that finished early (DPM adaptive's evaluation budget) ends the loop the same way.
        if progress.should_stop() or getattr(state.pipe.scheduler, "finished", False):
            state.pipe._interrupt = True  # diffusers skips the remaining steps, then returns
        return None

    callbacks.append(registered_step(report))
    on_step, names = chain_steps(p, callbacks, pipe, batch_no, job_pass.run, job_pass.name)
    with guidance.guidance_hook(pipe, plan, batch, p.request.cfg_scale):
        latents = pipelines.call(pipe, given, callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=names,
                                 **kwargs).images
    if job_pass.latent_mask is not None and job_pass.init is not None and job_pass.soft is None:
        # A1111's final blend: unmasked latents are exactly the init's (soft inpainting skips it).
        repaint = job_pass.latent_mask.to(latents)
        latents = latents * repaint + job_pass.init.to(latents) * (1 - repaint)
    return latents


def generate(request: GenerationRequest, ctx: CoreContext, progress: Progress | None = None) -> GenerationResult:
    """Run one request to the end (or to an interrupt) and save what it made."""
    progress = progress or Progress()
    started = time.perf_counter()
    req = request.validate()
    prompt, negative = apply_styles(req.prompt, req.negative_prompt, req.styles, ctx.styles) if req.styles \
        else (req.prompt, req.negative_prompt)
    seed = seeds.resolve_seed(req.seed)
    subseed = seeds.resolve_seed(req.subseed) if req.subseed_strength > 0 else req.subseed
    clip_skip = req.clip_skip if req.clip_skip is not None else setting(req, ctx.settings, "CLIP_stop_at_last_layers")
    if not isinstance(clip_skip, int) or not 1 <= clip_skip <= 12:
        raise RequestError([FieldError("override_settings", f"CLIP_stop_at_last_layers must be 1..12, got {clip_skip!r}")])
    timings: dict[str, float] = {}
    seed_list, subseed_list = seeds.batch_seeds(seed, subseed, req.subseed_strength, req.n_iter * req.batch_size)

    with ctx.models.active() as model, contextlib.ExitStack() as stack:
        p = Processing(request=req, model=model, prompt=prompt, negative_prompt=negative, seeds=seed_list,
                       subseeds=subseed_list, stack=stack)
        for feature in ctx.features:
            feature.prepare(p)
        pipe = model.pipe
        info = ctx.models.ensure_hash(model.info)
        p.enter(tiling.tiled(pipe, req.tiling))  # A1111's Tiling: circular convs for this job only
        scheduler = samplers.build_scheduler(model.scheduler_config, req.sampler_name, req.scheduler,
                                             sdxl=pipelines.family(pipe) == "sdxl")
        t0 = time.perf_counter()
        backtrack = setting(req, ctx.settings, "comma_padding_backtrack")
        encode = partial(conditioning.encode_prompts, pipe, clip_skip=clip_skip, comma_backtrack=backtrack,
                         embeddings=p.embeddings)
        encoded: dict[tuple[str, str], Any] = {}
        guided: dict[tuple[str, str], guidance.GuidancePlan] = {}

        def encode_pair(prompt_: str, negative_: str):
            # Once per distinct text: a prompt matrix repeats a few prompts over many images.
            if (prompt_, negative_) not in encoded:
                encoded[(prompt_, negative_)] = encode(prompt_, negative_, steps=req.steps)
            return encoded[(prompt_, negative_)]

        def guidance_for(prompt_: str, negative_: str):
            # Prompt editing, alternation and AND per model call (the UNet hook is only installed when used).
            if (prompt_, negative_) not in guided:
                guided[(prompt_, negative_)] = guidance.build_plan(
                    prompt_, negative_, samplers.prompt_steps(req.sampler_name, req.steps), encode,
                    encode_pair(prompt_, negative_))
            return guided[(prompt_, negative_)]

        # p.plan: per-image prompts and seeds from extensions (None: every image uses p.prompt).
        job_plan = p.plan or GenerationPlan.uniform(p.prompt, p.negative_prompt, seed_list, subseed_list,
                                                    req.n_iter, req.batch_size)
        cond = encode_pair(p.prompt, p.negative_prompt)
        hr = hires.plan(p, ctx, cond, clip_skip, backtrack)  # None unless hires fix is on
        encode_hr = partial(conditioning.encode_prompts, hr.model.pipe, clip_skip=clip_skip,
                            comma_backtrack=backtrack, embeddings=p.embeddings) if hr is not None else None
        hr_plan = None if hr is None else guidance.build_plan(
            hr.prompt, hr.negative_prompt, samplers.prompt_steps(hr.sampler_name, hr.run_steps), encode_hr, hr.cond)
        timings["encode"] = time.perf_counter() - t0
        progress.preview_every = (setting(req, ctx.settings, "show_progress_every_n_steps")
                                  if setting(req, ctx.settings, "live_previews_enable") else 0)
        # Building the previewer walks the VAE's parameters: only when previews are wanted.
        progress.make_preview = previews.make_previewer(model) if progress.preview_every else None

        t0 = time.perf_counter()
        init = img2img.prepare(req, pipe) if req.mode != "txt2img" else None
        nine_channel = pipelines.unet_channels(pipe) == 9
        extra = dict(init.extra) if init is not None else {}
        if nine_channel:
            extra["Conditional mask weight"] = "1.0"  # A1111 writes the float's str()
        timings["prepare"] = time.perf_counter() - t0
        if hr is not None:
            extra.update(hr.infotext)
        p.comments.extend(init.comments if init is not None else [])
        schedule_steps, run_steps = (img2img.sampling_steps(req.steps, req.denoising_strength) if init is not None
                                     else (req.steps, req.steps))

        info_request = replace(req, seed=seed, subseed=subseed, clip_skip=clip_skip)
        images, all_seeds, all_subseeds, infotexts, all_prompts, all_negatives = [], [], [], [], [], []
        incomplete: list[int] = []  # images a Skip left half-sampled
        factor = int(getattr(pipe, "vae_scale_factor", 8))
        latent_shape = (pipe.vae.config.latent_channels, req.height // factor, req.width // factor)
        resize_from = ((req.seed_resize_from_h // factor, req.seed_resize_from_w // factor)
                       if req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0 else None)
        sampling = decoding = 0.0
        for batch_no in range(job_plan.n_iter):
            if progress.interrupted:
                break
            planned = job_plan.batch(batch_no)
            batch_seeds, batch_subseeds = planned.seeds, planned.subseeds
            pairs = list(zip(planned.prompts, planned.negative_prompts))
            cond = batch_conditioning([encode_pair(a, b) for a, b in pairs],
                                      lambda: encode_pair("", "").prompt_embeds[:, :77])
            # Per-call guidance needs one prompt per batch; a batch mixing planned prompts samples
            # each with its prompt's final schedule entry (what encode_pair encodes).
            plan = guidance_for(*pairs[0]) if len(set(pairs)) == 1 else None
            batch_hr, batch_hr_plan = hires_for_batch(hr, hr_plan, req, pairs, encode_hr)
            passes = 2 if hr is not None else 1  # hires fix: each batch shows as two jobs, as in A1111
            progress.begin_batch(batch_no * passes, job_plan.n_iter * passes, run_steps)
            generators = seeds.make_generators(batch_seeds)
            noise = seeds.make_noise(latent_shape, batch_seeds, batch_subseeds, req.subseed_strength,
                                     generators=generators, resize_from=resize_from)
            if init is not None and req.initial_noise_multiplier != 1.0:
                noise = noise * req.initial_noise_multiplier
            job_pass = SamplingPass(kind=req.mode, noise=noise, seeds=batch_seeds, width=req.width,
                                    height=req.height, steps=schedule_steps, run=run_steps)
            if init is not None:
                job_pass.init = img2img.batch_latents(init, 0, req.batch_size, batch_seeds)
                job_pass.latent_mask = init.latent_mask
                job_pass.soft = req.soft_inpainting if init.has_mask else None
            if nine_channel:
                job_pass.inpaint_mask, job_pass.masked_image_latents = img2img.inpaint_conditioning(
                    pipe, init, req.batch_size, 0, req.width, req.height, init.round_mask if init else True)
            t1 = time.perf_counter()
            latents = sample(p, ctx, cond, job_pass, scheduler, generators, batch_no, progress, plan)
            decoder = pipe
            if hr is not None and not progress.should_stop():
                latents = hires.second_pass(batch_hr, p, ctx, latents, batch_seeds, batch_subseeds, batch_no, progress,
                                            sample, SamplingPass, batch_hr_plan)
                decoder = hr.model.pipe
            sampling += time.perf_counter() - t1
            # A1111's Skip: this batch's images stay as far as they got (shown, saved only with
            # "save_incomplete_images"), then the next batch runs.
            left_partial = progress.skipped and not progress.interrupted
            t2 = time.perf_counter()
            # Image by image (big ones tile by tile), so an interrupt frees the queue (hardening).
            pixels = decode_latents(decoder, latents, lambda: progress.interrupted)
            if pixels is None:
                break  # interrupted before an image of this batch was finished
            batch_images = decoder.image_processor.postprocess(pixels.float(), output_type="pil")
            soft_masks = [None] * len(batch_images)
            if job_pass.soft is not None:
                soft_masks = soft_inpaint.overlay_masks(job_pass.soft, init.latent_mask, job_pass.init, latents.float().cpu(),
                                                        req.width, req.height, init.paste_to,
                                                        init.bases[0].size if init.bases else None)
            decoding += time.perf_counter() - t2
            for i, image in enumerate(batch_images):
                for hook in p.image_hooks():
                    image = hook(p, len(images), image)
                if init is not None:
                    image = img2img.finish_image(init, i, image, soft_masks[i])
                infotexts.append(build_infotext(info_request, seed=batch_seeds[i], subseed=batch_subseeds[i],
                                                model_name=info.model_name, model_hash=info.shorthash,
                                                prompt=planned.prompts[i], negative_prompt=planned.negative_prompts[i],
                                                extra={**extra, **p.extra_infotext}, version=ctx.version,
                                                batch_pos=i))
                all_prompts.append(planned.prompts[i])
                all_negatives.append(planned.negative_prompts[i])
                if left_partial:
                    incomplete.append(len(images))
                images.append(image)
                all_seeds.append(batch_seeds[i])
                all_subseeds.append(batch_subseeds[i])
        timings.update(sampling=sampling, decode=decoding)
        interrupted = progress.interrupted
        t3 = time.perf_counter()
        paths = save_images(ctx, req, images, infotexts, all_seeds, info.model_name, all_prompts, interrupted,
                            hooks=p.save_hooks(), incomplete=incomplete)
        timings["save"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - started
    return GenerationResult(images=images, infotexts=infotexts, seeds=all_seeds, subseeds=all_subseeds,
                            prompts=all_prompts, negative_prompts=all_negatives,
                            timings=timings, request=replace(req, seed=seed, subseed=subseed),
                            interrupted=interrupted, paths=paths, comments=list(p.comments),
                            extra_images=list(p.extra_images), incomplete=incomplete)


def save_images(ctx: CoreContext, req: GenerationRequest, images, infotexts, all_seeds, model_name,
                prompts: str | list[str], interrupted: bool, hooks=(), incomplete=()) -> list[Path]:
    """Save samples (and a grid for batches) when the settings and the request ask for it.

    ``prompts``: one per image (or one for all) for file names; ``hooks``: ``p.save_hooks()`` pairs
    (extensions' before/after save) run around every sample; ``incomplete``: indexes of images a
    Skip left half-sampled, saved only with the "save_incomplete_images" setting (as A1111).
    """
    if not images or interrupted or not req.save_images or not setting(req, ctx.settings, "samples_save"):
        return []  # A1111 does not save incomplete images by default
    if incomplete and not setting(req, ctx.settings, "save_incomplete_images"):
        keep = [i for i in range(len(images)) if i not in set(incomplete)]
        images, infotexts, all_seeds = ([seq[i] for i in keep] for seq in (images, infotexts, all_seeds))
        if not isinstance(prompts, str):
            prompts = [prompts[i] for i in keep]
        if not images:
            return []
    write_info = setting(req, ctx.settings, "enable_pnginfo")
    folder = _output_folder(ctx, req, grids=False)
    pattern = setting(req, ctx.settings, "samples_filename_pattern")
    saved = []
    if isinstance(prompts, str):
        prompts = [prompts] * len(images)
    for image, text, s, prompt in zip(images, infotexts, all_seeds, prompts):
        fields = NameFields(seed=s, prompt=prompt, model_name=model_name, sampler=req.sampler_name, steps=req.steps,
                            cfg=req.cfg_scale, width=req.width, height=req.height)
        target = SaveParams(image, folder, expand_pattern(pattern, fields), text)
        for before, _ in hooks:
            if before is not None:
                before(target)
        path = ctx.saver.save(target.image, target.folder, target.stem, target.infotext if write_info else None)
        for _, after in hooks:
            if after is not None:
                after(path)
        saved.append(path)
    if len(images) > 1 and setting(req, ctx.settings, "grid_save"):
        # Only-masked inpaint returns images at the original's size; a grid needs them equal.
        if len({im.size for im in images}) == 1:
            ctx.saver.save_grid(image_grid(images), _output_folder(ctx, req, grids=True),
                                infotexts[0] if write_info else None)
    return saved
