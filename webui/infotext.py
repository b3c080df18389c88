"""Write and read A1111's "parameters" text (infotext), byte for byte in A1111's format.

Layout, as A1111's processing.create_infotext writes it::

    <prompt, possibly several lines>
    Negative prompt: <negative prompt, possibly several lines>   (only when not empty)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, ...

The last line is ``key: value`` pairs joined by ", ". A value holding a comma,
colon or newline is written as a JSON string (A1111's infotext_utils.quote); a
value equal to its key is written as the bare key. Reading follows A1111's
parse_generation_parameters: the last line counts as parameters only when it has
at least three ``key: value`` pairs.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable

from webui.generation import samplers
from webui.generation.request import GenerationRequest

# Our initial noise is drawn on the CPU, which is A1111's "RNG: CPU" setting; writing
# it lets A1111 reproduce our seeds (A1111 assumes GPU noise when the key is absent).
RNG_SOURCE = "CPU"

# One "key: value" pair of the parameters line (same grammar as A1111's re_param).
_PARAM = re.compile(
    r"""\s*
    (\w[\w \-/]+)           # key: a word character, then words, spaces, '-' or '/'
    :\s*
    ("(?:\\.|[^\\"])+"      # value: a JSON-quoted string with escapes ...
     |[^,]*)                # ... or everything up to the next comma
    (?:,|$)""",
    re.VERBOSE,
)
_IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"


def quote(value: Any) -> Any:
    """JSON-quote a value that holds a comma, colon or newline; others pass unchanged."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return value
    return json.dumps(value, ensure_ascii=False)


