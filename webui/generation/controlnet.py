"""ControlNet units: sd-webui-controlnet's unit fields, their checks, infotext, and control types.

A unit arrives from the API (``alwayson_scripts: {"controlnet": {"args": [unit, ...]}}``, the
extension's names, ints or strings for the enums, base64 images) or from the UI, and is turned
into a checked ``ControlNetUnit``. Running units is ``webui.generation.controlnet_run``.
"""
from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from webui.generation import preprocessors
from webui.generation.request import FieldError

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
RESIZE_ALIASES = {"Inner Fit (Scale to Fit)": "Crop and Resize", "Outer Fit (Shrink to Fit)": "Resize and Fill",
                  "Scale to Fit (Inner Fit)": "Crop and Resize", "Envelope (Outer Fit)": "Resize and Fill",
                  "Just Resize (Latent upscale)": "Just Resize"}
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
# Legacy key names the extension still accepts in API units.
_COMPAT_KEYS = {"guidance": "guidance_end", "lowvram": "low_vram", "input_image": "image"}
# Control type -> the words that pick its models from file names (the extension's filter rule).
CONTROL_TYPES: dict[str, tuple[str, ...]] = {
    "All": (), "Canny": ("canny",), "Depth": ("depth",), "NormalMap": ("normal",),
    "OpenPose": ("openpose", "densepose", "pose"), "MLSD": ("mlsd",), "Lineart": ("lineart",),
    "SoftEdge": ("softedge", "hed", "pidi"), "Scribble/Sketch": ("scribble", "sketch"),
    "Segmentation": ("seg",), "Shuffle": ("shuffle",), "Tile/Blur": ("tile", "blur"), "Inpaint": ("inpaint",),
    "T2I-Adapter": ("t2ia", "t2i_adapter", "t2iadapter", "color"),
}


@dataclass
class ControlNetUnit:
    """One unit, with sd-webui-controlnet's field names and defaults."""

    enabled: bool = True
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    image: np.ndarray | None = None  # RGB(A) uint8; None in img2img: use the img2img input
    mask: np.ndarray | None = None  # uint8 HxW, white = where the unit acts (inpaint_only: what to redraw)
    resize_mode: str = "Crop and Resize"
    low_vram: bool = False
    processor_res: int = -1  # -1: the module's default
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: str = "Balanced"

    @property
    def preprocessor(self) -> preprocessors.Preprocessor:
        return preprocessors.get(self.module)


# ----------------------------------------------------------------------------- images

