"""Network routes over real HTTP (`python app.py --api` in a subprocess): listings, refresh, LoRA /
VAE in txt2img, 4xx for bad tags and VAE names, sd_vae through /options."""
from __future__ import annotations

import json
import re
import shutil

import httpx
import pytest

from tests import networks_kit as nk
from tests.server_fixture import start_server

SMALL = {"width": 64, "height": 64, "steps": 2, "seed": 5, "sampler_name": "Euler"}


@pytest.fixture(scope="module")
def server(tiny_sd15, tmp_path_factory):
    root = tmp_path_factory.mktemp("networks-api")
    nk.populate(root / "data")
    with start_server(root, tiny_sd15.single_file.parent, ["--api", "--ckpt", str(tiny_sd15.single_file)]) as (url, _):
        with httpx.Client(base_url=url, timeout=httpx.Timeout(300.0, connect=10.0)) as client:
            yield client, root / "data"


def txt2img(http, **body):
    response = http.post("/sdapi/v1/txt2img", json={**SMALL, **body})
    assert response.status_code == 200, response.text
    return json.loads(response.json()["info"])


def test_listings_have_a1111_shapes(server):
    http, data = server
    loras = {item["name"]: item for item in http.get("/sdapi/v1/loras").json()}
    assert sorted(loras) == ["broken", "other", "style", "xl-only"]
    assert loras["style"]["alias"] == "style-alias"
    assert loras["style"]["metadata"]["ss_tag_frequency"] == {"shapes": {"red circle": 12, "blue square": 3}}
    assert loras["other"]["path"].endswith("models/Lora/sub/other.safetensors")
    vaes = http.get("/sdapi/v1/sd-vae").json()
    assert [v["model_name"] for v in vaes] == ["alt.safetensors", "sdxl_vae.safetensors"]
    emb = http.get("/sdapi/v1/embeddings").json()
    assert emb["loaded"] == {"bluesq": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                        "shape": 32, "vectors": 2}} and emb["skipped"] == {}
    assert http.get("/sdapi/v1/hypernetworks").json() == [{"name": "hyper", "path": str(data / "models" / "hypernetworks" / "hyper.pt")}]


def test_refresh_finds_new_files(server):
    http, data = server
    shutil.copy(data / "models" / "Lora" / "style.safetensors", data / "models" / "Lora" / "fresh.safetensors")
    shutil.copy(data / "embeddings" / "bluesq.safetensors", data / "embeddings" / "bluesq2.safetensors")
    assert "fresh" not in [i["name"] for i in http.get("/sdapi/v1/loras").json()]
    assert http.post("/sdapi/v1/refresh-loras").status_code == 200
    assert "fresh" in [i["name"] for i in http.get("/sdapi/v1/loras").json()]
    assert http.post("/sdapi/v1/refresh-embeddings").status_code == 200
    assert "bluesq2" in http.get("/sdapi/v1/embeddings").json()["loaded"]


def test_txt2img_reports_lora_hashes_and_missing_networks(server):
    http, _ = server
    info = txt2img(http, prompt="a red circle <lora:style:0.8> <lora:nope:1>")
    assert re.search(r'Lora hashes: "style: [0-9a-f]{12}"', info["infotexts"][0])
    assert info["extra_generation_params"]["Lora hashes"].startswith("style: ")
    assert "Networks not found: nope" in info["comments"]


def test_bad_tag_weight_and_unknown_vae_are_422_with_a_json_body(server):
    http, _ = server
    response = http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "x <lora:style:strong>"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "prompt" and "must be a number" in response.json()["error"]
    response = http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "x", "override_settings": {"sd_vae": "nope.pt"}})
    assert response.status_code == 422 and "no VAE named 'nope.pt'" in response.text
    response = http.post("/sdapi/v1/options", json={"sd_vae": "nope.pt"})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "sd_vae"


def test_sd_vae_per_request_and_through_options(server):
    http, _ = server
    info = txt2img(http, prompt="a red circle", override_settings={"sd_vae": "alt.safetensors"})
    assert re.search(r"VAE hash: [0-9a-f]{10}, VAE: alt.safetensors", info["infotexts"][0])
    assert info["sd_vae_name"] == "alt.safetensors"
    assert "VAE:" not in txt2img(http, prompt="a red circle")["infotexts"][0]  # override was for one job
    assert http.post("/sdapi/v1/options", json={"sd_vae": "alt.safetensors"}).status_code == 200
    assert http.get("/sdapi/v1/options").json()["sd_vae"] == "alt.safetensors"
    assert "VAE: alt.safetensors" in txt2img(http, prompt="a red circle")["infotexts"][0]
    refused = http.post("/sdapi/v1/options", json={"sd_vae": "sdxl_vae.safetensors"})
    assert refused.status_code == 422 and "SDXL VAE" in refused.json()["error"]
    assert http.get("/sdapi/v1/options").json()["sd_vae"] == "alt.safetensors"  # previous one kept
    assert http.post("/sdapi/v1/options", json={"sd_vae": "Automatic"}).status_code == 200
