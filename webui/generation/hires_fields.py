"""The hires fix and refiner fields of GenerationRequest: A1111's names, defaults and checks.

A1111 words: the first pass is drawn at width x height; the second ("hires") pass redraws it at
``hr_scale`` times that, or at ``hr_resize_x`` x ``hr_resize_y`` (one of them 0 keeps the aspect
ratio; both given covers the box and crops). ``hr_second_pass_steps`` 0 means "as many as the
first pass"; empty sampler / schedule / prompt / checkpoint names mean "the same as the first pass".
"""
from __future__ import annotations

from typing import Any

MAX_HIRES_SIDE = 8192
SAME_CHECKPOINT = ("", "Use same checkpoint")
SAME_SAMPLER = ("", "Use same sampler")
SAME_SCHEDULER = ("", "Use same scheduler")
NO_REFINER = ("", "None")


def target_size(width: int, height: int, hr_scale: float, hr_resize_x: int, hr_resize_y: int
                ) -> tuple[int, int, int, int]:
    """(upscaled width, height, excess_x, excess_y): A1111's calculate_target_resolution.

    With both resize sides given the first pass is scaled to cover the box, and the latents are
    then cropped by the excess (in pixels; A1111 divides it by the latent factor), half on each
    side; otherwise the excess is 0.
    """
    if not hr_resize_x and not hr_resize_y:
        return int(width * hr_scale), int(height * hr_scale), 0, 0
    if not hr_resize_y:
        return hr_resize_x, hr_resize_x * height // width, 0, 0
    if not hr_resize_x:
        return hr_resize_y * width // height, hr_resize_y, 0, 0
    src_ratio, dst_ratio = width / height, hr_resize_x / hr_resize_y
    if src_ratio < dst_ratio:
        up_w, up_h = hr_resize_x, hr_resize_x * height // width
    else:
        up_w, up_h = hr_resize_y * width // height, hr_resize_y
    return up_w, up_h, up_w - hr_resize_x, up_h - hr_resize_y


def validate_hires_fields(req, out: dict[str, Any], errors: list) -> None:
    """Check the hires / refiner fields of ``req`` into ``out``, appending FieldErrors (A1111's names)."""
    from webui.generation.request import FieldError, _check_float, _check_int, _check_sampler, _show

    if not isinstance(req.enable_hr, bool):
        errors.append(FieldError("enable_hr", f"must be true or false, got {_show(req.enable_hr)}"))
    for name in ("hr_prompt", "hr_negative_prompt", "hr_upscaler", "hr_checkpoint_name", "hr_sampler_name",
                 "hr_scheduler", "refiner_checkpoint"):
        value = getattr(req, name)
        if value is not None and not isinstance(value, str):
            errors.append(FieldError(name, f"must be text, got {_show(value)}"))
        out[name] = value or ""
    out["refiner_switch_at"] = _check_float("refiner_switch_at", req.refiner_switch_at, 0.0, 1.0, errors)
    sampler = "" if out["hr_sampler_name"] in SAME_SAMPLER else out["hr_sampler_name"]
    schedule = "" if out["hr_scheduler"] in SAME_SCHEDULER else out["hr_scheduler"]
    out["hr_sampler_name"], out["hr_scheduler"] = sampler, schedule
    if isinstance(sampler, str) and isinstance(schedule, str) and (sampler or schedule):
        # A hires schedule type alone applies to the first pass's sampler (A1111's "Use same sampler").
        found: list = []
        name, checked = _check_sampler(sampler or out.get("sampler_name", req.sampler_name), schedule or None, found)
        errors.extend(FieldError(f"hr_{e.field}", e.message) for e in found)
        out["hr_sampler_name"] = name if sampler else ""
        out["hr_scheduler"] = checked
    if out["hr_checkpoint_name"] in SAME_CHECKPOINT:
        out["hr_checkpoint_name"] = ""
    if out["refiner_checkpoint"] in NO_REFINER:
        out["refiner_checkpoint"] = ""
    if not req.enable_hr:
        return
    if req.mode != "txt2img":
        errors.append(FieldError("enable_hr", "hires fix is a txt2img option; img2img already redraws an image"))
    count = len(errors)
    scale = _check_float("hr_scale", req.hr_scale, 0.0, 8.0, errors)
    if len(errors) == count and scale <= 0:
        errors.append(FieldError("hr_scale", f"must be above 0, got {scale:g}"))
    scale_ok = len(errors) == count
    out["hr_scale"] = scale
    out["hr_second_pass_steps"] = _check_int("hr_second_pass_steps", req.hr_second_pass_steps, 0, 150, errors)
    for name in ("hr_resize_x", "hr_resize_y"):
        out[name] = _check_int(name, getattr(req, name), 0, MAX_HIRES_SIDE, errors)
    sizes = (out.get("width", req.width), out.get("height", req.height), scale, out["hr_resize_x"], out["hr_resize_y"])
    if scale_ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sizes):
        w, h, *_ = target_size(*sizes)
        if not (64 <= w <= MAX_HIRES_SIDE and 64 <= h <= MAX_HIRES_SIDE):
            field = "hr_scale" if not (out["hr_resize_x"] or out["hr_resize_y"]) else "hr_resize_x"
            errors.append(FieldError(field, f"the hires size would be {w}x{h}; each side must be from 64 to "
                                            f"{MAX_HIRES_SIDE}"))
