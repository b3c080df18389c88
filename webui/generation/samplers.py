"""A1111 sampler and schedule-type names mapped onto schedulers a diffusers pipeline can run.

A1111 splits a sampler ("DPM++ 2M") from its schedule type ("Karras"); older
versions used combined names ("DPM++ 2M Karras") and k-diffusion style aliases
("k_dpmpp_2m_ka"). Everything here accepts all three spellings and hands back the
modern pair, then builds the scheduler from the loaded model's own scheduler config
so the model's beta schedule and prediction type survive.

A1111's k-diffusion samplers (DPM++ 2M, Euler a, ..., Restart) and its DDIM / DDIM CFG++
run on our own schedulers in ``webui/generation/ksamplers`` (k-diffusion's algorithms and
every A1111 schedule type, written for diffusers' pipeline loop); PLMS, UniPC and LCM
use diffusers' schedulers.

Seeding the per-step noise: ancestral samplers (``SamplerSpec.stochastic``) draw fresh
noise inside ``scheduler.step`` from the same per-image CPU generator that made the
image's initial latent, as A1111 does, so a given seed gives the same image at any batch
size. The core creates the generators with ``seeds.make_generators(seeds)``, passes them
to ``seeds.make_noise(..., generators=gens)`` for the initial latents and then passes
the same list as the pipeline's ``generator=`` argument. SDE samplers use Brownian trees
seeded per image by ``seed_scheduler(scheduler, batch_seeds)``.
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping


# Availability without importing the packages (or diffusers): the UI and API list samplers at start-up.
def is_scipy_available() -> bool:
    return importlib.util.find_spec("scipy") is not None


def is_torchsde_available() -> bool:
    return importlib.util.find_spec("torchsde") is not None


AUTOMATIC = "Automatic"
UNIFORM = "Uniform"
KARRAS = "Karras"
EXPONENTIAL = "Exponential"
POLYEXPONENTIAL = "Polyexponential"
SGM_UNIFORM = "SGM Uniform"
KL_OPTIMAL = "KL Optimal"
ALIGN_YOUR_STEPS = "Align Your Steps"
SIMPLE = "Simple"
NORMAL = "Normal"
DDIM_SCHEDULE = "DDIM"
BETA = "Beta"

# A1111 1.10's schedule types, in its order.
SCHEDULES: tuple[str, ...] = (AUTOMATIC, UNIFORM, KARRAS, EXPONENTIAL, POLYEXPONENTIAL, SGM_UNIFORM, KL_OPTIMAL,
                              ALIGN_YOUR_STEPS, SIMPLE, NORMAL, DDIM_SCHEDULE, BETA)

# Label -> schedule function key of webui.generation.ksamplers.sigmas (k-diffusion samplers).
_K_SCHEDULE_KEYS: Mapping[str, str] = MappingProxyType({
    UNIFORM: "uniform", KARRAS: "karras", EXPONENTIAL: "exponential", POLYEXPONENTIAL: "polyexponential",
    SGM_UNIFORM: "sgm_uniform", KL_OPTIMAL: "kl_optimal", ALIGN_YOUR_STEPS: "align_your_steps",
    SIMPLE: "simple", NORMAL: "normal", DDIM_SCHEDULE: "ddim", BETA: "beta",
})

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

# The diffusers schedulers we still use (PLMS, UniPC, LCM) express a schedule type through
# their own flags. Karras and Exponential also ask for "linspace" spacing: with SD's "leading"
# spacing the sigma range would not span the model's full range as A1111's does. Uniform is
# k-diffusion's get_sigmas(n), which is diffusers' "linspace"; diffusers documents "trailing"
# as the equivalent of SGM Uniform.
_SCHEDULE_KWARGS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    UNIFORM: MappingProxyType({"timestep_spacing": "linspace"}),
    KARRAS: MappingProxyType({"use_karras_sigmas": True, "timestep_spacing": "linspace"}),
    EXPONENTIAL: MappingProxyType({"use_exponential_sigmas": True, "timestep_spacing": "linspace"}),
    SGM_UNIFORM: MappingProxyType({"timestep_spacing": "trailing"}),
})

# Spellings A1111 accepts for schedule types (label, internal name, alias).
_SCHEDULE_SPELLINGS: Mapping[str, str] = MappingProxyType({
    **{label.lower(): label for label in SCHEDULES},
    **{key: label for label, key in _K_SCHEDULE_KEYS.items()},
    "sgmuniform": SGM_UNIFORM,
    "automatic": AUTOMATIC,
})

_ALL = SCHEDULES
_DIFFUSERS_SCHEDULES = (AUTOMATIC, UNIFORM, KARRAS, EXPONENTIAL, SGM_UNIFORM)
_SPACING_ONLY = (AUTOMATIC, UNIFORM, SGM_UNIFORM)
_OWN = (AUTOMATIC,)  # samplers that pick their own evaluation points (A1111 ignores the schedule there)

_NO_SCIPY = "needs the 'scipy' package, which is not installed"
_NO_TORCHSDE = "needs the 'torchsde' package, which is not installed"
K_SCHEDULER = "KDiffusionScheduler"
DDIM_SCHEDULER = "A1111DDIMScheduler"


@dataclass(frozen=True)
class SamplerSpec:
    """One A1111 sampler and the scheduler that implements it."""

    name: str
    aliases: tuple[str, ...]
    scheduler_class_name: str
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    schedules: tuple[str, ...] = _ALL
    default_schedule: str | None = None
    available: bool = True
    reason: str = ""
    stochastic: bool = False
    # Image i of a batch equals a single run with seed + i (DPM adaptive's step-size control
    # measures its error over the whole batch, so there the batch matters, as in A1111).
    batch_independent: bool = True
    # A1111's "second_order": prompt-editing steps count two model evaluations per step.
    second_order: bool = False


def _spec(name, aliases, cls, kwargs=None, **rest) -> SamplerSpec:
    return SamplerSpec(name, tuple(aliases), cls, MappingProxyType(dict(kwargs or {})), **rest)


def _k(name, aliases, sampler, **rest) -> SamplerSpec:
    return _spec(name, aliases, K_SCHEDULER, {"sampler": sampler}, **rest)


_SDE = dict(available=is_torchsde_available(), reason="" if is_torchsde_available() else _NO_TORCHSDE,
            stochastic=True)

# Order, aliases and default schedules follow A1111 1.10 (k-diffusion samplers, then timestep
# samplers, then LCM); default_schedule is A1111's per-sampler "scheduler" option, i.e. what
# "Automatic" means for that sampler. The k-diffusion ones run on our KDiffusionScheduler
# (webui/generation/ksamplers), which implements k-diffusion's algorithms and all schedule types.
SAMPLERS: tuple[SamplerSpec, ...] = (
    _k("DPM++ 2M", ["k_dpmpp_2m"], "dpmpp_2m", default_schedule=KARRAS),
    _k("DPM++ SDE", ["k_dpmpp_sde"], "dpmpp_sde", default_schedule=KARRAS, second_order=True, **_SDE),
    _k("DPM++ 2M SDE", ["k_dpmpp_2m_sde"], "dpmpp_2m_sde", default_schedule=EXPONENTIAL, **_SDE),
    _k("DPM++ 2M SDE Heun", ["k_dpmpp_2m_sde_heun"], "dpmpp_2m_sde_heun", default_schedule=EXPONENTIAL, **_SDE),
    _k("DPM++ 2S a", ["k_dpmpp_2s_a"], "dpmpp_2s_ancestral", default_schedule=KARRAS, stochastic=True,
       second_order=True),
    _k("DPM++ 3M SDE", ["k_dpmpp_3m_sde"], "dpmpp_3m_sde", default_schedule=EXPONENTIAL, **_SDE),
    _k("Euler a", ["k_euler_a", "k_euler_ancestral"], "euler_ancestral", stochastic=True),
    _k("Euler", ["k_euler"], "euler"),
    _k("LMS", ["k_lms"], "lms", available=is_scipy_available(), reason="" if is_scipy_available() else _NO_SCIPY),
    _k("Heun", ["k_heun"], "heun", second_order=True),
    _k("DPM2", ["k_dpm_2"], "dpm_2", default_schedule=KARRAS, second_order=True),
    _k("DPM2 a", ["k_dpm_2_a"], "dpm_2_ancestral", default_schedule=KARRAS, stochastic=True, second_order=True),
    _k("DPM fast", ["k_dpm_fast"], "dpm_fast", schedules=_OWN, stochastic=True),
    _k("DPM adaptive", ["k_dpm_ad"], "dpm_adaptive", schedules=_OWN, stochastic=True, batch_independent=False),
    _k("Restart", ["restart"], "restart", default_schedule=KARRAS, stochastic=True, second_order=True),
    _spec("DDIM", ["ddim"], DDIM_SCHEDULER, {"cfgpp": False}, schedules=_OWN),
    _spec("DDIM CFG++", ["ddim_cfgpp"], DDIM_SCHEDULER, {"cfgpp": True}, schedules=_OWN),
    _spec("PLMS", ["plms"], "PNDMScheduler",
          {"skip_prk_steps": True, "set_alpha_to_one": False}, schedules=_SPACING_ONLY),
    _spec("UniPC", ["unipc"], "UniPCMultistepScheduler", schedules=_DIFFUSERS_SCHEDULES),
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
    "k_dpmpp_3m_sde_ka": ("DPM++ 3M SDE", KARRAS),
    "k_dpmpp_3m_sde_exp": ("DPM++ 3M SDE", EXPONENTIAL),
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


def _scheduler_class(name: str):
    import diffusers

    from webui.generation.ksamplers import KDiffusionScheduler
    from webui.generation.ksamplers.ddim import A1111DDIMScheduler

    own = {K_SCHEDULER: KDiffusionScheduler, DDIM_SCHEDULER: A1111DDIMScheduler}
    return own[name] if name in own else getattr(diffusers, name)


def build_scheduler(base_config: Mapping[str, Any], sampler: str, schedule: str | None = AUTOMATIC,
                    sdxl: bool = False):
    """Build the scheduler for an A1111 sampler and schedule type.

    ``base_config`` is the loaded model's ``pipeline.scheduler.config``; its beta
    schedule and prediction type are kept. ``sdxl`` picks SDXL's Align Your Steps table.
    Raises ValueError for unknown names and for samplers that are unavailable here
    (the message says why).
    """
    name, schedule = normalize_sampler(sampler, schedule)
    spec = get_sampler(name)
    if not spec.available:
        raise ValueError(f"Sampler {spec.name!r} is not available: {spec.reason}")
    cls = _scheduler_class(spec.scheduler_class_name)
    accepted = _init_params(cls)

    config = {k: base_config[k] for k in MODEL_CONFIG_KEYS if k in base_config and k in accepted}
    config.update({k: v for k, v in spec.kwargs.items() if k in accepted})
    resolved = effective_schedule(name, schedule)
    if spec.scheduler_class_name == K_SCHEDULER:
        # "Automatic" without a sampler default is k-diffusion's own get_sigmas (Uniform).
        config.update(schedule=_K_SCHEDULE_KEYS.get(resolved, "uniform"), sdxl=bool(sdxl))
        return cls.from_config(config)
    # A sigma schedule the sampler does not ask for is switched off explicitly, so
    # "Automatic" really is the sampler's own default whatever the config said.
    config.update({flag: False for flag in _SIGMA_FLAGS if flag in accepted})
    for key, value in _SCHEDULE_KWARGS.get(resolved, {}).items():
        if key in accepted:
            config[key] = value
    return cls.from_config(config)


def prompt_steps(sampler: str, steps: int) -> int:
    """Steps the prompt-editing schedule spans: A1111 counts two per step for second-order samplers."""
    return steps * 2 if get_sampler(normalize_sampler(sampler, None)[0]).second_order else steps


def seed_scheduler(scheduler, seeds) -> None:
    """Seed a scheduler's SDE noise per image: ``seeds`` is the batch's seed list (or one seed).

    Our k-diffusion SDE samplers draw from one Brownian tree per image seeded with that image's
    seed, as A1111 does, so a batch image equals a single run with its seed. Call before each
    pipeline run.
    """
    seed_list = [int(s) for s in seeds] if isinstance(seeds, (list, tuple)) else [int(seeds)]
    if hasattr(scheduler, "noise_seeds"):
        scheduler.noise_seeds = seed_list
    if hasattr(scheduler, "noise_sampler_seed"):  # diffusers' DPMSolverSDEScheduler, if anyone builds one
        scheduler.noise_sampler_seed = seed_list if len(seed_list) > 1 else seed_list[0]
        scheduler.noise_sampler = None
