"""KDiffusionScheduler: A1111's k-diffusion samplers behind diffusers' scheduler interface.

A diffusers pipeline loop calls, per iteration: ``scale_model_input`` -> UNet -> ``step``.
This scheduler turns that loop into the driver of a sampler generator (algorithms.py): each
iteration is one model evaluation the sampler asked for. ``timesteps`` holds the (fractional)
training timestep of every evaluation, planned in ``set_timesteps`` by a dry run of the sampler
(its evaluation points depend only on the sigmas, never on the image). Multi-evaluation
samplers (Heun, DPM2, DPM++ SDE, Restart, ...) therefore need no special casing in the
pipeline, as with diffusers' own HeunDiscreteScheduler.

DPM adaptive decides its evaluation points as it goes: ``timesteps`` is then a budget of
``max_evals`` slots written in place one evaluation ahead (the pipeline iterates views of this
tensor, so it reads each slot when it gets there), and ``finished`` turns true when the sampler
is done; the guidance hook then skips the model for the remaining slots and the core ends the loop.

img2img pipelines slice ``timesteps[t_start * order:]`` and call ``set_begin_index``; the sampler
is then restarted on the truncated sigmas, as A1111 runs its sampler on ``sigmas[t_start:]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from webui.generation.ksamplers import algorithms as A
from webui.generation.ksamplers import solvers as S
from webui.generation.ksamplers.noise import BrownianNoise, GeneratorNoise
from webui.generation.ksamplers.sigmas import ModelSigmas, make_sigmas


@dataclass(frozen=True)
class SamplerTraits:
    fn: Callable
    order: int = 1  # model evaluations per step (for img2img's t_start * order slicing)
    brownian: bool = False  # SDE samplers: Brownian-tree noise (A1111's "brownian_noise")
    discard_next_to_last: bool = False  # A1111's discard_next_to_last_sigma
    dynamic: bool = False  # evaluation points chosen while sampling (DPM adaptive)


SAMPLER_TRAITS = {
    "euler": SamplerTraits(A.euler),
    "euler_ancestral": SamplerTraits(A.euler_ancestral),
    "heun": SamplerTraits(A.heun, order=2),
    "dpm_2": SamplerTraits(A.dpm_2, order=2, discard_next_to_last=True),
    "dpm_2_ancestral": SamplerTraits(A.dpm_2_ancestral, order=2, discard_next_to_last=True),
    "lms": SamplerTraits(A.lms),
    "dpmpp_2s_ancestral": SamplerTraits(A.dpmpp_2s_ancestral, order=2),
    "dpmpp_sde": SamplerTraits(A.dpmpp_sde, order=2, brownian=True),
    "dpmpp_2m": SamplerTraits(A.dpmpp_2m),
    "dpmpp_2m_sde": SamplerTraits(A.dpmpp_2m_sde, brownian=True),
    "dpmpp_2m_sde_heun": SamplerTraits(A.dpmpp_2m_sde_heun, brownian=True),
    "dpmpp_3m_sde": SamplerTraits(A.dpmpp_3m_sde, brownian=True, discard_next_to_last=True),
    "dpm_fast": SamplerTraits(S.dpm_fast),
    "dpm_adaptive": SamplerTraits(S.dpm_adaptive, dynamic=True),
    "restart": SamplerTraits(S.restart, order=2),
}


class _Ctx:
    """What a sampler generator may use besides the model: noise, eta, s_noise, DPM-Solver range, budget."""

    def __init__(self, noise, eta, s_noise, solver_range: tuple[float, float], evals_left=lambda: float("inf")):
        self.noise, self.eta, self.s_noise = noise, eta, s_noise
        # DPM fast / adaptive integrate from model_sigma_max down to model_sigma_min (see _solver_range).
        self.model_sigma_min, self.model_sigma_max = solver_range
        self.evals_left = evals_left


def _zero_noise(x, sigma, sigma_next):
    return torch.zeros_like(x)


class KDiffusionScheduler(SchedulerMixin, ConfigMixin):
    """Runs one of SAMPLER_TRAITS' samplers over one of sigmas.SCHEDULE_FUNCTIONS' schedules."""

    config_name = "scheduler_config.json"
    _compatibles: list = []
    order = 1

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
                 beta_schedule: str = "scaled_linear", trained_betas=None, prediction_type: str = "epsilon",
                 rescale_betas_zero_snr: bool = False, timestep_spacing: str = "linspace", steps_offset: int = 1,
                 sampler: str = "euler", schedule: str = "uniform", sdxl: bool = False, eta: float = 1.0,
                 s_noise: float = 1.0, max_evals: int = 1000):
        if sampler not in SAMPLER_TRAITS:
            raise ValueError(f"unknown k-diffusion sampler {sampler!r}")
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"unsupported prediction_type {prediction_type!r}")
        self.traits = SAMPLER_TRAITS[sampler]
        self.order = self.traits.order
        self.model_sigmas = ModelSigmas.from_config(self.config)
        self.noise_seeds: list[int] | None = None  # per-image Brownian-tree seeds (seeds.py / the core)
        self.num_inference_steps: int | None = None
        self.full_sigmas: torch.Tensor | None = None
        self.sigmas: torch.Tensor | None = None
        self.timesteps: torch.Tensor | None = None
        self._begin_index = 0
        self._reset_run(None)

    # --- planning
    def _noise_source(self, sigmas: torch.Tensor):
        if self.traits.brownian:
            positive = sigmas[sigmas > 0]
            source = BrownianNoise(float(positive.min()), float(sigmas.max()))
            source.seeds = self.noise_seeds
            return source
        return GeneratorNoise()

    def _solver_range(self, sigmas: torch.Tensor) -> tuple[float, float]:
        """A1111 runs DPM fast/adaptive over the model's whole range in txt2img, over the truncated
        schedule (sigma_sched[-2] .. sigma_sched[0]) in img2img."""
        if self._begin_index == 0 or len(sigmas) < 2:
            return self.model_sigmas.sigma_min, self.model_sigmas.sigma_max
        return float(sigmas[-2]), float(sigmas[0])

    def _dry_run(self, sigmas: torch.Tensor) -> torch.Tensor:
        """The sigma of every model evaluation the sampler will ask for (x-independent samplers)."""
        gen = self.traits.fn(_Ctx(_zero_noise, self.config.eta, self.config.s_noise, self._solver_range(sigmas)),
                             torch.zeros(1), sigmas)
        plan = []
        try:
            x, sigma = next(gen)
            while True:
                plan.append(torch.as_tensor(sigma, dtype=torch.float32))
                x, sigma = gen.send((x, torch.zeros_like(x)))
        except StopIteration:
            pass
        return torch.stack(plan)

    def _reset_run(self, sigmas: torch.Tensor | None):
        self.sigmas = sigmas
        self.finished = False
        self._gen = None
        self._pending = None
        self._returned = None
        self._noise = self._noise_source(sigmas) if sigmas is not None else None
        self._eval_index = self._begin_index
        if sigmas is not None:
            self._plan = (torch.stack([sigmas[0]]) if self.traits.dynamic else self._dry_run(sigmas))
            self._current_sigma = self._plan[0]

    def set_timesteps(self, num_inference_steps: int, device=None, **unused):
        """Plan ``num_inference_steps`` sampler steps: the schedule's sigmas and every evaluation's timestep."""
        self.num_inference_steps = int(num_inference_steps)
        self.full_sigmas = make_sigmas(self.config.schedule, self.num_inference_steps, self.model_sigmas,
                                       sdxl=self.config.sdxl,
                                       discard_next_to_last=self.traits.discard_next_to_last)
        self._begin_index = 0
        self._reset_run(self.full_sigmas)
        if self.traits.dynamic:
            slots = torch.full((int(self.config.max_evals),), float(self.model_sigmas.sigma_to_t(self._plan[0])))
        else:
            slots = self.model_sigmas.sigma_to_t(self._plan)
        self.timesteps = slots.to(device=device, dtype=torch.float32)

    def set_begin_index(self, begin_index: int = 0):
        """img2img: restart the sampler from step ``begin_index // order`` (A1111 samples ``sigmas[t_start:]``)."""
        self._begin_index = int(begin_index)
        sigmas = self.full_sigmas[self._begin_index // self.order:]
        self._reset_run(sigmas)
        if not self.traits.dynamic:
            room = len(self.timesteps) - self._begin_index
            if len(self._plan) > room:
                raise ValueError(f"the sampler needs {len(self._plan)} evaluations from step "
                                 f"{self._begin_index // self.order}, the pipeline left {room}")
            ts = self.model_sigmas.sigma_to_t(self._plan).to(self.timesteps)
            self.timesteps[self._begin_index:self._begin_index + len(ts)] = ts
        else:
            self.timesteps[self._begin_index] = self.model_sigmas.sigma_to_t(self._plan[0]).to(self.timesteps)

    @property
    def begin_index(self) -> int:
        return self._begin_index

    @property
    def step_index(self) -> int:
        return self._eval_index

    @property
    def init_noise_sigma(self) -> float:
        # A1111: x = noise * sigmas[0]
        return float(self.full_sigmas[0]) if self.full_sigmas is not None else self.model_sigmas.sigma_max

    @property
    def needs_unet_hook(self) -> bool:
        """True when the model must be skipped once ``finished`` (the budget slots past the end)."""
        return self.traits.dynamic

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    # --- the loop
    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """k-diffusion's c_in: the model sees x / sqrt(sigma^2 + 1)."""
        return sample / ((self._current_sigma ** 2 + 1) ** 0.5).to(sample.device, sample.dtype)

    def _denoised(self, x: torch.Tensor, sigma: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        sigma = sigma.to(x.device)
        kind = self.config.prediction_type
        if kind == "epsilon":
            return x - sigma * output
        if kind == "v_prediction":
            return x / (sigma ** 2 + 1) - output * sigma / (sigma ** 2 + 1) ** 0.5
        return output

    def _evals_left(self) -> int:
        return len(self.timesteps) - self._eval_index

    def _accept_request(self, sigma: torch.Tensor) -> None:
        """Check (fixed plans) or write (DPM adaptive) the timestep of the next evaluation."""
        index = self._eval_index
        if self.traits.dynamic:
            if index < len(self.timesteps):
                self.timesteps[index] = self.model_sigmas.sigma_to_t(sigma).to(self.timesteps)
        else:
            planned = self._plan[index - self._begin_index]
            if not torch.isclose(torch.as_tensor(sigma, dtype=torch.float32), planned, rtol=1e-5, atol=1e-7):
                raise RuntimeError(f"sampler asked for sigma {float(sigma)} at evaluation {index}, "
                                   f"planned {float(planned)}")
        self._current_sigma = torch.as_tensor(sigma, dtype=torch.float32)

    def _start(self, sample: torch.Tensor) -> None:
        if self.traits.brownian:
            self._noise.seeds = self.noise_seeds  # may have been set after set_timesteps
        ctx = _Ctx(self._noise, self.config.eta, self.config.s_noise, self._solver_range(self.sigmas),
                   self._evals_left)
        self._gen = self.traits.fn(ctx, sample.float(), self.sigmas)
        self._pending = next(self._gen)
        self._returned = sample

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None,
             return_dict: bool = True, **unused):
        """Feed one model evaluation to the sampler; returns the latents of its next evaluation (or the result)."""
        if self.sigmas is None:
            raise RuntimeError("call set_timesteps before step")
        if self.finished:  # DPM adaptive's unused budget slots
            return SchedulerOutput(prev_sample=sample) if return_dict else (sample,)
        if self._gen is None:
            self._start(sample)
        self._noise.generators = generator
        x_eval, sigma = self._pending
        # Our own float32 latents unless the pipeline replaced them (e.g. inpainting's mask blend).
        x_seen = x_eval if sample is self._returned else sample.float()
        denoised = self._denoised(x_seen, sigma, model_output.float())
        self._eval_index += 1
        try:
            self._pending = self._gen.send((x_seen, denoised))
        except StopIteration as stop:
            out = stop.value
            self.finished = True
        else:
            self._accept_request(self._pending[1])
            out = self._pending[0]
        self._returned = out.to(sample.dtype)
        if not return_dict:
            return (self._returned,)
        return SchedulerOutput(prev_sample=self._returned)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """img2img's start: x = image latents + noise * sigma(t), as A1111's ``x + noise * sigma_sched[0]``."""
        t = torch.as_tensor(timesteps).to(torch.float32).cpu().reshape(-1)
        sigma = self.model_sigmas.t_to_sigma(t)
        if self.timesteps is not None:
            # Exact sigmas for our own planned timesteps (t_to_sigma(sigma_to_t(s)) only round-trips approximately).
            planned = self.timesteps.cpu()
            for i, value in enumerate(t):
                hits = (planned == value).nonzero()
                if len(hits):
                    index = int(hits[0])
                    sigma[i] = self._plan[index - self._begin_index] if index >= self._begin_index \
                        else self.model_sigmas.t_to_sigma(value)
        sigma = sigma.to(original_samples.device, original_samples.dtype)
        while sigma.ndim < original_samples.ndim:
            sigma = sigma.unsqueeze(-1)
        return original_samples + noise * sigma
