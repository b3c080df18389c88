"""ControlNet units through the real queue and generation core (tiny SD 1.x and SDXL)."""
from __future__ import annotations

import numpy as np
import pytest

from webui.generation.controlnet import ControlNetUnit
from webui.generation.request import GenerationRequest, RequestError
from webui.infotext import parse_infotext
from webui.jobs import JobFailed


@pytest.fixture(scope="module")
def ctx(tiny_sd15, tiny_sdxl, tiny_controlnet_sd15, tiny_controlnet_sdxl, tmp_path_factory):
    import shutil

    from webui.context import context_from_flags

    cn_dir = tmp_path_factory.mktemp("ControlNet")
    for tiny in (tiny_controlnet_sd15, tiny_controlnet_sdxl):  # one diffusers folder and one A1111 file each
        shutil.copytree(tiny.diffusers_dir, cn_dir / tiny.diffusers_dir.name)
        shutil.copy(tiny.ldm_file, cn_dir)
        sidecar = tiny.ldm_file.with_name(tiny.ldm_file.stem + ".config")
        shutil.copytree(sidecar, cn_dir / sidecar.name)
    context = context_from_flags(["--data-dir", str(tmp_path_factory.mktemp("data")), "--ckpt-dir",
                                  str(tiny_sd15.single_file.parent), "--ckpt", str(tiny_sd15.single_file),
                                  "--controlnet-dir", str(cn_dir)], {"live_previews_enable": False})
    yield context
    context.queue.stop()


def picture() -> np.ndarray:
    img = np.full((64, 64, 3), 250, np.uint8)
    img[12:40, 10:36] = (30, 30, 200)
    return img


def req(*units, **kw) -> GenerationRequest:
    base = dict(prompt="a cube", seed=7, steps=3, width=64, height=64, sampler_name="Euler a", save_images=False,
                cfg_scale=5.0, controlnet_units=list(units))
    return GenerationRequest(**{**base, **kw})


def unit(**kw) -> ControlNetUnit:
    return ControlNetUnit(**{"module": "canny", "model": "tiny-sd15-canny", "image": picture(), **kw})


def px(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.int16)


def test_a_unit_steers_and_is_written_to_infotext(ctx):
    plain = ctx.queue.run(req())
    steered = ctx.queue.run(req(unit(threshold_a=50, threshold_b=120)))
    assert np.abs(px(steered) - px(plain)).max() > 3
    params = parse_infotext(steered.infotexts[0])
    text = params["ControlNet 0"]
    assert text.startswith("Module: canny, Model: tiny-sd15-canny [") and "Threshold A: 50" in text
    assert "ControlNet 0" not in parse_infotext(plain.infotexts[0])
    assert len(steered.extra_images) == 1 and steered.extra_images[0].size == (64, 64)
    again = ctx.queue.run(req(unit(threshold_a=50, threshold_b=120)))
    assert np.array_equal(px(again), px(steered))


def test_weight_zero_and_disabled_units_give_the_plain_pixels(ctx):
    plain = ctx.queue.run(req())
    zero = ctx.queue.run(req(unit(weight=0.0)))
    off = ctx.queue.run(req(unit(enabled=False)))
    assert np.array_equal(px(zero), px(plain)) and np.array_equal(px(off), px(plain))


def test_two_units_one_given_as_an_api_dict(ctx):
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(picture()).save(buf, format="PNG")
    raw = {"module": "invert", "model": "tiny-sd15-canny-diffusers", "weight": 0.5, "control_mode": 2,
           "input_image": base64.b64encode(buf.getvalue()).decode()}
    two = ctx.queue.run(req(unit(), raw))
    one = ctx.queue.run(req(unit()))
    params = parse_infotext(two.infotexts[0])
    assert "ControlNet 1" in params and "Control Mode: ControlNet is more important" in params["ControlNet 1"]
    assert np.abs(px(two) - px(one)).max() > 0


@pytest.mark.parametrize("bad,message", [
    (dict(model="nope"), "not found"),
    (dict(model="tiny-sdxl-canny"), "is for"),
    (dict(image=None), "no control image"),
    (dict(module="inpaint_only"), "needs a mask"),
])
def test_bad_units_fail_the_job_with_a_message(ctx, bad, message):
    with pytest.raises(JobFailed, match=message):
        ctx.queue.run(req(unit(**bad)))
    assert ctx.queue.run(req()).images  # the queue keeps serving


def test_request_validation_and_unit_limit(ctx):
    with pytest.raises(RequestError, match="after the ending step"):
        req(unit(guidance_start=0.9, guidance_end=0.1)).validate()
    with pytest.raises(JobFailed, match="control_net_unit_count allows 3"):
        ctx.queue.run(req(*[unit() for _ in range(4)]))


def test_inpaint_only_keeps_the_unmasked_pixels(ctx):
    mask = np.zeros((64, 64), np.uint8)
    mask[20:44, 20:44] = 255
    result = ctx.queue.run(req(unit(module="inpaint_only", mask=mask)))
    out = np.asarray(result.images[0], dtype=np.int16)
    assert np.abs(out[:16] - picture()[:16].astype(np.int16)).max() <= 1  # outside the mask: the picture


