"""Outpainting (poor man's, mk2), img2img batch from folders, and the sub-tabs' image/mask extraction."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.test_img2img import px, req, scene
from webui.generation import outpaint
from webui.generation.img2img_batch import batch_requests
from webui.generation.request import GenerationRequest, RequestError
from webui.images import read_infotext
from webui.ui import img2img_inputs as inputs


def test_margins_round_the_canvas_to_64():
    assert outpaint._margins((64, 64), 32, ("left", "down")) == (64, 0, 0, 64, 128, 128)
    assert outpaint._margins((100, 60), 16, outpaint.DIRECTIONS) == (46, 46, 34, 34, 192, 128)
    assert outpaint._tile_starts(128, 64, 32) == [0, 32, 64]
    assert outpaint._tile_starts(64, 64, 32) == [0]


def test_matched_noise_follows_the_known_colours():
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :32] = (200, 40, 40)
    known = np.zeros((32, 64), bool)
    known[:, :32] = True
    filled = outpaint.matched_noise(image, known, 1.0, 0.0)
    assert (filled[:, :32] == image[:, :32]).all()
    assert abs(filled[:, 32:, 0].mean() - 200) < 2 and abs(filled[:, 32:, 2].mean() - 40) < 2


@pytest.mark.parametrize("method", outpaint.METHODS)
def test_outpainting_extends_the_canvas_and_keeps_the_original(sd15, method):
    job = outpaint.OutpaintJob(req(init_images=[scene()], steps=2, save_images=True, denoising_strength=0.8),
                               method=method, pixels=32, directions=("left", "down"), mask_blur=2)
    result = sd15.queue.run(job, kind="img2img")
    out = px(result.images[0])
    assert out.shape == (128, 128, 3)  # 64 + 32 -> rounded up to 128 in both grown directions
    # The original sits at the top right; away from the blurred seam it is untouched.
    # (The widest seam is mk2's: mask inset by the blur, then blurred with 4x the blur: 2 + 20 px.)
    assert np.abs(out[0:38, 90:128] - px(scene())[0:38, 26:64]).max() <= 1
    assert out[:, :40].std() > 5 and out[90:, :].std() > 5  # the new area was painted, not left black
    assert result.paths and result.paths[0].parent.parent.name == "img2img-images"
    with Image.open(result.paths[0]) as png:
        assert png.size == (128, 128) and "Denoising strength: 0.8" in read_infotext(png)


def test_outpaint_job_names_bad_settings():
    with pytest.raises(RequestError) as err:
        outpaint.OutpaintJob(req(), method="magic", pixels=4, directions=("north",)).validate()
    assert {e.field for e in err.value.errors} == {"outpaint_method", "outpaint_pixels", "outpaint_directions"}


def test_batch_requests_from_folders(tmp_path):
    inp, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    for folder in (inp, masks):
        folder.mkdir()
    scene().save(inp / "b.png")
    scene(80, 64).save(inp / "a.jpg")
    (inp / "notes.txt").write_text("not an image")
    mask = Image.new("L", (64, 64))
    mask.paste(255, (10, 10, 30, 30))
    mask.save(masks / "b.png")
    template = GenerationRequest(prompt="p", width=64, height=64, mode="img2img", n_iter=2)
    requests = batch_requests(template, str(inp), str(out), str(masks))
    assert [r.mode for r in requests] == ["img2img", "inpaint"] and requests[0].init_images[0].size == (80, 64)
    overrides = requests[1].override_settings
    assert overrides["outdir_img2img_samples"] == str(out) and overrides["save_to_dirs"] is False
    assert overrides["samples_filename_pattern"] == "b-[seed]"
    with pytest.raises(RequestError, match="not a folder"):
        batch_requests(template, str(tmp_path / "missing"))
    with pytest.raises(RequestError, match="hide-ui-dir-config"):
        batch_requests(template, str(inp), allow_dirs=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RequestError, match="no images"):
        batch_requests(template, str(tmp_path / "empty"))


def test_batch_saves_into_the_output_folder_named_after_the_input(sd15, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    scene().save(inp / "cat.png")
    template = GenerationRequest(prompt="p", width=64, height=64, steps=2, mode="img2img", seed=5,
                                 sampler_name="Euler a")
    [request] = batch_requests(template, str(inp), str(out))
    result = sd15.queue.run(request)
    assert [p.name for p in result.paths] == ["00000-cat.png"] and result.paths[0].parent == out


def editor(image, painted_box=None):
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    if painted_box:
        ImageDraw.Draw(layer).rectangle(painted_box, fill=(255, 255, 255, 255))
    return {"background": image, "layers": [layer], "composite": image}


def test_subtab_inputs():
    image = scene().convert("RGBA")
    init, mask = inputs.image_and_mask(inputs.INPAINT, None, None, editor(image, (10, 10, 19, 19)), None, None, None)
    assert init is image and np.asarray(mask).sum() == 100 * 255
    # Transparent parts of the uploaded image are masked too (A1111).
    holed = image.copy()
    holed.putpixel((0, 0), (0, 0, 0, 0))
    _, mask = inputs.image_and_mask(inputs.INPAINT, None, None, editor(holed), None, None, None)
    assert np.asarray(mask)[0, 0] == 255 and np.asarray(mask).sum() == 255
    # Nothing painted: an empty mask (the core then runs plain img2img and says so).
    _, mask = inputs.image_and_mask(inputs.INPAINT, None, None, editor(image), None, None, None)
    assert mask.getbbox() is None
    sketched = image.copy()
    ImageDraw.Draw(sketched).rectangle((40, 40, 49, 49), fill=(0, 255, 0, 255))
    init, mask = inputs.image_and_mask(inputs.INPAINT_SKETCH, None, None, None,
                                       {"background": image, "layers": [], "composite": sketched}, None, None,
                                       mask_alpha=50, mask_blur=0)
    assert np.asarray(mask).max() == 127 and np.asarray(mask)[45, 45] == 127 and np.asarray(mask)[0, 0] == 0
    assert 100 < np.asarray(init)[45, 45, 1] < 200  # half way to the green sketch (mask transparency 50)
    init, mask = inputs.image_and_mask(inputs.SKETCH, None, {"background": image, "composite": sketched}, None,
                                       None, None, None)
    assert init is sketched and mask is None
    for mode, message in ((inputs.IMG2IMG, "upload an image"), (inputs.INPAINT, "upload an image"),
                          (inputs.INPAINT_UPLOAD, "both"), (inputs.INPAINT_SKETCH, "Inpaint sketch")):
        with pytest.raises(inputs.InputError, match=message):
            inputs.image_and_mask(mode, None, None, None, None, None, None)
