"""Issue 18 over real HTTP, without auth flags: `python app.py --api --mcp` on loopback, damaged files at start.

One server for the module. It starts with the damaged files the audit used (NaN in config.json,
cache.json nested 100,000 deep, a binary styles.csv) and with half-written PNGs a killed run left,
and with small size limits (1 MB) so the 413 tests need not send 50 MB.
"""
from __future__ import annotations

import io
import json
import socket
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.hardening_kit import (DEEP, SMALL, TIMEOUT, decode_png, mcp_call, raw_json, strict_json,
                                 write_damaged_files)
from tests.server_fixture import start_server

ALLOWED_ORIGIN = "http://allowed.example"


@pytest.fixture(scope="module")
def server(tiny_sd15, tiny_sdxl, tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening-server")
    data = root / "data"
    write_damaged_files(data, '{"sd_checkpoint_cache_ram_fraction": NaN, "CLIP_stop_at_last_layers": Infinity, '
                              '"grid_save": false}', b"\x89PNG\x00\xff\xfe binary \x00", '{"hashes": ' + DEEP + "}")
    day = data / "outputs" / "txt2img-images" / "2026-01-01"
    day.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(day / "00000-1.png")
    (day / ".saving-999999999-abc.png").write_bytes(b"\x89PNG\r\n")  # a run killed mid-save (pid gone)
    (day / ".saving-old.png").write_bytes(b"")  # the naming before this fix, 0 bytes
    args = ["--api", "--mcp", "--ckpt", str(tiny_sd15.single_file), "--max-body-size", "1", "--max-upload-size", "1",
            "--allowed-hosts", "my-proxy.example", "--cors-allow-origins", ALLOWED_ORIGIN]
    with start_server(root, tiny_sd15.single_file.parent, args) as (url, _):
        yield url, data, root / "server.log"


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server[0], timeout=TIMEOUT) as client:
        yield client


def txt2img(http, **body):
    return http.post("/sdapi/v1/txt2img", json={**SMALL, **body})


# --- 2, 13: start-up with damaged files and leftovers ----------------------------------------------------

def test_damaged_files_at_start_are_reported_and_the_app_serves(server, http):
    _, data, log = server
    options = http.get("/sdapi/v1/options").json()
    assert options["sd_checkpoint_cache_ram_fraction"] == 0.5 and options["CLIP_stop_at_last_layers"] == 1
    assert options["grid_save"] is False  # the readable rest of config.json is kept
    text = log.read_text(errors="replace")
    assert "sd_checkpoint_cache_ram_fraction: expected a finite number" in text
    assert f"{data / 'styles.csv'}: unreadable" in text and f"{data / 'cache.json'} is unreadable" in text
    assert http.get("/sdapi/v1/prompt-styles").json() == []
    assert (data / "styles.csv").read_bytes().startswith(b"\x89PNG")  # never overwritten
    assert txt2img(http, seed=3).status_code == 200


def test_partial_pngs_of_a_killed_run_are_removed_at_start(server):
    day = server[1] / "outputs" / "txt2img-images" / "2026-01-01"
    assert sorted(p.name for p in day.iterdir()) == ["00000-1.png"]


# --- 1: non-finite numbers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["sd_checkpoint_cache_ram_fraction", "CLIP_stop_at_last_layers",
                                 "show_progress_every_n_steps", "comma_padding_backtrack"])
@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_a_4xx_and_never_saved(server, http, key, number):
    response = raw_json(http, "/sdapi/v1/options", f'{{"{key}": {number}}}')
    assert response.status_code == 422, response.text
    assert number.lstrip("-") in response.json()["error"] or "out of range" in response.json()["error"]
    response = raw_json(http, "/sdapi/v1/txt2img", f'{{"override_settings": {{"{key}": {number}}}, "steps": 1}}')
    assert response.status_code == 422, response.text


def test_after_refused_nan_the_settings_file_is_plain_json_and_swaps_work(server, http):
    assert raw_json(http, "/sdapi/v1/options", '{"sd_checkpoint_cache_ram_fraction": NaN}').status_code == 422
    assert http.post("/sdapi/v1/options", json={"sd_checkpoint_cache_ram_fraction": 0.4}).status_code == 200
    saved = strict_json(server[1] / "config.json")  # raises on NaN / Infinity
    assert saved["sd_checkpoint_cache_ram_fraction"] == 0.4 and saved["grid_save"] is False
    for name in ("tiny-sdxl", "tiny-sd15"):
        assert http.post("/sdapi/v1/options", json={"sd_model_checkpoint": name}).status_code == 200


