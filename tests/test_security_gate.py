"""The security gate, policy, throttle and budget in process (edge cases the HTTP tests do not repeat)."""
from __future__ import annotations

import argparse

import pytest
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from webui import cli
from webui.generation.request import GenerationRequest, RequestError
from webui.security.budget import RequestBudget
from webui.security.gate import Gate
from webui.security.paths import confined_problem
from webui.security.policy import SecurityPolicy, accounts_from_args, host_name, same_origin
from webui.security.throttle import LoginThrottle


async def echo_app(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    cookie = dict(scope["headers"]).get(b"cookie", b"").decode()
    await JSONResponse({"path": scope["path"], "bytes": len(body), "cookie": cookie})(scope, receive, send)


class FakeSessions:
    def __init__(self):
        self.tokens = {"good-token": "ui-user"}

    def user_for(self, cookie_header):
        token = cookie_header.partition("session=")[2].split(";")[0]
        return self.tokens.get(token)

    def cookie_for(self, user):
        self.tokens["minted"] = user
        return "session", "minted"


def policy_for(argv, data_dir="/tmp/x") -> SecurityPolicy:
    return SecurityPolicy.from_args(cli.parse_args(argv), data_dir)


def client(argv, **kwargs) -> TestClient:
    gate = Gate(echo_app, policy_for(argv), FakeSessions())
    return TestClient(gate, base_url="http://127.0.0.1:7860", **kwargs)


def test_gradio_auth_alone_protects_the_api_and_mcp_with_the_same_users():
    c = client(["--gradio-auth", "ui:pass"])
    for path in ("/sdapi/v1/options", "/gradio_api/mcp/", "/openapi.json", "/config"):
        assert c.post(path).status_code == 401
        assert c.post(path, auth=("ui", "pass")).status_code == 200, path
    assert c.get("/sdapi/v1/options", cookies={"session": "good-token"}).status_code == 401  # API: Basic only
    assert c.get("/config", cookies={"session": "good-token"}).status_code == 200  # UI routes: the login cookie


def test_accounts_default_to_the_other_flag_with_a_log_line(caplog):
    caplog.set_level("INFO")
    ui, api = accounts_from_args(cli.parse_args(["--gradio-auth", "a:b"]))
    assert ui == api == (("a", "b"),) and "API and MCP accept the --gradio-auth users" in caplog.text
    ui, api = accounts_from_args(cli.parse_args(["--api-auth", "c:d"]))
    assert ui == api == (("c", "d"),) and "web UI asks for a login with the --api-auth users" in caplog.text
    ui, api = accounts_from_args(cli.parse_args(["--api-auth", "c:d", "--gradio-auth", "a:b"]))
    assert ui == (("a", "b"),) and api == (("c", "d"),)


def test_basic_clients_get_a_session_gradio_honours():
    c = client(["--api-auth", "c:d"])
    body = c.get("/gradio_api/info", auth=("c", "d"), cookies={"other": "1"}).json()
    assert "session=minted" in body["cookie"] and "other=1" in body["cookie"]
    assert "session=" not in c.get("/sdapi/v1/x", auth=("c", "d")).json()["cookie"]


def test_no_auth_flag_means_no_credentials_needed_on_loopback():
    c = client([])
    assert c.post("/sdapi/v1/txt2img", json={}).status_code == 200


@pytest.mark.parametrize("argv, expected", [
    ([], []),
    (["--listen"], ["without --gradio-auth or --api-auth"]),
    (["--server-name", "0.0.0.0"], ["without --gradio-auth or --api-auth"]),
    (["--server-name", "192.168.5.5"], ["who can reach 192.168.5.5"]),
    (["--listen", "--api-auth", "a:b"], []),
    (["--listen", "--gradio-auth", "a:b"], []),
    (["--server-name", "127.0.0.1"], []),
])
def test_exposure_warning_covers_every_open_combination(argv, expected):
    lines = policy_for(argv).exposure_warnings()
    assert len(lines) == len(expected) and all(e in line for e, line in zip(expected, lines))


def test_listen_accepts_this_machines_names_and_server_name_its_own():
    import socket

    listening = policy_for(["--listen"])
    assert listening.host_allowed(f"{socket.gethostname()}:7860") and listening.host_allowed("localhost")
    assert not listening.host_allowed("evil.example")
    named = policy_for(["--server-name", "studio.lan"])
    assert named.host_allowed("studio.lan:7860") and not named.host_allowed("[::1]")
    assert policy_for(["--allowed-hosts", "*"]).host_allowed("anything.example")


@pytest.mark.parametrize("origin, host, same", [
    ("http://127.0.0.1:7860", "127.0.0.1:7860", True),
    ("http://localhost:7860", "127.0.0.1:7860", False),
    ("https://sd.example.com", "sd.example.com", True),  # behind a TLS proxy that keeps Host
    ("http://sd.example.com", "sd.example.com:80", True),
    ("http://127.0.0.1:7861", "127.0.0.1:7860", False),
    ("null", "127.0.0.1:7860", False),
    ("http://[::1]:7860", "[::1]:7860", True),
    ("javascript://127.0.0.1:7860", "127.0.0.1:7860", False),
])
def test_same_origin(origin, host, same):
    assert same_origin(origin, host) is same


def test_host_names_are_normalised():
    assert host_name("Example.COM.:7860") == "example.com" and host_name("[::1]:80") == "::1"


def test_websocket_with_a_foreign_origin_is_closed():
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect):
        with client([]).websocket_connect("/ws", headers={"Origin": "http://evil.example"}):
            pass


