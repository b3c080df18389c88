"""The one request type every entry point builds, and the result the core returns.

Field names and defaults are A1111's (``/sdapi/v1/txt2img`` and ``/img2img`` payload names,
processing defaults), so an A1111 client's JSON maps straight onto ``GenerationRequest.from_dict``.
img2img and inpaint are modes of this one type (``mode``), not other types; their fields are
checked in ``image_fields``. Features of later issues (hires fix, ControlNet units, scripts)
add their fields here when they land.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from webui.generation import samplers
from webui.generation.seeds import MAX_SEED
from webui.models.networks.tags import check_prompt_tags

DEFAULT_SAMPLER = "DPM++ 2M"  # A1111 1.10's first (default) sampler
DEFAULT_SCHEDULER = samplers.AUTOMATIC


@dataclass(frozen=True)
class FieldError:
    """One bad request field and what is wrong with it, in words for the user."""

    field: str
    message: str


class RequestError(ValueError):
    """A request failed validation; ``errors`` has one entry per bad field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in self.errors))

    def as_dicts(self) -> list[dict[str, str]]:
        """The errors as JSON-ready dicts (for the API's 4xx body)."""
        return [{"field": e.field, "message": e.message} for e in self.errors]


@dataclass
class GenerationRequest:
    """A txt2img, img2img or inpaint request with A1111 field names and defaults."""

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = field(default_factory=list)
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    sampler_name: str = DEFAULT_SAMPLER
    scheduler: str = DEFAULT_SCHEDULER
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    batch_size: int = 1
    n_iter: int = 1
    clip_skip: int | None = None  # None: the CLIP_stop_at_last_layers setting (A1111's API has no field)
    override_settings: dict[str, Any] = field(default_factory=dict)
    save_images: bool = True  # the UI saves; A1111's API defaults to False and sets this explicitly
    # Extensions (checked against the loaded extensions by ExtensionHost, not here): A1111's names.
    script_name: str | None = None  # a selectable script (X/Y/Z plot, ...) that runs the whole job
    script_args: dict[str, Any] | list = field(default_factory=dict)  # named (or A1111 positional) args
    alwayson_scripts: dict[str, Any] = field(default_factory=dict)  # {panel title: {"args": [...] | {...}}}
    seed_resize_from_w: int = -1  # A1111's "Resize seed from width/height"; -1 or 0: off
    seed_resize_from_h: int = -1
    tiling: bool = False  # seamless tiles: circular padding in the UNet and VAE
    # --- img2img / inpaint (A1111's StableDiffusionProcessingImg2Img fields and defaults)
    mode: str = "txt2img"  # txt2img | img2img | inpaint
    init_images: list[Image.Image] = field(default_factory=list)
    resize_mode: int | str = 0  # 0 Just resize, 1 Crop and resize, 2 Resize and fill, 3 latent upscale
    scale_by: float | None = None  # UI "Resize by": width/height from the first init image
    denoising_strength: float = 0.75
    mask: Image.Image | None = None  # white (or transparent in an RGBA mask) = repaint
    mask_blur: int | None = None  # when given, sets mask_blur_x and mask_blur_y (A1111)
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_round: bool = True
    inpainting_fill: int | str = 0  # 0 fill, 1 original, 2 latent noise, 3 latent nothing
    inpaint_full_res: bool | int | str = True  # False "Whole picture", True "Only masked"
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int | str = 0  # 0 Inpaint masked, 1 Inpaint not masked
    initial_noise_multiplier: float = 1.0
    latent_mask: Image.Image | None = None  # outpainting: a tighter mask for the latent blend than for the overlay
    # --- hires fix and refiner (A1111's txt2img fields; empty names mean "same as the first pass")
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str = "Latent"
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str = ""
    hr_sampler_name: str = ""
    hr_scheduler: str = ""
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    refiner_checkpoint: str = ""
    refiner_switch_at: float = 0.8
    soft_inpainting: Any = None  # A1111's soft inpainting: true, an object of its six settings, or its args list
    # ControlNet units (webui.generation.controlnet.ControlNetUnit, or sd-webui-controlnet unit dicts)
    controlnet_units: list[Any] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> tuple["GenerationRequest", dict[str, Any]]:
        """Build an unvalidated request from a JSON-like dict.

        Returns ``(request, unknown)`` where ``unknown`` holds the keys this
        request type does not have, so the API can warn about them. A1111's legacy
        ``sampler_index`` is used as the sampler when ``sampler_name`` is absent.
        """
        if not isinstance(data, dict):
            raise RequestError([FieldError("request", f"must be a JSON object, got {type(data).__name__}")])
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: _copy(v) for k, v in data.items() if k in names}
        unknown = {k: v for k, v in data.items() if k not in names}
        if "sampler_name" not in known and isinstance(unknown.get("sampler_index"), str):
            known["sampler_name"] = unknown.pop("sampler_index")
        return cls(**known), unknown

    def validate(self) -> "GenerationRequest":
        """Return a checked, normalised copy or raise RequestError listing every bad field.

        Numbers given as numeric strings or whole floats are converted; an old
        combined sampler name ("DPM++ 2M Karras") is split into sampler and
        schedule. Styles are applied later by the core.
        """
        errors: list[FieldError] = []
        out: dict[str, Any] = {}

        for name in ("prompt", "negative_prompt"):
            value = getattr(self, name)
            if value is None:
                value = ""
            if not isinstance(value, str):
                errors.append(FieldError(name, f"must be text, got {_show(value)}"))
            out[name] = value

        if isinstance(out["prompt"], str):
            tag_problem = check_prompt_tags(out["prompt"])  # <lora:name:weight> with a weight that is no number
            if tag_problem:
                errors.append(FieldError("prompt", tag_problem))

        styles = [] if self.styles is None else self.styles
        if not isinstance(styles, (list, tuple)) or not all(isinstance(s, str) for s in styles):
            errors.append(FieldError("styles", f"must be a list of style names, got {_show(self.styles)}"))
        out["styles"] = list(styles) if isinstance(styles, (list, tuple)) else styles

        for name, low, high in (("steps", 1, 150), ("batch_size", 1, 8), ("n_iter", 1, 100), ("clip_skip", 1, 12)):
            if name == "clip_skip" and self.clip_skip is None:
                continue
            out[name] = _check_int(name, getattr(self, name), low, high, errors)

        if not isinstance(self.save_images, bool):
            errors.append(FieldError("save_images", f"must be true or false, got {_show(self.save_images)}"))
        if not isinstance(self.tiling, bool):
            errors.append(FieldError("tiling", f"must be true or false, got {_show(self.tiling)}"))
        for name in ("seed_resize_from_w", "seed_resize_from_h"):
            out[name] = _check_int(name, -1 if getattr(self, name) is None else getattr(self, name), -1, 4096, errors)

        from webui.generation.image_fields import validate_image_fields

        validate_image_fields(self, out, errors)  # may set width/height (scale_by) and batch_size
        from webui.generation.hires_fields import validate_hires_fields


        for name in ("width", "height"):
            raw = out.get(name, getattr(self, name))
            value = _to_int(raw)
            if isinstance(value, bool) or not isinstance(value, int) or not 64 <= value <= 4096 or value % 8:
                errors.append(FieldError(name, f"must be a multiple of 8 from 64 to 4096, got {_show(raw)}"))
            out[name] = value

        for name in ("seed", "subseed"):
            value = getattr(self, name)
            value = -1 if value is None or value == "" else value
            value = _to_int(value)
            if not isinstance(value, int) or not (value == -1 or 0 <= value <= MAX_SEED):
                errors.append(FieldError(name, f"must be -1 (random) or a whole number from 0 to {MAX_SEED}, "
                                               f"got {_show(getattr(self, name))}"))
            out[name] = value

        out["cfg_scale"] = _check_float("cfg_scale", self.cfg_scale, 1.0, 30.0, errors)
        out["subseed_strength"] = _check_float("subseed_strength", self.subseed_strength, 0.0, 1.0, errors)

        out["sampler_name"], out["scheduler"] = _check_sampler(self.sampler_name, self.scheduler, errors)
        validate_hires_fields(self, out, errors)  # after width/height: checks the hires size

        if not isinstance(self.override_settings, dict):
            errors.append(FieldError("override_settings",
                                     f"must be an object of setting names to values, got {_show(self.override_settings)}"))
        out["override_settings"] = dict(self.override_settings) if isinstance(self.override_settings, dict) else {}

        from webui.generation.controlnet import check_units

        out["controlnet_units"] = check_units(self.controlnet_units, errors)
        if self.script_name is not None and not isinstance(self.script_name, str):
            errors.append(FieldError("script_name", f"must be a script name, got {_show(self.script_name)}"))
        if not isinstance(self.script_args, (dict, list)):
            errors.append(FieldError("script_args", f"must be a list or an object, got {_show(self.script_args)}"))
        if not isinstance(self.alwayson_scripts, dict):
            errors.append(FieldError("alwayson_scripts", f"must be an object of script names, "
                                                         f"got {_show(self.alwayson_scripts)}"))

        if errors:
            raise RequestError(errors)
        return dataclasses.replace(self, **out)


