"""Running ControlNet units in a job: control maps, per-unit control modes, the pipeline arguments.

Per unit: the control image (the unit's, or the img2img input) goes through its preprocessor
(pixel perfect picks the preprocessor resolution from the target size), is fitted to the
generation size by the unit's resize mode, and becomes a [0, 1] tensor (``inpaint_only``: the
picture with masked pixels at -1, as inpaint ControlNets were trained).

The ControlNets run inside ``UnitControlNets``, a ``MultiControlNetModel`` (the shape the
diffusers ControlNet pipelines already take for several nets) whose members are per-unit
wrappers applying what the pipeline cannot do per unit:

- control modes as sd-webui-controlnet applies them: "My prompt is more important" scales the
  13 outputs by ``0.825 ** (12 - i)`` (soft injection); "ControlNet is more important" does
  that too and also feeds the control only to the conditional half of the CFG batch (the
  net then runs on that half only, so it costs half);
- an effective-region mask (the unit's mask) multiplying the outputs;
- low VRAM: the net waits on the CPU and visits the device only for its own forward;
- steps outside a unit's start/end (the pipeline passes scale 0 there) skip the net entirely.

The pipeline always gets ``guess_mode=False``; everything above is per unit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

from webui.generation import preprocessors
from webui.generation.controlnet import ControlNetUnit

SOFT_BASE = 0.825


# ----------------------------------------------------------------------------- maps

def pixel_perfect_resolution(image: np.ndarray, width: int, height: int, resize_mode: str) -> int:
    """The preprocessor resolution that lands the map at the target size without a second resample."""
    raw_h, raw_w = image.shape[:2]
    k_h, k_w = height / raw_h, width / raw_w
    k = min(k_h, k_w) if resize_mode == "Resize and Fill" else max(k_h, k_w)
    return int(round(k * min(raw_h, raw_w)))


def fit(image: np.ndarray, width: int, height: int, resize_mode: str, fill: int = 0) -> np.ndarray:
    """Fit an HxWxC map to width x height: stretch, cover and centre-crop, or fit and pad with ``fill``."""
    import cv2

    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image

    def resize(img, new_w, new_h):
        shrink = new_w * new_h < img.shape[0] * img.shape[1]
        return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)

    if resize_mode == "Just Resize":
        return resize(image, width, height)
    if resize_mode == "Crop and Resize":
        k = max(width / w, height / h)
        new_w, new_h = max(width, int(math.ceil(w * k))), max(height, int(math.ceil(h * k)))
        big = resize(image, new_w, new_h)
        x0, y0 = (new_w - width) // 2, (new_h - height) // 2
        return np.ascontiguousarray(big[y0:y0 + height, x0:x0 + width])
    k = min(width / w, height / h)
    new_w, new_h = min(width, max(1, int(round(w * k)))), min(height, max(1, int(round(h * k))))
    small = resize(image, new_w, new_h)
    canvas = np.full((height, width) + image.shape[2:], fill, dtype=image.dtype)
    x0, y0 = (width - new_w) // 2, (height - new_h) // 2
    canvas[y0:y0 + new_h, x0:x0 + new_w] = small if small.ndim == canvas.ndim else small[..., None]
    return canvas


def detect(unit: ControlNetUnit, image: np.ndarray, width: int, height: int, seed: int = 0) -> np.ndarray:
    """The unit's detected map (RGB uint8) at its preprocessor resolution, before fitting."""
    module = preprocessors.get(unit.module)
    res = unit.processor_res
    if unit.pixel_perfect and module.resolution is not None:
        res = pixel_perfect_resolution(image, width, height, unit.resize_mode)
        res = int(min(max(res, module.resolution.minimum), module.resolution.maximum))
    return preprocessors.run(module, image, res, unit.threshold_a, unit.threshold_b, seed=seed)


