"""A model's noise levels in k-diffusion terms, and A1111's schedule types over them.

k-diffusion (and so A1111) samples in "sigma space": ``x = x0 + sigma * noise``. A
discrete-time model (SD 1.x/2.x/XL) was trained on 1000 timesteps, each with a
sigma derived from its ``alphas_cumprod``; a continuous sigma maps to a fractional
timestep by interpolating ``log(sigma)`` between neighbours. The functions below
follow k-diffusion's ``DiscreteSchedule`` and A1111 1.10's ``sd_schedulers.py``
(written from their published definitions), float32 like A1111.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
import torch

# A1111's Align Your Steps tables (NVIDIA's published 10-step schedules).
AYS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)

# A1111's defaults for the Beta schedule's distribution (settings beta_dist_alpha / beta_dist_beta).
BETA_ALPHA = 0.6
BETA_BETA = 0.6


def alphas_cumprod_from_config(config: Mapping[str, Any]) -> torch.Tensor:
    """The model's training ``alphas_cumprod`` from a diffusers scheduler config (float32).

    Computed in float64 and rounded once, as the original LDM code does for SD checkpoints.
    """
    n = int(config.get("num_train_timesteps", 1000))
    trained = config.get("trained_betas")
    schedule = config.get("beta_schedule", "scaled_linear")
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    if trained is not None:
        betas = torch.tensor(trained, dtype=torch.float64)
    elif schedule == "scaled_linear":
        betas = torch.from_numpy(np.linspace(start ** 0.5, end ** 0.5, n, dtype=np.float64) ** 2)
    elif schedule == "linear":
        betas = torch.from_numpy(np.linspace(start, end, n, dtype=np.float64))
    elif schedule == "squaredcos_cap_v2":
        from diffusers.schedulers.scheduling_ddpm import betas_for_alpha_bar

        betas = betas_for_alpha_bar(n).double()
    else:
        raise ValueError(f"unsupported beta_schedule {schedule!r}")
    if config.get("rescale_betas_zero_snr"):
        from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr

        betas = rescale_zero_terminal_snr(betas)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    if config.get("rescale_betas_zero_snr"):
        # Zero terminal SNR means sigma_max = inf; diffusers' k-style schedulers use this floor.
        alphas_cumprod[-1] = 2 ** -24
    return alphas_cumprod.float()


class ModelSigmas:
    """The sigma of each training timestep and the sigma <-> timestep maps (k-diffusion's DiscreteSchedule)."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        self.alphas_cumprod = alphas_cumprod.float()
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
        self.log_sigmas = self.sigmas.log()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ModelSigmas":
        return cls(alphas_cumprod_from_config(config))

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional training timestep of ``sigma`` (interpolated in log sigma, clamped to the range)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        log_sigma = sigma.log()
        dists = log_sigma - self.log_sigmas[:, None]
        low_idx = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=self.log_sigmas.shape[0] - 2)
        high_idx = low_idx + 1
        low, high = self.log_sigmas[low_idx], self.log_sigmas[high_idx]
        w = ((low - log_sigma) / (low - high)).clamp(0, 1)
        t = (1 - w) * low_idx + w * high_idx
        return t.view(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32)
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]
        return log_sigma.exp()

    def uniform(self, n: int) -> torch.Tensor:
        """k-diffusion's get_sigmas(n): n timesteps evenly from the last to 0, then a final 0."""
        t = torch.linspace(len(self.sigmas) - 1, 0, n)
        return _append_zero(self.t_to_sigma(t))


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas.float(), sigmas.new_zeros([1], dtype=torch.float32)])


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    ramp = torch.linspace(1, 0, n) ** rho
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def sgm_uniform(n: int, model: ModelSigmas) -> torch.Tensor:
    start, end = model.sigma_to_t(torch.tensor(model.sigma_max)), model.sigma_to_t(torch.tensor(model.sigma_min))
    return _append_zero(model.t_to_sigma(torch.linspace(float(start), float(end), n + 1)[:-1]))


