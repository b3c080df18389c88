"""Samplers that choose their own evaluation points: Restart, DPM fast, DPM adaptive.

Same generator protocol as algorithms.py. Restart is A1111's ``sd_samplers_extra.restart_sampler``
(Restart Sampling, Xu et al. 2023); DPM fast and DPM adaptive are k-diffusion's DPM-Solver
(Lu et al. 2022) in its fixed-step and PID step-size-controlled forms. A1111 runs DPM fast and
adaptive between the model's own sigma_min and sigma_max whatever the schedule type, with its
ancestral eta (1.0), and so do we.
"""
from __future__ import annotations

import math

import torch

from webui.generation.ksamplers.algorithms import ancestral_step, to_d
from webui.generation.ksamplers.sigmas import karras


def restart(ctx, x, sigmas):
    steps = sigmas.shape[0] - 1
    restart_list = {}
    if steps >= 20:
        restart_steps, restart_times = 9, 1
        if steps >= 36:
            restart_steps, restart_times = steps // 4, 2
        sigmas = karras(steps - restart_steps * restart_times, sigmas[-2].item(), sigmas[0].item())
        restart_list = {0.1: [restart_steps + 1, restart_times, 2]}
    restart_list = {int(torch.argmin(abs(sigmas - key), dim=0)): value for key, value in restart_list.items()}

    step_list = []
    for i in range(len(sigmas) - 1):
        step_list.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in restart_list:
            restart_steps, restart_times, restart_max = restart_list[i + 1]
            min_idx = i + 1
            max_idx = int(torch.argmin(abs(sigmas - restart_max), dim=0))
            if max_idx < min_idx:
                sigma_restart = karras(restart_steps, sigmas[min_idx].item(), sigmas[max_idx].item())[:-1]
                for _ in range(restart_times):
                    step_list.extend(zip(sigma_restart[:-1], sigma_restart[1:]))

    last_sigma = None
    for old_sigma, new_sigma in step_list:
        if last_sigma is None:
            last_sigma = old_sigma
        elif last_sigma < old_sigma:
            # Restart: jump back up to old_sigma by adding fresh noise.
            x = x + ctx.noise(x, last_sigma, old_sigma) * ctx.s_noise * (old_sigma ** 2 - last_sigma ** 2) ** 0.5
        x, denoised = yield x, old_sigma
        d = to_d(x, old_sigma, denoised)
        dt = new_sigma - old_sigma
        if new_sigma == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            _, denoised_2 = yield x_2, new_sigma
            x = x + (d + to_d(x_2, new_sigma, denoised_2)) / 2 * dt
        last_sigma = new_sigma
    return x


def _sigma(t):
    return t.neg().exp()


def _t(sigma):
    return -sigma.log()


