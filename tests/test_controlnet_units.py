"""Preprocessors, ControlNet unit parsing (sd-webui-controlnet's API shape), infotext and control types."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from webui.generation import controlnet as cn
from webui.generation import preprocessors as pp
from webui.generation.controlnet_run import fit, pixel_perfect_resolution


def picture(h=64, w=80, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 230, np.uint8)
    img[10:30, 12:40] = (200, 40, 40)
    img[36:56, 44:70] = (20, 20, 20)
    return np.clip(img.astype(int) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)


def b64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_canny_is_opencv_canny_at_the_thresholds():
    import cv2

    img = picture()
    out = pp.run("canny", img, processor_res=64, threshold_a=50, threshold_b=120)
    assert out.shape == (64, 80, 3)
    assert np.array_equal(out[:, :, 0], cv2.Canny(img, 50, 120))
    assert out.max() == 255


@pytest.mark.parametrize("name", [p.name for p in pp.PREPROCESSORS.values() if p.available])
def test_every_weightless_preprocessor_runs(name):
    out = pp.run(name, picture(), processor_res=96 if pp.PREPROCESSORS[name].resolution else None)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    if pp.PREPROCESSORS[name].resolution is not None and name != "tile_resample":
        assert min(out.shape[:2]) == 96  # the short side lands on the processor resolution


def test_preprocessor_maths():
    img = picture()
    assert np.array_equal(pp.run("invert", img), 255 - img)
    assert np.array_equal(pp.run("none", img), img)
    thr = pp.run("threshold", img, 64, 100)[:, :, 0]
    assert np.array_equal(thr == 255, img.min(axis=2) > 100)
    scribble = pp.run("scribble", img, 64, 127)[:, :, 0]
    assert np.array_equal(scribble == 255, img.min(axis=2) < 127)
    assert pp.run("tile_resample", img, threshold_a=2.0).shape == (32, 40, 3)
    lines = np.zeros((64, 64, 3), np.uint8)
    lines[30:33, 4:60] = 255
    found = pp.run("lines_opencv", lines, 64, 20, 1)[:, :, 0]
    assert found[28:36, 10:50].any() and not found[:20].any()
    # shuffle is seeded: same seed, same map; another seed, another map
    assert np.array_equal(pp.run("shuffle", img, 64, seed=3), pp.run("shuffle", img, 64, seed=3))
    assert not np.array_equal(pp.run("shuffle", img, 64, seed=3), pp.run("shuffle", img, 64, seed=4))
    assert pp.run("color", img, 128).shape[:2] == (128, 160)


def test_unavailable_and_out_of_range_are_refused_with_reasons():
    with pytest.raises(pp.PreprocessorError, match="openpose_full is unavailable: needs the OpenPose"):
        pp.run("openpose_full", picture())
    with pytest.raises(pp.PreprocessorError, match=r"threshold_a \(Canny Low Threshold\) 300 is outside 1..255"):
        pp.run("canny", picture(), 64, 300, 200)
    with pytest.raises(pp.PreprocessorError, match="unknown preprocessor"):
        pp.get("nope")
    assert pp.find("invert (from white bg & black line)").name == "invert"
    assert pp.find("scribble_thr").name == "scribble"


def test_unit_from_api_dict_with_aliases_and_enum_ints():
    img = picture()
    unit, errors = cn.unit_from_dict({"input_image": b64(img), "module": "canny", "model": "m [1234abcd]",
                                      "resize_mode": 0, "control_mode": 2, "lowvram": True, "guidance": 0.5,
                                      "threshold_a": 10, "threshold_b": 20, "processor_res": 256}, "u")
    assert errors == []
    assert np.array_equal(unit.image, img)
    assert (unit.resize_mode, unit.control_mode, unit.low_vram, unit.guidance_end) == \
        ("Just Resize", "ControlNet is more important", True, 0.5)
    assert unit.processor_res == 256 and isinstance(unit.processor_res, int)
    unit, errors = cn.unit_from_dict({"image": {"image": b64(img), "mask": b64(img)}, "model": "m",
                                      "resize_mode": "Inner Fit (Scale to Fit)", "control_mode": "Balanced"}, "u")
    assert errors == [] and unit.mask.shape == img.shape[:2] and unit.resize_mode == "Crop and Resize"


@pytest.mark.parametrize("patch,field,message", [
    ({"module": "bogus"}, "u.module", "unknown preprocessor"),
    ({"image": "not base64 at all"}, "u.image", "not an image"),
    ({"module": "canny", "threshold_a": 999}, "u.module", "outside 1..255"),
    ({"guidance_start": 0.8, "guidance_end": 0.2}, "u.guidance_start", "after the ending step"),
    ({"weight": 3}, "u.weight", "from 0 to 2"),
    ({"resize_mode": 7}, "u.resize_mode", "must be one of"),
    ({"control_mode": "Loud"}, "u.control_mode", "must be one of"),
    ({"model": "None"}, "u.model", "needs a ControlNet model"),
    ({"module": "depth"}, "u.module", "unavailable"),
])
def test_bad_units_name_the_field(patch, field, message):
    data = {"enabled": True, "module": "none", "model": "some-model", **patch}
    _, errors = cn.unit_from_dict(data, "u")
    assert any(e.field == field and message in e.message for e in errors), errors


def test_alwayson_scripts_takes_enabled_units_only():
    units, errors = cn.units_from_alwayson({"ControlNet": {"args": [
        {"enabled": False, "model": "x"}, {"model": "m", "module": "canny"}, None]}})
    assert errors == [] and [u.module for u in units] == ["canny"]
    _, errors = cn.units_from_alwayson({"controlnet": {"args": "nope"}})
    assert errors and "args" in errors[0].message


def test_infotext_round_trip_in_the_extensions_format():
    from webui.infotext import parse_infotext

    unit = cn.ControlNetUnit(module="canny", model="x", weight=0.75, processor_res=512, threshold_a=100,
                             threshold_b=200, guidance_end=0.8, control_mode="My prompt is more important")
    text = cn.unit_infotext(unit, "control_v11p_sd15_canny [d14c016b]")
    assert text == ("Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.75, Resize Mode: Crop and "
                    "Resize, Low Vram: False, Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance "
                    "Start: 0, Guidance End: 0.8, Pixel Perfect: False, Control Mode: My prompt is more important")
    line = 'a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, ControlNet 0: "' + text + '"'
    fields = cn.units_from_infotext(parse_infotext(line))[0]
    assert fields["module"] == "canny" and fields["model"] == "control_v11p_sd15_canny [d14c016b]"
    assert fields["weight"] == 0.75 and fields["processor_res"] == 512 and fields["low_vram"] is False
    assert fields["control_mode"] == "My prompt is more important"


def test_control_types_filter_models_by_name():
    titles = ["control_v11p_sd15_canny [aaaa]", "control_v11f1p_sd15_depth [bbbb]", "demo-shapes-canny-scribble [c]"]
    canny = cn.control_type_choices("Canny", titles)
    assert canny["model_list"] == ["None", titles[0], titles[2]]
    assert canny["default_option"] == "canny" and "invert" in canny["module_list"]
    scribble = cn.control_type_choices("Scribble/Sketch", titles)
    assert scribble["model_list"] == ["None", titles[2]] and "scribble_xdog" in scribble["module_list"]
    assert cn.control_type_choices("All", titles)["model_list"] == ["None"] + titles


def test_fit_modes_and_pixel_perfect():
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :40] = 255
    assert fit(img, 64, 64, "Just Resize").shape == (64, 64, 3)
    crop = fit(img, 64, 64, "Crop and Resize")  # covers: the centre 40x40 of the source fills it
    assert crop.shape == (64, 64, 3) and crop[:, :30].min() > 200 and crop[:, 34:].max() < 50
    filled = fit(img, 64, 64, "Resize and Fill")  # fits: black bars above and below
    assert filled.shape == (64, 64, 3) and filled[:10].max() == 0 and filled[32, :30].min() > 200
    assert pixel_perfect_resolution(img, 64, 64, "Crop and Resize") == 64
    assert pixel_perfect_resolution(img, 64, 64, "Resize and Fill") == 32
