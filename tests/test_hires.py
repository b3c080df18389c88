"""Hires fix and refiner through the real core on tiny checkpoints: sizes, step counts, seeds, infotext,
a second-pass checkpoint and the refiner switch from the model manager's cache, bad input."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.upscaler_kit import write_upscalers
from webui.context import context_from_flags
from webui.generation.request import GenerationRequest, RequestError
from webui.infotext import infotext_to_request_fields, parse_infotext

BASE = dict(prompt="a red circle", negative_prompt="blue", width=64, height=64, steps=3, seed=11, cfg_scale=5,
            sampler_name="Euler", save_images=False)


def _copy_checkpoint(model, folder, stem, perturb=False):
    """A copy of a tiny single file under another name (with its sidecar); UNet weights nudged if perturb."""
    target = folder / f"{stem}.safetensors"
    if perturb:
        state = load_file(str(model.single_file))
        gen = torch.Generator().manual_seed(5)
        state = {k: (v + 0.2 * torch.randn(v.shape, generator=gen).to(v.dtype)
                     if k.startswith("model.diffusion_model.") and v.dtype.is_floating_point else v)
                 for k, v in state.items()}
        save_file(state, str(target))
    else:
        shutil.copy(model.single_file, target)
    shutil.copytree(model.config_dir, folder / f"{stem}.config")


@pytest.fixture(scope="module")
def ctx(tiny_sd15, tiny_sdxl, tmp_path_factory):
    ckpts = tmp_path_factory.mktemp("ckpts")
    for model, stem in ((tiny_sd15, "tiny-sd15"), (tiny_sdxl, "tiny-sdxl")):
        _copy_checkpoint(model, ckpts, stem)
        _copy_checkpoint(model, ckpts, f"{stem}-copy")
        _copy_checkpoint(model, ckpts, f"{stem}-other", perturb=True)
    data = tmp_path_factory.mktemp("data")
    write_upscalers(data / "models", bad_files=False)
    context = context_from_flags(["--data-dir", str(data), "--ckpt-dir", str(ckpts), "--ckpt",
                                  str(ckpts / "tiny-sd15.safetensors")], {"sd_checkpoints_limit": 1})
    yield context
    context.queue.stop()


def _run(ctx, **fields):
    return ctx.queue.run(GenerationRequest(**{**BASE, **fields}), timeout=300)


def _unet_calls(ctx, **fields) -> int:
    calls = []
    handle = ctx.models.current().pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        _run(ctx, **fields)
    finally:
        handle.remove()
    return len(calls)


def _pixels(result):
    return np.asarray(result.images[0], dtype=np.int16)


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (nearest-exact)", "Lanczos", "tiny-esrgan-4x"])
def test_two_x_in_latent_and_pixel_space(ctx, upscaler):
    result = _run(ctx, enable_hr=True, hr_upscaler=upscaler, denoising_strength=0.6)
    assert result.images[0].size == (128, 128)
    params = parse_infotext(result.infotexts[0])
    assert params["Size-1"] == "64" and params["Hires upscale"] == "2" and params["Hires upscaler"] == upscaler
    assert params["Denoising strength"] == "0.6"


def test_second_pass_runs_a1111s_step_count(ctx):
    # Euler is one UNet call per step (CFG batched): 3 first-pass steps + hires steps.
    assert _unet_calls(ctx, enable_hr=True, hr_second_pass_steps=4, denoising_strength=0.5) == 3 + 4
    assert _unet_calls(ctx, enable_hr=True, denoising_strength=0.3) == 3 + 3  # 0 = as many as the first pass


def test_resize_to_both_sides_crops_and_one_side_keeps_aspect(ctx):
    both = _run(ctx, enable_hr=True, hr_resize_x=96, hr_resize_y=80)
    assert both.images[0].size == (96, 80)
    assert parse_infotext(both.infotexts[0])["Hires resize-1"] == "96"
    one = _run(ctx, width=128, height=64, enable_hr=True, hr_resize_x=192)
    assert one.images[0].size == (192, 96)


def test_batch_images_equal_single_runs_with_the_next_seeds(ctx):
    batch = ctx.queue.run(GenerationRequest(**{**BASE, "batch_size": 2, "enable_hr": True}), timeout=300)
    second = _run(ctx, seed=BASE["seed"] + 1, enable_hr=True)
    diff = np.abs(np.asarray(batch.images[1], np.int16) - _pixels(second)).max()
    assert diff <= 2, diff


def test_hires_prompt_sampler_and_infotext_round_trip(ctx):
    result = _run(ctx, enable_hr=True, hr_prompt="a green square", hr_negative_prompt="", hr_sampler_name="Euler a",
                  hr_second_pass_steps=2, denoising_strength=0.55, hr_upscaler="Latent (bicubic)")
    params = parse_infotext(result.infotexts[0])
    assert params["Hires prompt"] == "a green square" and params["Hires sampler"] == "Euler a"
    fields = infotext_to_request_fields(params)
    again = GenerationRequest(**{k: v for k, v in fields.items()}).validate()
    assert (again.enable_hr, again.hr_prompt, again.hr_sampler_name, again.hr_second_pass_steps, again.hr_upscaler,
            again.denoising_strength) == (True, "a green square", "Euler a", 2, "Latent (bicubic)", 0.55)
    plain = _run(ctx, enable_hr=True, hr_second_pass_steps=2, denoising_strength=0.55, hr_upscaler="Latent (bicubic)")
    assert np.abs(_pixels(result) - _pixels(plain)).max() > 0  # the hires prompt is used


def test_hires_checkpoint_comes_from_the_cache(ctx):
    reads = ctx.models.stats.file_reads
    first = _run(ctx, enable_hr=True, hr_checkpoint_name="tiny-sd15-other")
    assert parse_infotext(first.infotexts[0])["Hires checkpoint"].startswith("tiny-sd15-other")
    assert ctx.models.stats.file_reads == reads + 1
    again = _run(ctx, enable_hr=True, hr_checkpoint_name="tiny-sd15-other")
    assert ctx.models.stats.file_reads == reads + 1  # cached, even with sd_checkpoints_limit 1
    assert np.array_equal(_pixels(first), _pixels(again))
    same = _run(ctx, enable_hr=True)
    assert np.abs(_pixels(first) - _pixels(same)).max() > 0
    assert ctx.models.current().info.model_name == "tiny-sd15"  # the active model never changed


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_refiner_with_identical_weights_changes_nothing(ctx, arch):
    """Swapping to a refiner with the same weights mid-sampling must give the same pixels: the switch
    hands over the sampler state and the refiner's conditioning correctly."""
    # 3 Euler steps on A1111's Normal schedule run at t = 999, 499.5, 0: a switch at 0.3 hands the last two to the refiner.
    if arch == "sdxl":
        ctx.queue.run("tiny-sdxl", kind="checkpoint", timeout=120)
    try:
        plain = _run(ctx)
        refined = _run(ctx, refiner_checkpoint=f"tiny-{arch}-copy", refiner_switch_at=0.3)
        assert np.abs(_pixels(plain) - _pixels(refined)).max() <= 1
        params = parse_infotext(refined.infotexts[0])
        assert params["Refiner"].startswith(f"tiny-{arch}-copy") and params["Refiner switch at"] == "0.3"
        other = _run(ctx, refiner_checkpoint=f"tiny-{arch}-other", refiner_switch_at=0.3)
        assert np.abs(_pixels(plain) - _pixels(other)).max() > 2
        late = _run(ctx, refiner_checkpoint=f"tiny-{arch}-other", refiner_switch_at=1.0)
        assert np.array_equal(_pixels(plain), _pixels(late))  # switch at 1.0: never switches
        # the next plain job runs on the base UNet again
        assert np.array_equal(_pixels(plain), _pixels(_run(ctx)))
    finally:
        ctx.queue.run("tiny-sd15", kind="checkpoint", timeout=120)


