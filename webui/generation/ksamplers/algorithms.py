"""k-diffusion's samplers, written as generators so a diffusers pipeline loop can drive them.

Each sampler is ``fn(ctx, x, sigmas)``, a generator that yields ``(x, sigma)`` whenever it
needs the model and receives ``(x_seen, denoised)``: the latents the pipeline actually
evaluated (the same tensor unless a pipeline step changed it, e.g. inpainting's mask blend)
and the model's denoised prediction there. At the first evaluation of a step the sampler
adopts ``x_seen``; at inner evaluations it only uses ``denoised``. The generator's return
value is the final sample. The maths follows k-diffusion's ``sampling.py`` (the version
A1111 1.10 runs) step for step, in float32 tensors like A1111.

``ctx`` provides ``noise(x, sigma, sigma_next)`` (per-image noise, see noise.py), ``eta`` and
``s_noise``.
"""
from __future__ import annotations

import torch
from scipy import integrate


def to_d(x, sigma, denoised):
    return (x - denoised) / sigma


def ancestral_step(sigma_from, sigma_to, eta=1.0):
    """(sigma_down, sigma_up) of an ancestral step; eta 0 makes it deterministic."""
    if not eta:
        return sigma_to, torch.zeros_like(sigma_to)
    sigma_up = torch.minimum(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def _t(sigma):
    return sigma.log().neg()


def _sigma(t):
    return t.neg().exp()


def euler(ctx, x, sigmas):
    for i in range(len(sigmas) - 1):
        x, denoised = yield x, sigmas[i]
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


def euler_ancestral(ctx, x, sigmas):
    for i in range(len(sigmas) - 1):
        x, denoised = yield x, sigmas[i]
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], ctx.eta)
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + ctx.noise(x, sigmas[i], sigmas[i + 1]) * ctx.s_noise * sigma_up
    return x


def heun(ctx, x, sigmas):
    for i in range(len(sigmas) - 1):
        x, denoised = yield x, sigmas[i]
        d = to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            _, denoised_2 = yield x_2, sigmas[i + 1]
            x = x + (d + to_d(x_2, sigmas[i + 1], denoised_2)) / 2 * dt
    return x


def dpm_2(ctx, x, sigmas):
    for i in range(len(sigmas) - 1):
        x, denoised = yield x, sigmas[i]
        d = to_d(x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            _, denoised_2 = yield x_2, sigma_mid
            x = x + to_d(x_2, sigma_mid, denoised_2) * (sigmas[i + 1] - sigmas[i])
    return x


def dpm_2_ancestral(ctx, x, sigmas):
    for i in range(len(sigmas) - 1):
        x, denoised = yield x, sigmas[i]
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], ctx.eta)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            _, denoised_2 = yield x_2, sigma_mid
            x = x + to_d(x_2, sigma_mid, denoised_2) * (sigma_down - sigmas[i])
            x = x + ctx.noise(x, sigmas[i], sigmas[i + 1]) * ctx.s_noise * sigma_up
    return x


def _lms_coeff(order, t, i, j):
    def basis(tau):
        prod = 1.0
        for k in range(order):
            if j != k:
                prod *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return prod
    return integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0]


def lms(ctx, x, sigmas, order=4):
    sigmas_cpu = sigmas.detach().cpu().numpy()
    ds = []
    for i in range(len(sigmas) - 1):
        x, denoised = yield x, sigmas[i]
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        cur_order = min(i + 1, order)
        coeffs = [_lms_coeff(cur_order, sigmas_cpu, i, j) for j in range(cur_order)]
        x = x + sum(coeff * d for coeff, d in zip(coeffs, reversed(ds)))
    return x


def dpmpp_2s_ancestral(ctx, x, sigmas):
    for i in range(len(sigmas) - 1):
        x, denoised = yield x, sigmas[i]
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], ctx.eta)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t(sigmas[i]), _t(sigma_down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (_sigma(s) / _sigma(t)) * x - (-h * 0.5).expm1() * denoised
            _, denoised_2 = yield x_2, _sigma(s)
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + ctx.noise(x, sigmas[i], sigmas[i + 1]) * ctx.s_noise * sigma_up
    return x


def dpmpp_sde(ctx, x, sigmas, r=0.5):
    for i in range(len(sigmas) - 1):
        x, denoised = yield x, sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        sd, su = ancestral_step(_sigma(t), _sigma(s), ctx.eta)
        s_ = _t(sd)
        x_2 = (_sigma(s_) / _sigma(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + ctx.noise(x, _sigma(t), _sigma(s)) * ctx.s_noise * su
        _, denoised_2 = yield x_2, _sigma(s)
        sd, su = ancestral_step(_sigma(t), _sigma(t_next), ctx.eta)
        t_next_ = _t(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (_sigma(t_next_) / _sigma(t)) * x - (t - t_next_).expm1() * denoised_d
        x = x + ctx.noise(x, _sigma(t), _sigma(t_next)) * ctx.s_noise * su
    return x


def dpmpp_2m(ctx, x, sigmas):
    old_denoised = None
    for i in range(len(sigmas) - 1):
        x, denoised = yield x, sigmas[i]
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - _t(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


def dpmpp_2m_sde(ctx, x, sigmas, solver_type="midpoint"):
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        x, denoised = yield x, sigmas[i]
        h = None
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = ctx.eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    x = x + ((-h - eta_h).expm1().neg() / (-h - eta_h) + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if ctx.eta:
                x = x + (ctx.noise(x, sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
                         * (-2 * eta_h).expm1().neg().sqrt() * ctx.s_noise)
        old_denoised, h_last = denoised, h
    return x


def dpmpp_2m_sde_heun(ctx, x, sigmas):
    return (yield from dpmpp_2m_sde(ctx, x, sigmas, solver_type="heun"))


def dpmpp_3m_sde(ctx, x, sigmas):
    denoised_1 = denoised_2 = None
    h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        x, denoised = yield x, sigmas[i]
        h = None
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (ctx.eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                d = (denoised - denoised_1) / (h_1 / h)
                x = x + (h_eta.neg().expm1() / h_eta + 1) * d
            if ctx.eta:
                x = (x + ctx.noise(x, sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
                     * (-2 * h * ctx.eta).expm1().neg().sqrt() * ctx.s_noise)
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x
