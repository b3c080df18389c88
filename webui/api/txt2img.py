"""A1111's txt2img body -> our GenerationRequest, and our result -> A1111's response.

Policy for A1111 fields we do not implement: a field whose value has no effect here
(its default, or an hires-fix knob while `enable_hr` is false) is accepted and named in
one warning line; a value that would change the image if honoured (`enable_hr: true`,
`restore_faces: true`, an unknown script, ...) is refused with a 422 naming the field, because
ignoring it would hand back a different image without saying so.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from webui.api import controlnet as controlnet_api
from webui.api.errors import ApiError
from webui.api.models import Txt2ImgRequest
from webui.api.scripts import script_fields
from webui.api.networks import check_vae_override
from webui.generation import samplers
from webui.generation.request import FieldError, GenerationRequest, GenerationResult, RequestError
from webui.images import png_info
from webui.infotext import infotext_to_request_fields, parse_infotext
from webui.security.paths import api_output_dir_problems
from webui.settings import SettingsError

log = logging.getLogger(__name__)

# Fields that are ignored (with a warning when not at their default): no effect on the image here.
IGNORED_FIELDS = (
    "do_not_save_samples", "do_not_save_grid",  # A1111's API replaces both with `save_images`
    "firstphase_width", "firstphase_height",  # A1111's pre-1.0 hires fields, ignored by A1111 too
    "comments", "force_task_id", "disable_extra_networks",
    "image_cfg_scale",  # img2img: only instruct-pix2pix models use it (A1111 ignores it for the rest too)
)

# Hires-fix knobs: no effect while enable_hr is false (img2img bodies use denoising_strength themselves).
HIRES_FIELDS = ("denoising_strength", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y",
                "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt")

# A1111 settings that may arrive in override_settings, are not our settings, and change
# the image unless at these values.
REFUSED_OVERRIDES: dict[str, tuple[Any, ...]] = {
    "eta_noise_seed_delta": (0,),
    "randn_source": ("CPU", "cpu"),  # our initial noise is always drawn on the CPU
}

# Parameters-line keys that have their own place in A1111's info JSON; the rest are "extra".
_STANDARD_INFOTEXT_KEYS = {"Prompt", "Negative prompt", "Steps", "Sampler", "CFG scale", "Seed", "Size-1", "Size-2",
                           "Model hash", "Model", "VAE hash", "VAE", "Variation seed", "Variation seed strength",
                           "Clip skip", "Version", "Seed resize from-1", "Seed resize from-2", "Tiling",
                           "Batch size", "Batch pos"}


@dataclass
class Plan:
    """What one txt2img call will do: the request, plus what happens around the job."""

    request: GenerationRequest
    body: Txt2ImgRequest
    checkpoint_first: str | None = None  # restore_afterwards false: swap for good before the job
    persist_settings: dict[str, Any] = field(default_factory=dict)  # restore_afterwards false: keep these
    ignored: list[str] = field(default_factory=list)


def _refusals(body: Txt2ImgRequest) -> list[FieldError]:
    errors = []

    def refuse(name: str, message: str) -> None:
        errors.append(FieldError(name, message))

    if body.restore_faces:
        refuse("restore_faces", "face restoration is not implemented; send restore_faces: false")
    if getattr(body, "firstpass_image", None):
        refuse("firstpass_image", "starting hires fix from a given first-pass image is not implemented; "
                                  "send the image to /sdapi/v1/img2img instead")
    # k-diffusion's noise knobs: their defaults are what our samplers do; other values are not.
    for name, defaults in (("s_min_uncond", (0,)), ("s_churn", (0,)), ("s_tmin", (0,)),
                           ("s_tmax", (0, math.inf)), ("s_noise", (1,))):
        value = getattr(body, name)
        if value is not None and value not in defaults:
            allowed = " or ".join(str(d) for d in defaults)
            refuse(name, f"only the default ({allowed}) is supported, got {value:g}")
    return errors


def _hires_fields(body) -> dict[str, Any]:
    """Hires fix (txt2img) and refiner (both) fields of an A1111 body, with A1111's API defaults."""
    data: dict[str, Any] = {"refiner_checkpoint": body.refiner_checkpoint or "",
                            "refiner_switch_at": 0.8 if body.refiner_switch_at is None else body.refiner_switch_at}
    if getattr(body, "enable_hr", False):
        data.update(enable_hr=True, hr_scale=body.hr_scale, hr_upscaler=body.hr_upscaler or "Latent",
                    hr_second_pass_steps=body.hr_second_pass_steps, hr_resize_x=body.hr_resize_x,
                    hr_resize_y=body.hr_resize_y, hr_checkpoint_name=body.hr_checkpoint_name or "",
                    hr_sampler_name=body.hr_sampler_name or "", hr_scheduler=body.hr_scheduler or "",
                    hr_prompt=body.hr_prompt or "", hr_negative_prompt=body.hr_negative_prompt or "",
                    denoising_strength=0.75 if body.denoising_strength is None else body.denoising_strength)
    return data


