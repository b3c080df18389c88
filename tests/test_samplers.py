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

# A1111 1.10's samplers and schedule types (the UI's dropdowns): every one must be offered here.
A1111_SAMPLERS = ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE",
                  "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart",
                  "DDIM", "DDIM CFG++", "PLMS", "UniPC", "LCM"]
A1111_SCHEDULES = ["Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
                   "Align Your Steps", "Simple", "Normal", "DDIM", "Beta"]


def _evaluations(sampler: str, schedule: str, steps: int) -> int:
    """Model evaluations A1111 makes for ``steps`` steps (k-diffusion's algorithms, A1111's schedules)."""
    resolved = S.effective_schedule(sampler, schedule)
    if sampler == "DPM adaptive":
        return 1000  # a budget, not a plan
    if sampler in ("DDIM", "DDIM CFG++"):
        return len(range(0, 1000, 1000 // steps)) - 1
    if sampler == "PLMS":
        return steps + 1
    if sampler == "Restart":
        # 20 Heun steps (A1111 rebuilds a Karras schedule with 9 restart steps); when the schedule's
        # smallest sigma lies above 0.1 the restart lands on sigma 0 and one more step is Euler.
        return {2 * steps - 1, 2 * steps - 2}
    discard = sampler in ("DPM2", "DPM2 a", "DPM++ 3M SDE")  # A1111's discard_next_to_last_sigma
    n = steps + discard
    if resolved == "DDIM":  # A1111's DDIM schedule takes every (1000 // n)-th sigma from index 1
        n = len(range(1, 1000, 1000 // n))
    n -= discard
    last_to_zero = resolved != "KL Optimal"  # KL Optimal ends at sigma_min, so the last step is a full one
    if S.get_sampler(sampler).second_order and sampler not in ("DPM fast",):
        return 2 * n - (1 if last_to_zero else 0)
    return n


@pytest.mark.parametrize("config_name", ["sd15", "sdxl"])
@pytest.mark.parametrize("sampler,schedule", AVAILABLE_CASES)
def test_every_available_sampler_and_schedule_builds_and_plans_its_evaluations(config_name, sampler, schedule):
    spec = S.get_sampler(sampler)
    scheduler = S.build_scheduler(_config(config_name), sampler, schedule, sdxl=config_name == "sdxl")
    assert type(scheduler).__name__ == spec.scheduler_class_name
    scheduler.set_timesteps(20)
    expected = _evaluations(sampler, schedule, 20)
    assert len(scheduler.timesteps) in (expected if isinstance(expected, set) else {expected})
    assert scheduler.config.prediction_type == "epsilon"
    # Model noise schedule survives the swap.
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_end == pytest.approx(0.012)


def test_every_a1111_sampler_and_schedule_type_is_offered():
    assert S.sampler_names() == A1111_SAMPLERS
    assert S.schedule_names() == A1111_SCHEDULES
    assert len(AVAILABLE_CASES) >= 150


@pytest.mark.parametrize("sampler", ["DDIM", "DDIM CFG++", "Euler", "Euler a", "DPM++ 2M", "UniPC", "Restart"])
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


def test_schedule_types_reach_the_scheduler():
    cfg = _config("sd15")
    for label, key in [("Karras", "karras"), ("Exponential", "exponential"), ("KL Optimal", "kl_optimal"),
                       ("Align Your Steps", "align_your_steps"), ("Beta", "beta"), ("Uniform", "uniform"),
                       ("SGM Uniform", "sgm_uniform"), ("DDIM", "ddim"), ("Simple", "simple"), ("Normal", "normal"),
                       ("Polyexponential", "polyexponential")]:
        assert S.build_scheduler(cfg, "Euler", label).config.schedule == key
    # The diffusers schedulers that remain express schedule types through their own flags.
    assert S.build_scheduler(cfg, "UniPC", "Karras").config.use_karras_sigmas is True
    assert S.build_scheduler(cfg, "UniPC", "SGM Uniform").config.timestep_spacing == "trailing"


def test_karras_spans_the_full_sigma_range():
    # A1111's Karras uses the model's sigma range, 14.6146 .. 0.0292 for SD.
    sched = S.build_scheduler(_config("sd15"), "Euler", "Karras")
    sched.set_timesteps(20)
    assert float(sched.sigmas[0]) == pytest.approx(14.6146, abs=1e-3)
    assert float(sched.sigmas[-2]) == pytest.approx(0.0292, abs=1e-4)
    assert float(sched.sigmas[-1]) == 0.0


def test_automatic_uses_a1111_default_schedule():
    cfg = _config("sd15")
    assert S.build_scheduler(cfg, "DPM++ 2M", "Automatic").config.schedule == "karras"
    sde = S.build_scheduler(cfg, "DPM++ 2M SDE", "Automatic")
    assert sde.config.schedule == "exponential" and sde.config.sampler == "dpmpp_2m_sde"
    assert S.build_scheduler(cfg, "DPM++ 3M SDE", "Automatic").config.schedule == "exponential"
    assert S.build_scheduler(cfg, "Restart", "Automatic").config.schedule == "karras"
    assert S.build_scheduler(cfg, "Euler", "Automatic").config.schedule == "uniform"
    assert S.effective_schedule("DPM++ 2M", "Automatic") == "Karras"
    assert S.effective_schedule("DPM2 a", None) == "Karras"
    assert S.effective_schedule("Euler a", "Automatic") == "Automatic"
    assert S.effective_schedule("Euler", "Uniform") == "Uniform"


def test_automatic_switches_off_sigma_flags_from_another_samplers_config():
    cfg = dict(_config("sd15"), _class_name="DPMSolverMultistepScheduler", use_karras_sigmas=True,
               algorithm_type="sde-dpmsolver++")
    assert S.build_scheduler(cfg, "UniPC", "Automatic").config.use_karras_sigmas is False
    assert S.build_scheduler(cfg, "DPM++ 2M", "Uniform").config.sampler == "dpmpp_2m"


def test_plms_skips_prk_and_ddim_follows_a1111_timesteps():
    cfg = _config("sdxl")
    assert S.build_scheduler(cfg, "PLMS", None).config.skip_prk_steps is True
    ddim = S.build_scheduler(cfg, "DDIM", None)
    ddim.set_timesteps(20)
    # A1111: timesteps 1, 51, ..., 951; evaluated from 951 down to 51, landing on 1.
    assert ddim.timesteps.tolist() == list(range(951, 50, -50))


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
    ("DDIM CFG++", ("DDIM CFG++", "Automatic")),
    ("ddim_cfgpp", ("DDIM CFG++", "Automatic")),
    ("k_dpm_ad", ("DPM adaptive", "Automatic")),
    ("DPM++ 3M SDE Karras", ("DPM++ 3M SDE", "Karras")),
    ("DPM++ 2M Align Your Steps", ("DPM++ 2M", "Align Your Steps")),
    ("Euler KL Optimal", ("Euler", "KL Optimal")),
    ("k_dpmpp_2m_sde_heun", ("DPM++ 2M SDE Heun", "Automatic")),
])
def test_combined_and_alias_names_normalise(name, expected):
    assert S.normalize_sampler(name, None) == expected


def test_explicit_schedule_spellings():
    assert S.normalize_sampler("DPM++ 2M", "karras") == ("DPM++ 2M", "Karras")
    assert S.normalize_sampler("Euler", "sgm_uniform") == ("Euler", "SGM Uniform")
    assert S.normalize_sampler("Euler", "SGMUniform") == ("Euler", "SGM Uniform")
    assert S.normalize_sampler("Euler", "align_your_steps") == ("Euler", "Align Your Steps")
    assert S.normalize_sampler("Euler", "kl_optimal") == ("Euler", "KL Optimal")
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
        S.normalize_sampler("Euler", "Polynomial")
    assert "Karras" in str(err.value) and "Align Your Steps" in str(err.value)


def test_unsupported_schedule_for_sampler_is_refused():
    with pytest.raises(ValueError, match="DPM adaptive"):
        S.normalize_sampler("DPM adaptive", "Karras")  # it picks its own steps; a schedule would do nothing
    assert S.normalize_sampler("Euler a", "Karras") == ("Euler a", "Karras")
    with pytest.raises(ValueError, match="LCM"):
        S.build_scheduler(_config("sd15"), "LCM", "Karras")


def test_unavailable_samplers_carry_a_reason_and_refuse_to_build():
    # With scipy and torchsde installed (requirements.txt) every sampler runs; the rule still holds.
    unavailable = [s for s in S.SAMPLERS if not s.available]
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
    assert S.schedule_names() == A1111_SCHEDULES


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


def _seeded(sampler, seeds_list):
    scheduler = S.build_scheduler(_config("sd15"), sampler, "Automatic")
    S.seed_scheduler(scheduler, seeds_list)  # what the core does: SDE samplers seed one Brownian tree per image
    return _fake_denoise(scheduler, seeds_list)


@pytest.mark.parametrize("sampler", [s.name for s in S.SAMPLERS if s.available and s.stochastic and s.batch_independent])
def test_stochastic_samplers_give_the_same_image_at_any_batch_size(sampler):
    batch = _seeded(sampler, [7, 8])
    single = _seeded(sampler, [8])
    torch.testing.assert_close(batch[1], single[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[0], _seeded(sampler, [7])[0], atol=1e-5, rtol=1e-5)
    other = _seeded(sampler, [9])
    assert not torch.allclose(other[0], single[0])


def test_seed_scheduler_sets_one_noise_seed_per_image():
    scheduler = S.build_scheduler(_config("sd15"), "DPM++ SDE", "Automatic")
    S.seed_scheduler(scheduler, [5, 6, 7])
    assert scheduler.noise_seeds == [5, 6, 7]
    S.seed_scheduler(scheduler, 9)
    assert scheduler.noise_seeds == [9]


def test_prompt_steps_count_two_per_step_for_second_order_samplers():
    assert S.prompt_steps("Heun", 20) == 40
    assert S.prompt_steps("DPM++ SDE", 10) == 20
    assert S.prompt_steps("Restart", 10) == 20
    assert S.prompt_steps("DPM++ 2M", 20) == 20
    assert S.prompt_steps("DPM adaptive", 20) == 20


def test_pasted_a1111_infotext_with_the_new_samplers_and_options_reads_back():
    # What A1111's "Read generation parameters from prompt" button parses: infotext pasted into the prompt.
    from webui.generation.request import GenerationRequest
    from webui.infotext import infotext_to_request_fields, parse_infotext

    text = ("a cat AND a dog :0.8\nNegative prompt: ugly\nSteps: 25, Sampler: DPM++ 3M SDE, Schedule type: Align "
            "Your Steps, CFG scale: 6.5, Seed: 42, Size: 512x768, Model hash: abcdef1234, Model: x, Seed resize "
            "from: 256x320, Tiling: True, Version: v1.10.0")
    fields = infotext_to_request_fields(parse_infotext(text))
    request = GenerationRequest(**fields).validate()
    assert (request.sampler_name, request.scheduler) == ("DPM++ 3M SDE", "Align Your Steps")
    assert (request.seed_resize_from_w, request.seed_resize_from_h, request.tiling) == (256, 320, True)
    assert request.prompt == "a cat AND a dog :0.8" and (request.width, request.height) == (512, 768)
    old = infotext_to_request_fields(parse_infotext("x\nSteps: 20, Sampler: DPM++ 2S a Karras, CFG scale: 7, "
                                                    "Seed: 1, Size: 64x64"))
    assert (old["sampler_name"], old["scheduler"]) == ("DPM++ 2S a", "Automatic")  # Karras is its default
