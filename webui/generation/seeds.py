"""A1111 seed semantics: random seeds, per-image seeds, initial noise, variation seeds.

The initial latent noise of every image is drawn on the CPU from its own
``torch.Generator`` seeded with that image's seed. That makes a seed give the
same noise on any device and at any batch size, and the noise is bit-identical
to A1111 with its "Random number generator source" setting on CPU (which is why
the infotext says ``RNG: CPU``).

A1111's "Resize seed from width/height" is ``make_noise(..., resize_from=(h, w))``: the
noise of the seed at that (latent) size, pasted centred into the target noise (cropped when
larger), so a composition found at one size survives a change of size.

Not implemented: the eta noise seed delta (ENSD) setting.
"""

from __future__ import annotations

import random
from typing import Sequence

import torch

# A1111 draws random seeds with random.randrange(4294967294), i.e. 0..2**32-3,
# which lies inside the 32-bit range that users and the API may type in.
RANDOM_SEED_LIMIT = 4294967294
MAX_SEED = 2**32 - 1

# A1111's slerp falls back to plain interpolation when the two noises are this
# close to parallel, because sin(omega) would be ~0.
_PARALLEL_DOT = 0.9995


def resolve_seed(seed: int, rng: random.Random | None = None) -> int:
    """Return ``seed``, or a fresh random seed in 0..2**32-3 when it is -1 (as A1111 does)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if seed == -1:
        return (rng or random.Random()).randrange(RANDOM_SEED_LIMIT)
    if seed < 0:
        raise ValueError(f"seed must be -1 (random) or 0..{MAX_SEED}, got {seed}")
    return seed


def batch_seeds(seed: int, subseed: int, subseed_strength: float, count: int) -> tuple[list[int], list[int]]:
    """Per-image (seeds, subseeds) for ``count`` images from already-resolved seeds.

    As in A1111's process_images: image i uses seed + i, except that with a
    variation strength above 0 every image keeps the main seed and only the
    variation seed counts up (subseed + i), so a batch explores variations of one
    image.
    """
    seeds = [seed + (i if subseed_strength == 0 else 0) for i in range(count)]
    subseeds = [subseed + i for i in range(count)]
    return seeds, subseeds


def make_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per image, seeded with that image's seed.

    Pass the same list to ``make_noise`` and then to the pipeline's ``generator``
    argument: ancestral/SDE samplers then draw their per-step noise from the
    image's own generator, as A1111 does.
    """
    return [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]


def slerp(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``a`` (t=0) to ``b`` (t=1), exactly as A1111's rng.slerp.

    Like A1111 it normalises along dim 1 (rows of a [C, H, W] latent) and, when
    the inputs are nearly parallel, falls back to ``a * t + b * (1 - t)``; that
    fallback's weights are the reverse of the slerp's, and A1111 has it that way.
    """
    a_unit = a / torch.norm(a, dim=1, keepdim=True)
    b_unit = b / torch.norm(b, dim=1, keepdim=True)
    dot = (a_unit * b_unit).sum(1)
    if dot.mean() > _PARALLEL_DOT:
        return a * t + b * (1 - t)
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    weight_a = (torch.sin((1.0 - t) * omega) / sin_omega).unsqueeze(1)
    weight_b = (torch.sin(t * omega) / sin_omega).unsqueeze(1)
    return weight_a * a + weight_b * b


def _randn(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator(device="cpu").manual_seed(int(seed)), dtype=torch.float32)


def paste_centered(target: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """A1111's seed resize: ``noise`` [C, h, w] centred on ``target`` [C, H, W] (cropped centred when larger)."""
    out = target.clone()
    dx, dy = (target.shape[2] - noise.shape[2]) // 2, (target.shape[1] - noise.shape[1]) // 2
    w = noise.shape[2] if dx >= 0 else noise.shape[2] + 2 * dx
    h = noise.shape[1] if dy >= 0 else noise.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    out[:, ty:ty + h, tx:tx + w] = noise[:, sy:sy + h, sx:sx + w]
    return out


def make_noise(
    shape: tuple[int, ...],
    seeds: list[int],
    subseeds: list[int] | None = None,
    subseed_strength: float = 0.0,
    dtype: torch.dtype = torch.float32,
    generators: list[torch.Generator] | None = None,
    resize_from: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Initial latent noise, [len(seeds), *shape] on the CPU, one image per seed.

    With ``subseed_strength`` > 0 each image's noise is slerped towards the noise
    of its variation seed (A1111's "Variation seed"). ``resize_from`` is the latent
    (height, width) of A1111's "Resize seed from": the seed's (and variation seed's)
    noise is drawn at that size and pasted centred into noise of ``shape``.
    ``generators`` (from ``make_generators(seeds)``) are advanced past the noise of
    ``shape`` either way, so the caller can reuse them for per-step noise; without
    them fresh ones are made.
    """
    if generators is None:
        generators = make_generators(seeds)
    if len(generators) != len(seeds):
        raise ValueError(f"{len(generators)} generators for {len(seeds)} seeds")
    shape = tuple(int(d) for d in shape)
    seed_shape = shape
    if resize_from is not None and all(int(d) > 0 for d in resize_from):
        seed_shape = (shape[0], int(resize_from[0]), int(resize_from[1]))
    images = []
    for i, generator in enumerate(generators):
        if seed_shape != shape:
            noise = _randn(seeds[i], seed_shape)
        else:
            noise = torch.randn(shape, generator=generator, device="cpu", dtype=torch.float32)
        if subseeds is not None and subseed_strength != 0:
            # A1111 uses subseed 0 for images past the end of the subseed list.
            subseed = subseeds[i] if i < len(subseeds) else 0
            noise = slerp(subseed_strength, noise, _randn(subseed, seed_shape))
        if seed_shape != shape:
            # The image's own generator draws the full-size noise, as without a resize.
            full = torch.randn(shape, generator=generator, device="cpu", dtype=torch.float32)
            noise = paste_centered(full, noise)
        images.append(noise)
    # Drawn in float32 and cast afterwards so fp16 runs get the same noise, rounded.
    return torch.stack(images).to(dtype)
