"""img2img / inpaint inputs, prepared once per job the way A1111's img2img processing does.

``prepare`` turns the request's images and mask into processing-size images, the init
latents, the latent repaint mask, the overlays that restore unmasked pixels at the end, and
the infotext keys A1111 writes. ``batch_latents`` applies the per-batch part (which image each
batch slot uses, "latent noise"/"latent nothing"). ``inpaint_conditioning`` builds the extra
UNet input of 9-channel inpainting checkpoints. No pipeline is called here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from webui.generation import masks, seeds, vae_codec
from webui.generation.image_fields import MASKED_CONTENT

FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = range(4)
LATENT_UPSCALE = 3
EMPTY_MASK_NOTE = "The mask is empty, so there was nothing to inpaint: this ran as plain img2img."


@dataclass
class InitImages:
    """A job's prepared img2img/inpaint inputs (all at processing size unless said otherwise)."""

    latents: torch.Tensor  # [n_images, C, h, w] scaled init latents
    pixels: torch.Tensor  # [n_images, 3, H, W] processed images in [-1, 1] (9-channel conditioning)
    image_mask: Image.Image | None = None  # 'L', 255 = repaint, blurred; None: no mask (img2img)
    latent_mask: torch.Tensor | None = None  # [1, 1, h, w] repaint weight for the latent blend
    overlays: list[Image.Image] | None = None  # per init image: original with alpha = keep
    paste_to: tuple[int, int, int, int] | None = None  # "Only masked": where the crop goes back
    fill_mode: int = ORIGINAL
    bases: list[Image.Image] = field(default_factory=list)  # per init image: what the overlays were cut from
    round_mask: bool = True  # off with soft inpainting
    extra: dict[str, Any] = field(default_factory=dict)  # infotext keys, A1111's order
    comments: list[str] = field(default_factory=list)

    @property
    def has_mask(self) -> bool:
        return self.latent_mask is not None


def sampling_steps(steps: int, denoising_strength: float, fix_steps: bool = False) -> tuple[int, int]:
    """(schedule length, steps run) as A1111's img2img counts them.

    A1111 runs ``t_enc + 1`` steps of a ``steps``-long schedule, t_enc = int(min(d, 0.999) * steps);
    diffusers' own ``int(steps * strength)`` is one fewer. With ``fix_steps`` (A1111's
    "do exactly the amount of steps the slider specifies", which hires fix uses) it runs ``steps``
    steps of a schedule stretched to int(steps / min(d, 0.999)).
    """
    d = min(float(denoising_strength), 0.999)
    if fix_steps:
        if d <= 0:
            return steps, 1
        return max(int(steps / d), steps), steps
    return steps, int(d * steps) + 1


def diffusers_strength(schedule: int, run: int) -> float:
    """The ``strength`` that makes diffusers' get_timesteps run exactly ``run`` of ``schedule`` steps."""
    return min(1.0, (run + 0.5) / schedule)  # int(schedule * strength) == run without float fuzz


