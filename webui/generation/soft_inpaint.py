"""Soft inpainting (A1111's built-in "Soft inpainting" option): the mask's softness survives sampling.

With it on, the latent mask is not rounded; at every step the latents are blended with the
(noised) original by the mask raised to a power that follows the noise level, with vector
magnitudes interpolated separately (so partially masked areas keep their contrast); there is no
hard final blend; and the final pixel overlay uses a mask built from how much each latent pixel
actually changed, so unchanged areas keep the original's pixels.

The per-pixel weighted-histogram filter A1111 runs in a Python loop is vectorised here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from webui.generation import masks

INFOTEXT_KEYS = {
    "mask_blend_power": "Soft inpainting schedule bias",
    "mask_blend_scale": "Soft inpainting preservation strength",
    "inpaint_detail_preservation": "Soft inpainting transition contrast boost",
    "composite_mask_influence": "Soft inpainting mask influence",
    "composite_difference_threshold": "Soft inpainting difference threshold",
    "composite_difference_contrast": "Soft inpainting difference contrast",
}
ENABLED_KEY = "Soft inpainting enabled"
LIMITS = {"mask_blend_power": (0, 8), "mask_blend_scale": (0, 8), "inpaint_detail_preservation": (1, 32),
          "composite_mask_influence": (0, 1), "composite_difference_threshold": (0, 8),
          "composite_difference_contrast": (0, 8)}


@dataclass(frozen=True)
class SoftInpainting:
    """A1111's six settings, with its defaults."""

    mask_blend_power: float = 1.0
    mask_blend_scale: float = 0.5
    inpaint_detail_preservation: float = 4.0
    composite_mask_influence: float = 0.0
    composite_difference_threshold: float = 0.5
    composite_difference_contrast: float = 2.0

    @classmethod
    def from_value(cls, value: Any) -> "SoftInpainting | None":
        """None/False: off. True: defaults. A dict of field names, or A1111's script args
        ``[enabled, power, scale, detail, influence, threshold, contrast]``. Raises ValueError."""
        if value in (None, False):
            return None
        if value is True:
            return cls()
        if isinstance(value, (list, tuple)):
            if not value or not value[0]:
                return None
            names = [f.name for f in fields(cls)]
            value = dict(zip(names, value[1:]))
        if not isinstance(value, dict):
            raise ValueError(f"must be true/false, an object of settings or A1111's args list, got {value!r}")
        unknown = set(value) - {f.name for f in fields(cls)} - {"enabled"}
        if unknown:
            raise ValueError(f"unknown soft inpainting setting(s): {', '.join(sorted(unknown))}")
        if value.get("enabled", True) is False:
            return None
        out = {}
        for name, (low, high) in LIMITS.items():
            if name in value:
                number = value[name]
                if isinstance(number, bool) or not isinstance(number, (int, float)) or not low <= number <= high:
                    raise ValueError(f"{name} must be a number from {low} to {high}, got {number!r}")
                out[name] = float(number)
        return cls(**out)

    def infotext(self) -> dict[str, Any]:
        out: dict[str, Any] = {ENABLED_KEY: True}
        out.update({key: getattr(self, name) for name, key in INFOTEXT_KEYS.items()})
        return out


def step_sigma(scheduler, timestep) -> float:
    """The noise level (k-diffusion sigma) of ``timestep`` for any diffusers scheduler."""
    alphas = getattr(scheduler, "alphas_cumprod", None)
    t = int(round(float(timestep)))
    if alphas is not None and 0 <= t < len(alphas):
        a = float(alphas[t])
        return math.sqrt((1 - a) / a)
    sigmas = getattr(scheduler, "sigmas", None)
    index = getattr(scheduler, "step_index", None)
    return float(sigmas[max(index - 1, 0)]) if sigmas is not None and index is not None else 1.0


def blend_weight(settings: SoftInpainting, repaint: torch.Tensor, sigma: float) -> torch.Tensor:
    """How much of the generated latent to keep this step: repaint ** (sigma ** power * scale)."""
    return torch.pow(repaint, (sigma ** settings.mask_blend_power) * settings.mask_blend_scale)