def control_tensor(detected: np.ndarray, width: int, height: int, resize_mode: str,
                   inpaint_mask: np.ndarray | None = None) -> torch.Tensor:
    """[1, 3, H, W] float in [0, 1]; with an inpaint mask the masked pixels are -1."""
    fitted = fit(detected, width, height, resize_mode)
    x = torch.from_numpy(fitted.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()
    if inpaint_mask is not None:
        mask = fit(inpaint_mask, width, height, resize_mode) > 127
        x[:, :, torch.from_numpy(mask)] = -1.0
    return x


def region_tensor(mask: np.ndarray | None, width: int, height: int, resize_mode: str) -> torch.Tensor | None:
    """A unit's effective-region mask as [1, 1, H, W] in [0, 1] (None: everywhere)."""
    if mask is None:
        return None
    fitted = fit(mask, width, height, resize_mode).astype(np.float32) / 255.0
    return torch.from_numpy(fitted)[None, None]


# ----------------------------------------------------------------------------- the nets

def residual_shapes(model, sample_shape: torch.Size) -> tuple[list[tuple], tuple]:
    """Shapes of a ControlNet's down residuals and mid residual for ``sample_shape`` (no forward)."""
    b, _, h, w = sample_shape
    shapes = [(b, model.controlnet_down_blocks[0].out_channels, h, w)]
    j = 1
    for block in model.down_blocks:
        for _ in block.resnets:
            shapes.append((b, model.controlnet_down_blocks[j].out_channels, h, w))
            j += 1
        if block.downsamplers is not None:
            h, w = (h + 1) // 2, (w + 1) // 2
            shapes.append((b, model.controlnet_down_blocks[j].out_channels, h, w))
            j += 1
    return shapes, (b, model.controlnet_mid_block.out_channels, h, w)


class UnitControlNet(torch.nn.Module):
    """One unit's ControlNet with its control mode, region mask and memory mode."""

    def __init__(self, model, control_mode: str = "Balanced", region: torch.Tensor | None = None,
                 cfg: bool = True, low_vram: bool = False, device: torch.device | str | None = None):
        super().__init__()
        self.model = model
        self.control_mode = control_mode
        self.region = region
        self.cfg = cfg  # the batch is [uncond, cond] (classifier-free guidance on)
        self.low_vram = low_vram
        self.device_for_run = torch.device(device) if device is not None else None

    @property
    def config(self):
        return self.model.config

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale,
                class_labels=None, timestep_cond=None, attention_mask=None, added_cond_kwargs=None,
                cross_attention_kwargs=None, guess_mode=False, return_dict=False):
        if float(conditioning_scale) == 0.0:  # outside start/end, or weight 0: the net would add nothing
            downs, mid = residual_shapes(self.model, sample.shape)
            zeros = lambda s: torch.zeros(s, device=sample.device, dtype=sample.dtype)  # noqa: E731
            return [zeros(s) for s in downs], zeros(mid)
        cond_only = self.control_mode == "ControlNet is more important" and self.cfg and sample.shape[0] % 2 == 0
        half = sample.shape[0] // 2
        if cond_only:  # the uncond half gets nothing: run the net on the cond half only
            sample, encoder_hidden_states, controlnet_cond = sample[half:], encoder_hidden_states[half:], \
                controlnet_cond[half:]
            if added_cond_kwargs:
                added_cond_kwargs = {k: v[half:] for k, v in added_cond_kwargs.items()}
        if self.low_vram and self.device_for_run is not None:
            self.model.to(self.device_for_run)
        try:
            downs, mid = self.model(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                                    controlnet_cond=controlnet_cond, conditioning_scale=float(conditioning_scale),
                                    class_labels=class_labels, timestep_cond=timestep_cond,
                                    attention_mask=attention_mask, added_cond_kwargs=added_cond_kwargs,
                                    cross_attention_kwargs=cross_attention_kwargs, return_dict=False)
        finally:
            if self.low_vram and self.device_for_run is not None and self.device_for_run.type != "cpu":
                self.model.to("cpu")
        outputs = list(downs) + [mid]
        if self.control_mode != "Balanced":
            n = len(outputs)
            outputs = [o * (SOFT_BASE ** (n - 1 - i)) for i, o in enumerate(outputs)]
        if self.region is not None:
            outputs = [o * _resized(self.region, o) for o in outputs]
        if cond_only:
            outputs = [torch.cat([torch.zeros_like(o), o]) for o in outputs]
        return outputs[:-1], outputs[-1]


def _resized(region: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    mask = torch.nn.functional.interpolate(region.to(like.device, like.dtype), size=like.shape[-2:], mode="area")
    return mask


class UnitControlNets(MultiControlNetModel):
    """The job's units as one module the ControlNet pipelines accept."""

    @property
    def dtype(self) -> torch.dtype:
        return self.nets[0].dtype if len(self.nets) else torch.float32  # an empty slot between jobs


@dataclass
class PreparedUnit:
    """One unit ready to run: its wrapper, control tensor and schedule."""

    unit: ControlNetUnit
    net: UnitControlNet
    control: torch.Tensor  # [1, 3, H, W]
    detected: np.ndarray  # the map as the user sees it (fitted to the generation size)
    model_title: str


def pipeline_arguments(prepared: list[PreparedUnit], device, dtype) -> dict:
    """The ControlNet keyword arguments of a diffusers ControlNet pipeline call (control image under
    ``image``; img2img/inpaint pipelines take it as ``control_image``, which the caller renames)."""
    return {
        "controlnet_conditioning_scale": [float(p.unit.weight) for p in prepared],
        "control_guidance_start": [float(p.unit.guidance_start) for p in prepared],
        "control_guidance_end": [float(p.unit.guidance_end) for p in prepared],
        "guess_mode": False,
        "image": [p.control.to(device=device, dtype=dtype) for p in prepared],
    }
