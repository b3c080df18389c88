"""VAE decode that an interrupt can stop between pieces, so Interrupt frees the queue quickly.

A batch is decoded one image at a time, and an image larger than `TILE_ABOVE` latent pixels
(1024x1024 for SD) in overlapping tiles, with a check between pieces. Decoding 8 images of
1024x1024 on a CPU took minutes after an interrupt; a 4096x4096 image could not be stopped.

What an interrupt keeps, as A1111 does as far as it can be done quickly: when the interrupt
came during sampling, the batch's first image is still decoded (the partial image A1111
returns) and the rest is dropped; when it comes during decoding, decoding stops at the next
image or tile and the images already finished are kept.

Tiling follows diffusers' own `AutoencoderKL.tiled_decode` (same tiles, same blending, so the
result is identical to `vae.enable_tiling()`); it runs only for big images or when the device
policy already turned VAE tiling on. Images up to 1024x1024 decode exactly as before.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

from webui.generation import vae_codec

TILE_ABOVE = 128 * 128  # latent pixels; above this an image is decoded tile by tile


class _Stopped(Exception):
    """An interrupt arrived between tiles."""


def _never() -> bool:
    return False


def _tiled_decode(vae, should_stop: Callable[[], bool]):
    """diffusers' tiled_decode with a stop check between tiles (the blending is theirs, unchanged)."""
    from diffusers.models.autoencoders.vae import DecoderOutput

    def tiled_decode(z: torch.Tensor, return_dict: bool = True):
        overlap = int(vae.tile_latent_min_size * (1 - vae.tile_overlap_factor))
        blend = int(vae.tile_sample_min_size * vae.tile_overlap_factor)
        limit = vae.tile_sample_min_size - blend
        rows = []
        for i in range(0, z.shape[2], overlap):
            row = []
            for j in range(0, z.shape[3], overlap):
                if should_stop():
                    raise _Stopped
                tile = z[:, :, i:i + vae.tile_latent_min_size, j:j + vae.tile_latent_min_size]
                if vae.config.use_post_quant_conv:
                    tile = vae.post_quant_conv(tile)
                row.append(vae.decoder(tile))
            rows.append(row)
        result_rows = []
        for i, row in enumerate(rows):
            result_row = []
            for j, tile in enumerate(row):
                if i > 0:
                    tile = vae.blend_v(rows[i - 1][j], tile, blend)
                if j > 0:
                    tile = vae.blend_h(row[j - 1], tile, blend)
                result_row.append(tile[:, :, :limit, :limit])
            result_rows.append(torch.cat(result_row, dim=3))
        decoded = torch.cat(result_rows, dim=2)
        return DecoderOutput(sample=decoded) if return_dict else (decoded,)

    return tiled_decode


@contextlib.contextmanager
def _tiling(vae, should_stop: Callable[[], bool], force: bool):
    """Route this VAE's decode through the checked tile loop for the duration of one call.

    The pipeline is leased to the running job (ModelManager.active), so nothing else decodes
    with this VAE meanwhile; the instance attributes are restored however the call ends.
    """
    if not hasattr(vae, "tiled_decode") or not hasattr(vae, "tile_latent_min_size"):
        yield  # not an AutoencoderKL (e.g. a tiny preview VAE): decode as it is
        return
    was_tiling = getattr(vae, "use_tiling", False)
    if not (force or was_tiling):
        yield
        return
    vae.use_tiling = True
    vae.tiled_decode = _tiled_decode(vae, should_stop)
    try:
        yield
    finally:
        del vae.tiled_decode  # the class's method again
        vae.use_tiling = was_tiling


def decode_latents(pipe, latents: torch.Tensor, interrupted: Callable[[], bool],
                   decode: Callable = vae_codec.decode) -> torch.Tensor | None:
    """Scaled latents [B, C, h, w] -> pixels [n, 3, H, W] for the first n images (n < B after an interrupt).

    `interrupted()` is polled between images and tiles. None when no image was finished.
    """
    interrupted_before = interrupted()
    done = []
    for index in range(latents.shape[0]):
        if index and interrupted():
            break
        # The first image finishes unless the interrupt comes while it is being decoded.
        stop = (lambda: interrupted() and not interrupted_before) if index == 0 else interrupted
        one = latents[index:index + 1]
        big = one.shape[-2] * one.shape[-1] > TILE_ABOVE
        try:
            with _tiling(pipe.vae, stop, force=big):
                done.append(decode(pipe, one))
        except _Stopped:
            break
    return torch.cat(done) if done else None