def decode_image(value: Any, what: str) -> np.ndarray:
    """A control image from what clients send (base64 / data URL / PIL / array) as a uint8 array."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, Image.Image):
        array = np.asarray(value.convert("RGBA" if "A" in value.mode else "RGB"))
    elif isinstance(value, str):
        text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{what} is not an image: not valid base64 (send a base64 PNG/JPEG/WebP)") from None
        try:
            with Image.open(io.BytesIO(raw)) as img:
                img.load()
                array = np.asarray(img.convert("RGBA" if "A" in img.mode else "RGB"))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ValueError(f"{what} is not an image: {len(raw)} bytes that no image format reads "
                             f"({type(exc).__name__})") from None
    else:
        raise ValueError(f"{what} must be a base64 image, got {type(value).__name__}")
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise ValueError(f"{what} is not an 8-bit image (shape {array.shape}, {array.dtype})")
    return array


def mask_from(value: Any, what: str) -> np.ndarray:
    """A mask (any image) as uint8 HxW; alpha wins when present, else the brightest channel."""
    array = decode_image(value, what)
    if array.ndim == 3:
        array = array[:, :, 3] if array.shape[2] == 4 and array[:, :, 3].min() < 255 else array[:, :, :3].max(axis=2)
    return np.ascontiguousarray(array)


# ----------------------------------------------------------------------------- parsing

def _enum(value: Any, choices: tuple[str, ...], aliases: dict[str, str], what: str) -> str:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be one of {', '.join(choices)} (or 0..{len(choices) - 1}), got {value!r}")
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        index = int(value)
        if what == "resize_mode" and index == 3:
            return "Just Resize"
        if 0 <= index < len(choices):
            return choices[index]
    elif isinstance(value, str):
        name = aliases.get(value.strip(), value.strip())
        for choice in choices:
            if name.lower() == choice.lower():
                return choice
        if name.isdigit():
            return _enum(int(name), choices, aliases, what)
    raise ValueError(f"{what} must be one of {', '.join(choices)} (or 0..{len(choices) - 1}), got {value!r}")


def _number(value: Any, what: str, low: float, high: float) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a number from {low:g} to {high:g}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be from {low:g} to {high:g}, got {value:g}")
    return float(value)


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{what} must be true or false, got {value!r}")


def _model_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"model must be a model name, got {value!r}")
    return value


def unit_from_dict(data: Any, where: str) -> tuple[ControlNetUnit | None, list[FieldError]]:
    """Parse one API unit (the extension's keys and aliases); returns (unit, errors)."""
    if data is None:
        return None, []
    if not isinstance(data, dict):
        return None, [FieldError(where, f"must be a ControlNet unit object, got {type(data).__name__}")]
    data = {_COMPAT_KEYS.get(k, k): v for k, v in data.items()}
    errors: list[FieldError] = []
    values: dict[str, Any] = {}

    def attempt(name: str, fn):
        if name not in data or data[name] is None:
            return
        try:
            values[name] = fn(data[name])
        except (ValueError, preprocessors.PreprocessorError) as exc:
            errors.append(FieldError(f"{where}.{name}", str(exc)))

    attempt("enabled", lambda v: _flag(v, "enabled"))
    attempt("module", lambda v: preprocessors.get(str(v)).name)
    attempt("model", _model_name)
    attempt("weight", lambda v: _number(v, "weight", 0.0, 2.0))
    attempt("resize_mode", lambda v: _enum(v, RESIZE_MODES, RESIZE_ALIASES, "resize_mode"))
    attempt("control_mode", lambda v: _enum(v, CONTROL_MODES, {}, "control_mode"))
    for name in ("low_vram", "pixel_perfect"):
        attempt(name, lambda v, n=name: _flag(v, n))
    for name in ("guidance_start", "guidance_end"):
        attempt(name, lambda v, n=name: _number(v, n, 0.0, 1.0))
    for name in ("processor_res", "threshold_a", "threshold_b"):
        attempt(name, lambda v, n=name: _number(v, n, -1e9, 1e9))
    image, mask = data.get("image"), data.get("mask")
    if isinstance(image, dict):  # {"image": ..., "mask": ...}
        image, mask = image.get("image"), image.get("mask", mask)
    elif isinstance(image, (list, tuple)) and len(image) == 2:
        image, mask = image
    if image not in (None, ""):
        try:
            values["image"] = decode_image(image, "image")
        except ValueError as exc:
            errors.append(FieldError(f"{where}.image", str(exc)))
    if mask not in (None, ""):
        try:
            values["mask"] = mask_from(mask, "mask")
        except ValueError as exc:
            errors.append(FieldError(f"{where}.mask", str(exc)))
    unit = replace(ControlNetUnit(), **values)
    if "processor_res" in values:
        unit.processor_res = int(values["processor_res"])
    return unit, errors + check_unit(unit, where)


def check_unit(unit: ControlNetUnit, where: str) -> list[FieldError]:
    """Cross-field checks of an enabled unit: start <= end, sliders in the module's ranges."""
    if not unit.enabled:
        return []
    errors = []
    if unit.guidance_start > unit.guidance_end:
        errors.append(FieldError(f"{where}.guidance_start", f"starting control step {unit.guidance_start:g} is after "
                                                            f"the ending step {unit.guidance_end:g}"))
    try:
        module = preprocessors.get(unit.module)
        if not module.available:
            errors.append(FieldError(f"{where}.module", f"preprocessor {module.name} is unavailable: "
                                                        f"{module.unavailable}"))
        else:
            preprocessors.resolve_params(module, None if unit.pixel_perfect else unit.processor_res,
                                         unit.threshold_a, unit.threshold_b)
    except preprocessors.PreprocessorError as exc:
        errors.append(FieldError(f"{where}.module", str(exc)))
    if unit.model in ("", "None", None):
        errors.append(FieldError(f"{where}.model", "an enabled unit needs a ControlNet model"))
    return errors


def units_from_alwayson(scripts: Any, where: str = "alwayson_scripts.controlnet") -> tuple[list, list[FieldError]]:
    """The enabled units of ``alwayson_scripts`` (``{"controlnet": {"args": [...]}}``); keys are case-blind."""
    if not scripts:
        return [], []
    if not isinstance(scripts, dict):
        return [], [FieldError("alwayson_scripts", "must be an object of script names to {\"args\": [...]}")]
    entry = next((v for k, v in scripts.items() if str(k).lower() == "controlnet"), None)
    if entry is None:
        return [], []
    args = entry.get("args") if isinstance(entry, dict) else entry
    if not isinstance(args, list):
        return [], [FieldError(where, "must be {\"args\": [unit, ...]}")]
    units, errors = [], []
    for i, raw in enumerate(args):
        unit, unit_errors = unit_from_dict(raw, f"{where}.args[{i}]")
        errors += unit_errors
        if unit is not None and unit.enabled:
            units.append(unit)
    return units, errors


def check_units(units: Any, errors: list[FieldError], where: str = "controlnet_units") -> list[ControlNetUnit]:
    """Units of a request (objects or API dicts) checked; bad ones are added to ``errors``."""
    if not units:
        return []
    if not isinstance(units, (list, tuple)):
        errors.append(FieldError(where, f"must be a list of ControlNet units, got {type(units).__name__}"))
        return []
    out = []
    for i, unit in enumerate(units):
        if isinstance(unit, dict):
            unit, unit_errors = unit_from_dict(unit, f"{where}[{i}]")
            errors.extend(unit_errors)
        elif isinstance(unit, ControlNetUnit):
            errors.extend(check_unit(unit, f"{where}[{i}]"))
        elif unit is not None:
            errors.append(FieldError(f"{where}[{i}]", f"must be a ControlNet unit, got {type(unit).__name__}"))
            continue
        if unit is not None and unit.enabled:
            out.append(unit)
    return out


# ----------------------------------------------------------------------------- infotext

_INFOTEXT_FIELDS = ("module", "model", "weight", "resize_mode", "low_vram", "processor_res", "threshold_a",
                    "threshold_b", "guidance_start", "guidance_end", "pixel_perfect", "control_mode")


def _display(name: str) -> str:
    return " ".join(word.capitalize() for word in name.split("_"))


def _value_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def unit_infotext(unit: ControlNetUnit, model_title: str | None = None) -> str:
    """The extension's ``Module: canny, Model: ..., Weight: 1, ...`` text for one unit (-1 sliders left out)."""
    parts = []
    for name in _INFOTEXT_FIELDS:
        value = model_title if name == "model" and model_title else getattr(unit, name)
        if value == -1:
            continue
        text = _value_text(value)
        if "," in text or ":" in text:  # the extension refuses such values rather than quoting them
            continue
        parts.append(f"{_display(name)}: {text}")
    return ", ".join(parts)


def infotext_params(units: list[ControlNetUnit], titles: list[str] | None = None) -> dict[str, str]:
    """``{"ControlNet 0": "...", ...}`` for the infotext's parameters line."""
    titles = titles or [None] * len(units)
    return {f"ControlNet {i}": unit_infotext(unit, title) for i, (unit, title) in enumerate(zip(units, titles))}


def parse_unit_infotext(text: str) -> dict[str, Any]:
    """The fields of one ``ControlNet N`` infotext value (numbers and booleans converted)."""
    known = {_display(f).lower(): f for f in (f.name for f in fields(ControlNetUnit))}
    out: dict[str, Any] = {"enabled": True}
    for item in text.split(","):
        if ": " not in item:
            continue
        key, value = item.strip().split(": ", 1)
        name = known.get(key.strip().lower())
        if name is None or name in ("image", "mask"):
            continue
        if value in ("True", "False"):
            out[name] = value == "True"
            continue
        try:
            number = float(value)
            out[name] = int(number) if number.is_integer() and name == "processor_res" else number
        except ValueError:
            out[name] = value
    return out


def units_from_infotext(params: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """``{index: fields}`` for every ``ControlNet N`` entry of parsed infotext parameters."""
    found = {}
    for key, value in params.items():
        parts = str(key).split(" ")
        if len(parts) == 2 and parts[0] == "ControlNet" and parts[1].isdigit() and isinstance(value, str):
            found[int(parts[1])] = parse_unit_infotext(value)
    return dict(sorted(found.items()))


# ----------------------------------------------------------------------------- control types

def control_type_choices(control_type: str, model_titles: list[str]) -> dict[str, Any]:
    """Preprocessors and models of one control type, the extension's default picks included."""
    words = CONTROL_TYPES.get(control_type)
    if words is None:
        raise ValueError(f"unknown control type {control_type!r}; known: {', '.join(CONTROL_TYPES)}")
    ordered = sorted(preprocessors.PREPROCESSORS.values(), key=lambda p: -p.priority)
    if not words:
        modules = [p.name for p in ordered]
        models = ["None"] + list(model_titles)
        return {"module_list": modules, "model_list": models, "default_option": "none", "default_model": "None"}
    modules = ["none"] + [p.name for p in ordered if control_type in p.tags]
    models = ["None"] + [t for t in model_titles if any(w in t.lower() for w in words)]
    tagged = [p for p in ordered if control_type in p.tags and p.available]
    default_option = tagged[0].name if tagged else "none"
    default_model = models[1] if len(models) > 1 else "None"
    return {"module_list": modules, "model_list": models, "default_option": default_option,
            "default_model": default_model}
