"""Soft inpainting: settings, the magnitude-preserving blend, the vectorised histogram filter, the core path."""
import numpy as np
import pytest
import torch

from tests.test_img2img import box_mask, px, req, scene
from webui.generation import soft_inpaint
from webui.generation.request import RequestError
from webui.infotext import infotext_to_request_fields, parse_infotext


def naive_filter(img, kernel, low, high, min_width=1.0):
    """The per-pixel definition, written plainly: the reference the vectorised filter must match."""
    r = kernel.shape[0] // 2
    out = np.zeros_like(img)
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            items = []
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    if 0 <= y + dy < img.shape[0] and 0 <= x + dx < img.shape[1]:
                        items.append((img[y + dy, x + dx], kernel[dy + r, dx + r]))
            items.sort(key=lambda item: item[0])
            total = sum(w for _, w in items)
            lo, hi = total * low, total * high
            if hi - lo < min_width:
                c = (lo + hi) / 2
                lo, hi = c - min_width / 2, c + min_width / 2
                if hi > total:
                    lo, hi = total - min_width, total
                if lo < 0:
                    lo, hi = 0, min_width
            acc = weight = 0.0
            start = 0.0
            for value, w in items:
                s, e = max(lo, start), min(hi, start + w)
                if e > s:
                    acc += value * (e - s)
                    weight += e - s
                start += w
            out[y, x] = acc / weight if weight else 0
    return out


def test_histogram_filter_matches_the_per_pixel_definition():
    rng = np.random.default_rng(3)
    img = rng.random((9, 11))
    kernel = soft_inpaint._kernel()
    for low, high in ((0.9, 1.0), (0.25, 0.75), (0.0, 0.01)):
        assert np.allclose(soft_inpaint.histogram_filter(img, kernel, low, high), naive_filter(img, kernel, low, high))


def test_latent_blend_keeps_the_ends_and_interpolates_magnitudes():
    settings = soft_inpaint.SoftInpainting()
    a, b = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8) * 3
    assert torch.allclose(soft_inpaint.latent_blend(settings, a, b, torch.zeros(1, 1, 8, 8)), a, atol=1e-4)
    assert torch.allclose(soft_inpaint.latent_blend(settings, a, b, torch.ones(1, 1, 8, 8)), b, atol=1e-4)
    half = soft_inpaint.latent_blend(settings, a, b, torch.full((1, 1, 8, 8), 0.5))
    linear = (a + b) / 2
    # Detail preservation 4 pulls the magnitude towards the larger one: more than plain interpolation gives.
    assert (half.norm(dim=1) > linear.norm(dim=1)).float().mean() > 0.9
    weight = soft_inpaint.blend_weight(settings, torch.tensor([0.0, 0.25, 1.0]), 4.0)
    assert weight.tolist() == pytest.approx([0.0, 0.25 ** 2, 1.0])


def test_settings_from_api_args_dicts_and_booleans():
    assert soft_inpaint.SoftInpainting.from_value([True, 1, 0.5, 4, 0, 0.5, 2]) == soft_inpaint.SoftInpainting()
    assert soft_inpaint.SoftInpainting.from_value([False, 1, 0.5, 4, 0, 0.5, 2]) is None
    assert soft_inpaint.SoftInpainting.from_value({"mask_blend_scale": 1.5}).mask_blend_scale == 1.5
    with pytest.raises(RequestError, match="soft_inpainting"):
        req(mode="inpaint", mask=box_mask(), soft_inpainting={"mask_blend_power": 99}).validate()


def test_soft_inpainting_through_the_core(sd15):
    hard = sd15.queue.run(req(mode="inpaint", mask=box_mask(), mask_blur=2, inpaint_full_res=False))
    soft = sd15.queue.run(req(mode="inpaint", mask=box_mask(), mask_blur=2, inpaint_full_res=False,
                              soft_inpainting=True))
    out, original = px(soft.images[0]), px(scene())
    # Far from the mask the latents stay the original's, so the difference-based overlay keeps its pixels
    # (the overlay mask spreads: blur 2, the 5x5 histogram filters, then a radius-4 Gaussian).
    for corner in (np.s_[:4, :4], np.s_[:4, -4:], np.s_[-4:, :4], np.s_[-4:, -4:]):
        assert np.abs(out[corner] - original[corner]).max() <= 2
    assert not np.array_equal(out, px(hard.images[0]))
    params = parse_infotext(soft.infotexts[0])
    assert params["Soft inpainting enabled"] == "True" and params["Soft inpainting schedule bias"] == "1"
    fields = infotext_to_request_fields(params)
    assert soft_inpaint.SoftInpainting.from_value(fields["soft_inpainting"]) == soft_inpaint.SoftInpainting()
