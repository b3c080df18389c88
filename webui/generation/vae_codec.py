"""Our own VAE calls: pixels <-> scaled latents, in the VAE's dtype with a float32 retry on NaNs.

The core decodes itself (pipelines return latents) so the VAE may run in another dtype than
the UNet, and encodes itself so img2img/inpaint can change the latents (masked content,
latent upscale) before sampling. Encoding takes the posterior's mean: deterministic, and it
consumes none of the per-image generators that seed the sampler's noise.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)


@contextmanager
def _float32(vae):
    original = vae.dtype
    vae.to(torch.float32)
    try:
        yield
    finally:
        vae.to(original)


def _scale_params(vae):
    config = vae.config
    mean = getattr(config, "latents_mean", None)
    std = getattr(config, "latents_std", None)
    shift = getattr(config, "shift_factor", None) or 0.0
    return config.scaling_factor, shift, mean, std


def decode(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> image tensor in [-1, 1]; retries in float32 if the VAE overflows (A1111 does too)."""
    vae = pipe.vae
    scale, shift, mean, std = _scale_params(vae)
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
        std_t = torch.tensor(std).view(1, -1, 1, 1).to(latents)
        scaled = latents * std_t / scale + mean_t
    else:
        scaled = latents / scale + shift
    device = _device(vae)
    with torch.no_grad():
        image = vae.decode(scaled.to(device, vae.dtype)).sample
        if vae.dtype != torch.float32 and torch.isnan(image).any():
            log.warning("VAE produced NaNs in %s; decoding again in float32 (use --no-half-vae to avoid this)",
                        vae.dtype)
            with _float32(vae):
                image = vae.decode(scaled.to(device, torch.float32)).sample
    return image


def encode(pipe, pixels: torch.Tensor) -> torch.Tensor:
    """Image tensor [B, 3, H, W] in [-1, 1] -> scaled latents (float32, on the CPU)."""
    vae = pipe.vae
    scale, shift, mean, std = _scale_params(vae)
    device = _device(vae)
    with torch.no_grad():
        latents = vae.encode(pixels.to(device, vae.dtype)).latent_dist.mean
        if vae.dtype != torch.float32 and not torch.isfinite(latents).all():
            log.warning("VAE encode produced NaNs in %s; encoding again in float32", vae.dtype)
            with _float32(vae):
                latents = vae.encode(pixels.to(device, torch.float32)).latent_dist.mean
    latents = latents.float().cpu()
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean).view(1, -1, 1, 1)
        std_t = torch.tensor(std).view(1, -1, 1, 1)
        return (latents - mean_t) * scale / std_t
    return (latents - shift) * scale


def pil_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB PIL images (same size) -> [B, 3, H, W] float32 in [-1, 1]."""
    arrays = [np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for img in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _device(module) -> torch.device:
    # With offload hooks the weights may sit on the CPU while the hook's execution device is the GPU.
    hook = getattr(module, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return torch.device(device)
    return next(module.parameters()).device
