"""Hires fix, refiner and Extras over real HTTP: `python app.py --api` with tiny upscalers in its data dir."""
from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server_fixture import start_server
from tests.upscaler_kit import write_upscalers

SMALL = {"width": 64, "height": 64, "steps": 2, "seed": 21, "prompt": "a red circle"}
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


@pytest.fixture(scope="module")
def http(tiny_sd15, tmp_path_factory):
    root = tmp_path_factory.mktemp("hires-server")
    write_upscalers(root / "data" / "models")
    with start_server(root, tiny_sd15.single_file.parent, ["--api"]) as (url, _):
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            yield client


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def test_enable_hr_gives_a_2x_png_with_the_hires_keys(http):
    response = http.post("/sdapi/v1/txt2img", json={**SMALL, "enable_hr": True, "hr_upscaler": "tiny-esrgan-4x",
                                                    "hr_second_pass_steps": 2, "denoising_strength": 0.5})
    assert response.status_code == 200, response.text
    image = decode(response.json()["images"][0])
    assert image.size == (128, 128)
    info = json.loads(response.json()["info"])
    text = image.info["parameters"]
    assert text == info["infotexts"][0]
    for pair in ("Size: 64x64", "Denoising strength: 0.5", "Hires upscale: 2", "Hires steps: 2",
                 "Hires upscaler: tiny-esrgan-4x"):
        assert pair in text
    assert info["denoising_strength"] == 0.5
    # the infotext alone reproduces the image (A1111's `infotext` field fills every unset field)
    again = http.post("/sdapi/v1/txt2img", json={"infotext": text})
    assert again.status_code == 200, again.text
    assert np.array_equal(np.asarray(decode(again.json()["images"][0])), np.asarray(image))


def test_refiner_fields_are_accepted(http):
    response = http.post("/sdapi/v1/txt2img", json={**SMALL, "refiner_checkpoint": "tiny-sdxl",
                                                    "refiner_switch_at": 0.5})
    # the tiny SDXL cannot continue SD 1.x latents: a 4xx naming the field, not a 500
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "refiner_checkpoint"
    same = http.post("/sdapi/v1/txt2img", json={**SMALL, "refiner_checkpoint": "tiny-sd15", "refiner_switch_at": 0.5})
    assert same.status_code == 200, same.text
    assert "Refiner: tiny-sd15" in json.loads(same.json()["info"])["infotexts"][0]


@pytest.mark.parametrize("body, field", [
    ({"enable_hr": True, "hr_upscaler": "4x-Missing"}, "hr_upscaler"),
    ({"enable_hr": True, "hr_scale": 0}, "hr_scale"),
    ({"enable_hr": True, "hr_scale": 6, "width": 2048}, "hr_scale"),
    ({"enable_hr": True, "hr_checkpoint_name": "nope"}, "hr_checkpoint_name"),
    ({"refiner_checkpoint": "nope"}, "refiner_checkpoint"),
])
def test_bad_hires_input_is_a_4xx(http, body, field):
    response = http.post("/sdapi/v1/txt2img", json={**SMALL, **body})
    assert response.status_code == 422, response.text
    assert field in {d["field"] for d in response.json()["detail"]}


def test_upscaler_listings_and_extras(http):
    names = [row["name"] for row in http.get("/sdapi/v1/upscalers").json()]
    assert names[:3] == ["None", "Lanczos", "Nearest"] and "tiny-compact-2x" in names
    assert "Latent (bicubic antialiased)" in [r["name"] for r in http.get("/sdapi/v1/latent-upscale-modes").json()]
    buffer = io.BytesIO()
    Image.new("RGB", (20, 12), "red").save(buffer, format="PNG")
    b64 = base64.b64encode(buffer.getvalue()).decode()
    single = http.post("/sdapi/v1/extra-single-image", json={"image": b64, "upscaler_1": "tiny-compact-2x",
                                                             "upscaling_resize": 2})
    assert single.status_code == 200, single.text
    assert decode(single.json()["image"]).size == (40, 24)
    batch = http.post("/sdapi/v1/extra-batch-images", json={"imageList": [{"data": b64, "name": "x.png"}] * 2,
                                                            "upscaler_1": "Lanczos", "upscaling_resize": 3})
    assert [decode(i).size for i in batch.json()["images"]] == [(56, 32), (56, 32)]  # 60x36 rounded down to 8s
    bad = http.post("/sdapi/v1/extra-single-image", json={"image": b64, "upscaler_1": "Nope"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "upscaler_1"
