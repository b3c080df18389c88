"""A1111 sampler and schedule-type names mapped onto diffusers schedulers.

A1111 splits a sampler ("DPM++ 2M") from its schedule type ("Karras"); older
versions used combined names ("DPM++ 2M Karras") and k-diffusion style aliases
("k_dpmpp_2m_ka"). Everything here accepts all three spellings and hands back the
modern pair, then builds the diffusers scheduler from the loaded model's own
scheduler config so the model's beta schedule and prediction type survive.

Seeding the per-step noise: ancestral and SDE samplers (``SamplerSpec.stochastic``)
draw fresh noise inside ``scheduler.step``. A1111 draws that noise from the same
per-image CPU generator that made the image's initial latent, so a given seed
gives the same image at any batch size. The core gets the same behaviour by
creating the generators with ``seeds.make_generators(seeds)``, passing them to
``seeds.make_noise(..., generators=gens)`` for the initial latents and then
passing the same list as the pipeline's ``generator=`` argument (diffusers'
``randn_tensor`` draws one tensor per generator, on the generator's device).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import diffusers
from diffusers.utils import is_scipy_available, is_torchsde_available

AUTOMATIC = "Automatic"
UNIFORM = "Uniform"
KARRAS = "Karras"
EXPONENTIAL = "Exponential"
SGM_UNIFORM = "SGM Uniform"

SCHEDULES: tuple[str, ...] = (AUTOMATIC, UNIFORM, KARRAS, EXPONENTIAL, SGM_UNIFORM)

# Config keys that describe the *model* (its training noise schedule and output
# parameterisation). Only these travel from the model's scheduler config into the
# new scheduler; algorithm keys such as ``algorithm_type`` or ``use_karras_sigmas``
# belong to whichever sampler wrote the config and must not leak into another one.
MODEL_CONFIG_KEYS: tuple[str, ...] = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "timestep_spacing",
    "steps_offset",
    "rescale_betas_zero_snr",
)

_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")

# What each schedule type sets on a scheduler. Karras and Exponential also ask for
# "linspace" spacing: with SD's "leading" spacing, Euler/Heun/KDPM2 derive sigma_max
# from the first leading timestep (about 11.0 instead of 14.6 for SD 1.5), while
# A1111/k-diffusion always span the model's full sigma range. Uniform is
# k-diffusion's get_sigmas(n), which is diffusers' "linspace"; diffusers documents
# "trailing" as the equivalent of SGM Uniform.
_SCHEDULE_KWARGS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    UNIFORM: MappingProxyType({"timestep_spacing": "linspace"}),
    KARRAS: MappingProxyType({"use_karras_sigmas": True, "timestep_spacing": "linspace"}),
    EXPONENTIAL: MappingProxyType({"use_exponential_sigmas": True, "timestep_spacing": "linspace"}),
    SGM_UNIFORM: MappingProxyType({"timestep_spacing": "trailing"}),
})

# Spellings A1111 accepts for schedule types (label, internal name, alias).
_SCHEDULE_SPELLINGS: Mapping[str, str] = MappingProxyType({
    "automatic": AUTOMATIC,
    "uniform": UNIFORM,
    "karras": KARRAS,
    "exponential": EXPONENTIAL,
    "sgm uniform": SGM_UNIFORM,
    "sgm_uniform": SGM_UNIFORM,
    "sgmuniform": SGM_UNIFORM,
})

_ALL = SCHEDULES
_SPACING_ONLY = (AUTOMATIC, UNIFORM, SGM_UNIFORM)

_NO_SCIPY = "needs the 'scipy' package, which is not installed"
_NO_TORCHSDE = "needs the 'torchsde' package, which is not installed"
_NO_2S_ANCESTRAL = (
    "diffusers has no ancestral single-step DPM-Solver++; "
    "DPMSolverSinglestepScheduler is deterministic, so it would not be the same sampler"
)


@dataclass(frozen=True)
class SamplerSpec:
    """One A1111 sampler and the diffusers scheduler that implements it."""

    name: str
    aliases: tuple[str, ...]
    scheduler_class_name: str
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    schedules: tuple[str, ...] = _ALL
    default_schedule: str | None = None
    available: bool = True
    reason: str = ""
    stochastic: bool = False
    # diffusers' DPM++ SDE draws its noise from one Brownian tree for the whole batch, seeded by
    # ``noise_sampler_seed`` rather than per-image generators: deterministic per seed, but an image
    # depends on its batch (A1111 seeds one tree per image; diffusers cannot).
    batch_independent: bool = True


def _spec(name, aliases, cls, kwargs=None, **rest) -> SamplerSpec:
    return SamplerSpec(name, tuple(aliases), cls, MappingProxyType(dict(kwargs or {})), **rest)


# Order and aliases follow A1111 1.10 (k-diffusion samplers, then timestep
# samplers, then LCM); default_schedule is A1111's per-sampler "scheduler" option,
# i.e. what "Automatic" means for that sampler.
SAMPLERS: tuple[SamplerSpec, ...] = (
    _spec("DPM++ 2M", ["k_dpmpp_2m"], "DPMSolverMultistepScheduler",
          {"algorithm_type": "dpmsolver++", "solver_order": 2}, default_schedule=KARRAS),
    _spec("DPM++ SDE", ["k_dpmpp_sde"], "DPMSolverSDEScheduler", default_schedule=KARRAS,
          available=is_torchsde_available(), reason="" if is_torchsde_available() else _NO_TORCHSDE,
          stochastic=True, batch_independent=False),
    _spec("DPM++ 2M SDE", ["k_dpmpp_2m_sde"], "DPMSolverMultistepScheduler",
          {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
          default_schedule=EXPONENTIAL, stochastic=True),
    _spec("DPM++ 2S a", ["k_dpmpp_2s_a"], "DPMSolverSinglestepScheduler", default_schedule=KARRAS,
          available=False, reason=_NO_2S_ANCESTRAL, stochastic=True),
    _spec("Euler a", ["k_euler_a", "k_euler_ancestral"], "EulerAncestralDiscreteScheduler",
          schedules=_SPACING_ONLY, stochastic=True),
    _spec("Euler", ["k_euler"], "EulerDiscreteScheduler"),
    _spec("LMS", ["k_lms"], "LMSDiscreteScheduler",
          available=is_scipy_available(), reason="" if is_scipy_available() else _NO_SCIPY),
    _spec("Heun", ["k_heun"], "HeunDiscreteScheduler"),
    _spec("DPM2", ["k_dpm_2"], "KDPM2DiscreteScheduler", default_schedule=KARRAS),
    _spec("DPM2 a", ["k_dpm_2_a"], "KDPM2AncestralDiscreteScheduler", default_schedule=KARRAS,
          stochastic=True),
    _spec("DDIM", ["ddim"], "DDIMScheduler",
          {"clip_sample": False, "set_alpha_to_one": False}, schedules=_SPACING_ONLY),
    _spec("PLMS", ["plms"], "PNDMScheduler",
          {"skip_prk_steps": True, "set_alpha_to_one": False}, schedules=_SPACING_ONLY),
    _spec("UniPC", ["unipc"], "UniPCMultistepScheduler"),
    # LCMScheduler.set_timesteps ignores timestep_spacing, so only Automatic is honest.
    _spec("LCM", ["k_lcm"], "LCMScheduler",
          {"clip_sample": False, "set_alpha_to_one": False}, schedules=(AUTOMATIC,), stochastic=True),
)

# Old k-diffusion aliases that named a sampler and a schedule at once.
_COMBINED_ALIASES: Mapping[str, tuple[str, str]] = MappingProxyType({
    "k_lms_ka": ("LMS", KARRAS),
    "k_dpm_2_ka": ("DPM2", KARRAS),
    "k_dpm_2_a_ka": ("DPM2 a", KARRAS),
    "k_dpmpp_2s_a_ka": ("DPM++ 2S a", KARRAS),
    "k_dpmpp_2m_ka": ("DPM++ 2M", KARRAS),
    "k_dpmpp_sde_ka": ("DPM++ SDE", KARRAS),
    "k_dpmpp_2m_sde_ka": ("DPM++ 2M SDE", KARRAS),
    "k_dpmpp_2m_sde_exp": ("DPM++ 2M SDE", EXPONENTIAL),
})


def sampler_names(include_unavailable: bool = False) -> list[str]:
    """A1111 sampler names in display order; unavailable ones only when asked."""
    return [s.name for s in SAMPLERS if include_unavailable or s.available]


def schedule_names() -> list[str]:
    """All schedule-type labels this project offers."""
    return list(SCHEDULES)


def _valid_sampler_text() -> str:
    text = ", ".join(sampler_names())
    missing = [s.name for s in SAMPLERS if not s.available]
    return text + (f" (not available here: {', '.join(missing)})" if missing else "")


def _lookup_sampler(name: str) -> SamplerSpec | None:
    key = name.strip().lower()
    for spec in SAMPLERS:
        if key == spec.name.lower() or key in (a.lower() for a in spec.aliases):
            return spec
    return None


def _lookup_schedule(name: str) -> str | None:
    return _SCHEDULE_SPELLINGS.get(name.strip().lower())


def get_sampler(name: str) -> SamplerSpec:
    """The spec for a sampler name or alias (exact sampler, no schedule suffix)."""
    spec = _lookup_sampler(name)
    if spec is None:
        raise ValueError(f"Unknown sampler {name!r}. Valid samplers: {_valid_sampler_text()}")
    return spec


def normalize_sampler(name: str, scheduler: str | None) -> tuple[str, str]:
    """Return the (sampler, schedule) pair for any A1111 spelling.

    Accepts names, aliases, old combined names ("DPM++ 2M Karras") and combined
    aliases ("k_dpmpp_2m_ka"); a schedule in the name wins over ``scheduler``, as
    in A1111. Raises ValueError naming the valid choices.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"Sampler name is empty. Valid samplers: {_valid_sampler_text()}")
    schedule = AUTOMATIC
    if scheduler is not None and str(scheduler).strip():
        found = _lookup_schedule(str(scheduler))
        if found is None:
            raise ValueError(
                f"Unknown schedule type {scheduler!r}. Valid schedule types: {', '.join(SCHEDULES)}")
        schedule = found

    spec = _lookup_sampler(name)
    if spec is None:
        combined = _COMBINED_ALIASES.get(name.strip().lower())
        if combined is not None:
            spec, schedule = _lookup_sampler(combined[0]), combined[1]
    if spec is None:
        # Longest spellings first so "X SGM Uniform" is not read as "X SGM" + "Uniform".
        for spelling in sorted(_SCHEDULE_SPELLINGS, key=len, reverse=True):
            if name.strip().lower().endswith(" " + spelling):
                spec = _lookup_sampler(name.strip()[: -len(spelling) - 1])
                if spec is not None:
                    schedule = _SCHEDULE_SPELLINGS[spelling]
                    break
    if spec is None:
        raise ValueError(f"Unknown sampler {name!r}. Valid samplers: {_valid_sampler_text()}")
    if schedule not in spec.schedules:
        raise ValueError(
            f"Schedule type {schedule!r} is not supported by sampler {spec.name!r}. "
            f"Valid schedule types for it: {', '.join(spec.schedules)}")
    return spec.name, schedule


