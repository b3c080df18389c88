"""Issue 18 with an auth flag, over real HTTP: every door needs credentials; failed logins are throttled.

The server runs with `--api-auth alice:wonder` only (the UI then asks for the same login) and
starts with a config.json nested 100,000 levels deep and a styles.csv that is a folder.
"""
from __future__ import annotations

import time

import httpx
import pytest

from tests.hardening_kit import DEEP, SMALL, TIMEOUT, mcp_call, write_damaged_files
from tests.server_fixture import start_server

ALICE = ("alice", "wonder")


@pytest.fixture(scope="module")
def server(tiny_sd15, tmp_path_factory):
    root = tmp_path_factory.mktemp("auth-server")
    write_damaged_files(root / "data", '{"a": ' + DEEP + "}", None, None)
    args = ["--api", "--mcp", "--api-auth", "alice:wonder", "--ckpt", str(tiny_sd15.single_file)]
    with start_server(root, tiny_sd15.single_file.parent, args) as (url, _):
        yield url, root / "data", root / "server.log"


@pytest.fixture
def anon(server):
    with httpx.Client(base_url=server[0], timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
def alice(server):
    with httpx.Client(base_url=server[0], timeout=TIMEOUT, auth=ALICE) as client:
        yield client


# Doors that generate, change state or read outputs, Gradio's and MCP's included.
DOORS = [
    ("POST", "/gradio_api/call/txt2img", {"json": {"data": ["a cat", "", 1, 1, 0, 0]}}),
    ("POST", "/gradio_api/queue/join", {"json": {"data": [], "fn_index": 0, "session_hash": "x1"}}),
    ("POST", "/gradio_api/mcp/", {"json": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                   "headers": {"accept": "application/json, text/event-stream"}}),
    ("GET", "/gradio_api/mcp/schema", {}),
    ("GET", "/openapi.json", {}),
    ("GET", "/config", {}),
    ("GET", "/gradio_api/info", {}),
    ("GET", "/docs", {}),
    ("POST", "/sdapi/v1/txt2img", {"json": SMALL}),
    ("POST", "/sdapi/v1/options", {"json": {"CLIP_stop_at_last_layers": 2}}),
    ("POST", "/sdapi/v1/interrupt", {}),
    ("GET", "/sdapi/v1/progress", {}),
    ("POST", "/gradio_api/upload", {"files": {"files": ("a.png", b"\0" * 10, "image/png")}}),
]


@pytest.mark.parametrize("method, path, kwargs", DOORS, ids=[f"{m} {p}" for m, p, _ in DOORS])
def test_every_door_needs_credentials(anon, method, path, kwargs):
    response = anon.request(method, path, **kwargs)
    assert response.status_code == 401, response.text
    assert "authentication required" in response.json()["error"]


def test_the_login_page_itself_is_served(anon):
    page = anon.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert anon.get("/theme.css").status_code == 200


def test_basic_credentials_open_the_api_gradio_and_mcp(server, alice):
    assert alice.get("/sdapi/v1/options").status_code == 200
    assert alice.get("/config").status_code == 200 and alice.get("/openapi.json").status_code == 200
    event = alice.post("/gradio_api/call/txt2img", json={"data": ["a cat", "", 1, 4, 0, 0]})
    assert event.status_code == 200, event.text
    assert "event: complete" in alice.get(f"/gradio_api/call/txt2img/{event.json()['event_id']}").text
    names, result = mcp_call(server[0], "txt2img_tool", {"prompt": "a cube", "steps": 1, "seed": 2},
                             auth=httpx.BasicAuth(*ALICE))
    assert names == ["txt2img_tool"] and any(c.type == "image" for c in result.content)


def test_the_ui_login_takes_the_api_users(server):
    with httpx.Client(base_url=server[0], timeout=TIMEOUT) as browser:
        assert browser.post("/login", data={"username": "alice", "password": "wonder"}).status_code == 200
        assert browser.get("/config").status_code == 200  # the session cookie opens the UI's routes
        assert browser.get("/sdapi/v1/options").status_code == 401  # but not the API (Basic only, as A1111)


def test_unreadable_config_means_changes_are_refused_with_the_reason(server, alice):
    response = alice.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2})
    assert response.status_code == 409 and "unreadable at start" in response.json()["error"]
    assert alice.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 1
    config = server[1] / "config.json"
    assert config.read_text().startswith('{"a": [[[') and config.stat().st_size > 200_000  # untouched
    log = server[2].read_text(errors="replace")
    assert f"{config}: unreadable (nested too deeply)" in log and "styles.csv: unreadable" in log
    assert alice.get("/sdapi/v1/prompt-styles").json() == []
    assert alice.post("/sdapi/v1/txt2img", json={**SMALL, "seed": 1}).status_code == 200


def _wait_unlocked(response: httpx.Response) -> None:
    time.sleep(float(response.headers.get("retry-after", "1")) + 0.2)


def test_failed_basic_logins_are_throttled_then_recover(server):
    with httpx.Client(base_url=server[0], timeout=TIMEOUT) as client:
        codes = [client.get("/sdapi/v1/options", auth=("alice", f"guess{i}")).status_code for i in range(30)]
        assert codes[:6] == [401] * 6 and set(codes[6:]) == {429}, codes
        locked = client.get("/sdapi/v1/options", auth=ALICE)
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1  # even the right password
        _wait_unlocked(locked)
        assert client.get("/sdapi/v1/options", auth=ALICE).status_code == 200  # and it clears the record
    assert "failed login 6 from 127.0.0.1" in server[2].read_text(errors="replace")


def test_failed_form_logins_are_throttled_then_recover(server):
    with httpx.Client(base_url=server[0], timeout=TIMEOUT) as client:
        codes = [client.post("/login", data={"username": "alice", "password": f"g{i}"}).status_code for i in range(8)]
        assert codes[:6] == [400] * 6 and set(codes[6:]) == {429}, codes
        locked = client.post("/login", data={"username": "alice", "password": "wonder"})
        assert locked.status_code == 429
        _wait_unlocked(locked)
        assert client.post("/login", data={"username": "alice", "password": "wonder"}).status_code == 200
