"""sd-webui-controlnet's REST routes over real HTTP (python app.py --api in a subprocess)."""
from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server_fixture import start_server

TIMEOUT = httpx.Timeout(300.0, connect=10.0)


@pytest.fixture(scope="module")
def server(tiny_sd15, tiny_controlnet_sd15, tmp_path_factory):
    args = ["--api", "--controlnet-dir", str(tiny_controlnet_sd15.folder)]
    with start_server(tmp_path_factory.mktemp("cn-api"), tiny_sd15.single_file.parent, args) as (url, _):
        yield url


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server, timeout=TIMEOUT) as client:
        yield client


def b64png(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def decode(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))


def picture() -> np.ndarray:
    rng = np.random.default_rng(7)
    img = np.full((96, 128, 3), 240, np.uint8)
    img[20:70, 30:90] = (30, 90, 200)
    img[50:90, 70:120] = (200, 60, 20)
    return np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


def test_version_settings_models_modules_and_types(http):
    assert http.get("/controlnet/version").json() == {"version": 2}
    assert http.get("/controlnet/settings").json() == {"control_net_unit_count": 3}
    models = http.get("/controlnet/model_list").json()["model_list"]
    assert any(m.startswith("tiny-sd15-canny [") for m in models)
    assert any(m.startswith("demo-shapes-canny-scribble [") for m in models)  # the bundled demo is listed too
    modules = http.get("/controlnet/module_list").json()
    assert {"none", "canny", "scribble_xdog", "lineart_standard", "inpaint_only"} <= set(modules["module_list"])
    canny = modules["module_detail"]["canny"]
    assert canny["available"] and [s["name"] for s in canny["sliders"]] == \
        ["Preprocessor Resolution", "Canny Low Threshold", "Canny High Threshold"]
    assert "not bundled" in modules["module_detail"]["openpose_full"]["reason"]
    aliases = http.get("/controlnet/module_list", params={"alias_names": True}).json()["module_list"]
    assert "invert (from white bg & black line)" in aliases
    types = http.get("/controlnet/control_types").json()["control_types"]
    assert types["Canny"]["default_option"] == "canny"
    assert all("canny" in m.lower() for m in types["Canny"]["model_list"][1:]) and len(types["Canny"]["model_list"]) > 1


def test_detect_canny_equals_opencv_canny_at_the_given_thresholds(http):
    import cv2

    img = picture()
    response = http.post("/controlnet/detect", json={
        "controlnet_module": "canny", "controlnet_input_images": [b64png(img)], "controlnet_processor_res": 96,
        "controlnet_threshold_a": 60, "controlnet_threshold_b": 150})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["info"] == "Success" and len(body["images"]) == 1
    detected = decode(body["images"][0])
    assert np.array_equal(detected[:, :, 0], cv2.Canny(img, 60, 150))
    assert not np.array_equal(detected[:, :, 0], cv2.Canny(img, 100, 200))  # the thresholds mattered