def _mask_to_latent(mask: Image.Image, size: tuple[int, int], round_mask: bool) -> torch.Tensor:
    # Bicubic down to latent size, as A1111's PIL resize; rounded unless mask_round is off (soft inpainting).
    array = np.asarray(mask.convert("L").resize(size, Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    if round_mask:
        array = np.around(array)
    return torch.from_numpy(array)[None, None]


def _resize_to_multiple(image: Image.Image, multiple: int) -> Image.Image:
    w, h = max(multiple, image.width // multiple * multiple), max(multiple, image.height // multiple * multiple)
    return image if (w, h) == image.size else image.resize((w, h), masks.LANCZOS)


def prepare(request, pipe) -> InitImages:
    """Images and mask of a validated img2img/inpaint request -> InitImages (A1111's init())."""
    width, height, resize_mode = request.width, request.height, request.resize_mode
    extra: dict[str, Any] = {"Denoising strength": request.denoising_strength}
    soft = request.soft_inpainting if request.mode == "inpaint" else None
    round_mask = request.mask_round and soft is None  # soft inpainting keeps the mask's softness (A1111)
    if soft is not None:
        extra.update(soft.infotext())
    comments: list[str] = []
    sources = list(request.init_images)
    mask = crop = paste_to = mask_for_overlay = None

    if request.mode == "inpaint" and request.mask is not None:
        mask = masks.binary_mask(request.mask, round_mask)
        if mask.size != sources[0].size:  # A1111 resizes a mask of another size too
            mask = mask.resize(sources[0].size, masks.LANCZOS)
        if request.inpainting_mask_invert:
            mask = ImageOps.invert(mask)
            extra["Mask mode"] = "Inpaint not masked"
        if mask.getbbox() is None:
            comments.append(EMPTY_MASK_NOTE)
            mask = None
    if mask is not None:
        if request.mask_blur_x > 0 or request.mask_blur_y > 0:
            mask = masks.blur_mask(mask, request.mask_blur_x, request.mask_blur_y)
            if request.mask_blur_x == request.mask_blur_y:
                extra["Mask blur"] = request.mask_blur_x
        if request.inpaint_full_res:
            mask_for_overlay = mask
            region = masks.crop_region(mask, request.inpaint_full_res_padding)
            crop = masks.expand_crop_region(region, width, height, mask.width, mask.height)
            x1, y1, x2, y2 = crop
            mask = masks.resize_image(2, mask.crop(crop), width, height)
            paste_to = (x1, y1, x2 - x1, y2 - y1)
            extra["Inpaint area"] = "Only masked"
            extra["Masked area padding"] = request.inpaint_full_res_padding
        else:
            mask = masks.resize_image(resize_mode, mask, width, height)
            # A harder edge for the overlay than for sampling: only the outer half of the blur keeps the original.
            doubled = np.clip(np.asarray(mask, dtype=np.float32) * 2, 0, 255).astype(np.uint8)
            mask_for_overlay = Image.fromarray(doubled)

    latent_source = mask
    if request.latent_mask is not None and mask is not None:
        latent_source = request.latent_mask.convert("L")
        if latent_source.size != (width, height):
            latent_source = masks.resize_image(resize_mode, latent_source, width, height)

    fill_mode = request.inpainting_fill if mask is not None else ORIGINAL
    processed, overlays, bases = [], [], []
    for source in sources:
        image = masks.flatten(source)
        if crop is None and resize_mode != LATENT_UPSCALE:
            image = masks.resize_image(resize_mode, image, width, height)
        if mask is not None:
            shown = image if image.size == (width, height) or crop is not None else image.resize((width, height))
            overlay_mask = mask_for_overlay
            if overlay_mask.size != shown.size:
                overlay_mask = masks.resize_image(resize_mode, overlay_mask, shown.width, shown.height)
            overlays.append(masks.make_overlay(shown, overlay_mask))
            bases.append(shown)
        if crop is not None:
            image = masks.resize_image(2, image.crop(crop), width, height)
        if mask is not None and fill_mode != ORIGINAL:
            fill_mask = latent_source if latent_source.size == image.size else latent_source.resize(image.size)
            image = masks.fill(image, fill_mask)
        processed.append(image)
    if fill_mode == FILL:
        extra["Masked content"] = "fill"

    factor = int(getattr(pipe, "vae_scale_factor", 8))
    latent_size = (width // factor, height // factor)
    if resize_mode == LATENT_UPSCALE and crop is None:
        # A1111's "Just resize (latent upscale)": encode at the image's own size, resize the latents.
        latents = torch.cat([
            F.interpolate(vae_codec.encode(pipe, vae_codec.pil_to_tensor([_resize_to_multiple(img, factor)])),
                          size=(latent_size[1], latent_size[0]), mode="bilinear")
            for img in processed])
        pixels = vae_codec.pil_to_tensor([img.resize((width, height), masks.LANCZOS) for img in processed])
    else:
        pixels = vae_codec.pil_to_tensor(processed)
        latents = vae_codec.encode(pipe, pixels)

    latent_mask = None
    if mask is not None:
        latent_mask = _mask_to_latent(latent_source, latent_size, round_mask)
        if fill_mode in (LATENT_NOISE, LATENT_NOTHING):
            extra["Masked content"] = MASKED_CONTENT[fill_mode]
    if request.initial_noise_multiplier != 1.0:
        extra["Noise multiplier"] = request.initial_noise_multiplier
    return InitImages(latents=latents, pixels=pixels, image_mask=mask, latent_mask=latent_mask,
                      overlays=overlays or None, paste_to=paste_to, fill_mode=fill_mode, bases=bases,
                      round_mask=round_mask, extra=extra, comments=comments)


def batch_latents(init: InitImages, first_index: int, count: int, batch_seeds: list[int]) -> torch.Tensor:
    """Init latents for one batch: slot j uses init image j mod n; latent noise/nothing fill the hole."""
    n = init.latents.shape[0]
    latents = init.latents[[(first_index + j) % n if n > 1 else 0 for j in range(count)]]
    if init.latent_mask is not None and init.fill_mode == LATENT_NOISE:
        noise = seeds.make_noise(tuple(latents.shape[1:]), batch_seeds)
        latents = latents * (1 - init.latent_mask) + noise * init.latent_mask
    elif init.latent_mask is not None and init.fill_mode == LATENT_NOTHING:
        latents = latents * (1 - init.latent_mask)
    return latents


def inpaint_conditioning(pipe, init: InitImages | None, count: int, first_index: int, width: int, height: int,
                         round_mask: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask [B,1,H,W], masked-image latents [B,C,h,w]) for a 9-channel UNet, as A1111 builds them.

    Without a mask (txt2img, img2img) the mask is all ones and the masked image all grey, so the
    model sees no image hint; with one, the image is blanked where the (rounded) mask repaints.
    """
    if init is None:
        mask = torch.ones(1, 1, height, width)
        grey = torch.zeros(1, 3, height, width)
        return mask.expand(count, -1, -1, -1), vae_codec.encode(pipe, grey).expand(count, -1, -1, -1)
    n = init.pixels.shape[0]
    pixels = init.pixels[[(first_index + j) % n if n > 1 else 0 for j in range(count)]]
    if init.image_mask is None:
        mask = torch.ones(1, 1, height, width)
    else:
        mask = torch.from_numpy(np.asarray(init.image_mask.convert("L"), dtype=np.float32) / 255.0)[None, None]
        if round_mask:
            mask = torch.round(mask)
    masked = pixels * (1 - mask)
    return mask.expand(count, -1, -1, -1).contiguous(), vae_codec.encode(pipe, masked)


def finish_image(init: InitImages, index: int, image: Image.Image, mask: Image.Image | None = None) -> Image.Image:
    """Un-crop and overlay a decoded image so everything outside the mask is the original's.

    ``mask``: an overlay mask computed after sampling (soft inpainting) instead of the prepared one.
    """
    if init.overlays is None:
        return image
    if mask is not None:
        overlay = masks.make_overlay(init.bases[index % len(init.bases)], mask)
    else:
        overlay = init.overlays[index % len(init.overlays)]
    return masks.apply_overlay(image, init.paste_to, overlay)