# --- 3: request budgets ------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, field, words", [
    ({"prompt": "(a" * 30000}, "prompt", "--max-prompt-length"),
    ({"negative_prompt": "x" * 100_000}, "negative_prompt", "at most 20000"),
    ({"width": 4096, "height": 4096}, "width", "--max-image-pixels"),
    ({"width": 1024, "height": 1024, "steps": 150, "n_iter": 100, "batch_size": 8}, "steps", "--max-pixel-steps"),
])
def test_requests_over_budget_are_refused_before_queueing(http, body, field, words):
    before = http.get("/sdapi/v1/queue").json()["completed"]
    response = http.post("/sdapi/v1/txt2img", json={**SMALL, **body})
    assert response.status_code == 422, response.text
    assert any(d["field"] == field and words in d["message"] for d in response.json()["detail"]), response.text
    assert http.get("/sdapi/v1/queue").json()["completed"] == before  # nothing ran


def test_a_long_bracket_prompt_within_budget_runs(http):
    response = txt2img(http, prompt="(a" * 9000, seed=11)  # 18,000 characters: quadratic before the fix
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 1


# --- 4, 5: Host and Origin ---------------------------------------------------------------------------------

def _lan_address() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # no packet is sent; picks the outgoing interface
            address = sock.getsockname()[0]
        return address if not address.startswith("127.") else "192.168.1.77"
    except OSError:
        return "192.168.1.77"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7860", "[::1]", "LAN"])
def test_foreign_host_names_are_refused(http, host):
    host = _lan_address() if host == "LAN" else host
    for method, path in (("GET", "/"), ("GET", "/sdapi/v1/options"), ("POST", "/sdapi/v1/interrupt"),
                         ("GET", "/config")):
        response = http.request(method, path, headers={"Host": host})
        assert response.status_code == 400, (host, path, response.text)
        assert "--allowed-hosts" in response.json()["error"]


def test_loopback_and_allowed_host_names_are_served(server, http):
    port = server[0].rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "my-proxy.example", f"MY-PROXY.example.:{port}"):
        assert http.get("/sdapi/v1/samplers", headers={"Host": host}).status_code == 200, host


@pytest.mark.parametrize("method, path", [("POST", "/sdapi/v1/interrupt"), ("POST", "/sdapi/v1/skip"),
                                          ("POST", "/sdapi/v1/refresh-checkpoints"), ("POST", "/gradio_api/upload"),
                                          ("POST", "/sdapi/v1/options"), ("GET", "/sdapi/v1/options")])
