"""Extras (postprocessing) through the shared queue: sizes, two upscalers blended, crop, saving, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.upscaler_kit import write_upscalers
from webui.generation.postprocess import ExtrasRequest
from webui.generation.request import RequestError
from webui.images import read_infotext
from webui.jobs import JobFailed


@pytest.fixture(scope="module")
def ctx(app_context):
    write_upscalers(app_context.paths.models_dir)
    app_context.upscalers.refresh()
    return app_context


def _image(width=24, height=16, infotext=None):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    if infotext:
        image.info["parameters"] = infotext
    return image


def test_scale_by_with_a_model_saves_png_with_both_texts(ctx):
    source = _image(infotext="a red circle\nSteps: 2, Seed: 7, Size: 24x16")
    result = ctx.submit_extras(ExtrasRequest(images=[source], upscaler_1="tiny-esrgan-4x", upscaling_resize=2),
                               source="test").wait(120)
    assert result.images[0].size == (48, 32)
    assert result.infotexts[0] == "Postprocess upscale by: 2, Postprocess upscaler: tiny-esrgan-4x"
    [path] = result.paths
    assert path.parent.parent == ctx.paths.data_dir / "outputs" / "extras-images"
    with Image.open(path) as saved:
        assert saved.size == (48, 32)
        assert read_infotext(saved).startswith("a red circle")  # the original's parameters are kept
        assert saved.text["postprocessing"] == result.infotexts[0]


def test_second_upscaler_is_blended_at_its_visibility(ctx):
    source = _image()
    one = ctx.submit_extras(ExtrasRequest(images=[source], upscaler_1="Nearest", save_images=False)).wait(60)
    two = ctx.submit_extras(ExtrasRequest(images=[source], upscaler_1="Nearest", upscaler_2="tiny-compact-2x",
                                          extras_upscaler_2_visibility=0.5, save_images=False)).wait(60)
    other = ctx.submit_extras(ExtrasRequest(images=[source], upscaler_1="tiny-compact-2x",
                                            save_images=False)).wait(60)
    expected = Image.blend(one.images[0], other.images[0], 0.5)
    assert np.abs(np.asarray(two.images[0], int) - np.asarray(expected, int)).max() <= 1
    assert "Postprocess upscaler 2: tiny-compact-2x" in two.infotexts[0]
    assert "Postprocess upscaler 2 visibility: 0.5" in two.infotexts[0]


def test_scale_to_with_crop_gives_exactly_the_box(ctx):
    result = ctx.submit_extras(ExtrasRequest(images=[_image(24, 16)], resize_mode=1, upscaling_resize_w=64,
                                             upscaling_resize_h=64, upscaler_1="Lanczos", save_images=False)).wait(60)
    assert result.images[0].size == (64, 64)
    assert result.infotexts[0] == ("Postprocess upscale to: 64x64, Postprocess crop to fit: True, "
                                   "Postprocess upscaler: Lanczos")
    uncropped = ctx.submit_extras(ExtrasRequest(images=[_image(24, 16)], resize_mode=1, upscaling_resize_w=64,
                                                upscaling_resize_h=64, upscaling_crop=False, upscaler_1="Lanczos",
                                                save_images=False)).wait(60)
    assert uncropped.images[0].size == (96, 64)  # covers the box, aspect kept


def test_batch_keeps_order_and_names(ctx):
    images = [_image(16, 16), _image(32, 16)]
    result = ctx.submit_extras(ExtrasRequest(images=images, names=["first.png", "second.jpg"], upscaler_1="Nearest",
                                             upscaling_resize=2)).wait(60)
    assert [im.size for im in result.images] == [(32, 32), (64, 32)]
    assert [p.name.split("-", 1)[1] for p in result.paths] == ["first.png", "second.png"]


@pytest.mark.parametrize("fields, bad", [({"upscaler_1": "nope"}, "upscaler_1"),
                                         ({"upscaling_resize": 0}, "upscaling_resize"),
                                         ({"upscaling_resize": float("nan")}, "upscaling_resize"),
                                         ({"extras_upscaler_2_visibility": 2}, "extras_upscaler_2_visibility"),
                                         ({"gfpgan_visibility": 1}, "gfpgan_visibility"),
                                         ({"resize_mode": 1, "upscaling_resize_w": 0}, "upscaling_resize_w")])
def test_bad_fields_are_named(ctx, fields, bad):
    with pytest.raises(RequestError) as info:
        ExtrasRequest(images=[_image()], **fields).validate(ctx.upscalers)
    assert [e.field for e in info.value.errors] == [bad]


def test_a_corrupt_upscaler_fails_the_job_with_its_name_and_the_queue_goes_on(ctx):
    with pytest.raises(JobFailed, match="corrupt"):
        ctx.submit_extras(ExtrasRequest(images=[_image()], upscaler_1="corrupt", save_images=False)).wait(60)
    ok = ctx.submit_extras(ExtrasRequest(images=[_image()], upscaler_1="Lanczos", save_images=False)).wait(60)
    assert ok.images[0].size == (48, 32)