def test_malformed_content_length_and_chunked_bodies():
    c = client(["--max-body-size", "0.001"])  # about 1 kB
    assert c.post("/x", content=b"a" * 500).json()["bytes"] == 500
    assert c.post("/x", content=(b"a" * 100 for _ in range(5))).json()["bytes"] == 500  # chunked, replayed whole
    assert c.post("/x", content=(b"a" * 600 for _ in range(5))).status_code == 413


def test_throttle_doubles_the_lock_and_forgets_after_success():
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    assert [throttle.failed("1.2.3.4") for _ in range(5)] == [0.0] * 5
    assert throttle.failed("1.2.3.4") == 1.0 and throttle.retry_after("1.2.3.4") == 1.0
    now[0] += 1.0
    assert throttle.failed("1.2.3.4") == 2.0 and throttle.failed("1.2.3.4") == 4.0
    assert throttle.retry_after("5.6.7.8") == 0.0  # per client
    now[0] += 100
    throttle.succeeded("1.2.3.4")
    assert throttle.retry_after("1.2.3.4") == 0.0 and throttle.failed("1.2.3.4") == 0.0
    for _ in range(40):
        throttle.failed("9.9.9.9")
    assert throttle.retry_after("9.9.9.9") == 300.0  # capped


def test_budget_defaults_and_flags():
    budget = RequestBudget.from_args(cli.parse_args([]))
    ok = GenerationRequest(prompt="a" * 20000, width=1024, height=1024, steps=50, batch_size=4, n_iter=25).validate()
    budget.check(ok)  # 100 images of 1024x1024 at 50 steps: exactly the default budget
    with pytest.raises(RequestError, match="--max-pixel-steps"):
        budget.check(GenerationRequest(width=1024, height=1024, steps=51, batch_size=4, n_iter=25).validate())
    raised = RequestBudget.from_args(cli.parse_args(["--max-pixel-steps", "1e13", "--max-prompt-length", "50000"]))
    raised.check(GenerationRequest(prompt="a" * 50000, width=1024, height=1024, steps=150, batch_size=8,
                                   n_iter=100).validate())
    hires = argparse.Namespace(width=512, height=512, steps=20, batch_size=1, n_iter=1, enable_hr=True, hr_scale=2.0,
                               hr_second_pass_steps=0)
    assert RequestBudget.work(hires) == 512 * 512 * 20 + 1024 * 1024 * 20


def test_output_folder_confinement(tmp_path):
    data = tmp_path / "data"
    (data / "outputs").mkdir(parents=True)
    (data / "link").symlink_to(tmp_path)
    assert confined_problem("outputs/x", data, [data]) is None
    assert confined_problem(str(data / "abs-inside"), data, [data]) is None
    assert "outside" in confined_problem("../x", data, [data])
    assert "outside" in confined_problem("link/escaped", data, [data])  # symlinks are followed
    assert confined_problem(str(tmp_path / "allowed" / "x"), data, [data, tmp_path / "allowed"]) is None
    assert "not a usable folder" in confined_problem("a\0b", data, [data])


def test_every_outdir_setting_is_confined(tmp_path):
    from webui.security.paths import output_dir_problems
    from webui.settings import Option, Settings

    settings = Settings.load(None)
    settings.add_option(Option("outdir_some_new_tab", "outputs/new", "a room's folder"))  # not marked is_path
    folders = [k for k, o in settings.options.items() if o.is_output_folder]
    assert {"outdir_txt2img_samples", "outdir_txt2img_grids", "outdir_extras_samples", "outdir_some_new_tab"} <= set(folders)
    problems = output_dir_problems({k: "/elsewhere" for k in folders}, settings.options, tmp_path, [tmp_path])
    assert sorted(p["field"] for p in problems) == sorted(folders)
