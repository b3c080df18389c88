"""img2img and inpaint on the tiny SDXL fixtures: the 4-channel checkpoint, and a 9-channel SDXL inpainting
UNet served by a real ModelManager whose loader hands back the in-memory pipeline (the probe does not
load SDXL inpainting files yet)."""
import numpy as np
import pytest
from PIL import Image

from tests.kit import build_pipeline
from tests.test_img2img import box_mask, px, req, scene
from webui.generation.core import CoreContext, generate
from webui.images import ImageSaver
from webui.models.manager import ModelManager
from webui.models.probe import ProbeResult


def check_inpaint(result, mask_box_outside=(12, 12, 52, 52)):
    out, original = px(result.images[0]), px(scene())
    outside = np.asarray(box_mask(box=mask_box_outside)) == 0
    assert (out[outside] == original[outside]).all()
    assert np.abs(out[24:40, 24:40] - original[24:40, 24:40]).mean() > 5


@pytest.fixture
def sdxl(app_context, tiny_sdxl, tiny_sd15):
    app_context.models.select(str(tiny_sdxl.single_file))
    yield app_context
    app_context.models.select(str(tiny_sd15.single_file))


def test_sdxl_img2img_and_inpaint(sdxl):
    a = sdxl.queue.run(req(batch_size=2))
    b = sdxl.queue.run(req(seed=322))
    assert np.abs(px(a.images[1]) - px(b.images[0])).max() <= 1
    assert "Model: tiny-sdxl" in a.infotexts[0] and "Denoising strength: 0.6" in a.infotexts[0]
    check_inpaint(sdxl.queue.run(req(mode="inpaint", mask=box_mask(), inpaint_full_res=False, mask_blur=2,
                                     inpainting_fill=2, denoising_strength=0.9)))
    only = sdxl.queue.run(req(mode="inpaint", mask=box_mask(), inpaint_full_res=True, inpaint_full_res_padding=4,
                              mask_blur=0, denoising_strength=0.9))
    check_inpaint(only, (16, 16, 48, 48))


@pytest.fixture(scope="module")
def sdxl_inpaint_core(app_context, tmp_path_factory):
    from webui.settings import Settings

    pipe = build_pipeline("sdxl-inpaint")
    settings = Settings.load(tmp_path_factory.mktemp("sdxl-inpaint") / "config.json")  # not the shared app's

    def loader(path, configs_dir=None, torch_dtype=None, allow_unsafe_pickle=False, vae=None):
        return pipe, ProbeResult("sdxl", configs_dir, "epsilon", "test", True, "in-memory SDXL inpainting UNet")

    models = ModelManager(app_context.paths, settings, app_context.policy, loader=loader)
    models.select("tiny-sdxl")
    assert models.current().pipe.unet.config.in_channels == 9
    return CoreContext(models=models, settings=settings, saver=ImageSaver(),
                       data_dir=app_context.paths.data_dir, version="test")


def test_sdxl_nine_channel_checkpoint_in_every_mode(sdxl_inpaint_core):
    txt = generate(req(mode="txt2img", init_images=[]), sdxl_inpaint_core)
    i2i = generate(req(), sdxl_inpaint_core)
    inp = generate(req(mode="inpaint", mask=box_mask(), inpaint_full_res=False, mask_blur=0, denoising_strength=1.0),
                   sdxl_inpaint_core)
    for result in (txt, i2i, inp):
        assert result.images[0].size == (64, 64) and "Conditional mask weight: 1.0" in result.infotexts[0]
    check_inpaint(inp, (20, 20, 44, 44))
    assert not np.array_equal(px(txt.images[0]), px(i2i.images[0]))
    assert Image.fromarray(np.asarray(inp.images[0])).size == (64, 64)
