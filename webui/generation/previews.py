"""Cheap live previews: latents -> RGB by a per-architecture linear map, no extra weights.

The 4x3 factors are the widely published least-squares fits of each VAE family's latent
space to RGB (A1111's "Approx cheap", ComfyUI's latent previews). A model with its own
sidecar architecture (such as the bundled demo model) has no published fit; a small VAE
is decoded for real instead.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

SD15_FACTORS = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))
SDXL_FACTORS = ((0.3920, 0.4054, 0.4549), (-0.2634, -0.0196, 0.0653), (0.0568, 0.1687, -0.0755),
                (-0.3112, -0.2359, -0.2076))
FACTORS = {"sd15": SD15_FACTORS, "sd15-inpaint": SD15_FACTORS, "sd2": SD15_FACTORS, "sd2-v": SD15_FACTORS,
           "sdxl": SDXL_FACTORS, "sdxl-refiner": SDXL_FACTORS}
SMALL_VAE_PARAMS = 20_000_000  # below this a real decode costs less than a UI refresh


def linear_preview(latents: torch.Tensor, factors) -> Image.Image:
    """First image of a latent batch -> PIL via a linear 4->3 channel map."""
    matrix = torch.tensor(factors, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latents[0].float().cpu(), matrix)
    rgb = ((rgb + 1) / 2).clamp(0, 1).mul(255).byte().numpy()
    return Image.fromarray(np.ascontiguousarray(rgb))


def make_previewer(model: Any) -> Callable[[torch.Tensor], Image.Image] | None:
    """A latents -> image function for this loaded model, or None if previews would be costly.

    A small VAE is decoded for real: exact, and cheaper than a UI refresh. The demo model is
    SD 1.x-shaped but has its own latent space, so the published SD 1.x factors do not fit it.
    """
    vae = model.pipe.vae
    if sum(p.numel() for p in vae.parameters()) <= SMALL_VAE_PARAMS:
        def decode_preview(latents: torch.Tensor) -> Image.Image:
            with torch.no_grad():
                image = vae.decode((latents[:1] / vae.config.scaling_factor).to(vae.dtype)).sample
            return model.pipe.image_processor.postprocess(image.float(), output_type="pil")[0]

        return decode_preview
    factors = FACTORS.get(model.arch)
    if factors is not None and vae.config.latent_channels == len(factors):
        return lambda latents: linear_preview(latents, factors)
    return None
