"""img2img and inpaint through the real core on the tiny SD 1.x fixtures (4- and 9-channel UNets)."""
import numpy as np
import pytest
from PIL import Image

from webui.generation import img2img
from webui.generation.request import GenerationRequest, RequestError
from webui.images import read_infotext
from webui.infotext import infotext_to_request_fields, parse_infotext

W = H = 64


def scene(w=W, h=H):
    """A red disc on blue, drawn procedurally."""
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.zeros((h, w, 3), np.uint8)
    a[...] = (20, 40, 200)
    a[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(w, h) / 4) ** 2] = (220, 30, 30)
    return Image.fromarray(a)


def box_mask(w=W, h=H, box=(20, 20, 44, 44)):
    m = Image.new("L", (w, h))
    m.paste(255, box)
    return m


def req(**kw):
    base = dict(prompt="a green circle", negative_prompt="red", seed=321, steps=4, width=W, height=H,
                sampler_name="Euler a", save_images=False, mode="img2img", init_images=[scene()],
                denoising_strength=0.6)
    base.update(kw)
    return GenerationRequest(**base)


def px(image):
    return np.asarray(image, dtype=np.int16)


class StepCounter:
    name = "steps"

    def __init__(self):
        self.calls = 0

    def prepare(self, p):
        p.on_step(self.count)

    def count(self, state):
        self.calls += 1


def test_a1111_step_counts():
    assert img2img.sampling_steps(20, 0.75) == (20, 16)  # t_enc = 15, t_enc + 1 steps
    assert img2img.sampling_steps(20, 1.0) == (20, 20)
    assert img2img.sampling_steps(20, 0.0) == (20, 1)
    assert img2img.sampling_steps(10, 0.5, fix_steps=True) == (20, 10)  # hires fix: exactly the slider's steps
    for schedule in range(1, 151):
        for run in range(1, schedule + 1):
            assert int(schedule * img2img.diffusers_strength(schedule, run)) == run


@pytest.mark.parametrize("strength,expected", [(0.5, 6), (0.75, 8), (1.0, 10)])
def test_the_core_runs_t_enc_plus_one_steps(sd15, strength, expected):
    counter = StepCounter()
    sd15.core.features.append(counter)
    result = sd15.queue.run(req(steps=10, denoising_strength=strength))
    assert counter.calls == expected
    assert f"Denoising strength: {strength:g}" in result.infotexts[0]


def test_img2img_is_deterministic_follows_the_image_and_batches_like_seeds(sd15):
    a = sd15.queue.run(req(batch_size=2))
    b = sd15.queue.run(req(seed=322))
    assert a.seeds == [321, 322] and np.abs(px(a.images[1]) - px(b.images[0])).max() <= 1
    # The tiny VAE is random, so "close to the image" means close to its round trip (denoising 0: one step).
    kept = px(sd15.queue.run(req(denoising_strength=0.0)).images[0])
    low = sd15.queue.run(req(denoising_strength=0.2))
    high = sd15.queue.run(req(denoising_strength=0.9))
    assert np.abs(px(low.images[0]) - kept).mean() < np.abs(px(high.images[0]) - kept).mean()
    varied = sd15.queue.run(req(subseed=5, subseed_strength=0.5))
    assert not np.array_equal(px(varied.images[0]), px(a.images[0]))
    assert "Variation seed: 5" in varied.infotexts[0]


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
def test_inpaint_whole_picture_keeps_every_pixel_outside_the_blurred_mask(sd15, fill):
    init = scene()
    result = sd15.queue.run(req(mode="inpaint", mask=box_mask(), inpainting_fill=fill, inpaint_full_res=False,
                                mask_blur=2, denoising_strength=0.9))
    out, original = px(result.images[0]), px(init)
    band = np.asarray(box_mask(box=(14, 14, 50, 50))) > 0  # the mask grown by the blur's reach (2*int(5.5)=10 / 2)
    assert (out[~band] == original[~band]).all()
    assert np.abs(out[26:38, 26:38] - original[26:38, 26:38]).mean() > 5  # the inside was repainted
    params = parse_infotext(result.infotexts[0])
    assert params["Mask blur"] == "2" and "Inpaint area" not in params
    assert params.get("Masked content") == {0: "fill", 1: None, 2: "latent noise", 3: "latent nothing"}[fill]


