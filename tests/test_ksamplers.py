"""Our k-diffusion samplers and A1111 schedule types (webui/generation/ksamplers), driven like a pipeline does."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from webui.generation.ksamplers import SAMPLER_TRAITS, KDiffusionScheduler
from webui.generation.ksamplers import sigmas as G
from webui.generation.ksamplers.ddim import A1111DDIMScheduler

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SD15 = json.loads((CONFIGS / "sd15" / "scheduler" / "scheduler_config.json").read_text())
MODEL = G.ModelSigmas.from_config(SD15)


def drive(scheduler, x0, denoise, generators=None, max_loops=None):
    """The diffusers pipeline loop, with a denoiser D(x, sigma) turned into the eps the UNet would give."""
    x = x0 * scheduler.init_noise_sigma
    loops = 0
    for t in scheduler.timesteps:
        if scheduler.finished:
            break
        sigma = scheduler._current_sigma
        model_in = scheduler.scale_model_input(x, t)
        assert torch.allclose(model_in, x / (sigma ** 2 + 1) ** 0.5)
        x = scheduler.step((x - denoise(x, sigma)) / sigma, t, x, generator=generators).prev_sample
        loops += 1
    return x, loops


def test_sd15_sigma_table_is_a1111s():
    # A1111 / k-diffusion report sigma_min 0.0292 and sigma_max 14.6146 for SD 1.x.
    assert MODEL.sigma_min == pytest.approx(0.0291675, abs=1e-6)
    assert MODEL.sigma_max == pytest.approx(14.614642, abs=1e-5)
    t = torch.tensor([0.0, 10.5, 500.25, 999.0])
    torch.testing.assert_close(MODEL.sigma_to_t(MODEL.t_to_sigma(t)), t, atol=1e-3, rtol=0)


def test_schedule_types_follow_their_definitions():
    n, lo, hi = 10, MODEL.sigma_min, MODEL.sigma_max
    ramp = torch.linspace(0, 1, n)
    karras = (hi ** (1 / 7) + ramp * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
    torch.testing.assert_close(G.make_sigmas("karras", n, MODEL), torch.cat([karras, torch.zeros(1)]))
    exp = G.make_sigmas("exponential", n, MODEL)
    ratios = exp[1:-1] / exp[:-2]
    torch.testing.assert_close(ratios, ratios[0].expand_as(ratios))  # evenly spaced in log sigma
    torch.testing.assert_close(G.make_sigmas("polyexponential", n, MODEL), exp, rtol=1e-5, atol=1e-6)
    uniform = G.make_sigmas("uniform", n, MODEL)
    torch.testing.assert_close(uniform[:-1], MODEL.t_to_sigma(torch.linspace(999, 0, n)))
    # KL Optimal: tan of evenly spaced arctan(sigma); n + 1 values ending at sigma_min, not 0.
    kl = G.make_sigmas("kl_optimal", n, MODEL)
    assert len(kl) == n + 1 and float(kl[-1]) == pytest.approx(lo, rel=1e-5)
    angles = torch.atan(kl.double())
    torch.testing.assert_close(angles[1:] - angles[:-1], (angles[1] - angles[0]).expand(n), rtol=1e-4, atol=1e-6)
    # Align Your Steps: NVIDIA's 10-step table as is for 11 values, log-linearly resampled otherwise.
    torch.testing.assert_close(G.make_sigmas("align_your_steps", 11, MODEL)[:-1], torch.tensor(G.AYS_SD15))
    torch.testing.assert_close(G.make_sigmas("align_your_steps", 11, MODEL, sdxl=True)[:-1], torch.tensor(G.AYS_SDXL))
    ays = G.make_sigmas("align_your_steps", 20, MODEL)
    assert len(ays) == 21 and float(ays[0]) == pytest.approx(14.615) and float(ays[-2]) == pytest.approx(0.029)
    # Simple and DDIM pick training sigmas; Normal / SGM Uniform are evenly spaced in timestep.
    simple = G.make_sigmas("simple", 4, MODEL)
    torch.testing.assert_close(simple[:-1], MODEL.sigmas[[-1, -251, -501, -751]])
    ddim = G.make_sigmas("ddim", 4, MODEL)
    torch.testing.assert_close(ddim[:-1], MODEL.sigmas[[751, 501, 251, 1]])
    normal = G.make_sigmas("normal", 5, MODEL)
    torch.testing.assert_close(MODEL.sigma_to_t(normal[:-1]), torch.linspace(999, 0, 5), atol=1e-3, rtol=0)
    sgm = G.make_sigmas("sgm_uniform", 5, MODEL)
    torch.testing.assert_close(MODEL.sigma_to_t(sgm[:-1]), torch.linspace(999, 0, 6)[:-1], atol=1e-3, rtol=0)
    # Beta: sigma_min + ppf(1 - i/(n-1); 0.6, 0.6) * range.
    from scipy import stats

    beta = G.make_sigmas("beta", 5, MODEL)
    expected = [lo + stats.beta.ppf(1 - i / 4, 0.6, 0.6) * (hi - lo) for i in range(5)]
    torch.testing.assert_close(beta[:-1].double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-5)


def test_discard_next_to_last_sigma_drops_the_penultimate_one():
    full = G.make_sigmas("karras", 11, MODEL)
    dropped = G.make_sigmas("karras", 10, MODEL, discard_next_to_last=True)
    torch.testing.assert_close(dropped, torch.cat([full[:-2], full[-1:]]))


# A denoiser that always predicts the same clean latents: the probability-flow ODE is then exact, so any
# correct sampler ending at sigma 0 lands on them (ancestral/SDE noise is removed by the last step).
TARGET = torch.linspace(-1, 1, 2 * 4 * 3 * 3).reshape(2, 4, 3, 3)


@pytest.mark.parametrize("name", [n for n in SAMPLER_TRAITS if n not in ("dpm_fast", "dpm_adaptive")])
@pytest.mark.parametrize("schedule", ["uniform", "karras", "align_your_steps", "ddim"])
def test_every_sampler_lands_on_a_perfect_denoisers_prediction(name, schedule):
    scheduler = KDiffusionScheduler(sampler=name, schedule=schedule)
    scheduler.noise_seeds = [1, 2]
    scheduler.set_timesteps(6)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    out, loops = drive(scheduler, torch.randn(TARGET.shape, generator=torch.Generator().manual_seed(0)),
                       lambda x, sigma: TARGET, gens)
    assert scheduler.finished and loops == len(scheduler.timesteps)
    torch.testing.assert_close(out, TARGET, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["dpm_fast", "dpm_adaptive"])
def test_dpm_solvers_stop_at_the_models_sigma_min(name):
    # A1111 runs them from sigma_max to sigma_min (not 0): what is left is that much of the start noise.
    scheduler = KDiffusionScheduler(sampler=name, schedule="uniform", eta=0.0)
    scheduler.set_timesteps(9)
    x0 = torch.randn(TARGET.shape, generator=torch.Generator().manual_seed(0))
    out, _ = drive(scheduler, x0, lambda x, sigma: TARGET)
    assert scheduler.finished
    expected = TARGET + x0 * MODEL.sigma_min
    torch.testing.assert_close(out, expected, atol=1e-3, rtol=1e-3)


def test_v_prediction_models_are_denoised_correctly():
    scheduler = KDiffusionScheduler(sampler="euler", prediction_type="v_prediction")
    scheduler.set_timesteps(4)
    x0 = TARGET
    noise = torch.randn(TARGET.shape, generator=torch.Generator().manual_seed(3))
    sigma = scheduler._current_sigma
    x = x0 + sigma * noise  # k-diffusion space; the UNet sees x / sqrt(sigma^2 + 1)
    alpha, s = 1 / (sigma ** 2 + 1) ** 0.5, sigma / (sigma ** 2 + 1) ** 0.5
    v = alpha * noise - s * x0
    torch.testing.assert_close(scheduler._denoised(x, sigma, v), x0, atol=1e-5, rtol=1e-5)


def test_dpm_adaptive_writes_each_timestep_before_the_loop_reaches_it_and_stays_in_budget():
    scheduler = KDiffusionScheduler(sampler="dpm_adaptive", max_evals=12)
    scheduler.set_timesteps(20)
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
    gens = [torch.Generator().manual_seed(5)]
    loops = 0
    for t in scheduler.timesteps:  # views: the value is read when the loop gets there
        if scheduler.finished:
            break
        assert float(t) == pytest.approx(float(MODEL.sigma_to_t(scheduler._current_sigma)), abs=1e-4)
        sigma = scheduler._current_sigma
        x = scheduler.step((x - torch.tanh(x)) / sigma, t, x, generator=gens).prev_sample
        loops += 1
    assert scheduler.finished and loops <= 12 and loops % 3 == 0 and torch.isfinite(x).all()


@pytest.mark.parametrize("name,evals", [("heun", 2 * (10 - 4) - 1), ("restart", 2 * (10 - 4) - 1),
                                        ("dpmpp_2m", 10 - 4), ("dpm_fast", 10 - 4)])
def test_img2img_begin_index_restarts_the_sampler_on_the_truncated_sigmas(name, evals):
    full = KDiffusionScheduler(sampler=name, schedule="karras", eta=0.0)
    full.set_timesteps(10)
    start = 4
    sliced = full.timesteps[start * full.order:]  # what diffusers' img2img pipelines do
    full.set_begin_index(start * full.order)
    image = TARGET * 0.5
    noise = torch.randn(TARGET.shape, generator=torch.Generator().manual_seed(9))
    x = full.add_noise(image, noise, sliced[:1].repeat(2))
    torch.testing.assert_close(x, image + noise * full.full_sigmas[start])
    loops = 0
    for t in sliced:
        sigma = full._current_sigma
        x = full.step((x - TARGET) / sigma, t, x).prev_sample
        loops += 1
    assert full.finished and loops == len(sliced) == evals
    if name == "dpm_fast":  # A1111: img2img DPM fast runs sigma_sched[0] .. sigma_sched[-2]
        first, last = full.full_sigmas[start], full.full_sigmas[-2]
        expected = TARGET + (image + noise * first - TARGET) * last / first  # the exact ODE solution
        torch.testing.assert_close(x, expected, atol=1e-3, rtol=1e-3)
    else:
        torch.testing.assert_close(x, TARGET, atol=1e-4, rtol=1e-4)


def _alphas():
    return G.alphas_cumprod_from_config(SD15).double()


def test_a1111_ddim_step_and_cfgpp_direction():
    ac = _alphas()
    eps, eps_u = torch.full((1, 4, 2, 2), 0.3), torch.full((1, 4, 2, 2), -0.2)
    x = torch.full((1, 4, 2, 2), 0.7)
    for cfgpp in (False, True):
        ddim = A1111DDIMScheduler(cfgpp=cfgpp)
        ddim.set_timesteps(10)
        assert ddim.timesteps.tolist() == list(range(901, 1, -100))
        ddim.uncond_output = eps_u
        out = ddim.step(eps, ddim.timesteps[0], x).prev_sample
        a_t, a_prev = float(ac[901]), float(ac[801])
        pred_x0 = (0.7 - math.sqrt(1 - a_t) * 0.3) / math.sqrt(a_t)
        direction = -0.2 if cfgpp else 0.3
        expected = math.sqrt(a_prev) * pred_x0 + math.sqrt(1 - a_prev) * direction
        assert float(out[0, 0, 0, 0]) == pytest.approx(expected, rel=1e-5)
    assert A1111DDIMScheduler(cfgpp=True).guidance_scale_multiplier == pytest.approx(1 / 12.5)


def test_ddim_cfgpp_without_the_unconditional_prediction_says_so():
    ddim = A1111DDIMScheduler(cfgpp=True)
    ddim.set_timesteps(5)
    with pytest.raises(RuntimeError, match="unconditional"):
        ddim.step(torch.zeros(1, 4, 2, 2), ddim.timesteps[0], torch.zeros(1, 4, 2, 2))


def test_brownian_noise_depends_only_on_the_seed_and_the_interval():
    from webui.generation.ksamplers.noise import BrownianNoise

    x = torch.zeros(2, 4, 3, 3)
    a = BrownianNoise(0.03, 14.6)
    a.seeds = [11, 12]
    b = BrownianNoise(0.03, 14.6)
    b.seeds = [12]
    first, single = a(x, 5.0, 3.0), b(x[:1], 5.0, 3.0)
    torch.testing.assert_close(first[1:], single)
    assert first.std().item() == pytest.approx(1.0, abs=0.5)
    # W(5) - W(3) = (W(5) - W(4)) + (W(4) - W(3)): the tree is one Brownian path, not fresh draws.
    c = BrownianNoise(0.03, 14.6)
    c.seeds = [12]
    whole = single * math.sqrt(2.0)
    parts = c(x[:1], 5.0, 4.0) + c(x[:1], 4.0, 3.0)
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=1e-5)
    assert not np.allclose(a(x, 5.0, 3.0)[0].numpy(), a(x, 5.0, 3.0)[1].numpy())
