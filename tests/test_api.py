"""The /sdapi/v1 routes in-process: a real AppContext on the tiny checkpoints, FastAPI's TestClient.

The HTTP tests against a running server are in test_api_http.py; these cover the request
mapping, every refused input, auth, and UI/API sharing one queue, without a subprocess.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import logging
import threading
import time

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from webui.api.routes import mount_api
from webui.context import context_from_flags
from webui.generation.request import GenerationRequest
from webui.generation.styles import Style

SMALL = {"width": 64, "height": 64, "steps": 2}
A1111_INFO_KEYS = {
    "prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds", "subseed",
    "all_subseeds", "subseed_strength", "width", "height", "sampler_name", "cfg_scale", "steps", "batch_size",
    "restore_faces", "face_restoration_model", "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash",
    "seed_resize_from_w", "seed_resize_from_h", "denoising_strength", "extra_generation_params",
    "index_of_first_image", "infotexts", "styles", "job_timestamp", "clip_skip", "is_using_inpainting_conditioning",
    "version"}


def make_context(ckpt_dir, data_dir, *flags):
    return context_from_flags(["--api", "--ckpt-dir", str(ckpt_dir), "--data-dir", str(data_dir), *flags])


def client_for(ctx) -> TestClient:
    app = FastAPI(docs_url=None, redoc_url=None)  # as Gradio creates its app
    mount_api(app, ctx)
    return TestClient(app)


@pytest.fixture(scope="module")
def ctx(tiny_sd15, tiny_sdxl, tmp_path_factory):
    assert tiny_sdxl.single_file.parent == tiny_sd15.single_file.parent  # two checkpoints in one folder
    context = make_context(tiny_sd15.single_file.parent, tmp_path_factory.mktemp("api-data"))
    assert context.models.current().info.model_name == "tiny-sd15", context.status
    yield context
    context.queue.stop()


@pytest.fixture(scope="module")
def client(ctx):
    return client_for(ctx)


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def txt2img(client, **body):
    response = client.post("/sdapi/v1/txt2img", json={**SMALL, **body})
    assert response.status_code == 200, response.text
    data = response.json()
    return data, json.loads(data["info"])


def wait_until(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# --- txt2img ------------------------------------------------------------------------------------

def test_txt2img_returns_a1111_shapes_and_matching_infotext(client):
    data, info = txt2img(client, prompt="a red cube", negative_prompt="blurry", seed=1234, batch_size=2,
                         sampler_name="Euler a", cfg_scale=5)
    assert set(data) == {"images", "parameters", "info"}
    assert A1111_INFO_KEYS <= set(info)
    assert len(data["images"]) == 2
    assert info["all_seeds"] == [1234, 1235] and info["seed"] == 1234
    assert info["prompt"] == "a red cube" and info["negative_prompt"] == "blurry"
    assert info["sampler_name"] == "Euler a" and info["steps"] == 2 and info["cfg_scale"] == 5
    assert info["sd_model_name"] == "tiny-sd15" and info["clip_skip"] == 1
    assert data["parameters"]["prompt"] == "a red cube" and data["parameters"]["seed"] == 1234
    for b64, infotext, seed in zip(data["images"], info["infotexts"], info["all_seeds"]):
        image = decode(b64)
        assert image.format == "PNG" and image.size == (64, 64)
        assert image.info["parameters"] == infotext
        assert infotext.startswith("a red cube\nNegative prompt: blurry\nSteps: 2, Sampler: Euler a,")
        assert f"Seed: {seed}," in infotext and "Size: 64x64" in infotext and "CFG scale: 5," in infotext


def test_same_seed_gives_the_same_image_through_ui_path_and_api(ctx, client):
    fields = {"prompt": "a blue sphere", "seed": 777, "steps": 3, "width": 64, "height": 64,
              "sampler_name": "DPM++ 2M", "scheduler": "Karras"}
    # Exactly what the txt2img tab does with its field values.
    request = GenerationRequest.from_dict(fields)[0].validate()
    ui = ctx.submit_txt2img(request, source="ui").wait(120)
    data, info = txt2img(client, **fields)
    api_image = decode(data["images"][0])
    assert np.array_equal(np.asarray(api_image.convert("RGB")), np.asarray(ui.images[0].convert("RGB")))
    assert info["infotexts"][0] == ui.infotexts[0]


def test_send_images_false_and_save_images(ctx, client):
    outputs = ctx.paths.data_dir / "outputs"
    before = set(outputs.rglob("*.png"))
    data, info = txt2img(client, send_images=False, seed=5)
    assert data["images"] == [] and info["all_seeds"] == [5]
    assert set(outputs.rglob("*.png")) == before, "A1111's API does not save unless save_images is true"
    txt2img(client, save_images=True, seed=6)
    saved = set(outputs.rglob("*.png")) - before
    assert len(saved) == 1 and next(iter(saved)).name.endswith("-6.png")


def test_a1111_client_defaults_are_accepted_and_unknowns_logged(client, caplog):
    # What A1111 clients typically send: every field, most at their defaults.
    body = {"prompt": "x", "negative_prompt": "", "styles": [], "seed": 3, "subseed": -1, "subseed_strength": 0,
            "seed_resize_from_h": -1, "seed_resize_from_w": -1, "sampler_name": None, "sampler_index": "Euler",
            "scheduler": None, "batch_size": 1, "n_iter": 1, "cfg_scale": 7, "restore_faces": False,
            "tiling": False, "do_not_save_samples": False, "do_not_save_grid": False, "eta": None,
            "denoising_strength": 0.7, "s_min_uncond": 0, "s_churn": 0, "s_tmax": None, "s_tmin": 0, "s_noise": 1,
            "override_settings": {}, "override_settings_restore_afterwards": True, "refiner_checkpoint": None,
            "refiner_switch_at": None, "disable_extra_networks": False, "comments": {}, "enable_hr": False,
            "firstphase_width": 0, "firstphase_height": 0, "hr_scale": 2, "hr_upscaler": "Latent",
            "hr_second_pass_steps": 0, "hr_resize_x": 0, "hr_resize_y": 0, "hr_prompt": "", "hr_negative_prompt": "",
            "script_name": None, "script_args": [], "send_images": True, "save_images": False,
            "alwayson_scripts": {}, "some_future_field": 1}
    with caplog.at_level(logging.WARNING, logger="webui.api.txt2img"):
        _, info = txt2img(client, **body)
    assert info["sampler_name"] == "Euler" and info["seed"] == 3
    warning = " ".join(r.getMessage() for r in caplog.records)
    # hires knobs sent with enable_hr false are ignored, and said so, as unknown fields are
    assert "denoising_strength" in warning and "hr_upscaler" in warning and "some_future_field" in warning
    assert "enable_hr" not in warning  # at its default: nothing to warn about


def test_override_settings_clip_skip_applies_to_one_request(ctx, client):
    _, info = txt2img(client, seed=9, override_settings={"CLIP_stop_at_last_layers": 2})
    assert info["clip_skip"] == 2 and "Clip skip: 2" in info["infotexts"][0]
    _, info = txt2img(client, seed=9)
    assert info["clip_skip"] == 1 and "Clip skip" not in info["infotexts"][0]
    assert ctx.settings.get("CLIP_stop_at_last_layers") == 1


def test_override_settings_checkpoint_is_used_then_restored(ctx, client):
    _, info = txt2img(client, seed=2, override_settings={"sd_model_checkpoint": "tiny-sdxl"})
    assert info["sd_model_name"] == "tiny-sdxl" and "Model: tiny-sdxl" in info["infotexts"][0]
    assert ctx.models.current().info.model_name == "tiny-sd15"
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny-sd15")


def test_override_settings_kept_when_restore_afterwards_is_false(ctx, client):
    overrides = {"sd_model_checkpoint": "tiny-sdxl", "CLIP_stop_at_last_layers": 2}
    try:
        _, info = txt2img(client, seed=3, override_settings=overrides, override_settings_restore_afterwards=False)
        assert info["sd_model_name"] == "tiny-sdxl" and info["clip_skip"] == 2
        assert ctx.models.current().info.model_name == "tiny-sdxl"
        assert ctx.settings.get("CLIP_stop_at_last_layers") == 2
    finally:
        reset = {"sd_model_checkpoint": "tiny-sd15", "CLIP_stop_at_last_layers": 1}
        assert client.post("/sdapi/v1/options", json=reset).status_code == 200
    assert ctx.models.current().info.model_name == "tiny-sd15"


def test_infotext_field_fills_only_unset_fields(client):
    infotext = "a green cone\nSteps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 4, Seed: 42, Size: 64x64"
    _, info = txt2img(client, infotext=infotext, steps=2)
    assert info["prompt"] == "a green cone" and info["seed"] == 42 and info["cfg_scale"] == 4
    assert info["sampler_name"] == "Euler a" and info["steps"] == 2  # steps was set explicitly


def test_styles_apply_and_are_listed(ctx, client):
    ctx.styles.put(Style("api-test", "{prompt}, oil painting", "lowres"))
    listed = client.get("/sdapi/v1/prompt-styles").json()
    assert {"name": "api-test", "prompt": "{prompt}, oil painting", "negative_prompt": "lowres"} in listed
    _, info = txt2img(client, prompt="a boat", styles=["api-test"])
    assert info["prompt"] == "a boat, oil painting" and info["negative_prompt"] == "lowres"
    assert info["styles"] == ["api-test"]


# --- one queue for UI and API ---------------------------------------------------------------------

def test_ui_and_api_jobs_interleave_in_fifo_order_and_progress_shows_either(ctx, client):
    # A long UI job holds the worker while UI and API jobs queue up behind it; it is interrupted at the end.
    blocker = ctx.submit_txt2img(GenerationRequest(prompt="busy", steps=150, width=64, height=64, seed=1,
                                                   save_images=False).validate(), source="ui")
    wait_until(lambda: blocker.progress.snapshot().sampling_step > 0, what="the UI job to start sampling")
    progress = client.get("/sdapi/v1/progress", params={"skip_current_image": True}).json()
    assert progress["state"]["job_id"] == blocker.id and progress["state"]["job_source"] == "ui"
    assert 0 < progress["progress"] < 1 and progress["state"]["sampling_steps"] == 150
    assert progress["current_image"] is None

    responses = {}
    threads, ui_jobs = [], []
    for n in range(2):
        queued = ctx.queue.pending()
        thread = threading.Thread(target=lambda n=n: responses.update(
            {n: client.post("/sdapi/v1/txt2img", json={**SMALL, "seed": 100 + n})}))
        thread.start()
        threads.append(thread)
        wait_until(lambda: ctx.queue.pending() == queued + 1, what="the API job to be queued")
        ui_jobs.append(ctx.submit_txt2img(GenerationRequest(seed=200 + n, save_images=False, **SMALL).validate(),
                                          source="ui"))
    assert blocker.state == "running", "the blocker must still hold the worker, or the order proves nothing"
    assert client.post("/sdapi/v1/interrupt").status_code == 200
    assert blocker.wait(60).interrupted
    for thread in threads:
        thread.join(120)
    for job in ui_jobs:
        job.wait(120)
    api_ids = [responses[n].headers["X-Job-Id"] for n in range(2)]
    ids = [blocker.id, api_ids[0], ui_jobs[0].id, api_ids[1], ui_jobs[1].id]
    assert [i for i in ctx.queue.completed_order if i in ids] == ids, "jobs run in arrival order, UI and API alike"
    assert [ctx.queue.get(i).source for i in ids] == ["ui", "api", "ui", "api", "ui"]
    queue = client.get("/sdapi/v1/queue", params={"ids": ",".join(ids)}).json()
    assert [j["id"] for j in queue["jobs"]] == ids and all(j["state"] == "done" for j in queue["jobs"])
    assert [j["seq"] for j in queue["jobs"]] == sorted(j["seq"] for j in queue["jobs"])


def test_skip_ends_the_current_batch_early_and_the_next_one_runs(ctx, client):
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=client.post(
        "/sdapi/v1/txt2img", json={**SMALL, "steps": 10, "n_iter": 2, "seed": 11})))
    thread.start()
    wait_until(lambda: (job := ctx.queue.current()) is not None and job.source == "api"
               and job.progress.snapshot().sampling_step > 0, what="the API job to start")
    assert client.post("/sdapi/v1/skip").status_code == 200
    thread.join(120)
    body = result["r"].json()
    info = json.loads(body["info"])
    # A1111: the skipped batch comes back as far as it got (partial image), then the next batch runs.
    assert info["all_seeds"] == [11, 12] and len(body["images"]) == 2


# --- bad input: 4xx with a JSON body naming the field ----------------------------------------------

BAD_TXT2IMG = [
    ({"steps": "many"}, "steps", "valid integer"),
    ({"steps": 0}, "steps", "from 1 to 150"),
    ({"width": 65}, "width", "multiple of 8"),
    ({"cfg_scale": 99}, "cfg_scale", "from 1 to 30"),
    ({"seed": 2**40}, "seed", "-1 (random) or a whole number"),
    ({"batch_size": 9}, "batch_size", "from 1 to 8"),
    ({"sampler_name": "Nope"}, "sampler_name", "Unknown sampler 'Nope'"),
    ({"scheduler": "Bogus"}, "scheduler", "Unknown schedule type 'Bogus'"),
    ({"styles": ["no-such-style"]}, "styles", "unknown style(s): no-such-style"),
    ({"styles": "oops"}, "styles", "valid list"),
    ({"enable_hr": True, "hr_scale": 0}, "hr_scale", "must be above 0"),
    ({"enable_hr": True, "hr_upscaler": "Nope"}, "hr_upscaler", "unknown upscaler 'Nope'"),
    ({"restore_faces": True}, "restore_faces", "face restoration is not implemented"),
    ({"tiling": "sometimes"}, "tiling", "valid boolean"),
    ({"seed_resize_from_w": 5000}, "seed_resize_from_w", "from -1 to 4096"),
    ({"script_name": "no such script"}, "script_name", "no script named 'no such script'"),
    ({"script_name": "x/y/z plot", "script_args": {"x_type": "Bogus"}}, "script_args", "'Bogus' is not one of"),
    ({"alwayson_scripts": {"ADetailer": {"args": []}}}, "alwayson_scripts", "no always-on script with that name"),
    ({"refiner_checkpoint": "refiner.safetensors"}, "refiner_checkpoint", "no checkpoint matches 'refiner.safetensors'"),
    ({"firstpass_image": "aGVsbG8="}, "firstpass_image", "hires fix"),
    ({"sampler_name": "Euler a", "eta": 0.5}, "eta", "Euler a runs with eta 1"),
    ({"sampler_name": "DDIM", "eta": 0.3}, "eta", "DDIM runs with eta 0"),
    ({"s_churn": 0.5}, "s_churn", "only the default"),
    ({"s_noise": 1.003}, "s_noise", "only the default"),
    ({"override_settings": "no"}, "override_settings", "valid dictionary"),
    ({"override_settings": {"sd_model_checkpoint": "missing-model"}}, "override_settings.sd_model_checkpoint",
     "no checkpoint matches 'missing-model'"),
    ({"override_settings": {"CLIP_stop_at_last_layers": 99}}, "override_settings.CLIP_stop_at_last_layers",
     "above the maximum"),
    ({"override_settings": {"eta_noise_seed_delta": 31337}}, "override_settings.eta_noise_seed_delta",
     "not supported"),
]


@pytest.mark.parametrize("body, field, message", BAD_TXT2IMG, ids=[f for _, f, _ in BAD_TXT2IMG])
def test_bad_txt2img_input_is_a_422_naming_the_field(client, body, field, message):
    response = client.post("/sdapi/v1/txt2img", json={**SMALL, **body})
    assert response.status_code == 422, response.text
    data = response.json()
    assert any(d["field"] == field and message in d["message"] for d in data["detail"]), data
    assert field in data["error"]


def test_several_bad_fields_are_reported_together(client):
    data = client.post("/sdapi/v1/txt2img", json={"steps": 0, "width": 65, "enable_hr": True, "hr_scale": -1}).json()
    assert {d["field"] for d in data["detail"]} == {"steps", "width", "hr_scale"}


@pytest.mark.parametrize("content, message", [
    (b'{"prompt": "x",', "malformed JSON at character"),
    (b"[1, 2]", "valid dictionary"),
    (b"", "a JSON object is required"),
])
def test_malformed_body_is_a_readable_422(client, content, message):
    response = client.post("/sdapi/v1/txt2img", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["field"] == "body" and message in detail[0]["message"], detail


def test_options_errors(client):
    response = client.post("/sdapi/v1/options", json={"no_such_option": 1, "CLIP_stop_at_last_layers": 2})
    assert response.status_code == 400 and "no_such_option" in response.json()["error"]
    response = client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": "two"})
    assert response.status_code == 422
    assert response.json()["detail"] == [{"field": "CLIP_stop_at_last_layers",
                                          "message": "CLIP_stop_at_last_layers: expected a number, got 'two'"}]
    response = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "missing-model"})
    assert response.status_code == 422 and "no checkpoint matches 'missing-model'" in response.json()["error"]
    response = client.post("/sdapi/v1/options", json=["not", "an", "object"])
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "body"
    assert client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 1  # nothing was applied


def test_options_set_and_read_back(ctx, client):
    assert client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2}).status_code == 200
    try:
        assert client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 2
        _, info = txt2img(client, seed=4)
        assert "Clip skip: 2" in info["infotexts"][0]
    finally:
        client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 1})


@pytest.mark.parametrize("image, status, message", [
    ("not base64 at all!", 400, "not valid base64"),
    (base64.b64encode(b"hello, not an image").decode(), 400, "not an image"),
    ("https://example.com/cat.png", 400, "URLs are not fetched"),
    ("data:image/png,abc", 400, "must be base64 encoded"),
])
def test_png_info_bad_images(client, image, status, message):
    response = client.post("/sdapi/v1/png-info", json={"image": image})
    assert response.status_code == status
    assert response.json()["detail"][0]["field"] == "image" and message in response.json()["detail"][0]["message"]


def test_png_info_reads_api_images_and_data_urls(client):
    data, info = txt2img(client, prompt="a tree", seed=31)
    for payload in (data["images"][0], "data:image/png;base64," + data["images"][0]):
        answer = client.post("/sdapi/v1/png-info", json={"image": payload}).json()
        assert answer["info"] == info["infotexts"][0]
        assert answer["parameters"]["Prompt"] == "a tree" and answer["parameters"]["Seed"] == "31"
    assert client.post("/sdapi/v1/png-info", json={"image": ""}).json()["info"] == ""


def test_progress_query_type_error_is_readable(client):
    response = client.get("/sdapi/v1/progress", params={"skip_current_image": "perhaps"})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "skip_current_image"


# --- listings --------------------------------------------------------------------------------------

def test_listings_have_a1111_shapes(ctx, client):
    models = client.get("/sdapi/v1/sd-models").json()
    names = {m["model_name"] for m in models}
    assert {"tiny-sd15", "tiny-sdxl"} <= names
    assert all(set(m) == {"title", "model_name", "hash", "sha256", "filename", "config"} for m in models)
    assert client.post("/sdapi/v1/refresh-checkpoints").status_code == 200
    samplers = client.get("/sdapi/v1/samplers").json()
    dpm = next(s for s in samplers if s["name"] == "DPM++ 2M")
    assert dpm == {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"], "options": {"scheduler": "karras"}}
    assert len(samplers) == 20 and {"DPM++ 2S a", "DPM adaptive", "Restart", "DDIM CFG++"} <= {s["name"] for s in samplers}
    heun = next(s for s in samplers if s["name"] == "Heun")
    assert heun["options"] == {"second_order": True}
    schedulers = client.get("/sdapi/v1/schedulers").json()
    assert {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0,
            "need_inner_model": False} in schedulers
    assert [s["label"] for s in schedulers] == ["Automatic", "Uniform", "Karras", "Exponential", "Polyexponential",
                                                "SGM Uniform", "KL Optimal", "Align Your Steps", "Simple", "Normal",
                                                "DDIM", "Beta"]
    flags = client.get("/sdapi/v1/cmd-flags").json()
    assert flags["api"] is True and flags["ckpt_dir"] == str(ctx.args.ckpt_dir)
    memory = client.get("/sdapi/v1/memory").json()
    assert memory["ram"]["total"] > memory["ram"]["free"] > 0
    assert set(memory["cuda"]) == {"error"} or "system" in memory["cuda"]
    assert client.post("/sdapi/v1/interrupt").json() == {}  # idle: nothing to stop, still fine
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0


def test_docs_and_openapi_list_the_routes(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/sdapi/v1/txt2img", "/sdapi/v1/options", "/sdapi/v1/progress", "/sdapi/v1/png-info"} <= set(paths)


# --- auth --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def auth_client(ctx):
    accounts = [("alice", "s3cret"), ("bob", "pässword")]
    guarded = dataclasses.replace(ctx, args=argparse.Namespace(**{**vars(ctx.args), "api_auth": accounts}))
    return client_for(guarded)


def test_api_auth(auth_client):
    response = auth_client.get("/sdapi/v1/sd-models")
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Basic")
    assert "authentication required" in response.json()["error"]
    assert auth_client.get("/sdapi/v1/sd-models", auth=("alice", "wrong")).status_code == 401
    assert auth_client.get("/sdapi/v1/sd-models", auth=("alice", "s3cret")).status_code == 200
    assert auth_client.get("/sdapi/v1/sd-models", auth=("bob", "pässword")).status_code == 200
    assert auth_client.get("/sdapi/v1/sd-models", headers={"Authorization": "Basic !!!"}).status_code == 401
    assert auth_client.get("/docs").status_code == 401
    # Credentials are checked before the body is parsed, so the schema is not revealed.
    response = auth_client.post("/sdapi/v1/txt2img", content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 401
    flags = auth_client.get("/sdapi/v1/cmd-flags", auth=("alice", "s3cret")).json()
    assert flags["api_auth"] == ["alice:***", "bob:***"]


# --- MCP tool ------------------------------------------------------------------------------------------

def test_mcp_txt2img_tool_uses_the_queue(ctx):
    from webui.ui.mcp_tools import make_txt2img_tool

    tool = make_txt2img_tool(ctx)
    file = tool("a cat", steps=2, seed=8)  # Gradio FileData: MCP sends it as image content
    assert file["meta"]["_type"] == "gradio.FileData" and file["mime_type"] == "image/png"
    with Image.open(file["path"]) as image:
        assert image.size == (64, 64)  # 0 means the checkpoint's native size (64 for the tiny model)
        assert "Seed: 8," in image.info["parameters"]
    assert ctx.queue.get(ctx.queue.completed_order[-1]).source == "mcp"
    import gradio as gr

    with pytest.raises(gr.Error, match="steps"):
        tool("a cat", steps=0)
    from webui.ui.mcp_tools import add_mcp_tools

    with gr.Blocks() as demo:
        add_mcp_tools(ctx)
    endpoint = demo.get_api_info()["named_endpoints"]["/txt2img"]  # what --mcp offers agents as a tool
    assert [p["parameter_name"] for p in endpoint["parameters"]] == ["prompt", "negative_prompt", "steps", "seed",
                                                                      "width", "height"]
