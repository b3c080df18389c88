"""A1111's k-diffusion samplers and schedule types as diffusers-compatible schedulers (our own code).

- ``sigmas``: a model's sigma table and every A1111 1.10 schedule type;
- ``algorithms`` / ``solvers``: the samplers, as generators driven one model evaluation at a time;
- ``noise``: per-image noise (generators, Brownian trees) so batches equal single runs;
- ``scheduler``: ``KDiffusionScheduler``, the diffusers SchedulerMixin that runs them;
- ``ddim``: A1111's timestep DDIM and DDIM CFG++.
"""
from webui.generation.ksamplers.scheduler import SAMPLER_TRAITS, KDiffusionScheduler

__all__ = ["KDiffusionScheduler", "SAMPLER_TRAITS"]
