"""A1111's Extras and upscaler routes in-process (FastAPI TestClient on a real AppContext)."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from tests.upscaler_kit import write_upscalers
from webui.api.routes import mount_api
from webui.models.upscalers import LATENT_MODES


@pytest.fixture(scope="module")
def client(app_context):
    write_upscalers(app_context.paths.models_dir)
    app_context.upscalers.refresh()
    app = FastAPI(docs_url=None, redoc_url=None)
    mount_api(app, app_context)
    return TestClient(app)


def _b64(width=24, height=16) -> str:
    rng = np.random.default_rng(2)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _decode(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_upscalers_and_latent_modes(client):
    rows = client.get("/sdapi/v1/upscalers").json()
    assert [r["name"] for r in rows[:3]] == ["None", "Lanczos", "Nearest"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["tiny-esrgan-4x"]["scale"] == 4 and by_name["tiny-esrgan-4x"]["model_path"].endswith(".pth")
    assert set(by_name[n]["model_name"] for n in ("None",)) == {None}
    assert [r["name"] for r in client.get("/sdapi/v1/latent-upscale-modes").json()] == list(LATENT_MODES)


def test_extra_single_image(client, app_context):
    before = set(app_context.paths.outputs_dir.rglob("*.png"))
    response = client.post("/sdapi/v1/extra-single-image",
                           json={"image": _b64(), "upscaler_1": "tiny-compact-2x", "upscaling_resize": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert _decode(body["image"]).size == (48, 32)
    assert "Postprocess upscaler: tiny-compact-2x" in body["html_info"]
    assert set(app_context.paths.outputs_dir.rglob("*.png")) == before  # the API returns, it does not save


def test_extra_batch_images(client):
    response = client.post("/sdapi/v1/extra-batch-images",
                           json={"imageList": [{"data": _b64(16, 16), "name": "a.png"},
                                               {"data": "data:image/png;base64," + _b64(24, 16), "name": "b.png"}],
                                 "resize_mode": 1, "upscaling_resize_w": 40, "upscaling_resize_h": 40,
                                 "upscaler_1": "Lanczos"})
    assert response.status_code == 200, response.text
    assert [_decode(i).size for i in response.json()["images"]] == [(40, 40), (40, 40)]


@pytest.mark.parametrize("body, status, field", [
    ({"image": "not base64!!"}, 400, "image"),
    ({"image": base64.b64encode(b"hello").decode()}, 400, "image"),
    ({"image": "IMG", "upscaler_1": "ESRGAN_9x"}, 422, "upscaler_1"),
    ({"image": "IMG", "upscaling_resize": -1}, 422, "upscaling_resize"),
    ({"image": "IMG", "codeformer_visibility": 0.5}, 422, "codeformer_visibility"),
    ({"image": ""}, 422, "image"),
])
def test_bad_input_is_a_4xx_naming_the_field(client, body, status, field):
    body = {k: (_b64() if v == "IMG" else v) for k, v in body.items()}
    response = client.post("/sdapi/v1/extra-single-image", json=body)
    assert response.status_code == status, response.text
    assert field in {d["field"] for d in response.json()["detail"]}


def test_a_corrupt_upscaler_answers_4xx_with_its_name_and_the_server_goes_on(client):
    response = client.post("/sdapi/v1/extra-single-image", json={"image": _b64(), "upscaler_1": "unknown-arch"})
    assert response.status_code == 422 and "unknown-arch" in response.json()["error"]
    assert client.post("/sdapi/v1/extra-single-image", json={"image": _b64(), "upscaler_1": "Nearest"}).status_code == 200
