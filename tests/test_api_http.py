"""The A1111 API over real HTTP: `python app.py --api` in a subprocess, driven with httpx.

One server per module (startup costs 10-20 s here); a second one for --api-auth.
"""
from __future__ import annotations

import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server_fixture import start_server
from webui.generation.request import GenerationRequest

SMALL = {"width": 64, "height": 64, "steps": 2}
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


@pytest.fixture(scope="module")
def server(tiny_sd15, tiny_sdxl, tmp_path_factory):
    assert tiny_sdxl.single_file.parent == tiny_sd15.single_file.parent
    with start_server(tmp_path_factory.mktemp("api-server"), tiny_sd15.single_file.parent, ["--api"]) as (url, _):
        yield url


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server, timeout=TIMEOUT) as client:
        yield client


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def txt2img(http, **body):
    response = http.post("/sdapi/v1/txt2img", json={**SMALL, **body})
    assert response.status_code == 200, response.text
    return response, json.loads(response.json()["info"])


def test_txt2img_png_infotext_and_info_agree_with_the_request(http):
    response, info = txt2img(http, prompt="a (red:1.2) cube", negative_prompt="blurry", seed=4242,
                             sampler_name="DPM++ 2M Karras", cfg_scale=6.5, n_iter=2)
    assert response.headers["X-Job-Id"].startswith("job-") and info["job_id"] == response.headers["X-Job-Id"]
    images = [decode(b64) for b64 in response.json()["images"]]
    assert len(images) == 2 and all(img.format == "PNG" and img.size == (64, 64) for img in images)
    assert info["all_seeds"] == [4242, 4243] and info["sampler_name"] == "DPM++ 2M"
    assert info["extra_generation_params"]["Schedule type"] == "Karras"
    for image, text, seed in zip(images, info["infotexts"], info["all_seeds"]):
        assert image.info["parameters"] == text
        assert text == (f"a (red:1.2) cube\nNegative prompt: blurry\nSteps: 2, Sampler: DPM++ 2M, Schedule type: Karras, "
                        f"CFG scale: 6.5, Seed: {seed}, Size: 64x64, Model hash: {info['sd_model_hash']}, "
                        f"Model: tiny-sd15, RNG: CPU, Version: {info['version']}")
    # The PNG reads back through png-info into the same parameters.
    parsed = http.post("/sdapi/v1/png-info", json={"image": response.json()["images"][1]}).json()
    assert parsed["parameters"]["Seed"] == "4243" and parsed["parameters"]["Prompt"] == "a (red:1.2) cube"


def test_http_api_image_equals_the_ui_path_in_process(http, tiny_sd15, tmp_path):
    from tests.test_api import make_context  # the same AppContext the app builds

    fields = {"prompt": "a yellow star", "seed": 99, "steps": 4, "width": 64, "height": 64, "sampler_name": "Euler"}
    response, info = txt2img(http, **fields)
    ctx = make_context(tiny_sd15.single_file.parent, tmp_path, "--ckpt", str(tiny_sd15.single_file))
    try:
        request = GenerationRequest.from_dict(fields)[0].validate()  # what the txt2img tab submits
        ui = ctx.submit_txt2img(request, source="ui").wait(120)
    finally:
        ctx.queue.stop()
    api_pixels = np.asarray(decode(response.json()["images"][0]).convert("RGB"))
    assert np.array_equal(api_pixels, np.asarray(ui.images[0].convert("RGB")))
    assert ui.infotexts[0] == info["infotexts"][0]


def test_options_switches_the_checkpoint(http):
    models = {m["model_name"]: m for m in http.get("/sdapi/v1/sd-models").json()}
    assert {"tiny-sd15", "tiny-sdxl"} <= set(models)
    assert http.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny-sd15")
    try:
        response = http.post("/sdapi/v1/options", json={"sd_model_checkpoint": models["tiny-sdxl"]["title"]})
        assert response.status_code == 200, response.text
        assert http.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny-sdxl")
        _, info = txt2img(http, seed=1)
        assert info["sd_model_name"] == "tiny-sdxl" and "Model: tiny-sdxl" in info["infotexts"][0]
    finally:
        assert http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-sd15"}).status_code == 200
    _, info = txt2img(http, seed=1)
    assert info["sd_model_name"] == "tiny-sd15"


def test_progress_shows_the_running_job_and_interrupt_stops_it(http, server):
    outcome = {}

    def run():
        started = time.monotonic()
        with httpx.Client(base_url=server, timeout=TIMEOUT) as own:
            outcome["response"] = own.post("/sdapi/v1/txt2img", json={**SMALL, "steps": 150, "seed": 5})
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    seen, preview = None, None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (seen is None or preview is None):
        progress = http.get("/sdapi/v1/progress").json()
        state = progress["state"]
        if state["job_count"] and state["sampling_step"] >= 1 and state["job_source"] == "api":
            seen = seen or progress
            if progress["current_image"]:
                preview = decode(progress["current_image"])
        if seen is not None and state["sampling_step"] >= 60:
            break  # enough: do not let it finish
        time.sleep(0.05)
    assert seen is not None, "no progress of the running job was ever reported"
    assert 0 < seen["progress"] < 1 and seen["state"]["sampling_steps"] == 150 and seen["state"]["job_no"] == 0
    assert seen["eta_relative"] > 0 and seen["textinfo"]
    assert preview is not None and preview.format == "PNG", "live previews are on by default every 5 steps"
    assert http.get("/sdapi/v1/progress", params={"skip_current_image": True}).json()["current_image"] is None
    assert http.post("/sdapi/v1/interrupt").status_code == 200
    thread.join(120)
    response = outcome["response"]
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert info["interrupted"] is True and len(response.json()["images"]) == 1  # the partial image, as A1111
    idle = http.get("/sdapi/v1/progress").json()
    assert idle["state"]["job_count"] == 0 and idle["progress"] == 0


