"""Load and faults over HTTP: 8 clients x 25 requests mixing txt2img, interrupts and checkpoint swaps,
then SIGKILL while PNGs are being saved and a restart on the same data dir.

Every job ends (done, interrupted, or failed with a message), no PNG on disk is corrupt, the queue
runs jobs one at a time in arrival order, and a run killed mid-save leaves no partial PNG after the
next start. Tiny models, 64x64, 1 step: the point is the traffic, not the pictures.
"""
from __future__ import annotations

import json
import os
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.server_fixture import start_server

TIMEOUT = httpx.Timeout(600.0, connect=10.0)
CLIENTS, REQUESTS = 8, 25


def client_run(base_url: str, client_no: int) -> list[dict]:
    rng = random.Random(client_no)
    out = []
    with httpx.Client(base_url=base_url, timeout=TIMEOUT) as http:
        for i in range(REQUESTS):
            roll = rng.random()
            if roll < 0.2:
                response = http.post("/sdapi/v1/interrupt")
                out.append({"kind": "interrupt", "status": response.status_code})
            elif roll < 0.4:
                name = rng.choice(["tiny-sd15", "tiny-sdxl"])
                response = http.post("/sdapi/v1/options", json={"sd_model_checkpoint": name})
                out.append({"kind": "swap", "status": response.status_code, "body": response.text})
            else:
                body = {"prompt": f"client {client_no} job {i}", "seed": client_no * 1000 + i, "width": 64,
                        "height": 64, "steps": 1, "batch_size": 1,
                        "save_images": True}
                response = http.post("/sdapi/v1/txt2img", json=body)
                out.append({"kind": "txt2img", "status": response.status_code, "json": response.json(),
                            "job": response.headers.get("X-Job-Id"), "seed": body["seed"]})
    return out


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "T"


def kill_while_saving(url: str, process, folder: Path) -> list[Path]:
    """Start a 128-image job; freeze the server (SIGSTOP) whenever a `.saving-*` file exists, SIGKILL it then.

    Freezing first makes the check exact: what is on disk when the process dies is what we saw.
    Returns the partial files the killed process left.
    """
    body = {"prompt": "many", "seed": 1, "width": 64, "height": 64, "steps": 1, "batch_size": 8, "n_iter": 16,
            "save_images": True}
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: httpx.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=TIMEOUT))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if any(e.name.startswith(".saving-") for day in os.scandir(folder) if day.is_dir()
                   for e in os.scandir(day.path)):
                os.kill(process.pid, signal.SIGSTOP)
                while not _stopped(process.pid):
                    time.sleep(0.001)
                partial = list(folder.rglob(".saving-*"))
                if partial:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(30)
                    return partial
                os.kill(process.pid, signal.SIGCONT)  # it finished that file meanwhile: keep watching
            time.sleep(0.001)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    return []


def assert_pngs_whole(root: Path) -> int:
    """Every PNG under root opens, verifies and carries A1111's infotext; no partial files are left."""
    partial = [p for p in root.rglob(".saving-*")]
    assert not partial, f"partial PNGs left: {partial}"
    count = 0
    for path in root.rglob("*.png"):
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()
            assert "Steps: " in image.info.get("parameters", ""), path
        count += 1
    return count


def test_load_with_interrupts_and_swaps_then_sigkill_while_saving(tiny_sd15, tiny_sdxl, tmp_path):
    assert tiny_sdxl.single_file.parent == tiny_sd15.single_file.parent
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.json").write_text(json.dumps({"sd_checkpoints_limit": 2}))  # swaps from RAM, not disk
    outputs = data / "outputs"
    args = ["--api", "--ckpt", str(tiny_sd15.single_file)]
    with start_server(tmp_path, tiny_sd15.single_file.parent, args) as (url, process):
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = [r for rs in pool.map(lambda n: client_run(url, n), range(CLIENTS)) for r in rs]
        assert len(results) == CLIENTS * REQUESTS

        # Every job ended: done (maybe interrupted) or failed with a message; nothing hung.
        jobs = [r for r in results if r["kind"] == "txt2img"]
        assert len(jobs) > 100
        interrupted = 0
        for r in jobs:
            if r["status"] == 200:
                info = json.loads(r["json"]["info"])
                interrupted += info["interrupted"]
                assert info["interrupted"] or len(r["json"]["images"]) >= 1
                assert info["all_seeds"][:1] in ([r["seed"]], [])
            else:
                assert r["status"] >= 400 and r["json"]["error"], r
        assert all(r["status"] == 200 for r in results if r["kind"] == "interrupt")
        assert all(r["status"] == 200 for r in results if r["kind"] == "swap"), \
            [r["body"] for r in results if r["kind"] == "swap" and r["status"] != 200]

        # FIFO: the worker ran jobs one at a time, in the order they arrived.
        http = httpx.Client(base_url=url, timeout=TIMEOUT)
        ids = [r["job"] for r in jobs if r["job"]]
        queue = http.get("/sdapi/v1/queue", params={"ids": ",".join(ids)}).json()
        by_seq = sorted(queue["jobs"], key=lambda j: j["seq"])
        assert len(by_seq) == len(ids) and all(j["state"] in ("done", "failed") for j in by_seq)
        done_order = [i for i in queue["completed"] if i in set(ids)]
        assert done_order == [j["id"] for j in by_seq], "the queue must finish jobs in arrival order"
        for before, after in zip(by_seq, by_seq[1:]):
            assert after["started_at"] >= before["finished_at"]
        saved = assert_pngs_whole(outputs)
        assert saved >= sum(len(r["json"]["images"]) for r in jobs if r["status"] == 200
                            and not json.loads(r["json"]["info"])["interrupted"])

        # SIGKILL while a big batch is being saved, at a moment a PNG is half written.
        left = kill_while_saving(url, process, outputs / "txt2img-images")
        assert left, "the kill should have left a half-written PNG behind"
    with start_server(tmp_path, tiny_sd15.single_file.parent, args) as (url, _):
        assert not list(outputs.rglob(".saving-*"))
        assert assert_pngs_whole(outputs) >= saved
        response = httpx.post(f"{url}/sdapi/v1/txt2img", json={"seed": 2, "width": 64, "height": 64, "steps": 1},
                              timeout=TIMEOUT)
        assert response.status_code == 200
    assert "removed" in (tmp_path / "server.log").read_text(errors="replace")