@pytest.mark.parametrize("body,field,words", [
    ({"controlnet_module": "bogus", "controlnet_input_images": ["x"]}, "controlnet_module", "Module not available"),
    ({"controlnet_module": "depth", "controlnet_input_images": ["x"]}, "controlnet_module", "unavailable"),
    ({"controlnet_module": "canny"}, "controlnet_input_images", "No image"),
    ({"controlnet_module": "canny", "controlnet_input_images": ["bm90IGFuIGltYWdl"]},
     "controlnet_input_images[0]", "not an image"),
    ({"controlnet_module": "canny", "controlnet_input_images": ["x"], "controlnet_threshold_a": 400},
     "controlnet_threshold_a", "outside 1..255"),
])
def test_detect_refuses_bad_input_with_json_and_keeps_serving(http, body, field, words):
    response = http.post("/controlnet/detect", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["field"] == field and words in detail[0]["message"]
    assert http.get("/controlnet/version").status_code == 200


def txt2img(http, units, **body):
    payload = {"prompt": "a cube", "width": 64, "height": 64, "steps": 2, "seed": 3, "sampler_name": "Euler a",
               "alwayson_scripts": {"controlnet": {"args": units}}, **body}
    return http.post("/sdapi/v1/txt2img", json=payload)


def test_txt2img_with_a_unit_through_alwayson_scripts(http):
    import json

    unit = {"enabled": True, "module": "canny", "model": "tiny-sd15-canny", "weight": 0.8,
            "image": b64png(picture()), "resize_mode": "Crop and Resize", "threshold_a": 50, "threshold_b": 150,
            "guidance_start": 0.0, "guidance_end": 1.0, "control_mode": 0, "pixel_perfect": True,
            "processor_res": -1, "low_vram": False}
    response = txt2img(http, [unit, {"enabled": False}])
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert len(images) == 2  # the image, then the unit's detected map
    detected = decode(images[1])
    assert detected.shape == (64, 64, 3) and set(np.unique(detected)) <= {0, 255}
    info = json.loads(response.json()["info"])
    text = info["extra_generation_params"]["ControlNet 0"]
    assert text.startswith("Module: canny, Model: tiny-sd15-canny [") and "Weight: 0.8" in text
    plain = http.post("/sdapi/v1/txt2img", json={"prompt": "a cube", "width": 64, "height": 64, "steps": 2,
                                                  "seed": 3, "sampler_name": "Euler a"})
    assert len(plain.json()["images"]) == 1 and decode(plain.json()["images"][0]).tolist() != \
        decode(images[0]).tolist()


def test_img2img_unit_without_an_image_uses_the_init_image(http):
    body = {"prompt": "a cube", "width": 64, "height": 64, "steps": 2, "seed": 3, "sampler_name": "Euler a",
            "denoising_strength": 0.6, "init_images": [b64png(picture())],
            "alwayson_scripts": {"ControlNet": {"args": [{"enabled": True, "module": "invert",
                                                         "model": "tiny-sd15-canny", "resize_mode": "Just Resize"}]}}}
    response = http.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert len(images) == 2  # the image, then the detected map: the init image, inverted
    expected = 255 - np.asarray(Image.fromarray(picture()).resize((64, 64), Image.Resampling.LANCZOS))
    assert np.abs(decode(images[1]).astype(int) - expected).mean() < 6  # resampling differs slightly


@pytest.mark.parametrize("units,field,words", [
    ([{"module": "canny", "model": "missing-model"}], "alwayson_scripts.controlnet.args.model",
     "no ControlNet model matches"),
    ([{"module": "canny", "model": "tiny-sd15-canny", "image": "bm90IGFuIGltYWdl"}],
     "alwayson_scripts.controlnet.args[0].image", "not an image"),
    ([{"module": "canny", "model": "tiny-sd15-canny", "threshold_a": 0}], "alwayson_scripts.controlnet.args[0].module",
     "outside 1..255"),
    ([{"model": "tiny-sd15-canny", "guidance_start": 0.7, "guidance_end": 0.3}],
     "alwayson_scripts.controlnet.args[0].guidance_start", "after the ending step"),
    ([{"model": "tiny-sd15-canny"}] * 4, "alwayson_scripts.controlnet.args", "allows 3"),
])
def test_bad_units_are_422_naming_the_field(http, units, field, words):
    response = txt2img(http, units)
    assert response.status_code == 422, response.text
    assert any(d["field"] == field and words in d["message"] for d in response.json()["detail"]), response.text


def test_other_alwayson_scripts_are_still_refused(http):
    response = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 64, "height": 64, "steps": 1,
                                                     "alwayson_scripts": {"ADetailer": {"args": []}}})
    assert response.status_code == 422 and "ADetailer" in response.text


def test_render_openpose_json_draws_the_pose(http):
    from webui.generation.openpose import render_pose_json

    pose = {"canvas_width": 96, "canvas_height": 128, "people": [{"pose_keypoints_2d": [
        48, 20, 1, 48, 40, 1, 30, 40, 1, 25, 70, 1, 22, 95, 1, 66, 40, 1, 71, 70, 1, 74, 95, 1, 38, 80, 1, 37, 105, 1,
        36, 125, 1, 58, 80, 1, 59, 105, 1, 60, 125, 1, 45, 17, 1, 51, 17, 1, 42, 19, 1, 54, 19, 1]}]}
    response = http.post("/controlnet/render_openpose_json", json=[pose])
    assert response.status_code == 200, response.text
    assert np.array_equal(decode(response.json()["images"][0]), render_pose_json(pose))
    bad = http.post("/controlnet/render_openpose_json", json=[{"canvas_width": 1}])
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "pose_data[0]"