@dataclass
class GenerationResult:
    """What the core hands back: one entry per image in every list."""

    images: list[Image.Image]
    infotexts: list[str]
    seeds: list[int]
    subseeds: list[int]
    prompts: list[str]
    negative_prompts: list[str]
    timings: dict[str, float]
    request: GenerationRequest
    interrupted: bool = False
    paths: list[Path] = field(default_factory=list)  # saved PNGs (empty when not saved)
    comments: list[str] = field(default_factory=list)  # notes for the user (A1111's p.comment): networks not found, an empty mask ran as img2img
    extra_images: list[Image.Image] = field(default_factory=list)  # from features: ControlNet's detected maps
    # Indexes into ``images`` of partial images a Skip left (A1111 shows them; saved only with
    # the "save_incomplete_images" setting).
    incomplete: list[int] = field(default_factory=list)


def _copy(value: Any) -> Any:
    # Callers' lists and dicts must not be shared with the request (images themselves are shared, not copied).
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _to_int(value: Any) -> Any:
    """An int for ints, whole floats and integer strings; the value unchanged otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return value
    return value


def _to_float(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def _check_int(name: str, raw: Any, low: int, high: int, errors: list[FieldError]) -> Any:
    value = _to_int(raw)
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(name, f"must be a whole number from {low} to {high}, got {_show(raw)}"))
    elif not low <= value <= high:
        errors.append(FieldError(name, f"must be from {low} to {high}, got {value}"))
    return value


def _check_float(name: str, raw: Any, low: float, high: float, errors: list[FieldError]) -> Any:
    value = _to_float(raw)
    if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value):
        errors.append(FieldError(name, f"must be a number from {low:g} to {high:g}, got {_show(raw)}"))
    elif not low <= value <= high:
        errors.append(FieldError(name, f"must be from {low:g} to {high:g}, got {value:g}"))
    return value


def _check_sampler(sampler: Any, scheduler: Any, errors: list[FieldError]) -> tuple[Any, Any]:
    if not isinstance(sampler, str):
        errors.append(FieldError("sampler_name", f"must be a sampler name, got {_show(sampler)}. "
                                                 f"Valid samplers: {', '.join(samplers.sampler_names())}"))
        return sampler, scheduler
    if scheduler is not None and not isinstance(scheduler, str):
        errors.append(FieldError("scheduler", f"must be a schedule type name, got {_show(scheduler)}. "
                                              f"Valid schedule types: {', '.join(samplers.SCHEDULES)}"))
        return sampler, scheduler
    try:
        name, schedule = samplers.normalize_sampler(sampler, scheduler)
    except ValueError as exc:
        # normalize_sampler says which part is wrong; attribute it to that field.
        bad_schedule = str(exc).startswith(("Unknown schedule", "Schedule type"))
        errors.append(FieldError("scheduler" if bad_schedule else "sampler_name", str(exc)))
        return sampler, scheduler
    spec = samplers.get_sampler(name)
    if not spec.available:
        errors.append(FieldError("sampler_name", f"sampler {name!r} is not available here: {spec.reason}. "
                                                 f"Available samplers: {', '.join(samplers.sampler_names())}"))
    return name, schedule
