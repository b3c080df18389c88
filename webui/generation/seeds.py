"""A1111 seed semantics: random seeds, per-image seeds, initial noise, variation seeds.

The initial latent noise of every image is drawn on the CPU from its own
``torch.Generator`` seeded with that image's seed. That makes a seed give the
same noise on any device and at any batch size, and the noise is bit-identical
to A1111 with its "Random number generator source" setting on CPU (which is why
the infotext says ``RNG: CPU``).

Not implemented: A1111's "Resize seed from width/height" (``seed_resize_from_w/h``)
and the eta noise seed delta (ENSD) setting.
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


def make_noise(
    shape: tuple[int, ...],
    seeds: list[int],
    subseeds: list[int] | None = None,
    subseed_strength: float = 0.0,
    dtype: torch.dtype = torch.float32,
    generators: list[torch.Generator] | None = None,
) -> torch.Tensor:
    """Initial latent noise, [len(seeds), *shape] on the CPU, one image per seed.

    With ``subseed_strength`` > 0 each image's noise is slerped towards the noise
    of its variation seed (A1111's "Variation seed"). ``generators`` (from
    ``make_generators(seeds)``) are advanced past the noise so the caller can
    reuse them for per-step noise; without them fresh ones are made.
    """
    if generators is None:
        generators = make_generators(seeds)
    if len(generators) != len(seeds):
        raise ValueError(f"{len(generators)} generators for {len(seeds)} seeds")
    shape = tuple(int(d) for d in shape)
    images = []
    for i, generator in enumerate(generators):
        noise = torch.randn(shape, generator=generator, device="cpu", dtype=torch.float32)
        if subseeds is not None and subseed_strength != 0:
            # A1111 uses subseed 0 for images past the end of the subseed list.
            subseed = subseeds[i] if i < len(subseeds) else 0
            sub_generator = torch.Generator(device="cpu").manual_seed(int(subseed))
            subnoise = torch.randn(shape, generator=sub_generator, device="cpu", dtype=torch.float32)
            noise = slerp(subseed_strength, noise, subnoise)
        images.append(noise)
    # Drawn in float32 and cast afterwards so fp16 runs get the same noise, rounded.
    return torch.stack(images).to(dtype)