def effective_schedule(sampler: str, schedule: str | None) -> str:
    """What "Automatic" means for this sampler (e.g. Karras for DPM++ 2M); others unchanged.

    This is the label A1111 writes as "Schedule type" in the infotext.
    """
    name, schedule = normalize_sampler(sampler, schedule)
    spec = get_sampler(name)
    if schedule == AUTOMATIC and spec.default_schedule is not None:
        return spec.default_schedule
    return schedule


def _init_params(cls) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def build_scheduler(base_config: Mapping[str, Any], sampler: str, schedule: str | None = AUTOMATIC):
    """Build the diffusers scheduler for an A1111 sampler and schedule type.

    ``base_config`` is the loaded model's ``pipeline.scheduler.config``; its beta
    schedule, prediction type, timestep spacing and steps offset are kept unless
    the schedule type overrides the spacing. Raises ValueError for unknown names
    and for samplers that are unavailable here (the message says why).
    """
    name, schedule = normalize_sampler(sampler, schedule)
    spec = get_sampler(name)
    if not spec.available:
        raise ValueError(f"Sampler {spec.name!r} is not available: {spec.reason}")
    cls = getattr(diffusers, spec.scheduler_class_name)
    accepted = _init_params(cls)

    config = {k: base_config[k] for k in MODEL_CONFIG_KEYS if k in base_config and k in accepted}
    config.update({k: v for k, v in spec.kwargs.items() if k in accepted})
    # A sigma schedule the sampler does not ask for is switched off explicitly, so
    # "Automatic" really is the sampler's own default whatever the config said.
    config.update({flag: False for flag in _SIGMA_FLAGS if flag in accepted})
    resolved = effective_schedule(name, schedule)
    for key, value in _SCHEDULE_KWARGS.get(resolved, {}).items():
        if key in accepted:
            config[key] = value
    return cls.from_config(config)


def seed_scheduler(scheduler, seed: int) -> None:
    """Seed a scheduler whose noise does not come from the pipeline's generators (DPM++ SDE).

    Call before each pipeline run: without it diffusers seeds the Brownian tree at random and
    the same request would give different images.
    """
    if hasattr(scheduler, "noise_sampler_seed"):
        scheduler.noise_sampler_seed = int(seed)
        scheduler.noise_sampler = None
