"""A1111 sampler names -> diffusers schedulers, built from the offline configs."""

import json
from pathlib import Path

import pytest
import torch

from webui.generation import samplers as S
from webui.generation import seeds as D

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _config(name: str) -> dict:
    return json.loads((CONFIGS / name / "scheduler" / "scheduler_config.json").read_text())


AVAILABLE_CASES = [
    (spec.name, schedule) for spec in S.SAMPLERS if spec.available for schedule in spec.schedules
]

# Second-order samplers interleave extra timesteps (2n-1); PLMS adds one warm-up step.
SECOND_ORDER = {"Heun", "DPM2", "DPM2 a", "DPM++ SDE"}


@pytest.mark.parametrize("config_name", ["sd15", "sdxl"])
@pytest.mark.parametrize("sampler,schedule", AVAILABLE_CASES)
def test_every_available_sampler_and_schedule_builds_and_sets_timesteps(config_name, sampler, schedule):
    spec = S.get_sampler(sampler)
    scheduler = S.build_scheduler(_config(config_name), sampler, schedule)
    assert type(scheduler).__name__ == spec.scheduler_class_name
    scheduler.set_timesteps(20)
    n = len(scheduler.timesteps)
    if sampler in SECOND_ORDER:
        assert n == 39
    elif sampler == "PLMS":
        assert n == 21
    else:
        assert n == 20
    assert scheduler.config.prediction_type == "epsilon"
    # Model noise schedule survives the swap.
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_end == pytest.approx(0.012)


def test_there_are_available_samplers_to_test():
    assert len(AVAILABLE_CASES) >= 30
    assert "DPM++ 2M" in S.sampler_names()


@pytest.mark.parametrize("sampler", ["DDIM", "Euler", "Euler a", "DPM++ 2M", "UniPC"])
def test_v_prediction_is_kept(sampler):
    cfg = _config("sd2-v")
    assert cfg["prediction_type"] == "v_prediction"
    scheduler = S.build_scheduler(cfg, sampler, "Automatic")
    assert scheduler.config.prediction_type == "v_prediction"


def test_automatic_keeps_model_spacing_and_offset():
    cfg = dict(_config("sd15"), timestep_spacing="trailing", steps_offset=1)
    sched = S.build_scheduler(cfg, "Euler", "Automatic")
    assert sched.config.timestep_spacing == "trailing"
    assert sched.config.steps_offset == 1


def test_schedule_types_set_the_documented_flags():
    cfg = _config("sd15")
    assert S.build_scheduler(cfg, "Euler", "Karras").config.use_karras_sigmas is True
    assert S.build_scheduler(cfg, "Euler", "Exponential").config.use_exponential_sigmas is True
    assert S.build_scheduler(cfg, "Euler", "SGM Uniform").config.timestep_spacing == "trailing"
    assert S.build_scheduler(cfg, "Euler", "Uniform").config.timestep_spacing == "linspace"


def test_karras_spans_the_full_sigma_range():
    # A1111's Karras uses the model's sigma_max (~14.6 for SD); "leading" spacing
    # would cut it to ~11 in Euler-style schedulers.
    sched = S.build_scheduler(_config("sd15"), "Euler", "Karras")
    sched.set_timesteps(20)
    assert float(sched.sigmas[0]) == pytest.approx(14.6146, abs=1e-3)


def test_automatic_uses_a1111_default_schedule():
    cfg = _config("sd15")
    assert S.build_scheduler(cfg, "DPM++ 2M", "Automatic").config.use_karras_sigmas is True
    sde = S.build_scheduler(cfg, "DPM++ 2M SDE", "Automatic")
    assert sde.config.use_exponential_sigmas is True
    assert sde.config.algorithm_type == "sde-dpmsolver++"
    assert S.build_scheduler(cfg, "DPM++ 2M", "Automatic").config.algorithm_type == "dpmsolver++"
    assert S.effective_schedule("DPM++ 2M", "Automatic") == "Karras"
    assert S.effective_schedule("DPM2 a", None) == "Karras"
    assert S.effective_schedule("Euler a", "Automatic") == "Automatic"
    assert S.effective_schedule("Euler", "Uniform") == "Uniform"


def test_automatic_switches_off_sigma_flags_from_another_samplers_config():
    cfg = dict(_config("sd15"), _class_name="DPMSolverMultistepScheduler", use_karras_sigmas=True,
               algorithm_type="sde-dpmsolver++")
    sched = S.build_scheduler(cfg, "Euler", "Automatic")
    assert sched.config.use_karras_sigmas is False
    assert S.build_scheduler(cfg, "DPM++ 2M", "Uniform").config.algorithm_type == "dpmsolver++"


def test_plms_skips_prk_and_ddim_does_not_clip():
    cfg = _config("sdxl")
    assert S.build_scheduler(cfg, "PLMS", None).config.skip_prk_steps is True
    assert S.build_scheduler(cfg, "DDIM", None).config.clip_sample is False