def _hires_problems(request: GenerationRequest, ctx) -> list[FieldError]:
    """Names that only the running app knows: upscalers and checkpoints (422 before queueing)."""
    from webui.models.upscalers import LATENT_MODES

    errors = []
    if request.enable_hr and request.hr_upscaler not in LATENT_MODES and ctx.upscalers.find(request.hr_upscaler) is None:
        errors.append(FieldError("hr_upscaler", f"unknown upscaler {request.hr_upscaler!r}; GET /sdapi/v1/upscalers "
                                                "and /sdapi/v1/latent-upscale-modes list them"))
    current = ctx.models.current()
    for name in ("hr_checkpoint_name", "refiner_checkpoint"):
        value = getattr(request, name)
        info = ctx.models.find(value) if value else None
        if value and info is None:
            errors.append(FieldError(name, f"no checkpoint matches {value!r}; GET /sdapi/v1/sd-models lists them"))
        elif info is not None and current is not None:
            problem = _latent_mismatch(ctx, info, current)
            if problem:
                errors.append(FieldError(name, problem))
    return errors


def _latent_mismatch(ctx, info, current) -> str | None:
    """Why a second checkpoint cannot continue the current model's latents (header probe only), or None."""
    from webui.generation.hires import latent_family
    from webui.models.probe import probe_checkpoint

    try:
        arch = probe_checkpoint(info.filename, configs_dir=ctx.paths.configs_dir).arch
    except Exception:  # an unreadable file fails the job later with the loader's own message
        return None
    if latent_family(arch) == latent_family(current.arch):
        return None
    return f"{info.title} is a {arch} model; it cannot continue the latents of {current.info.title} ({current.arch})"



def _check_eta(body: Txt2ImgRequest, sampler_name: str) -> list[FieldError]:
    """eta only matters to DDIM (default 0) and ancestral/SDE samplers (default 1), as in A1111."""
    if body.eta is None:
        return []
    spec = samplers.get_sampler(sampler_name)
    if spec.name == "DDIM" and body.eta != 0:
        return [FieldError("eta", f"DDIM runs with eta 0 here; got {body.eta:g}")]
    if spec.stochastic and body.eta != 1:
        return [FieldError("eta", f"{spec.name} runs with eta 1 here; got {body.eta:g}")]
    return []


def _from_infotext(body: Txt2ImgRequest) -> dict[str, Any]:
    """A1111's `infotext` field: its values fill only the fields the client did not set."""
    if not body.infotext:
        return {}
    fields = infotext_to_request_fields(parse_infotext(body.infotext))
    explicit = body.model_fields_set
    if "sampler_name" in explicit or "sampler_index" in explicit:
        fields.pop("sampler_name", None)
        fields.pop("scheduler", None)
    if "CLIP_stop_at_last_layers" in (body.override_settings or {}):
        fields.pop("clip_skip", None)
    return {k: v for k, v in fields.items() if k not in explicit}


def _overrides(body: Txt2ImgRequest, ctx, errors: list[FieldError], ignored: list[str]) -> tuple[dict, str | None]:
    """Check override_settings: our settings are validated, A1111-only ones ignored or refused."""
    raw = body.override_settings or {}
    kept: dict[str, Any] = {}
    checkpoint = None
    for key, value in raw.items():
        name = f"override_settings.{key}"
        if key == "sd_model_checkpoint":
            if value in (None, ""):
                continue
            info = ctx.models.find(str(value))
            if info is None:
                errors.append(FieldError(name, f"no checkpoint matches {value!r}; GET /sdapi/v1/sd-models lists them"))
            else:
                checkpoint = str(info.filename)
            continue
        option = ctx.settings.options.get(key)
        if option is not None:
            try:
                kept[key] = option.check(value)
            except SettingsError as exc:
                errors.append(FieldError(name, str(exc)))
            else:  # hardening: an output folder a request sets stays inside the data dir (docs/security.md)
                problems = api_output_dir_problems(ctx, {key: kept[key]}, "override_settings.")
                errors += [FieldError(p["field"], p["message"]) for p in problems]
            if key == "sd_vae" and (problem := check_vae_override(ctx, value)):
                errors.append(FieldError(name, problem))
        elif key in REFUSED_OVERRIDES:
            if value not in REFUSED_OVERRIDES[key]:
                errors.append(FieldError(name, f"not supported here unless {' or '.join(map(repr, REFUSED_OVERRIDES[key][:1]))}"
                                               f", got {value!r}"))
        else:
            ignored.append(name)
    return kept, checkpoint