def test_another_sites_origin_is_refused_and_never_echoed(http, method, path):
    for origin in ("http://evil.example", "null", "http://127.0.0.1.evil.example"):
        response = http.request(method, path, headers={"Origin": origin}, json={} if method == "POST" else None)
        assert response.status_code == 403, (origin, response.text)
        assert "access-control-allow-origin" not in response.headers
    preflight = http.options(path, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers


def test_same_origin_no_origin_and_listed_origins_pass(server, http):
    assert http.post("/sdapi/v1/interrupt").status_code == 200  # API clients send no Origin
    assert http.post("/sdapi/v1/interrupt", headers={"Origin": server[0]}).status_code == 200  # the UI's own page
    response = http.post("/sdapi/v1/interrupt", headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    preflight = http.options("/sdapi/v1/txt2img", headers={"Origin": ALLOWED_ORIGIN,
                                                           "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


# --- 6: output folders through the API ---------------------------------------------------------------------

@pytest.mark.parametrize("folder", ["ABS", "../escaped", "outputs/../../escaped2"])
def test_output_folders_outside_the_data_dir_are_refused(server, http, tmp_path, folder):
    data = server[1]
    target = str(tmp_path / "elsewhere") if folder == "ABS" else folder
    for key in ("outdir_txt2img_samples", "outdir_txt2img_grids"):
        response = http.post("/sdapi/v1/options", json={key: target})
        assert response.status_code == 422 and "--allow-output-dir" in response.text, response.text
        response = txt2img(http, save_images=True, n_iter=2, override_settings={key: target})
        assert response.status_code == 422 and f"override_settings.{key}" in response.text, response.text
    assert not (tmp_path / "elsewhere").exists() and not (data.parent / "escaped").exists()
    assert not (data.parent / "escaped2").exists()
    assert http.get("/sdapi/v1/options").json()["outdir_txt2img_samples"] == "outputs/txt2img-images"


def test_output_folders_inside_the_data_dir_are_accepted(server, http):
    response = txt2img(http, save_images=True, seed=21, override_settings={"outdir_txt2img_samples": "outputs/mine"})
    assert response.status_code == 200, response.text
    assert list((server[1] / "outputs" / "mine").rglob("*-21.png"))


# --- 9: sizes and echoes -----------------------------------------------------------------------------------

def test_bodies_and_uploads_over_the_limit_are_413(http):
    big = {**SMALL, "prompt": "x" * (1 << 20)}
    response = http.post("/sdapi/v1/txt2img", json=big)
    assert response.status_code == 413 and "--max-body-size" in response.json()["error"]
    chunks = (b"x" * 65536 for _ in range(40))  # 2.5 MB without a Content-Length
    response = http.post("/sdapi/v1/png-info", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413
    files = {"files": ("big.png", b"\0" * (2 << 20), "image/png")}
    response = http.post("/gradio_api/upload", files=files)
    assert response.status_code == 413 and "--max-upload-size" in response.json()["error"]
    assert http.post("/gradio_api/upload", files={"files": ("ok.png", b"\0" * 1000, "image/png")}).status_code == 200


def test_unknown_fields_are_not_echoed(http):
    response = txt2img(http, seed=5, junk_key="j" * 100_000, other_junk={"a": 1})
    assert response.status_code == 200
    parameters = response.json()["parameters"]
    assert "junk_key" not in parameters and "other_junk" not in parameters and parameters["seed"] == 5
    assert len(response.content) < 60_000


# --- 10: MCP and Gradio's call endpoint return the image ---------------------------------------------------

def test_mcp_tool_returns_image_content(server):
    names, result = mcp_call(server[0], "txt2img_tool", {"prompt": "a red circle", "steps": 1, "seed": 9})
    assert names == ["txt2img_tool"] and not result.isError
    images = [c for c in result.content if c.type == "image"]
    assert len(images) == 1 and images[0].mimeType == "image/png"
    assert decode_png(images[0].data).size == (64, 64)


def test_gradio_call_endpoint_returns_a_png_with_infotext(http):
    event = http.post("/gradio_api/call/txt2img", json={"data": ["a cube", "", 1, 12, 0, 0]})
    assert event.status_code == 200, event.text
    stream = http.get(f"/gradio_api/call/txt2img/{event.json()['event_id']}").text
    assert "event: complete" in stream, stream
    payload = json.loads(stream.split("event: complete\ndata:", 1)[1].strip().splitlines()[0])
    png = httpx.get(payload[0]["url"], timeout=TIMEOUT)
    assert png.status_code == 200
    with Image.open(io.BytesIO(png.content)) as image:
        assert "Seed: 12," in image.info["parameters"]
    assert "/tmp/gradio/" not in payload[0]["path"]  # our own temp folder, not the shared one


# --- 11: 500s that were 4xx --------------------------------------------------------------------------------

@pytest.mark.parametrize("path, text", [
    ("/sdapi/v1/txt2img", '{"prompt": "\\ud800", "steps": 1, "width": 64, "height": 64}'),
    ("/sdapi/v1/txt2img", '{"negative_prompt": "ok \\udfff", "steps": 1}'),
    ("/sdapi/v1/options", '{"samples_filename_pattern": "\\ud800"}'),
    ("/sdapi/v1/options", '{"sd_model_checkpoint": "' + "a" * 5000 + '"}'),
    ("/sdapi/v1/txt2img", '{"override_settings": {"sd_model_checkpoint": "' + "b" * 5000 + '"}, "steps": 1}'),
    ("/sdapi/v1/txt2img", '{"override_settings": {"sd_model_checkpoint": 123}, "steps": 1}'),
    ("/sdapi/v1/txt2img", '{"override_settings": {"sd_model_checkpoint": ["x"]}, "steps": 1}'),
    ("/sdapi/v1/txt2img", '{"override_settings": {"sd_model_checkpoint": "\\u0000x"}, "steps": 1}'),
    ("/sdapi/v1/png-info", '{"image": ' + DEEP + "}"),
])
def test_bad_values_that_were_500_are_4xx(http, path, text):
    response = raw_json(http, path, text)
    assert 400 <= response.status_code < 500, response.text
    assert http.get("/sdapi/v1/samplers").status_code == 200


# --- 12: headers and the file route ------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/sdapi/v1/samplers", "/config", "/assets/does-not-exist.js"])
def test_nosniff_and_framing_policy_on_every_response(http, path):
    headers = http.get(path).headers
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in headers["content-security-policy"]


def test_other_gradio_apps_files_are_not_served(http):
    shared = Path("/tmp/gradio") / uuid.uuid4().hex
    shared.mkdir(parents=True)
    secret = shared / "other-app.txt"
    secret.write_text("another app's upload")
    try:
        response = http.get(f"/gradio_api/file={secret}")
        assert response.status_code == 403 and "another app" not in response.text
    finally:
        secret.unlink()
        shared.rmdir()


def test_concurrent_clients_are_unaffected_by_refusals(http, server):
    # Refused requests (bad Host, foreign Origin, over budget) interleaved with real ones: all real ones finish.
    results = []

    def good(seed):
        with httpx.Client(base_url=server[0], timeout=TIMEOUT) as own:
            results.append(own.post("/sdapi/v1/txt2img", json={**SMALL, "seed": seed}).status_code)

    threads = [threading.Thread(target=good, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for _ in range(10):
        assert http.get("/", headers={"Host": "evil.example"}).status_code == 400
        assert http.post("/sdapi/v1/skip", headers={"Origin": "http://evil.example"}).status_code == 403
    for t in threads:
        t.join(120)
    assert results == [200] * 4
