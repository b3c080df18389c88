"""A1111's txt2img body -> our GenerationRequest, and our result -> A1111's response.

Policy for A1111 fields we do not implement: a field whose value has no effect here
(its default, or an hires-fix knob while `enable_hr` is false) is accepted and named in
one warning line; a value that would change the image if honoured (`enable_hr: true`,
`restore_faces: true`, a script, ...) is refused with a 422 naming the field, because
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

from webui.api.errors import ApiError
from webui.api.models import Txt2ImgRequest
from webui.api.scripts import script_fields
from webui.generation import samplers
from webui.generation.request import FieldError, GenerationRequest, GenerationResult, RequestError
from webui.images import png_info
from webui.infotext import infotext_to_request_fields, parse_infotext
from webui.settings import SettingsError

log = logging.getLogger(__name__)

# Fields that are ignored (with a warning when not at their default): no effect on the image here.
IGNORED_FIELDS = (
    "do_not_save_samples", "do_not_save_grid",  # A1111's API replaces both with `save_images`
    "denoising_strength",  # only used by hires fix, which is off (enable_hr true is refused)
    "firstphase_width", "firstphase_height", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x",
    "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt",
    "refiner_switch_at",  # no refiner (a refiner_checkpoint is refused)
    "comments", "force_task_id", "disable_extra_networks",
)

# A1111 settings that may arrive in override_settings, are not our settings, and change
# the image unless at these values.
REFUSED_OVERRIDES: dict[str, tuple[Any, ...]] = {
    "eta_noise_seed_delta": (0,),
    "randn_source": ("CPU", "cpu"),  # our initial noise is always drawn on the CPU
}

# Parameters-line keys that have their own place in A1111's info JSON; the rest are "extra".
_STANDARD_INFOTEXT_KEYS = {"Prompt", "Negative prompt", "Steps", "Sampler", "CFG scale", "Seed", "Size-1", "Size-2",
                           "Model hash", "Model", "VAE hash", "VAE", "Variation seed", "Variation seed strength",
                           "Clip skip", "Version"}


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

    if body.enable_hr:
        refuse("enable_hr", "hires fix is not implemented yet; send enable_hr: false")
    if body.restore_faces:
        refuse("restore_faces", "face restoration is not implemented; send restore_faces: false")
    if body.tiling:
        refuse("tiling", "tiling (seamless textures) is not implemented; send tiling: false")
    for name in ("seed_resize_from_w", "seed_resize_from_h"):
        value = getattr(body, name)
        if value is not None and value > 0:
            refuse(name, f"resizing the seed is not implemented; send -1 or 0, got {value}")
    if body.refiner_checkpoint and body.refiner_checkpoint.strip().lower() not in ("", "none"):
        refuse("refiner_checkpoint", "the refiner is not implemented; leave refiner_checkpoint empty")
    if body.firstpass_image:
        refuse("firstpass_image", "a first-pass image needs hires fix, which is not implemented")
    # k-diffusion's noise knobs: their defaults are what our samplers do; other values are not.
    for name, defaults in (("s_min_uncond", (0,)), ("s_churn", (0,)), ("s_tmin", (0,)),
                           ("s_tmax", (0, math.inf)), ("s_noise", (1,))):
        value = getattr(body, name)
        if value is not None and value not in defaults:
            allowed = " or ".join(str(d) for d in defaults)
            refuse(name, f"only the default ({allowed}) is supported, got {value:g}")
    return errors


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
        elif key in REFUSED_OVERRIDES:
            if value not in REFUSED_OVERRIDES[key]:
                errors.append(FieldError(name, f"not supported here unless {' or '.join(map(repr, REFUSED_OVERRIDES[key][:1]))}"
                                               f", got {value!r}"))
        else:
            ignored.append(name)
    return kept, checkpoint


def plan_txt2img(body: Txt2ImgRequest, ctx) -> Plan:
    """Validate an A1111 txt2img body into a Plan, or raise ApiError(422) naming every bad field."""
    errors = _refusals(body)
    ignored = [name for name in IGNORED_FIELDS
               if getattr(body, name) != Txt2ImgRequest.model_fields[name].get_default(call_default_factory=True)]
    ignored += [f"{key} (unknown field)" for key in (body.model_extra or {})]
    overrides, checkpoint = _overrides(body, ctx, errors, ignored)

    data: dict[str, Any] = {
        "prompt": body.prompt, "negative_prompt": body.negative_prompt, "styles": body.styles or [],
        "seed": body.seed, "subseed": body.subseed,
        "subseed_strength": 0.0 if body.subseed_strength is None else body.subseed_strength,
        "sampler_name": body.sampler_name or body.sampler_index,  # A1111: sampler_name or the legacy index
        "scheduler": body.scheduler, "batch_size": body.batch_size, "n_iter": body.n_iter, "steps": body.steps,
        "cfg_scale": body.cfg_scale, "width": body.width, "height": body.height,
        "save_images": body.save_images,
    }
    data.update(_from_infotext(body))
    scripts, script_errors = script_fields(getattr(ctx, "extensions", None), body.script_name, body.script_args, body.alwayson_scripts)
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
        unknown = [s for s in request.styles if s not in ctx.styles]
        if unknown:
            errors.append(FieldError("styles", f"unknown style(s): {', '.join(unknown)}; "
                                               "GET /sdapi/v1/prompt-styles lists them"))
    if errors:
        detail = RequestError(errors).as_dicts()
        raise ApiError(422, "; ".join(f"{d['field']}: {d['message']}" for d in detail), detail)
    if ignored:
        log.warning("txt2img: ignoring fields not implemented here (no effect on the image): %s",
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
        "denoising_strength": body.denoising_strength,
        "extra_generation_params": {k: v for k, v in first.items() if k not in _STANDARD_INFOTEXT_KEYS},
        "index_of_first_image": 0,  # no grid in API results: A1111 adds one only when saving grids
        "infotexts": result.infotexts,
        "styles": req.styles,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(started)),
        "clip_skip": clip_skip,
        "is_using_inpainting_conditioning": False,
        "version": ctx.core.version,
        # Ours, not A1111's: which queue job made these images, and whether it was interrupted.
        "job_id": job.id,
        "job_seq": job.seq,
        "interrupted": result.interrupted,
        "comments": list(getattr(result, "comments", [])),  # notes, e.g. an extension hook that failed (ours)
    }


def response_dict(plan: Plan, result: GenerationResult, job, ctx) -> dict[str, Any]:
    """The A1111 txt2img response body: images, echoed parameters, info as a JSON string."""
    write_info = bool(_setting(result.request, ctx, "enable_pnginfo"))
    images = [encode_png(image, text if write_info else None)
              for image, text in zip(result.images, result.infotexts)] if plan.body.send_images else []
    return {"images": images, "parameters": plan.body.model_dump(mode="json"),
            "info": json.dumps(info_dict(plan, result, job, ctx), ensure_ascii=False)}
