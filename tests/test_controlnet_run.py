"""Per-unit ControlNet wrappers inside the diffusers ControlNet pipelines (tiny SD 1.x and SDXL)."""
from __future__ import annotations

import pytest
import torch

from webui.generation.controlnet_run import SOFT_BASE, UnitControlNet, UnitControlNets, residual_shapes


@pytest.fixture(scope="module")
def sd15(tiny_sd15, tiny_controlnet_sd15):
    from diffusers import StableDiffusionPipeline

    base = StableDiffusionPipeline.from_pretrained(tiny_sd15.diffusers_dir, local_files_only=True)
    base.set_progress_bar_config(disable=True)
    return base, tiny_controlnet_sd15.load_reference()


def cn_pipe(base, controlnet):
    import diffusers

    name = "StableDiffusionXLControlNetPipeline" if "text_encoder_2" in base.components \
        else "StableDiffusionControlNetPipeline"
    parts = {k: v for k, v in base.components.items() if k not in ("safety_checker", "feature_extractor",
                                                                      "image_encoder")}
    cls = getattr(diffusers, name)
    extra = {} if "XL" in name else {"safety_checker": None, "feature_extractor": None,
                                     "requires_safety_checker": False}
    pipe = cls(**parts, controlnet=controlnet, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def control_image(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, 3, 64, 64, generator=g) > 0.7).float()


def run(pipe, image, steps=3, **kwargs):
    return pipe("a cat", image=image, num_inference_steps=steps, height=64, width=64, guidance_scale=5.0,
                generator=torch.Generator().manual_seed(1), output_type="latent", **kwargs).images


def test_balanced_unit_equals_the_bare_controlnet(sd15):
    base, controlnet = sd15
    bare = run(cn_pipe(base, controlnet), control_image(), controlnet_conditioning_scale=0.7)
    ours = run(cn_pipe(base, UnitControlNets([UnitControlNet(controlnet)])), [control_image()],
               controlnet_conditioning_scale=[0.7])
    assert torch.equal(bare, ours)
    plain = base("a cat", num_inference_steps=3, height=64, width=64, guidance_scale=5.0,
                 generator=torch.Generator().manual_seed(1), output_type="latent").images
    assert (bare - plain).abs().max() > 1e-3  # the unit really steers


def test_weight_zero_and_empty_region_give_the_plain_pipelines_latents(sd15):
    base, controlnet = sd15
    plain = base("a cat", num_inference_steps=3, height=64, width=64, guidance_scale=5.0,
                 generator=torch.Generator().manual_seed(1), output_type="latent").images
    zero = run(cn_pipe(base, UnitControlNets([UnitControlNet(controlnet)])), [control_image()],
               controlnet_conditioning_scale=[0.0])
    nowhere = UnitControlNet(controlnet, region=torch.zeros(1, 1, 64, 64))
    masked = run(cn_pipe(base, UnitControlNets([nowhere])), [control_image()], controlnet_conditioning_scale=[1.0])
    assert torch.equal(plain, zero) and torch.equal(plain, masked)


def test_start_end_skips_the_net_outside_its_steps(sd15):
    base, controlnet = sd15
    calls = []
    handle = controlnet.register_forward_hook(lambda *a: calls.append(1))
    try:
        run(cn_pipe(base, UnitControlNets([UnitControlNet(controlnet)])), [control_image()], steps=4,
            controlnet_conditioning_scale=[1.0], control_guidance_start=[0.5], control_guidance_end=[1.0])
    finally:
        handle.remove()
    assert len(calls) == 2  # steps 2 and 3 of 4


def test_control_modes_scale_and_route_like_sd_webui_controlnet(sd15):
    _, controlnet = sd15
    g = torch.Generator().manual_seed(3)
    sample = torch.randn(2, 4, 32, 32, generator=g)
    text = torch.randn(2, 77, controlnet.config.cross_attention_dim, generator=g)
    cond = torch.cat([control_image(1)] * 2)
    t = torch.tensor(500)
    with torch.no_grad():
        ref_down, ref_mid = controlnet(sample, t, text, controlnet_cond=cond, conditioning_scale=0.8,
                                       return_dict=False)
        half_down, half_mid = controlnet(sample[1:], t, text[1:], controlnet_cond=cond[1:], conditioning_scale=0.8,
                                         return_dict=False)
        soft_down, soft_mid = UnitControlNet(controlnet, "My prompt is more important")(sample, t, text, cond, 0.8)
        strong_down, strong_mid = UnitControlNet(controlnet, "ControlNet is more important")(sample, t, text, cond, 0.8)
    n = len(ref_down) + 1
    for i, (ref, soft) in enumerate(zip(ref_down, soft_down)):
        torch.testing.assert_close(soft, ref * SOFT_BASE ** (n - 1 - i))
    torch.testing.assert_close(soft_mid, ref_mid)
    for i, (half, strong) in enumerate(zip(half_down, strong_down)):
        assert torch.equal(strong[:1], torch.zeros_like(strong[:1]))  # the uncond half gets nothing
        torch.testing.assert_close(strong[1:], half * SOFT_BASE ** (n - 1 - i))
    torch.testing.assert_close(strong_mid[1:], half_mid)
    shapes, mid_shape = residual_shapes(controlnet, sample.shape)
    assert [tuple(d.shape) for d in ref_down] == shapes and tuple(ref_mid.shape) == mid_shape


def test_sdxl_units_run_with_two_units_and_cond_only_mode(tiny_sdxl, tiny_controlnet_sdxl):
    from diffusers import StableDiffusionXLPipeline

    base = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl.diffusers_dir, local_files_only=True)
    controlnet = tiny_controlnet_sdxl.load_reference()
    units = UnitControlNets([UnitControlNet(controlnet), UnitControlNet(controlnet, "ControlNet is more important")])
    two = run(cn_pipe(base, units), [control_image(0), control_image(1)], steps=2,
              controlnet_conditioning_scale=[0.5, 0.5])
    bare = run(cn_pipe(base, controlnet), control_image(0), steps=2, controlnet_conditioning_scale=0.5)
    assert two.shape == bare.shape and torch.isfinite(two).all()
    assert (two - bare).abs().max() > 1e-4  # the second unit changed something