def latent_blend(settings: SoftInpainting, original: torch.Tensor, current: torch.Tensor,
                 t: torch.Tensor) -> torch.Tensor:
    """Interpolate latents by ``t`` (1 = current), interpolating the vectors' magnitudes separately."""
    mixed = original * (1 - t) + current * t
    p = settings.inpaint_detail_preservation
    current_norm = torch.linalg.vector_norm(mixed, dim=1, keepdim=True).double() + 1e-5
    wanted = (torch.linalg.vector_norm(original, dim=1, keepdim=True).double() ** p * (1 - t[:, :1].double())
              + torch.linalg.vector_norm(current, dim=1, keepdim=True).double() ** p * t[:, :1].double()) ** (1 / p)
    return mixed * (wanted / current_norm).to(mixed.dtype)


def _kernel(stddev: float = 1.5, radius: int = 2) -> np.ndarray:
    """A Gaussian that reaches exactly zero one pixel beyond ``radius`` (A1111's thresholded kernel)."""
    zero = math.exp(-((radius + 1.0) ** 2) / stddev ** 2)
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    k = (np.exp(-(xx ** 2 + yy ** 2) / stddev ** 2) - zero) / (1 - zero)
    return np.maximum(k, 0.0)


def histogram_filter(image: np.ndarray, kernel: np.ndarray, low: float, high: float, min_width: float = 1.0):
    """Per pixel: sort the neighbourhood's values, stack their kernel weights, and average the values
    overlapping the [low, high] fraction of the stack (a weighted percentile-window mean)."""
    r = kernel.shape[0] // 2
    h, w = image.shape
    padded = np.pad(image, r)
    valid = np.pad(np.ones_like(image), r)
    values = np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(2 * r + 1) for dx in range(2 * r + 1)], -1)
    weights = np.stack([valid[dy:dy + h, dx:dx + w] * kernel[dy, dx]
                        for dy in range(2 * r + 1) for dx in range(2 * r + 1)], -1)
    order = np.argsort(values, axis=-1, kind="stable")
    values = np.take_along_axis(values, order, -1)
    weights = np.take_along_axis(weights, order, -1)
    top = np.cumsum(weights, -1)
    bottom = top - weights
    total = top[..., -1:]
    lo, hi = total * low, total * high
    narrow = (hi - lo) < min_width
    centre = (lo + hi) / 2
    lo = np.where(narrow, centre - min_width / 2, lo)
    hi = np.where(narrow, centre + min_width / 2, hi)
    over = hi > total
    lo, hi = np.where(over, total - min_width, lo), np.where(over, total, hi)
    under = lo < 0
    lo, hi = np.where(under, 0, lo), np.where(under, min_width, hi)
    overlap = np.clip(np.minimum(hi, top) - np.maximum(lo, bottom), 0, None)
    norm = overlap.sum(-1)
    return np.where(norm > 0, (values * overlap).sum(-1) / np.where(norm > 0, norm, 1), 0.0)


def _smootherstep(x: np.ndarray) -> np.ndarray:
    return x * x * x * (x * (6 * x - 15) + 10)


def overlay_masks(settings: SoftInpainting, repaint: torch.Tensor, original: torch.Tensor, processed: torch.Tensor,
                  width: int, height: int, paste_to, full_size: tuple[int, int] | None) -> list[Image.Image]:
    """One 'L' overlay mask per image (255 = generated) from how far each latent pixel moved."""
    scale = np.clip(repaint[0, 0].float().cpu().numpy(), 0, 1) ** (settings.mask_blend_scale / 2)
    scalar = 0.5 * (1 - settings.composite_mask_influence) + (1 - scale) * settings.composite_mask_influence
    scalar = scalar / (1.00001 - scalar)
    distance = torch.linalg.vector_norm((processed - original).float(), dim=1).cpu().numpy()
    kernel = _kernel()
    out = []
    for d in distance:
        d = histogram_filter(d, kernel, 0.9, 1.0)
        d = histogram_filter(d, kernel, 0.25, 0.75)
        d = d / (settings.composite_difference_threshold * scalar)
        keep = _smootherstep(1 / (1 + d ** settings.composite_difference_contrast))
        mask = Image.fromarray(((1 - keep) * 255).astype(np.uint8))
        mask = masks.resize_image(2, mask, width, height).filter(ImageFilter.GaussianBlur(4))
        if paste_to is not None and full_size is not None:
            x, y, w, h = paste_to
            canvas = Image.new("L", full_size)
            canvas.paste(mask.resize((w, h), masks.LANCZOS), (x, y))
            mask = canvas
        out.append(mask)
    return out