@pytest.mark.parametrize("name,expected", [
    ("DPM++ 2M Karras", ("DPM++ 2M", "Karras")),
    ("Euler a", ("Euler a", "Automatic")),
    ("DPM++ SDE Karras", ("DPM++ SDE", "Karras")),
    ("DPM2 a Karras", ("DPM2 a", "Karras")),
    ("DPM++ 2M SDE Exponential", ("DPM++ 2M SDE", "Exponential")),
    ("DPM++ 2M SGM Uniform", ("DPM++ 2M", "SGM Uniform")),
    ("k_euler_a", ("Euler a", "Automatic")),
    ("k_euler_ancestral", ("Euler a", "Automatic")),
    ("k_dpmpp_2m", ("DPM++ 2M", "Automatic")),
    ("k_dpmpp_2m_ka", ("DPM++ 2M", "Karras")),
    ("k_dpmpp_2m_sde_exp", ("DPM++ 2M SDE", "Exponential")),
    ("dpm++ 2m karras", ("DPM++ 2M", "Karras")),
    ("ddim", ("DDIM", "Automatic")),
])
def test_combined_and_alias_names_normalise(name, expected):
    assert S.normalize_sampler(name, None) == expected


def test_explicit_schedule_spellings():
    assert S.normalize_sampler("DPM++ 2M", "karras") == ("DPM++ 2M", "Karras")
    assert S.normalize_sampler("Euler", "sgm_uniform") == ("Euler", "SGM Uniform")
    assert S.normalize_sampler("Euler", "SGMUniform") == ("Euler", "SGM Uniform")
    assert S.normalize_sampler("Euler", "") == ("Euler", "Automatic")
    # A schedule inside the old combined name wins, as in A1111.
    assert S.normalize_sampler("DPM++ 2M Karras", "Exponential") == ("DPM++ 2M", "Karras")


def test_unknown_sampler_message_lists_valid_names():
    with pytest.raises(ValueError) as err:
        S.normalize_sampler("Euler b", None)
    msg = str(err.value)
    assert "Euler b" in msg and "DPM++ 2M" in msg and "UniPC" in msg


def test_unknown_schedule_message_lists_valid_names():
    with pytest.raises(ValueError) as err:
        S.normalize_sampler("Euler", "Polyexponential")
    assert "Karras" in str(err.value) and "SGM Uniform" in str(err.value)


def test_unsupported_schedule_for_sampler_is_refused():
    with pytest.raises(ValueError, match="Euler a"):
        S.normalize_sampler("Euler a", "Karras")
    with pytest.raises(ValueError, match="LCM"):
        S.build_scheduler(_config("sd15"), "LCM", "Karras")


def test_unavailable_samplers_carry_a_reason_and_refuse_to_build():
    unavailable = [s for s in S.SAMPLERS if not s.available]
    assert any(s.name == "DPM++ 2S a" for s in unavailable)
    for spec in unavailable:
        assert spec.reason
        assert spec.name not in S.sampler_names()
        assert spec.name in S.sampler_names(include_unavailable=True)
        with pytest.raises(ValueError, match="not available"):
            S.build_scheduler(_config("sd15"), spec.name, "Automatic")


def test_specs_are_immutable():
    assert isinstance(S.SAMPLERS, tuple)
    with pytest.raises(TypeError):
        S.SAMPLERS[0].kwargs["algorithm_type"] = "dpmsolver"
    assert S.schedule_names() == ["Automatic", "Uniform", "Karras", "Exponential", "SGM Uniform"]


def test_every_default_schedule_is_offered_by_its_sampler():
    for spec in S.SAMPLERS:
        assert "Automatic" in spec.schedules
        if spec.default_schedule:
            assert spec.default_schedule in spec.schedules


def _fake_denoise(scheduler, seeds_list):
    """Run a few steps with a stand-in model, seeding per-step noise as the core should."""
    scheduler.set_timesteps(4)
    gens = D.make_generators(seeds_list)
    x = D.make_noise((4, 8, 8), seeds_list, generators=gens) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        fake_output = 0.1 * scheduler.scale_model_input(x, t)
        x = scheduler.step(fake_output, t, x, generator=gens).prev_sample
    return x


@pytest.mark.parametrize("sampler", [s.name for s in S.SAMPLERS if s.available and s.stochastic and s.batch_independent])
def test_stochastic_samplers_give_the_same_image_at_any_batch_size(sampler):
    cfg = _config("sd15")
    batch = _fake_denoise(S.build_scheduler(cfg, sampler, "Automatic"), [7, 8])
    single = _fake_denoise(S.build_scheduler(cfg, sampler, "Automatic"), [8])
    torch.testing.assert_close(batch[1], single[0], atol=1e-5, rtol=1e-5)
    other = _fake_denoise(S.build_scheduler(cfg, sampler, "Automatic"), [9])
    assert not torch.allclose(other[0], single[0])
