"""A1111's image/mask operations (pure PIL/numpy): resize modes, mask blur, crop region, fill, overlay."""
import numpy as np
import pytest
from PIL import Image

from webui.generation import masks


def stripes(w, h):
    """Left half red, right half blue, green top rows and yellow bottom rows: edges are easy to follow."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)
    a[:, w // 2:] = (0, 0, 255)
    a[:8] = (0, 255, 0)
    a[-8:] = (255, 255, 0)
    return Image.fromarray(a)


def test_resize_modes_sizes_and_what_they_keep():
    wide = stripes(200, 100)
    for mode in range(4):
        assert masks.resize_image(mode, wide, 64, 64).size == (64, 64)
    crop = np.asarray(masks.resize_image(1, wide, 64, 64)).astype(int)
    fill = np.asarray(masks.resize_image(2, wide, 64, 64)).astype(int)
    stretch = np.asarray(masks.resize_image(0, wide, 64, 64)).astype(int)
    # Crop and resize: covers, so the green top row survives at the top and nothing is black.
    assert crop[0, 32, 1] > 200 and crop.sum(axis=2).min() > 0
    # Resize and fill: the 64x32 image sits in the middle; the bands above repeat its top (green) row
    # and below its bottom (yellow) row.
    assert fill[:15, :, 1].mean() > 200 and fill[:15, :, 2].mean() < 30
    assert fill[-15:, :, 0].mean() > 200 and fill[-15:, :, 1].mean() > 200
    assert stretch[32, 5, 0] > 200 and stretch[32, 60, 2] > 200
    tall = stripes(50, 100)
    fill_tall = np.asarray(masks.resize_image(2, tall, 64, 64)).astype(int)
    assert fill_tall[32, :10, 0].mean() > 200 and fill_tall[32, -10:, 2].mean() > 200  # edge columns stretched


def test_binary_mask_from_alpha_and_from_grey():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 0, 255))
    rgba.putpixel((2, 2), (0, 0, 0, 100))
    m = np.asarray(masks.binary_mask(rgba))
    assert m[1, 1] == 255 and m[2, 2] == 0 and m.sum() == 255
    assert np.asarray(masks.binary_mask(rgba, round_mask=False))[2, 2] == 100
    grey = Image.new("L", (8, 8), 200)
    assert np.asarray(masks.binary_mask(grey.convert("RGB"))).min() == 200


def test_blur_uses_a1111_kernel_and_is_separable():
    mask = Image.new("L", (64, 64))
    mask.paste(255, (24, 24, 40, 40))
    only_x = np.asarray(masks.blur_mask(mask, 4, 0)).astype(int)
    # Kernel 2*int(2.5*4+0.5)+1 = 21: the blur reaches 10 px beyond the edge along x, none along y.
    assert only_x[30, 14] > 0 and only_x[30, 13] == 0 and only_x[23, 30] == 0
    both = np.asarray(masks.blur_mask(mask, 4, 4)).astype(int)
    assert both[14, 30] > 0 and 200 < both[32, 32] < 255 and both[0, 0] == 0


def test_crop_region_padding_and_aspect_expansion():
    mask = Image.new("L", (100, 80))
    mask.paste(255, (40, 30, 50, 60))  # 10 x 30
    assert masks.crop_region(mask) == (40, 30, 50, 60)
    assert masks.crop_region(mask, 8) == (32, 22, 58, 68)
    assert masks.crop_region(mask, 100) == (0, 0, 100, 80)
    assert masks.crop_region(Image.new("L", (10, 10))) is None
    x1, y1, x2, y2 = masks.expand_crop_region((40, 30, 50, 60), 64, 64, 100, 80)
    assert (x2 - x1, y2 - y1) == (30, 30) and (x1, y1) == (30, 30)
    # Near the border the region is shifted back inside the image instead of shrinking.
    x1, y1, x2, y2 = masks.expand_crop_region((0, 0, 4, 40), 64, 64, 100, 80)
    assert (x1, y1, x2 - x1, y2 - y1) == (0, 0, 40, 40)


def test_fill_paints_the_hole_from_its_surroundings():
    image = Image.new("RGB", (64, 64), (0, 200, 0))
    image.paste((255, 0, 255), (16, 16, 48, 48))  # magenta where the mask is
    mask = Image.new("L", (64, 64))
    mask.paste(255, (16, 16, 48, 48))
    filled = np.asarray(masks.fill(image, mask)).astype(int)
    assert filled[32, 32, 1] > 150 and filled[32, 32, 0] < 60  # the magenta is gone, green came in
    assert (filled[:8] == (0, 200, 0)).all()


def test_overlay_restores_every_unmasked_pixel_and_uncrop_pastes_back():
    original = stripes(96, 80)
    generated = Image.new("RGB", (96, 80), (7, 7, 7))
    mask = Image.new("L", (96, 80))
    mask.paste(255, (40, 20, 60, 50))
    out = np.asarray(masks.apply_overlay(generated, None, masks.make_overlay(original, mask))).astype(int)
    inside = np.asarray(mask) == 255
    assert (out[~inside] == np.asarray(original).astype(int)[~inside]).all()
    assert (out[inside] == 7).all()
    # Only masked: a 64x64 result is resized into the 30x30 crop box and the rest is the original.
    crop_result = Image.new("RGB", (64, 64), (9, 9, 9))
    out = np.asarray(masks.apply_overlay(crop_result, (35, 20, 30, 30), masks.make_overlay(original, mask)))
    assert out.shape == (80, 96, 3) and (out[25:45, 45:55] == 9).all()
    assert (out[~inside] == np.asarray(original)[~inside]).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_flatten_puts_transparency_on_white(mode):
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0)).convert(mode) if mode != "P" else \
        Image.new("RGBA", (4, 4), (255, 0, 0, 0)).convert("P")
    flat = np.asarray(masks.flatten(image))
    assert flat.shape == (4, 4, 3)
    if mode in ("RGBA", "LA"):
        assert (flat == 255).all()
