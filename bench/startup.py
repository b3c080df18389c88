"""Start-up time as a user sees it: ``./launch.sh`` to the page answering, and to the model being ready.

Runs the installed app the way a user starts it (``./launch.sh --port P --data-dir D [--ckpt FILE]``),
polls ``GET /`` until the page answers (HTTP 200 with the UI's HTML) and watches the log for the
checkpoint-loaded line; both are wall-clock seconds from the launch. With ``--generate`` it also
sends a txt2img request through the API as soon as the page answers and times it, which shows
that a job submitted while the checkpoint loads waits for it instead of failing.

    .venv/bin/python bench/startup.py [--ckpt FILE] [--repeats 3] [--generate]

Without --ckpt the bundled demo model is used (the fresh-install case). The machine's load average
is printed with the numbers, because every other process on a small machine slows imports too.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOADED = re.compile(r"Loaded checkpoint|No checkpoint found|could not load")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(4096).decode("utf-8", "replace")
    except Exception:
        return 0, ""


def _post(url: str, body: dict, timeout: float = 600.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read())


def one_start(ckpt: Path | None, generate: bool, timeout: float) -> dict[str, float]:
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    args = ["./launch.sh", "--port", str(port), "--data-dir", str(data)]
    if ckpt is not None:
        args += ["--ckpt-dir", str(ckpt.parent), "--ckpt", str(ckpt)]
    if generate:
        args.append("--api")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    result: dict[str, float] = {}
    log: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            log.append(line)
            if "model_ready" not in result and LOADED.search(line):
                result["model_ready"] = time.perf_counter() - started

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        url = f"http://127.0.0.1:{port}/"
        while time.perf_counter() - started < timeout:
            if proc.poll() is not None:
                raise RuntimeError("the app exited:\n" + "".join(log[-30:]))
            status, body = _get(url)
            if status == 200 and "<html" in body.lower():
                result["page"] = time.perf_counter() - started
                break
            time.sleep(0.05)
        if generate:
            t0 = time.perf_counter()
            while _get(f"{url}sdapi/v1/samplers")[0] != 200:  # the API is mounted just after Gradio answers
                time.sleep(0.05)
            status, answer = _post(f"{url}sdapi/v1/txt2img", {"prompt": "a red circle", "steps": 4, "width": 64,
                                                              "height": 64, "seed": 1})
            result["first_image"] = time.perf_counter() - started
            result["first_image_request"] = time.perf_counter() - t0
            assert status == 200 and answer["images"], answer
        while "model_ready" not in result and time.perf_counter() - started < timeout:
            time.sleep(0.05)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data, ignore_errors=True)
    missing = {"page", "model_ready"} - set(result)
    if missing:
        raise RuntimeError(f"no {', '.join(sorted(missing))} within {timeout:.0f}s:\n" + "".join(log[-30:]))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=None, help="checkpoint file (default: the bundled demo model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generate", action="store_true", help="also time a txt2img API call sent at page-up")
    parser.add_argument("--timeout", type=float, default=300.0)
    opts = parser.parse_args(argv)
    runs = []
    for i in range(opts.repeats):
        load = os.getloadavg()[0]
        run = one_start(opts.ckpt.resolve() if opts.ckpt else None, opts.generate, opts.timeout)
        runs.append(run)
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.1f}s" for k, v in run.items()) + f" (load average {load:.1f})",
              flush=True)
    name = opts.ckpt.name if opts.ckpt else "bundled demo model"
    print(f"{name}: median page answers {statistics.median(r['page'] for r in runs):.1f}s, "
          f"model ready {statistics.median(r['model_ready'] for r in runs):.1f}s over {len(runs)} starts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
