"""Per-image noise for stochastic samplers, so image i of a batch equals a single run with its seed.

Two kinds, as in A1111:
- ancestral samplers draw plain Gaussian noise from each image's own CPU generator (the one
  that made its initial latent, continued), which A1111 does through its per-image RNG;
- SDE samplers ("brownian_noise" in A1111) sample a Brownian motion: one torchsde Brownian
  tree per image, seeded with that image's seed (A1111's create_noise_sampler), so the
  noise between two sigmas is the same whatever the step sizes and the batch.

Noise is drawn on the CPU in float32 and then moved, so a seed gives the same image on any device.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch


def _draw_per_image(shape: torch.Size, generators) -> torch.Tensor:
    if generators is None:
        return torch.randn(tuple(shape), dtype=torch.float32)
    if isinstance(generators, torch.Generator):
        generators = [generators]
    if len(generators) == 1 and shape[0] != 1:
        return torch.randn(tuple(shape), generator=generators[0], dtype=torch.float32,
                           device=generators[0].device)
    if len(generators) != shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, dtype=torch.float32, device=g.device)
                        for g in generators])


class GeneratorNoise:
    """Gaussian noise from the per-image generators the pipeline passes to ``step``."""

    def __init__(self):
        self.generators = None

    def __call__(self, x: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
        return _draw_per_image(x.shape, self.generators).to(x.device, x.dtype)


class BrownianNoise:
    """k-diffusion's BrownianTreeNoiseSampler with one tree per image (entropy = the image's seed).

    Trees are built lazily at the first draw (their shape is the latent's). ``seeds`` come from
    ``KDiffusionScheduler.noise_seeds`` (the core sets the batch's seeds); without them each image
    draws its tree's entropy from its own generator, which keeps batches and single runs equal.
    """

    def __init__(self, sigma_min: float, sigma_max: float):
        self.t0, self.t1 = float(sigma_min), float(sigma_max)
        self.seeds: Sequence[int] | None = None
        self.generators = None
        self._trees = None

    def _make_trees(self, x: torch.Tensor):
        import torchsde

        seeds = self.seeds
        if seeds is None:
            gens = self.generators
            if isinstance(gens, torch.Generator):
                gens = [gens]
            if gens is not None and len(gens) == x.shape[0]:
                seeds = [int(torch.randint(0, 2 ** 63 - 1, (), generator=g)) for g in gens]
            else:
                seeds = [int(torch.randint(0, 2 ** 63 - 1, ())) for _ in range(x.shape[0])]
        if len(seeds) != x.shape[0]:
            raise ValueError(f"{len(seeds)} noise seeds for a batch of {x.shape[0]}")
        w0 = torch.zeros(tuple(x.shape[1:]), dtype=torch.float32)
        return [torchsde.BrownianTree(torch.tensor(self.t0), w0, torch.tensor(self.t1), entropy=int(s))
                for s in seeds]

    def __call__(self, x: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
        if self._trees is None:
            self._trees = self._make_trees(x)
        a, b = float(sigma), float(sigma_next)
        lo, hi, sign = (a, b, 1.0) if a < b else (b, a, -1.0)
        # The tree answers W(hi) - W(lo); k-diffusion orients it (sigma_min < sigma_max tree, sign flip)
        # and divides by sqrt(|dt|) so the result is unit Gaussian.
        with warnings.catch_warnings():
            # Samplers recompute sigma as exp(-(-log sigma)), a float32 ulp outside the tree's range;
            # torchsde warns and answers correctly (k-diffusion in A1111 does the same).
            warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)
            w = torch.stack([tree(torch.tensor(lo), torch.tensor(hi)) for tree in self._trees]) * sign
        return (w / abs(hi - lo) ** 0.5).to(x.device, x.dtype)
