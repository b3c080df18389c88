"""LoRA training settings: kohya's knobs with good defaults, checked once with messages per field.

The same dataclass backs the Train tab, ``POST /sdapi/v1/train/lora`` and
``tools/train_demo_lora.py``; names follow kohya sd-scripts' flags where one exists
(``network_dim`` is ``rank`` here, as the tab calls it).
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from webui.training.diffusion import MIXED_PRECISION
from webui.training.lora import NETWORK_TYPES
from webui.training.schedules import LR_SCHEDULERS

OPTIMIZERS = ("AdamW", "AdamW8bit")
SAVE_PRECISIONS = ("fp16", "bf16", "float")
_NAME = re.compile(r"^[\w][\w .+\-()\[\]]*$")


class SettingsError(ValueError):
    """One or more bad settings; ``errors`` is [(field, message)]."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = list(errors)
        super().__init__("; ".join(f"{f}: {m}" for f, m in self.errors))

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"field": f, "message": m} for f, m in self.errors]


def check_name(value: Any, what: str = "name") -> str:
    """A file name without folders or odd characters; raises ValueError with the reason."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"give the {what} (it becomes the file name)")
    name = value.strip()
    if name.lower().endswith((".safetensors", ".pt")):
        name = name.rsplit(".", 1)[0]
    if "/" in name or "\\" in name or name.startswith(".") or not _NAME.match(name) or len(name) > 100:
        raise ValueError(f"{name!r} is not a usable file name: letters, digits, spaces and - _ . + ( ) [ ] only, "
                         "no folders")
    return name


@dataclass
class LoraSettings:
    """Everything one LoRA training run needs. Defaults suit a 10-50 image character/style set."""

    name: str = ""
    data_dir: str = ""
    network_type: str = "LoRA"
    rank: int = 16
    alpha: float = 8.0
    conv_rank: int = 8
    conv_alpha: float = 4.0
    unet_lr: float = 1e-4
    text_encoder_lr: float = 5e-5
    optimizer: str = "AdamW"
    weight_decay: float = 1e-2
    lr_scheduler: str = "cosine"
    lr_warmup_steps: int = 0
    lr_scheduler_cycles: int = 1
    max_train_steps: int = 1000  # 0: use max_train_epochs
    max_train_epochs: int = 0
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    resolution: int = 0  # 0: the checkpoint's native size
    enable_bucket: bool = True
    caption_extension: str = ".txt"
    caption_dropout_rate: float = 0.0
    shuffle_caption: bool = False
    keep_tokens: int = 0
    flip_aug: bool = False
    random_crop: bool = False
    cache_latents: bool = True
    noise_offset: float = 0.0
    min_snr_gamma: float = 5.0  # 0: off
    mixed_precision: str = "auto"  # auto: bf16 (or fp16) on CUDA, float32 elsewhere
    gradient_checkpointing: bool = False
    max_grad_norm: float = 1.0
    clip_skip: int = 1
    seed: int = 1234
    save_every_n_steps: int = 200  # 0: only at the end
    save_precision: str = "fp16"  # what most shared LoRAs use; "float" keeps the trained values exactly
    sample_every_n_steps: int = 100  # 0: no samples
    sample_prompts: list[str] = field(default_factory=list)
    sample_sampler: str = "Euler a"
    sample_steps: int = 20
    sample_cfg_scale: float = 7.0
    resume: bool = False
    overwrite: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoraSettings":
        """Build and check settings from JSON-like input; unknown keys and bad values raise SettingsError."""
        if not isinstance(data, dict):
            raise SettingsError([("body", "must be a JSON object of settings")])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SettingsError([(k, "unknown setting") for k in unknown])
        return cls(**data).validate()

    def validate(self) -> "LoraSettings":
        """Return a normalised copy or raise SettingsError naming every bad field."""
        errors: list[tuple[str, str]] = []
        out: dict[str, Any] = {}
        defaults = {f.name: f for f in dataclasses.fields(self)}

        def number(name: str, kind: type, low: float, high: float | None = None) -> None:
            raw = getattr(self, name)
            value = _to_number(raw, kind)
            if value is None or value < low or (high is not None and value > high):
                span = f"from {low} to {high}" if high is not None else f"at least {low}"
                what = "a whole number" if kind is int else "a number"
                errors.append((name, f"must be {what} {span}, got {raw!r}"))
                value = defaults[name].default
            out[name] = value

        try:
            out["name"] = check_name(self.name, "LoRA name")
        except ValueError as exc:
            errors.append(("name", str(exc)))
        if not isinstance(self.data_dir, str) or not self.data_dir.strip():
            errors.append(("data_dir", "give the folder of training images (with .txt captions)"))
        out["data_dir"] = self.data_dir.strip() if isinstance(self.data_dir, str) else ""
        for name, choices in (("network_type", NETWORK_TYPES), ("optimizer", OPTIMIZERS),
                              ("lr_scheduler", LR_SCHEDULERS), ("mixed_precision", MIXED_PRECISION),
                              ("save_precision", SAVE_PRECISIONS)):
            value = getattr(self, name)
            if value not in choices:
                errors.append((name, f"must be one of {', '.join(choices)}, got {value!r}"))
            out[name] = value
        number("rank", int, 1, 1024)
        number("conv_rank", int, 1, 1024)
        number("alpha", float, 0.0, 4096)
        number("conv_alpha", float, 0.0, 4096)
        number("unet_lr", float, 0.0, 1.0)
        number("text_encoder_lr", float, 0.0, 1.0)
        number("weight_decay", float, 0.0, 1.0)
        number("lr_warmup_steps", int, 0)
        number("lr_scheduler_cycles", int, 1, 100)
        number("max_train_steps", int, 0, 1_000_000)
        number("max_train_epochs", int, 0, 10_000)
        number("batch_size", int, 1, 256)
        number("gradient_accumulation_steps", int, 1, 1024)
        number("resolution", int, 0, 4096)
        number("caption_dropout_rate", float, 0.0, 1.0)
        number("keep_tokens", int, 0, 1000)
        number("noise_offset", float, 0.0, 1.0)
        number("min_snr_gamma", float, 0.0, 1000)
        number("max_grad_norm", float, 0.0, 1e6)
        number("clip_skip", int, 1, 12)
        number("seed", int, 0, 2**32 - 1)
        number("save_every_n_steps", int, 0)
        number("sample_every_n_steps", int, 0)
        number("sample_steps", int, 1, 150)
        number("sample_cfg_scale", float, 1.0, 30.0)
        for name in ("enable_bucket", "shuffle_caption", "flip_aug", "random_crop", "cache_latents",
                     "gradient_checkpointing", "resume", "overwrite"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                errors.append((name, f"must be true or false, got {value!r}"))
            out[name] = bool(value)
        if out.get("unet_lr") == 0 and out.get("text_encoder_lr") == 0:
            errors.append(("unet_lr", "UNet and text-encoder learning rates are both 0: nothing would be trained"))
        if out.get("max_train_steps") == 0 and out.get("max_train_epochs") == 0:
            errors.append(("max_train_steps", "give a number of steps or of epochs"))
        ext = self.caption_extension if isinstance(self.caption_extension, str) else ""
        if not re.fullmatch(r"\.\w{1,16}", ext):
            errors.append(("caption_extension", f"must look like .txt, got {self.caption_extension!r}"))
        out["caption_extension"] = ext
        prompts = self.sample_prompts
        if isinstance(prompts, str):
            prompts = prompts.splitlines()
        if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
            errors.append(("sample_prompts", "must be a list of prompts (or text, one prompt per line)"))
            prompts = []
        out["sample_prompts"] = [p.strip() for p in prompts if p.strip() and not p.strip().startswith("#")]
        out["sample_sampler"] = self.sample_sampler if isinstance(self.sample_sampler, str) else "Euler a"
        if errors:
            raise SettingsError(errors)
        return dataclasses.replace(self, **out)

    def total_steps(self, batches_per_epoch: int) -> int:
        """Optimiser steps to run: max_train_steps, or epochs x steps per epoch."""
        if self.max_train_steps:
            return self.max_train_steps
        return self.max_train_epochs * math.ceil(batches_per_epoch / self.gradient_accumulation_steps)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _to_number(raw: Any, kind: type):
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            return None
    if not isinstance(raw, (int, float)) or not math.isfinite(raw):
        return None
    if kind is int:
        return int(raw) if float(raw).is_integer() else None
    return float(raw)


def parse_sample_prompt(line: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """A kohya sample-prompt line: ``prompt --n negative --s steps --l cfg --d seed --w width --h height``."""
    parts = re.split(r"\s--(?=[nsldwh]\s)", " " + line)
    out = dict(defaults)
    out["prompt"] = parts[0].strip()
    keys = {"n": ("negative_prompt", str), "s": ("steps", int), "l": ("cfg_scale", float), "d": ("seed", int),
            "w": ("width", int), "h": ("height", int)}
    for part in parts[1:]:
        flag, _, value = part.partition(" ")
        name, kind = keys[flag]
        try:
            out[name] = kind(value.strip())
        except ValueError:
            raise ValueError(f"sample prompt {line!r}: --{flag} needs a {kind.__name__}, got {value.strip()!r}")
    return out
