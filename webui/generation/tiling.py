"""A1111's "Tiling": every Conv2d of the UNet and the VAE pads circularly while it is on.

With circular padding the networks see the latent as a torus, so the image's left edge
continues its right edge and its top continues its bottom: the picture tiles seamlessly.
A1111 sets ``padding_mode = "circular"`` on all ``torch.nn.Conv2d`` layers of the model for the
job (``sd_hijack.apply_circular``); ``tiled(pipe)`` does the same for one job and restores
each layer's previous mode afterwards, so the shared pipeline is left as it was found.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def _convs(pipe) -> list[torch.nn.Conv2d]:
    layers = []
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if module is not None:
            layers.extend(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    return layers


@contextmanager
def tiled(pipe, enabled: bool = True) -> Iterator[None]:
    """Circular padding in the UNet's and VAE's convolutions for the duration of the block."""
    if not enabled:
        yield
        return
    layers = _convs(pipe)
    previous = [layer.padding_mode for layer in layers]
    for layer in layers:
        layer.padding_mode = "circular"
    try:
        yield
    finally:
        for layer, mode in zip(layers, previous):
            layer.padding_mode = mode
