"""A1111's timestep DDIM and DDIM CFG++ as a diffusers scheduler.

A1111 1.10 runs DDIM on its own timesteps (``sd_samplers_timesteps``): ``t_k = 1 + k * (1000 // steps)``
clipped to 999, evaluated from the last down to ``t_1``, each step moving to the previous
entry, so ``steps`` steps make ``steps - 1`` model evaluations and end at ``t_0 = 1``. That
differs from diffusers' DDIMScheduler (which evaluates all ``steps`` and ends at alpha[0]),
so we follow A1111 here to reproduce its images.

DDIM CFG++ (Chung et al. 2024, "CFG++: Manifold-constrained classifier free guidance") uses
the *unconditional* noise prediction for the direction back to x_t and divides the CFG scale
by 12.5. Both need more than the pipeline hands a scheduler: the guidance hook
(``webui.generation.guidance``) applies the scale multiplier and stores the unconditional
prediction in ``uncond_output`` before every ``step``.
"""
from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from webui.generation.ksamplers.noise import GeneratorNoise
from webui.generation.ksamplers.sigmas import alphas_cumprod_from_config

CFGPP_SCALE_MULTIPLIER = 1 / 12.5


class A1111DDIMScheduler(SchedulerMixin, ConfigMixin):
    """DDIM (``cfgpp=False``) or DDIM CFG++ (``cfgpp=True``) on A1111's timesteps; eta is A1111's "Eta DDIM"."""

    config_name = "scheduler_config.json"
    _compatibles: list = []
    order = 1
    init_noise_sigma = 1.0

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
                 beta_schedule: str = "scaled_linear", trained_betas=None, prediction_type: str = "epsilon",
                 rescale_betas_zero_snr: bool = False, timestep_spacing: str = "leading", steps_offset: int = 1,
                 cfgpp: bool = False, eta: float = 0.0):
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"unsupported prediction_type {prediction_type!r}")
        self.alphas_cumprod = alphas_cumprod_from_config(self.config)
        self.uncond_output: torch.Tensor | None = None
        self.timesteps: torch.Tensor | None = None
        self.num_inference_steps: int | None = None
        self._all: torch.Tensor | None = None
        self._index = 0
        self._begin_index = 0
        self._noise = GeneratorNoise()

    @property
    def needs_uncond(self) -> bool:
        return bool(self.config.cfgpp)

    @property
    def guidance_scale_multiplier(self) -> float:
        return CFGPP_SCALE_MULTIPLIER if self.config.cfgpp else 1.0

    @property
    def begin_index(self) -> int:
        return self._begin_index

    @property
    def step_index(self) -> int:
        return self._index

    def set_timesteps(self, num_inference_steps: int, device=None, **unused):
        n = int(num_inference_steps)
        if n < 1:
            raise ValueError(f"steps must be at least 1, got {n}")
        train = self.config.num_train_timesteps
        self._all = torch.clip(torch.arange(0, train, max(train // n, 1)) + 1, 0, train - 1)
        self.num_inference_steps = n
        # Evaluated from the last entry down to entry 1; entry 0 is only the final destination.
        self.timesteps = self._all.flip(0)[:-1].to(device)
        self._index = self._begin_index = 0

    def set_begin_index(self, begin_index: int = 0):
        self._index = self._begin_index = int(begin_index)

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def _eps(self, output: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
        if self.config.prediction_type == "v_prediction":
            return alpha ** 0.5 * output + (1 - alpha) ** 0.5 * x
        return output

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None,
             return_dict: bool = True, **unused):
        if self.timesteps is None:
            raise RuntimeError("call set_timesteps before step")
        entry = len(self._all) - 1 - self._index
        if entry < 1:
            raise RuntimeError("DDIM stepped past its last timestep")
        a_t = float(self.alphas_cumprod[self._all[entry]])
        a_prev = float(self.alphas_cumprod[self._all[entry - 1]].double())
        sigma_t = self.config.eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
        x = sample.float()
        eps = self._eps(model_output.float(), x, a_t)
        if self.config.cfgpp:
            if self.uncond_output is None:
                raise RuntimeError("DDIM CFG++ needs the unconditional prediction; run it through the guidance hook")
            direction = self._eps(self.uncond_output.float().to(x.device), x, a_t)
            self.uncond_output = None  # one per evaluation: a stale one must never be reused
        else:
            direction = eps
        pred_x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
        x = a_prev ** 0.5 * pred_x0 + (1.0 - a_prev - sigma_t ** 2) ** 0.5 * direction
        if sigma_t:
            self._noise.generators = generator
            x = x + sigma_t * self._noise(x, None, None)
        self._index += 1
        prev = x.to(sample.dtype)
        if not return_dict:
            return (prev,)
        return SchedulerOutput(prev_sample=prev)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        alpha = self.alphas_cumprod[torch.as_tensor(timesteps).long().cpu()].to(original_samples.device,
                                                                                 original_samples.dtype)
        while alpha.ndim < original_samples.ndim:
            alpha = alpha.unsqueeze(-1)
        return alpha.sqrt() * original_samples + (1 - alpha).sqrt() * noise

    def __len__(self) -> int:
        return self.config.num_train_timesteps