class _DPMSolver:
    """k-diffusion's DPMSolver steps in t = -log(sigma); every new ``eps`` is one model evaluation.

    A step's first evaluation (key "eps") adopts the latents the pipeline evaluated (``cache["x"]``).
    """

    @staticmethod
    def eps(cache, key, x, t):
        if key in cache:
            return cache[key]
        x_seen, denoised = yield x, _sigma(t)
        if key == "eps":
            cache["x"] = x = x_seen
        cache[key] = (x - denoised) / _sigma(t)
        return cache[key]

    def step_1(self, x, t, t_next, cache):
        h = t_next - t
        eps = yield from self.eps(cache, "eps", x, t)
        x = cache["x"]
        return x - _sigma(t_next) * h.expm1() * eps

    def step_2(self, x, t, t_next, cache, r1=1 / 2):
        h = t_next - t
        eps = yield from self.eps(cache, "eps", x, t)
        x = cache["x"]
        s1 = t + r1 * h
        u1 = x - _sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = yield from self.eps(cache, "eps_r1", u1, s1)
        return x - _sigma(t_next) * h.expm1() * eps - _sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)

    def step_3(self, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
        h = t_next - t
        eps = yield from self.eps(cache, "eps", x, t)
        x = cache["x"]
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - _sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = yield from self.eps(cache, "eps_r1", u1, s1)
        u2 = (x - _sigma(s2) * (r2 * h).expm1() * eps
              - _sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
        eps_r2 = yield from self.eps(cache, "eps_r2", u2, s2)
        return x - _sigma(t_next) * h.expm1() * eps - _sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)


def _model_range(ctx):
    """(t_start, t_end) in -log(sigma): from the model's sigma_max down to its sigma_min, as A1111 passes them."""
    return _t(torch.tensor(ctx.model_sigma_max)), _t(torch.tensor(ctx.model_sigma_min))


def _ancestral_target(ctx, t, t_next, t_end):
    """Where an ancestral DPM-Solver step lands and how much noise it adds back (k-diffusion's eta > 0 path)."""
    if not ctx.eta:
        return t_next, 0.0
    sd, _ = ancestral_step(_sigma(t), _sigma(t_next), ctx.eta)
    t_next_ = torch.minimum(t_end, _t(sd))
    return t_next_, (_sigma(t_next) ** 2 - _sigma(t_next_) ** 2) ** 0.5


def dpm_fast(ctx, x, sigmas):
    """DPM-Solver-Fast: exactly as many model evaluations as steps (orders 3, 3, ..., then 2+1 or the rest)."""
    solver = _DPMSolver()
    nfe = len(sigmas) - 1
    t_start, t_end = _model_range(ctx)
    m = math.floor(nfe / 3) + 1
    ts = torch.linspace(float(t_start), float(t_end), m + 1)
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    steps = {1: solver.step_1, 2: solver.step_2, 3: solver.step_3}
    for i, order in enumerate(orders):
        t, t_next = ts[i], ts[i + 1]
        t_next_, su = _ancestral_target(ctx, t, t_next, t_end)
        x = yield from steps[order](x, t, t_next_, {})
        x = x + su * ctx.s_noise * ctx.noise(x, _sigma(t), _sigma(t_next))
    return x


class _PID:
    """k-diffusion's PID step-size controller."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order, accept_safety, eps=1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs: list[float] = []

    def propose_step(self, error) -> bool:
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2] = self.errs[1]
            self.errs[1] = self.errs[0]
        self.h *= factor
        return accept


# Evaluations one adaptive attempt needs (3rd order: eps at s, s1 and s2).
ADAPTIVE_ATTEMPT_EVALS = 3


def dpm_adaptive(ctx, x, sigmas, order=3, rtol=0.05, atol=0.0078, h_init=0.05, pcoeff=0.0, icoeff=1.0,
                 dcoeff=0.0, accept_safety=0.81):
    """DPM-Solver-23 with PID step-size control: the number of evaluations depends on the image.

    ``ctx.evals_left()`` is the scheduler's remaining evaluation budget; when it cannot hold
    two more attempts the last attempt steps straight to the end and is accepted, so the
    run always finishes inside the budget.
    """
    solver = _DPMSolver()
    t_start, t_end = _model_range(ctx)
    atol, rtol = torch.tensor(atol), torch.tensor(rtol)
    s, x_prev = t_start, x
    pid = _PID(abs(h_init), pcoeff, icoeff, dcoeff, 1.5 if ctx.eta else order, accept_safety)
    while s < t_end - 1e-5:
        last_chance = ctx.evals_left() < 2 * ADAPTIVE_ATTEMPT_EVALS
        t = t_end if last_chance else torch.minimum(t_end, s + pid.h)
        t_, su = _ancestral_target(ctx, s, t, t_end)
        cache = {}
        yield from solver.eps(cache, "eps", x, s)
        x = cache["x"]
        x_low = yield from solver.step_2(x, s, t_, cache, r1=1 / 3)
        x_high = yield from solver.step_3(x, s, t_, cache)
        delta = torch.maximum(atol, rtol * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        if pid.propose_step(error) or last_chance:
            x_prev = x_low
            x = x_high + su * ctx.s_noise * ctx.noise(x, _sigma(s), _sigma(t))
            s = t
    return x
