"""POST /sdapi/v1/img2img: A1111's body and response shapes, over real HTTP (`python app.py --api`)."""
from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server_fixture import start_server
from tests.test_img2img import box_mask, scene
from webui.infotext import infotext_to_request_fields, parse_infotext

TIMEOUT = httpx.Timeout(300.0, connect=10.0)
SMALL = {"width": 64, "height": 64, "steps": 3, "sampler_name": "Euler a", "prompt": "a green circle", "seed": 42}


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


@pytest.fixture(scope="module")
def http(tiny_sd15, tmp_path_factory):
    with start_server(tmp_path_factory.mktemp("img2img-api"), tiny_sd15.single_file.parent, ["--api"]) as (url, _):
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            yield client


def post(http, **body):
    return http.post("/sdapi/v1/img2img", json={**SMALL, "init_images": [b64(scene())], **body})


def test_img2img_round_trip_infotext_matches_the_request(http):
    response = post(http, denoising_strength=0.5, batch_size=2, cfg_scale=6)
    assert response.status_code == 200, response.text
    body = response.json()
    info = json.loads(body["info"])
    images = [decode(b) for b in body["images"]]
    assert len(images) == 2 and all(i.size == (64, 64) for i in images)
    assert info["all_seeds"] == [42, 43] and info["denoising_strength"] == 0.5
    assert info["is_using_inpainting_conditioning"] is False
    for image, text in zip(images, info["infotexts"]):
        assert image.info["parameters"] == text
    fields = infotext_to_request_fields(parse_infotext(info["infotexts"][0]))
    assert (fields["denoising_strength"], fields["steps"], fields["cfg_scale"], fields["seed"]) == (0.5, 3, 6.0, 42)
    assert fields["sampler_name"] == "Euler a" and fields["prompt"] == "a green circle"
    assert info["extra_generation_params"]["Denoising strength"] == "0.5"
    assert body["parameters"]["init_images"] is None and body["parameters"]["denoising_strength"] == 0.5
    echoed = post(http, include_init_images=True, some_future_field="x" * 1000).json()["parameters"]
    assert echoed["init_images"] and decode(echoed["init_images"][0]).size == (64, 64)
    assert "some_future_field" not in echoed  # unknown keys (of any size) are not sent back, as in txt2img


def test_inpaint_round_trip_keeps_pixels_outside_the_mask(http):
    response = post(http, mask=b64(box_mask()), inpainting_fill=1, inpaint_full_res=False, mask_blur=0,
                    denoising_strength=0.9)
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    out = np.asarray(decode(response.json()["images"][0]).convert("RGB"), dtype=np.int16)
    original = np.asarray(scene(), dtype=np.int16)
    outside = np.asarray(box_mask()) == 0
    assert (out[outside] == original[outside]).all()
    assert np.abs(out[24:40, 24:40] - original[24:40, 24:40]).mean() > 5
    params = parse_infotext(info["infotexts"][0])
    assert params["Denoising strength"] == "0.9" and "Mask blur" not in params and "Masked content" not in params
    # A1111's API defaults: fill, Only masked, padding 0, blur 4.
    defaults = json.loads(post(http, mask=b64(box_mask())).json()["info"])
    params = parse_infotext(defaults["infotexts"][0])
    assert (params["Masked content"], params["Inpaint area"], params["Masked area padding"], params["Mask blur"]) == \
        ("fill", "Only masked", "0", "4")


def test_empty_mask_runs_as_img2img_and_says_so(http):
    response = post(http, mask=b64(Image.new("L", (64, 64))))
    assert response.status_code == 200, response.text
    assert "plain img2img" in json.loads(response.json()["info"])["comments"]


@pytest.mark.parametrize("body,status,field", [
    ({"init_images": ["not base64!"]}, 400, "init_images[0]"),
    ({"init_images": [base64.b64encode(b"plain text, not an image").decode()]}, 400, "init_images[0]"),
    ({"mask": "%%%"}, 400, "mask"),
    ({"init_images": []}, 422, "init_images"),
    ({"denoising_strength": 1.5}, 422, "denoising_strength"),
    ({"width": 65}, 422, "width"),
    ({"inpainting_fill": 7, "mask": None}, 422, "inpainting_fill"),
    ({"resize_mode": 9}, 422, "resize_mode"),
    ({"restore_faces": True}, 422, "restore_faces"),
])
def test_bad_input_is_a_4xx_naming_the_field_and_the_server_keeps_serving(http, body, status, field):
    response = post(http, **body)
    assert response.status_code == status, response.text
    assert field in [d["field"] for d in response.json()["detail"]], response.json()
    assert post(http, steps=1).status_code == 200


def test_soft_inpainting_as_a1111_sends_it_and_other_scripts_refused(http):
    args = [True, 1, 0.5, 4, 0, 0.5, 2]
    response = post(http, mask=b64(box_mask()), inpaint_full_res=False, mask_blur=8,
                    alwayson_scripts={"Soft Inpainting": {"args": args}})
    assert response.status_code == 200, response.text
    params = parse_infotext(json.loads(response.json()["info"])["infotexts"][0])
    assert params["Soft inpainting enabled"] == "True" and params["Soft inpainting transition contrast boost"] == "4"
    refused = post(http, alwayson_scripts={"Soft Inpainting": {"args": args}, "ADetailer": {"args": []}})
    assert refused.status_code == 422 and "alwayson_scripts" in [d["field"] for d in refused.json()["detail"]]
    bad = post(http, mask=b64(box_mask()), alwayson_scripts={"soft inpainting": {"args": [True, 99]}})
    assert bad.status_code == 422 and "soft_inpainting" in [d["field"] for d in bad.json()["detail"]]