def plan_txt2img(body: Txt2ImgRequest, ctx) -> Plan:
    """Validate an A1111 txt2img body into a Plan, or raise ApiError(422) naming every bad field."""
    return plan_request(body, ctx)


def plan_request(body, ctx, extra: dict[str, Any] | None = None, errors: list[FieldError] | None = None,
                 used: tuple[str, ...] = (), what: str = "txt2img") -> Plan:
    """Validate a txt2img or img2img body into a Plan, or raise ApiError(422) naming every bad field.

    ``extra``: request fields the caller already decoded (img2img's images and mask fields);
    ``errors``: the caller's own field errors, reported with the rest; ``used``: IGNORED_FIELDS
    names that the caller's mode does use (img2img's denoising_strength).
    """
    errors = list(errors or []) + _refusals(body)
    fields = type(body).model_fields
    unused = IGNORED_FIELDS + (HIRES_FIELDS if not getattr(body, "enable_hr", False) else ())
    ignored = [name for name in unused if name in fields and name not in used
               and getattr(body, name) != fields[name].get_default(call_default_factory=True)]
    ignored += [f"{key} (unknown field)" for key in (body.model_extra or {})]
    overrides, checkpoint = _overrides(body, ctx, errors, ignored)

    data: dict[str, Any] = {
        "prompt": body.prompt, "negative_prompt": body.negative_prompt, "styles": body.styles or [],
        "seed": body.seed, "subseed": body.subseed,
        "subseed_strength": 0.0 if body.subseed_strength is None else body.subseed_strength,
        "sampler_name": body.sampler_name or body.sampler_index,  # A1111: sampler_name or the legacy index
        "scheduler": body.scheduler, "batch_size": body.batch_size, "n_iter": body.n_iter, "steps": body.steps,
        "cfg_scale": body.cfg_scale, "width": body.width, "height": body.height,
        "save_images": body.save_images, "tiling": bool(body.tiling),
        "seed_resize_from_w": -1 if body.seed_resize_from_w is None else body.seed_resize_from_w,
        "seed_resize_from_h": -1 if body.seed_resize_from_h is None else body.seed_resize_from_h,
    }
    data.update(_hires_fields(body))
    data.update(extra or {})
    data.update(_from_infotext(body))
    data["controlnet_units"] = controlnet_api.request_units(body.alwayson_scripts, ctx, errors)
    # Extensions' script_name/script_args and alwayson_scripts (webui/api/scripts.py), per tab.
    scripts, script_errors = script_fields(getattr(ctx, "extensions", None), body.script_name, body.script_args,
                                           body.alwayson_scripts, tab=what)
    data.update(scripts)
    errors.extend(script_errors)
    plan = Plan(request=GenerationRequest(), body=body, ignored=ignored)
    if checkpoint is not None:
        if body.override_settings_restore_afterwards:
            overrides["sd_model_checkpoint"] = checkpoint  # the job runner swaps, generates, swaps back
        else:
            plan.checkpoint_first = checkpoint
    if not body.override_settings_restore_afterwards:
        plan.persist_settings = {k: v for k, v in overrides.items() if k != "sd_model_checkpoint"}
    data["override_settings"] = overrides

    try:
        request = GenerationRequest.from_dict(data)[0].validate()
    except RequestError as exc:
        errors.extend(exc.errors)
        request = None
    if request is not None:
        errors.extend(_check_eta(body, request.sampler_name))
        errors.extend(ctx.security.budget.problems(request))  # hardening: before any checkpoint swap
        errors.extend(_hires_problems(request, ctx))
        unknown = [s for s in request.styles if s not in ctx.styles]
        if unknown:
            errors.append(FieldError("styles", f"unknown style(s): {', '.join(unknown)}; "
                                               "GET /sdapi/v1/prompt-styles lists them"))
    if errors:
        detail = RequestError(errors).as_dicts()
        raise ApiError(422, "; ".join(f"{d['field']}: {d['message']}" for d in detail), detail)
    if ignored:
        log.warning("%s: ignoring fields not implemented here (no effect on the image): %s", what,
                    ", ".join(ignored))
    plan.request = request
    return plan