def unquote(text: str) -> str:
    """Undo ``quote`` for a value read back; text that is not valid JSON stays as it is."""
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def format_number(value: Any) -> Any:
    """Whole floats as integers (CFG 7, not 7.0), as A1111's UI writes them; others unchanged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def build_infotext(
    request: GenerationRequest,
    seed: int,
    subseed: int,
    model_name: str | None,
    model_hash: str | None,
    prompt: str,
    negative_prompt: str,
    extra: dict[str, Any] | None = None,
    version: str | None = None,
    *,
    vae_name: str | None = None,
    vae_hash: str | None = None,
) -> str:
    """The infotext of one image: its own prompt, seeds and the request's settings.

    ``extra`` entries go where A1111 puts ``extra_generation_params`` (after the
    standard keys, before Version); an extra key that is already a standard key
    replaces its value in place, as in A1111. None values are left out.
    """
    sampler, schedule = samplers.normalize_sampler(request.sampler_name, request.scheduler)
    varied = request.subseed_strength != 0
    params: dict[str, Any] = {
        "Steps": request.steps,
        "Sampler": sampler,
        "Schedule type": samplers.effective_schedule(sampler, schedule),
        "CFG scale": request.cfg_scale,
        "Seed": seed,
        "Size": f"{request.width}x{request.height}",
        "Model hash": model_hash or None,
        "Model": model_name or None,
        "VAE hash": vae_hash or None,
        "VAE": vae_name or None,
        "Variation seed": subseed if varied else None,
        "Variation seed strength": request.subseed_strength if varied else None,
        "Seed resize from": (f"{request.seed_resize_from_w}x{request.seed_resize_from_h}"
                             if request.seed_resize_from_w > 0 and request.seed_resize_from_h > 0 else None),
        # Slots where A1111 puts these two when an extra sets them (img2img / 9-channel inpainting models).
        "Denoising strength": None,
        "Conditional mask weight": None,
        "Clip skip": request.clip_skip if (request.clip_skip or 1) > 1 else None,
        "Tiling": "True" if request.tiling else None,
        "RNG": RNG_SOURCE,
    }
    params.update(extra or {})
    params["Version"] = version or None

    pairs = []
    for key, value in params.items():
        if value is None:
            continue
        value = format_number(value)
        pairs.append(key if key == value else f"{key}: {quote(value)}")
    negative = f"\n{_NEGATIVE} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{', '.join(pairs)}".strip()


def parse_infotext(text: str) -> dict[str, str]:
    """Read an infotext into {"Prompt", "Negative prompt", key: value, ...}.

    Values stay strings, unquoted; an ``AxB`` value also gives ``key-1`` and
    ``key-2`` ("Size-1" is the width) instead of the key itself. Unknown keys are
    kept. Unlike A1111 this adds no UI defaults; ``infotext_to_request_fields``
    fills the ones a request needs.
    """
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""

    prompt = negative = ""
    in_negative = False
    for line in lines:
        line = line.strip()
        # Like A1111, every line starting with the marker loses it, and empty text
        # gains no leading newline.
        if line.startswith(_NEGATIVE):
            in_negative = True
            line = line[len(_NEGATIVE):].strip()
        if in_negative:
            negative = f"{negative}\n{line}" if negative else line
        else:
            prompt = f"{prompt}\n{line}" if prompt else line

    result: dict[str, str] = {"Prompt": prompt, "Negative prompt": negative}
    for key, value in _PARAM.findall(last):
        if value[:1] == '"' and value[-1:] == '"':
            value = unquote(value)
        size = _IMAGE_SIZE.match(value)
        if size is not None:
            result[f"{key}-1"] = size.group(1)
            result[f"{key}-2"] = size.group(2)
        else:
            result[key] = value
    return result


# infotext key -> (GenerationRequest field, converter). Keys whose field the
# request type does not have yet (later issues) are skipped automatically.
_FIELD_MAP: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("Steps", "steps", int),
    ("CFG scale", "cfg_scale", float),
    ("Seed", "seed", int),
    ("Size-1", "width", int),
    ("Size-2", "height", int),
    ("Variation seed", "subseed", int),
    ("Variation seed strength", "subseed_strength", float),
    ("Seed resize from-1", "seed_resize_from_w", int),
    ("Seed resize from-2", "seed_resize_from_h", int),
    ("Tiling", "tiling", lambda value: value == "True"),
    ("Clip skip", "clip_skip", int),
    ("Denoising strength", "denoising_strength", float),
    ("Mask blur", "mask_blur_x", int),
    ("Mask blur", "mask_blur_y", int),
    ("Masked area padding", "inpaint_full_res_padding", int),
    ("Noise multiplier", "initial_noise_multiplier", float),
    ("Hires upscale", "hr_scale", float),
    ("Hires resize-1", "hr_resize_x", int),
    ("Hires resize-2", "hr_resize_y", int),
    ("Hires steps", "hr_second_pass_steps", int),
    ("Hires upscaler", "hr_upscaler", str),
    ("Hires sampler", "hr_sampler_name", str),
    ("Hires schedule type", "hr_scheduler", str),
    ("Hires prompt", "hr_prompt", str),
    ("Hires negative prompt", "hr_negative_prompt", str),
    ("Hires checkpoint", "hr_checkpoint_name", str),
    ("Refiner", "refiner_checkpoint", str),
    ("Refiner switch at", "refiner_switch_at", float),
)

# infotext key -> (field, {written value: field value}) for the img2img choice keys.
_CHOICE_MAP: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("Masked content", "inpainting_fill", {"fill": 0, "original": 1, "latent noise": 2, "latent nothing": 3}),
    ("Inpaint area", "inpaint_full_res", {"Whole picture": False, "Only masked": True}),
    ("Mask mode", "inpainting_mask_invert", {"Inpaint masked": 0, "Inpaint not masked": 1}),
)


def _convert(value: Any, convert: Callable[[str], Any]) -> Any:
    # A value that does not convert is passed on as text so validate() names it.
    try:
        return convert(value)
    except (TypeError, ValueError):
        return value


def infotext_to_request_fields(params: dict[str, Any]) -> dict[str, Any]:
    """Map parsed infotext to GenerationRequest field names (for "send to txt2img" and PNG Info).

    Fills A1111's paste defaults: Clip skip 1 and no variation when absent. Old
    combined sampler names are split, and a schedule equal to the sampler's own
    default becomes "Automatic" as A1111's paste does. Model, VAE and unknown
    keys are not request fields and stay in ``params`` for the caller.
    """
    names = {f.name for f in dataclasses.fields(GenerationRequest)}
    fields: dict[str, Any] = {}
    if "Prompt" in params:
        fields["prompt"] = params["Prompt"]
    if "Negative prompt" in params:
        fields["negative_prompt"] = params["Negative prompt"]
    for key, name, convert in _FIELD_MAP:
        if key in params and name in names:
            fields[name] = _convert(params[key], convert)
    for key, name, values in _CHOICE_MAP:
        if key in params and name in names:
            fields[name] = values.get(params[key], params[key])
    # A1111: the Hires. fix box is ticked when the text has a denoising strength and a hires key.
    if "Denoising strength" in params and any(k in params for k in ("Hires upscale", "Hires upscaler",
                                                                       "Hires resize-1")):
        fields["enable_hr"] = True
    fields.setdefault("clip_skip", 1)
    fields.setdefault("subseed_strength", 0.0)
    if params.get("Soft inpainting enabled") == "True" and "soft_inpainting" in names:
        from webui.generation.soft_inpaint import INFOTEXT_KEYS

        fields["soft_inpainting"] = {name: _convert(params[key], float) for name, key in INFOTEXT_KEYS.items()
                                     if key in params}

    if "Sampler" in params:
        sampler, schedule = params["Sampler"], params.get("Schedule type")
        try:
            sampler, schedule = samplers.normalize_sampler(sampler, schedule)
            if schedule == samplers.get_sampler(sampler).default_schedule:
                schedule = samplers.AUTOMATIC
        except ValueError:
            pass  # kept as written; GenerationRequest.validate reports it
        fields["sampler_name"] = sampler
        fields["scheduler"] = schedule if schedule else samplers.AUTOMATIC
    return fields