def test_refiner_is_loaded_once(ctx):
    _run(ctx, refiner_checkpoint="tiny-sd15-other", refiner_switch_at=0.6)
    reads = ctx.models.stats.file_reads
    _run(ctx, refiner_checkpoint="tiny-sd15-other", refiner_switch_at=0.6)
    assert ctx.models.stats.file_reads == reads


@pytest.mark.parametrize("fields, bad", [
    ({"enable_hr": True, "hr_upscaler": "4x-Nope"}, "hr_upscaler"),
    ({"enable_hr": True, "hr_checkpoint_name": "missing"}, "hr_checkpoint_name"),
    ({"enable_hr": True, "hr_checkpoint_name": "tiny-sdxl-other"}, "hr_checkpoint_name"),
    ({"refiner_checkpoint": "missing"}, "refiner_checkpoint"),
    ({"enable_hr": True, "hr_scale": 0}, "hr_scale"),
    ({"enable_hr": True, "hr_scale": 200}, "hr_scale"),
    ({"refiner_switch_at": 1.5}, "refiner_switch_at"),
])
def test_bad_input_names_the_field_and_the_queue_goes_on(ctx, fields, bad):
    with pytest.raises(Exception) as info:
        _run(ctx, **fields)
    assert bad in str(info.value)
    assert _run(ctx).images[0].size == (64, 64)


def test_validation_errors_are_request_errors():
    with pytest.raises(RequestError) as info:
        GenerationRequest(enable_hr=True, hr_scale=float("nan")).validate()
    assert [e.field for e in info.value.errors] == ["hr_scale"]