def encode_png(image: Image.Image, infotext: str | None) -> str:
    """base64 PNG with the A1111 'parameters' chunk, as A1111's API returns images."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=png_info(infotext))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _setting(request: GenerationRequest, ctx, key: str) -> Any:
    overrides = request.override_settings or {}
    return overrides[key] if key in overrides else ctx.settings.get(key)


def info_dict(plan: Plan, result: GenerationResult, job, ctx) -> dict[str, Any]:
    """A1111's Processed.js() fields for one finished job, plus our job id/seq."""
    req, body = result.request, plan.body
    first = parse_infotext(result.infotexts[0]) if result.infotexts else {}
    model = ctx.models.current()
    clip_skip = req.clip_skip if req.clip_skip is not None else _setting(req, ctx, "CLIP_stop_at_last_layers")
    started = job.started_at or job.submitted_at
    return {
        "prompt": result.prompts[0] if result.prompts else req.prompt,
        "all_prompts": result.prompts,
        "negative_prompt": result.negative_prompts[0] if result.negative_prompts else req.negative_prompt,
        "all_negative_prompts": result.negative_prompts,
        "seed": result.seeds[0] if result.seeds else req.seed,
        "all_seeds": result.seeds,
        "subseed": result.subseeds[0] if result.subseeds else req.subseed,
        "all_subseeds": result.subseeds,
        "subseed_strength": req.subseed_strength,
        "width": req.width,
        "height": req.height,
        "sampler_name": req.sampler_name,
        "cfg_scale": req.cfg_scale,
        "steps": req.steps,
        "batch_size": req.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": first.get("Model") or (model.info.model_name if model else None),
        "sd_model_hash": first.get("Model hash") or (model.info.shorthash if model else None),
        "sd_vae_name": first.get("VAE"),
        "sd_vae_hash": first.get("VAE hash"),
        "seed_resize_from_w": body.seed_resize_from_w if body.seed_resize_from_w is not None else -1,
        "seed_resize_from_h": body.seed_resize_from_h if body.seed_resize_from_h is not None else -1,
        "denoising_strength": req.denoising_strength if req.mode != "txt2img" or req.enable_hr else body.denoising_strength,
        "extra_generation_params": {k: v for k, v in first.items() if k not in _STANDARD_INFOTEXT_KEYS},
        "index_of_first_image": 0,  # no grid in API results: A1111 adds one only when saving grids
        "infotexts": result.infotexts,
        "styles": req.styles,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(started)),
        "clip_skip": clip_skip,
        "is_using_inpainting_conditioning": "Conditional mask weight" in first,
        "version": ctx.core.version,
        # Ours, not A1111's: which queue job made these images, and whether it was interrupted.
        "job_id": job.id,
        "job_seq": job.seq,
        "interrupted": result.interrupted,
        # A1111's p.comment() lines: networks not found, refused or of another base model.
        "comments": "".join(f"{c}\n" for c in result.comments),
    }


def response_dict(plan: Plan, result: GenerationResult, job, ctx, parameters: dict | None = None) -> dict[str, Any]:
    """The A1111 txt2img/img2img response body: images, echoed parameters, info as a JSON string."""
    write_info = bool(_setting(result.request, ctx, "enable_pnginfo"))
    images = [encode_png(image, text if write_info else None)
              for image, text in zip(result.images, result.infotexts)] if plan.body.send_images else []
    if plan.body.send_images:
        images += controlnet_api.detected_map_images(result, ctx)  # after the images, as sd-webui-controlnet
    info = info_dict(plan, result, job, ctx)
    if result.comments:
        info["comments"] = "\n".join(result.comments)  # A1111 puts notes such as "mask is blank" here
    return {"images": images, "parameters": plan.body.model_dump(mode="json") if parameters is None else parameters,
            "info": json.dumps(info, ensure_ascii=False)}