def test_sdxl_unit(ctx, tiny_sdxl, tiny_sd15):
    ctx.models.select(str(tiny_sdxl.single_file))
    try:
        plain = ctx.queue.run(req())
        steered = ctx.queue.run(req(unit(model="tiny-sdxl-canny", control_mode="My prompt is more important")))
        assert np.abs(px(steered) - px(plain)).max() > 0
        assert "ControlNet 0" in parse_infotext(steered.infotexts[0])
    finally:
        ctx.models.select(str(tiny_sd15.single_file))


def test_img2img_unit_without_its_own_image_uses_the_input(ctx):
    from PIL import Image

    init = Image.fromarray(picture())
    base = dict(mode="img2img", init_images=[init], denoising_strength=0.6)
    plain = ctx.queue.run(req(**base))
    steered = ctx.queue.run(req(unit(image=None, module="invert"), **base))
    assert np.abs(px(steered) - px(plain)).max() > 0
    assert np.array_equal(np.asarray(steered.extra_images[0]), 255 - picture())  # the input, inverted
    assert "ControlNet 0" in parse_infotext(steered.infotexts[0])


def test_inpaint_only_masked_crops_the_control_image_like_the_init_image(ctx):
    from PIL import Image

    from webui.generation.controlnet_feature import inpaint_crop
    from webui.generation.controlnet_run import fit

    big = np.zeros((128, 128, 3), np.uint8)
    big[:, :, 0] = np.arange(128, dtype=np.uint8)[None, :] * 2  # a ramp, so a wrong crop shows
    mask = np.zeros((128, 128), np.uint8)
    mask[70:100, 60:90] = 255
    request = req(unit(image=big, module="none"), mode="inpaint", init_images=[Image.fromarray(big)],
                  mask=Image.fromarray(mask), inpaint_full_res=True, inpaint_full_res_padding=4,
                  denoising_strength=0.75)
    box = inpaint_crop(request.validate())
    x1, y1, x2, y2 = box
    assert (x2 - x1, y2 - y1) != (128, 128)
    result = ctx.queue.run(request)
    expected = fit(big[y1:y2, x1:x2], 64, 64, "Just Resize")
    assert np.array_equal(np.asarray(result.extra_images[0]), expected)
    assert result.images[0].size == (128, 128)  # the crop went back into the whole picture


def test_nine_channel_inpaint_checkpoint_says_units_are_not_supported(ctx, tiny_sd15_inpaint, tiny_sd15):
    from PIL import Image

    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    ctx.models.registry.add_file(tiny_sd15_inpaint.single_file)  # outside the checkpoint folder
    ctx.models.select(str(tiny_sd15_inpaint.single_file))
    try:
        base = dict(mode="inpaint", init_images=[Image.fromarray(picture())], mask=Image.fromarray(mask),
                    inpaint_full_res=False)
        with pytest.raises(JobFailed, match="9-channel inpainting checkpoint are not supported yet"):
            ctx.queue.run(req(unit(), **base))
        assert ctx.queue.run(req(**base)).images  # without units it inpaints
    finally:
        ctx.models.select(str(tiny_sd15.single_file))


def test_no_enabled_unit_costs_nothing(ctx):
    ctx.queue.run(req(unit()))  # warm: a ControlNet variant exists now
    loads, builds = ctx.controlnets.loads, ctx.core.pipelines.builds
    calls = []
    original = ctx.controlnets.get
    ctx.controlnets.get = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        result = ctx.queue.run(req(unit(enabled=False)))
    finally:
        ctx.controlnets.get = original
    assert calls == [] and ctx.controlnets.loads == loads and ctx.core.pipelines.builds == builds
    assert "ControlNet 0" not in parse_infotext(result.infotexts[0]) and result.extra_images == []


def test_hires_fix_runs_the_units_in_both_passes(ctx, monkeypatch):
    from webui.generation import controlnet_run

    sizes = []
    forward = controlnet_run.UnitControlNet.forward

    def counting(self, sample, *args, **kwargs):
        sizes.append(tuple(sample.shape[-2:]))
        return forward(self, sample, *args, **kwargs)

    hires = dict(enable_hr=True, hr_scale=2.0, hr_upscaler="Latent", denoising_strength=0.5)
    plain = ctx.queue.run(req(**hires))
    monkeypatch.setattr(controlnet_run.UnitControlNet, "forward", counting)
    steered = ctx.queue.run(req(unit(), **hires))
    assert steered.images[0].size == (128, 128) and "ControlNet 0" in parse_infotext(steered.infotexts[0])
    first, second = sizes[0], (2 * sizes[0][0], 2 * sizes[0][1])  # latent sizes of the two passes
    assert sizes[:3] == [first] * 3 and sizes[3:] == [second] * (len(sizes) - 3) and len(sizes) > 3
    assert np.abs(px(steered) - px(plain)).max() > 3
    zero = ctx.queue.run(req(unit(weight=0.0), **hires))
    assert np.array_equal(px(zero), px(plain))