def test_masked_content_modes_differ(sd15):
    images = [px(sd15.queue.run(req(mode="inpaint", mask=box_mask(), inpainting_fill=f, inpaint_full_res=False,
                                    denoising_strength=0.5)).images[0]) for f in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.array_equal(images[i], images[j]), (i, j)


def test_only_masked_crops_processes_at_full_size_and_pastes_back(sd15):
    init = scene(160, 120)  # bigger than the 64x64 processing size
    mask = box_mask(160, 120, (70, 50, 90, 70))
    counter = StepCounter()
    result = sd15.queue.run(req(mode="inpaint", init_images=[init], mask=mask, inpaint_full_res=True,
                                inpaint_full_res_padding=8, mask_blur=0, denoising_strength=0.9))
    out, original = px(result.images[0]), px(init)
    assert result.images[0].size == (160, 120)  # back at the original's size
    region = np.zeros((120, 160), bool)
    region[42:78, 62:98] = True  # mask box + padding 8, already square
    assert (out[~region] == original[~region]).all()
    assert np.abs(out[52:68, 72:88] - original[52:68, 72:88]).mean() > 5
    params = parse_infotext(result.infotexts[0])
    assert params["Inpaint area"] == "Only masked" and params["Masked area padding"] == "8"
    assert params["Size-1"] == "64" and "Mask blur" not in params
    assert counter.calls == 0


def test_inverted_mask_keeps_the_masked_area(sd15):
    result = sd15.queue.run(req(mode="inpaint", mask=box_mask(), inpainting_mask_invert=1, inpaint_full_res=False,
                                mask_blur=0, denoising_strength=0.9))
    out, original = px(result.images[0]), px(scene())
    assert (out[20:44, 20:44] == original[20:44, 20:44]).all()
    assert np.abs(out[:10] - original[:10]).mean() > 5
    assert "Mask mode: Inpaint not masked" in result.infotexts[0]


def test_empty_mask_runs_as_img2img_and_says_so(sd15):
    plain = sd15.queue.run(req())
    empty = sd15.queue.run(req(mode="inpaint", mask=Image.new("L", (W, H)), inpaint_full_res=True))
    assert np.array_equal(px(plain.images[0]), px(empty.images[0]))
    assert empty.comments == [img2img.EMPTY_MASK_NOTE]


def test_mask_of_another_size_and_rgba_alpha_mask(sd15):
    original = px(scene())
    outside = np.asarray(box_mask(box=(12, 12, 52, 52))) == 0  # Lanczos upsizing rings a few pixels out
    small = box_mask().resize((32, 32))  # resized back up to the image's 64x64
    a = sd15.queue.run(req(mode="inpaint", mask=small, inpaint_full_res=False, mask_blur=0))
    alpha = Image.new("RGBA", (W, H), (0, 0, 0, 0))  # transparent = keep, opaque = repaint
    alpha.paste((0, 0, 0, 255), (20, 20, 44, 44))
    b = sd15.queue.run(req(mode="inpaint", mask=alpha, inpaint_full_res=False, mask_blur=0))
    for result in (a, b):
        out = px(result.images[0])
        assert (out[outside] == original[outside]).all()
        assert np.abs(out[24:40, 24:40] - original[24:40, 24:40]).mean() > 5


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_resize_modes_give_the_requested_size(sd15, mode):
    wide = scene(128, 64)
    result = sd15.queue.run(req(init_images=[wide], resize_mode=mode, width=96, height=64))
    assert result.images[0].size == (96, 64)


def test_resize_by_scale_and_noise_multiplier(sd15):
    result = sd15.queue.run(req(init_images=[scene(100, 90)], scale_by=0.8, initial_noise_multiplier=0.9))
    assert result.images[0].size == (80, 72)
    assert "Noise multiplier: 0.9" in result.infotexts[0]


def test_several_init_images_fill_the_batch(sd15):
    other = Image.new("RGB", (W, H), (240, 240, 20))
    result = sd15.queue.run(req(init_images=[scene(), other], batch_size=4, denoising_strength=0.3))
    assert len(result.images) == 2 and result.request.batch_size == 2  # A1111: one slot per image
    alone = sd15.queue.run(req(init_images=[other], seed=322, denoising_strength=0.3))
    assert np.abs(px(result.images[1]) - px(alone.images[0])).max() <= 1


def test_saved_to_img2img_images_with_infotext_that_reads_back(sd15):
    result = sd15.queue.run(req(save_images=True, mode="inpaint", mask=box_mask(), inpainting_fill=0,
                                inpaint_full_res=True, inpaint_full_res_padding=16, mask_blur=3, n_iter=2))
    path = result.paths[0]
    assert path.parent.parent.name == "img2img-images"
    assert list((sd15.paths.outputs_dir / "img2img-grids").rglob("grid-*.png"))
    with Image.open(path) as png:
        text = read_infotext(png)
    assert text == result.infotexts[0]
    fields = infotext_to_request_fields(parse_infotext(text))
    assert fields["denoising_strength"] == 0.6 and fields["mask_blur_x"] == 3 and fields["mask_blur_y"] == 3
    assert fields["inpainting_fill"] == 0 and fields["inpaint_full_res"] is True
    assert fields["inpaint_full_res_padding"] == 16


def test_bad_img2img_fields_are_named(sd15):
    with pytest.raises(RequestError) as err:
        req(denoising_strength=1.5, resize_mode="Stretch", width=65).validate()
    assert {e.field for e in err.value.errors} == {"denoising_strength", "resize_mode", "width"}
    assert "Crop and resize" in str(err.value)
    with pytest.raises(RequestError, match="inpaint needs a mask"):
        req(mode="inpaint").validate()
    with pytest.raises(RequestError, match="needs an initial image"):
        req(init_images=[]).validate()
    with pytest.raises(RequestError, match="use mode inpaint"):
        req(mask=box_mask()).validate()
    named = req(mode="inpaint", mask=box_mask(), resize_mode="Crop and resize", inpainting_fill="latent noise",
                inpaint_full_res="Whole picture", inpainting_mask_invert="Inpaint not masked").validate()
    assert (named.resize_mode, named.inpainting_fill, named.inpaint_full_res, named.inpainting_mask_invert) == \
        (1, 2, False, 1)


@pytest.fixture
def sd15_inpaint(app_context, tiny_sd15_inpaint, tiny_sd15):
    app_context.models.registry.add_file(tiny_sd15_inpaint.single_file)  # outside the test checkpoint folder
    app_context.models.select(str(tiny_sd15_inpaint.single_file))
    yield app_context
    app_context.models.select(str(tiny_sd15.single_file))


def test_nine_channel_checkpoint_in_every_mode(sd15_inpaint):
    txt = sd15_inpaint.queue.run(req(mode="txt2img", init_images=[]))
    i2i = sd15_inpaint.queue.run(req())
    inp = sd15_inpaint.queue.run(req(mode="inpaint", mask=box_mask(), inpaint_full_res=False, mask_blur=0,
                                     denoising_strength=1.0))
    for result in (txt, i2i, inp):
        assert result.images[0].size == (W, H) and "Conditional mask weight: 1.0" in result.infotexts[0]
    out, original = px(inp.images[0]), px(scene())
    outside = np.asarray(box_mask()) == 0
    assert (out[outside] == original[outside]).all()
    assert np.abs(out[24:40, 24:40] - original[24:40, 24:40]).mean() > 5
