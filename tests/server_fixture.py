"""Start the real app (`python app.py ...`) as a subprocess on a free port, for HTTP and browser tests.

    with start_server(tmp_path, ckpt_dir, ["--api"]) as (base_url, process):
        httpx.get(f"{base_url}/sdapi/v1/sd-models")

The server gets its own `--data-dir` under `tmp_path` (config.json, outputs, caches), binds
127.0.0.1 only, runs offline, and is stopped (SIGINT, then SIGKILL) when the block ends. Its
output goes to `tmp_path/server.log`; if startup fails or the block raises, the end of that
log is attached to the exception, so a failing test shows why the server misbehaved.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
# webui/server.py prints "Running on <url>" once the UI and API are mounted; Gradio's own earlier
# "* Running on local URL: ..." comes before the API is mounted, hence the line-start match.
READY_LINE = "Running on http"
LOG_TAIL = 6000


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, limit: int = LOG_TAIL) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    return text[-limit:]


def _stop(process: subprocess.Popen, grace: float = 15) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # server.py ends its block_thread on KeyboardInterrupt
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _wait_ready(process: subprocess.Popen, log_path: Path, base_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before it was ready")
        if any(line.startswith(READY_LINE) for line in log_tail(log_path, 1 << 20).splitlines()):
            try:
                httpx.get(base_url + "/", timeout=5)
                return
            except httpx.HTTPError:
                pass
        time.sleep(0.25)
    raise TimeoutError(f"server not ready after {timeout:.0f}s")


@contextlib.contextmanager
def start_server(tmp_path: Path, ckpt_dir: Path | None, extra_args: Sequence[str] = (), *,
                 timeout: float = 240, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run app.py with `extra_args` on a free port; yield (base_url without trailing slash, process)."""
    tmp_path = Path(tmp_path)
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / "server.log"
    port = free_port()
    args = [sys.executable, str(REPO_ROOT / "app.py"), "--port", str(port), "--data-dir", str(data_dir)]
    if ckpt_dir is not None:
        args += ["--ckpt-dir", str(ckpt_dir)]
    args += list(extra_args)
    child_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                 "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **(env or {})}
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=child_env,
                                   stdin=subprocess.DEVNULL)
    try:
        try:
            _wait_ready(process, log_path, base_url, timeout)
        except Exception as exc:
            exc.add_note(f"--- {' '.join(args)}\n--- server log ({log_path}), last part:\n{log_tail(log_path)}")
            raise
        try:
            yield base_url, process
        except BaseException as exc:
            if isinstance(exc, Exception):
                exc.add_note(f"--- server log ({log_path}), last part:\n{log_tail(log_path)}")
            raise
    finally:
        _stop(process)