def test_four_clients_forty_jobs_all_served_in_arrival_order(server, http):
    def client_run(client_no: int) -> list[tuple[int, httpx.Response]]:
        with httpx.Client(base_url=server, timeout=TIMEOUT) as client, ThreadPoolExecutor(10) as pool:
            seeds = [1000 + client_no * 10 + i for i in range(10)]
            futures = [pool.submit(client.post, "/sdapi/v1/txt2img",
                                   json={**SMALL, "steps": 1, "seed": s, "prompt": f"client {client_no}"})
                       for s in seeds]
            return [(s, f.result()) for s, f in zip(seeds, futures)]

    with ThreadPoolExecutor(4) as clients:
        results = [r for rs in clients.map(client_run, range(4)) for r in rs]
    assert len(results) == 40
    ids = []
    for seed, response in results:
        assert response.status_code == 200, response.text
        info = json.loads(response.json()["info"])
        assert info["all_seeds"] == [seed] and len(response.json()["images"]) == 1
        assert decode(response.json()["images"][0]).info["parameters"] == info["infotexts"][0]
        assert info["prompt"] == f"client {(seed - 1000) // 10}"
        ids.append(response.headers["X-Job-Id"])
    assert len(set(ids)) == 40, "every request got its own job"

    queue = http.get("/sdapi/v1/queue", params={"ids": ",".join(ids)}).json()
    jobs = sorted(queue["jobs"], key=lambda j: j["seq"])  # seq is given on arrival
    assert len(jobs) == 40 and all(j["state"] == "done" and j["source"] == "api" for j in jobs)
    finished = [i for i in queue["completed"] if i in set(ids)]
    assert finished == [j["id"] for j in jobs], "the queue must finish jobs in arrival order"
    for before, after in zip(jobs, jobs[1:]):
        assert after["started_at"] >= before["finished_at"], "one job at a time, in order"


@pytest.mark.parametrize("method, path, kwargs, status, field, message", [
    ("post", "/sdapi/v1/txt2img", {"content": b"{oops", "headers": {"content-type": "application/json"}},
     422, "body", "malformed JSON"),
    ("post", "/sdapi/v1/txt2img", {"json": {"steps": "twenty"}}, 422, "steps", "valid integer"),
    ("post", "/sdapi/v1/txt2img", {"json": {"steps": 500}}, 422, "steps", "from 1 to 150"),
    ("post", "/sdapi/v1/txt2img", {"json": {"sampler_name": "Euler z"}}, 422, "sampler_name", "Unknown sampler"),
    ("post", "/sdapi/v1/txt2img", {"json": {"enable_hr": True, "hr_scale": 99}}, 422, "hr_scale", "from 0 to 8"),
    ("post", "/sdapi/v1/options", {"json": {"sd_model_checkpoint": "nope.safetensors"}}, 422,
     "sd_model_checkpoint", "no checkpoint matches"),
    ("post", "/sdapi/v1/options", {"json": {"not_a_setting": True}}, 400, "not_a_setting", "unknown setting"),
    ("post", "/sdapi/v1/png-info", {"json": {"image": "%%%"}}, 400, "image", "not valid base64"),
])
def test_bad_input_over_http_is_a_4xx_and_the_server_keeps_serving(http, method, path, kwargs, status, field,
                                                                    message):
    response = http.request(method.upper(), path, **kwargs)
    assert response.status_code == status, response.text
    assert any(d["field"] == field and message in d["message"] for d in response.json()["detail"]), response.text
    assert http.get("/sdapi/v1/samplers").status_code == 200


def test_docs_are_served(http):
    assert "swagger" in http.get("/docs").text.lower()
    assert "/sdapi/v1/txt2img" in http.get("/openapi.json").json()["paths"]


def test_api_auth_over_http(tiny_sd15, tmp_path):
    args = ["--api", "--api-auth", "alice:wonder,bob:builder"]
    with start_server(tmp_path, tiny_sd15.single_file.parent, args) as (url, _):
        for path in ("/sdapi/v1/sd-models", "/sdapi/v1/options", "/sdapi/v1/progress"):
            response = httpx.get(url + path)
            assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic"), path
            assert httpx.get(url + path, auth=("alice", "builder")).status_code == 401
            assert httpx.get(url + path, auth=("bob", "builder")).status_code == 200
        assert httpx.post(url + "/sdapi/v1/txt2img", json=SMALL).status_code == 401
        response = httpx.post(url + "/sdapi/v1/txt2img", json=SMALL, auth=("alice", "wonder"), timeout=TIMEOUT)
        assert response.status_code == 200 and len(response.json()["images"]) == 1
