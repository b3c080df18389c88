"""Pipelines derived per (model, kind): shared modules, untouched dtypes, one cached object per kind."""
import pytest
import torch

from tests.kit import build_pipeline
from webui.generation import pipelines


@pytest.fixture(scope="module")
def mixed_sd15():
    """A tiny SD 1.x pipeline with the dtype mix a GPU policy gives: fp16 UNet/text encoder, fp32 VAE."""
    pipe = build_pipeline("sd15")
    pipe.unet.to(torch.float16)
    pipe.text_encoder.to(torch.float16)
    return pipe


@pytest.mark.parametrize("kind", ["img2img", "inpaint"])
def test_derived_pipeline_shares_modules_and_keeps_dtypes(mixed_sd15, kind):
    cache = pipelines.PipelineCache()
    derived = cache.get(mixed_sd15, kind)
    assert derived is not mixed_sd15
    for name in ("unet", "vae", "text_encoder", "tokenizer"):
        assert getattr(derived, name) is getattr(mixed_sd15, name), name
    assert mixed_sd15.unet.dtype == torch.float16 and mixed_sd15.text_encoder.dtype == torch.float16
    assert mixed_sd15.vae.dtype == torch.float32
    expected = {"img2img": "StableDiffusionImg2ImgPipeline", "inpaint": "StableDiffusionInpaintPipeline"}[kind]
    assert expected in [c.__name__ for c in type(derived).__mro__]


def test_one_cached_pipeline_per_kind_rebuilt_when_a_module_changes(mixed_sd15):
    cache = pipelines.PipelineCache()
    assert cache.get(mixed_sd15, "txt2img") is mixed_sd15  # the loaded pipeline is the txt2img one
    first = cache.get(mixed_sd15, "img2img")
    assert cache.get(mixed_sd15, "img2img") is first and cache.builds == 1
    other = build_pipeline("sd15")
    original_vae = mixed_sd15.vae
    try:
        mixed_sd15.vae = other.vae  # e.g. the user picked another VAE
        rebuilt = cache.get(mixed_sd15, "img2img")
        assert rebuilt is not first and rebuilt.vae is other.vae and cache.builds == 2
    finally:
        mixed_sd15.vae = original_vae


def test_sdxl_variants_and_9_channel_kinds():
    sdxl = build_pipeline("sdxl")
    cache = pipelines.PipelineCache()
    i2i = cache.get(sdxl, "img2img")
    assert "StableDiffusionXLImg2ImgPipeline" in [c.__name__ for c in type(i2i).__mro__]
    assert i2i.text_encoder_2 is sdxl.text_encoder_2
    inpaint = build_pipeline("sd15-inpaint")
    assert [pipelines.effective_kind(inpaint, m) for m in ("txt2img", "img2img", "inpaint")] == ["inpaint"] * 3
    assert [pipelines.effective_kind(sdxl, m) for m in ("txt2img", "img2img", "inpaint")] == \
        ["txt2img", "img2img", "img2img"]  # 4-channel inpaint = img2img + the core's latent blend
    with pytest.raises(ValueError, match="unknown mode"):
        pipelines.effective_kind(sdxl, "outpaint")


def test_given_latents_replace_the_pipelines_own_noise():
    """The img2img/inpaint variants start from exactly the init + noise the core hands them."""
    from diffusers import EulerDiscreteScheduler

    cache = pipelines.PipelineCache()
    init = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(2))
    for arch, kind in (("sd15", "img2img"), ("sdxl", "img2img"), ("sd15-inpaint", "inpaint")):
        pipe = cache.get(build_pipeline(arch), kind)
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
        pipe.scheduler.set_timesteps(4)
        pipe.scheduler.set_begin_index(2)
        t = pipe.scheduler.timesteps[2:3].repeat(2)
        expected = init + noise * pipe.scheduler.sigmas[2]
        pipe._webui_given = pipelines.GivenLatents(noise=noise, init=init)
        try:
            if kind == "img2img":
                out = pipe.prepare_latents(init, t, 2, 1, torch.float32, torch.device("cpu"))
            else:
                out, got_noise, image_latents = pipe.prepare_latents(
                    2, 4, 64, 64, torch.float32, torch.device("cpu"), None, image=init, timestep=t,
                    is_strength_max=False, return_noise=True, return_image_latents=True)
                assert torch.equal(got_noise, noise) and torch.equal(image_latents, init)
            assert torch.allclose(out, expected, atol=1e-6), arch
            pipe._webui_given = pipelines.GivenLatents(noise=noise, init=None)  # pure noise (txt2img on 9 channels)
            if kind == "inpaint":
                out = pipe.prepare_latents(2, 4, 64, 64, torch.float32, torch.device("cpu"), None, image=init,
                                           timestep=t, return_noise=False)[0]
                assert torch.allclose(out, noise * pipe.scheduler.init_noise_sigma)
        finally:
            pipe._webui_given = None


def test_call_forgets_given_latents_even_when_the_pipeline_raises():
    pipe = pipelines.PipelineCache().get(build_pipeline("sd15"), "img2img")
    noise = torch.zeros(1, 4, 32, 32)
    with pytest.raises(Exception):
        pipelines.call(pipe, pipelines.GivenLatents(noise=noise, init=noise), image=noise, strength=2.0)
    assert pipe._webui_given is None
    with pytest.raises(TypeError, match="cannot take given latents"):
        pipelines.call(build_pipeline("sd15"), pipelines.GivenLatents(noise=noise))