def kl_optimal(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """A1111's KL Optimal: n + 1 sigmas ending at sigma_min, not 0 (so the last step leaves that much noise)."""
    alpha_min, alpha_max = torch.arctan(torch.tensor(sigma_min)), torch.arctan(torch.tensor(sigma_max))
    steps = torch.arange(n + 1)
    return torch.tan(steps / n * alpha_min + (1.0 - steps / n) * alpha_max).float()


def align_your_steps(n: int, sdxl: bool) -> torch.Tensor:
    table = AYS_SDXL if sdxl else AYS_SD15
    if n == len(table):
        return _append_zero(torch.tensor(table))
    # Log-linear interpolation of the 11-point table to n points.
    xs = np.linspace(0, 1, len(table))
    ys = np.log(np.array(table)[::-1])
    interpolated = np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1].copy()
    return _append_zero(torch.tensor(interpolated, dtype=torch.float32))


def simple(n: int, model: ModelSigmas) -> torch.Tensor:
    stride = len(model.sigmas) / n
    return _append_zero(torch.stack([model.sigmas[-(1 + int(i * stride))] for i in range(n)]))


def normal(n: int, model: ModelSigmas) -> torch.Tensor:
    start, end = model.sigma_to_t(torch.tensor(model.sigma_max)), model.sigma_to_t(torch.tensor(model.sigma_min))
    return _append_zero(model.t_to_sigma(torch.linspace(float(start), float(end), n)))


def ddim(n: int, model: ModelSigmas) -> torch.Tensor:
    """A1111's DDIM schedule: every (1000 // n)-th training sigma from index 1 (may give a step more than n)."""
    stride = max(len(model.sigmas) // n, 1)
    picked = [model.sigmas[i] for i in range(1, len(model.sigmas), stride)]
    return _append_zero(torch.stack(picked[::-1]))


def beta(n: int, sigma_min: float, sigma_max: float, alpha: float = BETA_ALPHA, b: float = BETA_BETA) -> torch.Tensor:
    from scipy import stats

    ts = [stats.beta.ppf(x, alpha, b) for x in 1 - np.linspace(0, 1, n)]
    return _append_zero(torch.tensor([sigma_min + x * (sigma_max - sigma_min) for x in ts], dtype=torch.float32))


# Schedule key -> function(n, model, sdxl) -> sigmas. "uniform" is also what "Automatic" means
# for samplers without a default schedule (k-diffusion's own get_sigmas).
ScheduleFn = Callable[[int, ModelSigmas, bool], torch.Tensor]
SCHEDULE_FUNCTIONS: Mapping[str, ScheduleFn] = {
    "uniform": lambda n, m, sdxl: m.uniform(n),
    "karras": lambda n, m, sdxl: karras(n, m.sigma_min, m.sigma_max),
    "exponential": lambda n, m, sdxl: exponential(n, m.sigma_min, m.sigma_max),
    "polyexponential": lambda n, m, sdxl: polyexponential(n, m.sigma_min, m.sigma_max),
    "sgm_uniform": lambda n, m, sdxl: sgm_uniform(n, m),
    "kl_optimal": lambda n, m, sdxl: kl_optimal(n, m.sigma_min, m.sigma_max),
    "align_your_steps": lambda n, m, sdxl: align_your_steps(n, sdxl),
    "simple": lambda n, m, sdxl: simple(n, m),
    "normal": lambda n, m, sdxl: normal(n, m),
    "ddim": lambda n, m, sdxl: ddim(n, m),
    "beta": lambda n, m, sdxl: beta(n, m.sigma_min, m.sigma_max),
}


def make_sigmas(schedule: str, steps: int, model: ModelSigmas, sdxl: bool = False,
                discard_next_to_last: bool = False) -> torch.Tensor:
    """The sampler's sigmas for ``steps`` steps, as A1111's KDiffusionSampler.get_sigmas builds them."""
    if schedule not in SCHEDULE_FUNCTIONS:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULE_FUNCTIONS)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    n = steps + 1 if discard_next_to_last else steps
    sigmas = SCHEDULE_FUNCTIONS[schedule](n, model, sdxl).float()
    if discard_next_to_last:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas
