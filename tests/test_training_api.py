"""Training over real HTTP: train/lora with progress, a generation that waits, interrupt; A1111's embedding routes."""
from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.server_fixture import start_server
from webui.training.lora import read_metadata

TIMEOUT = httpx.Timeout(300.0, connect=10.0)


@pytest.fixture(scope="module")
def http(tiny_sd15, tmp_path_factory):
    root = tmp_path_factory.mktemp("train-api")
    with start_server(root, tiny_sd15.single_file.parent, ["--api", "--ckpt", str(tiny_sd15.single_file)]) as (url, _):
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            client.data_dir = root / "data"
            yield client


def wait_until(check, timeout=240, every=0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def test_train_lora_progress_waiting_generation_and_interrupt(http, train_folder):
    body = {"name": "api-lora", "data_dir": str(train_folder), "max_train_steps": 500, "batch_size": 1,
            "unet_lr": 5e-4, "save_every_n_steps": 0, "sample_every_n_steps": 2,
            "sample_prompts": ["a red circle --s 2 --d 7"], "rank": 4, "alpha": 4}
    response = http.post("/sdapi/v1/train/lora", json=body)
    assert response.status_code == 200, response.text
    started = response.json()
    job_id = started["job_id"]
    assert started["output"].endswith("api-lora.safetensors")
    assert any("no .txt caption" in n for n in started["notes"])

    def training_progress():
        progress = http.get("/sdapi/v1/progress").json()
        ok = progress["state"]["job"] == "train-lora" and progress["state"]["sampling_step"] >= 2
        return progress if ok and progress["current_image"] else None

    progress = wait_until(training_progress)
    assert progress["state"]["sampling_steps"] == 500 and progress["state"]["job_id"] == job_id
    assert "Training LoRA api-lora" in progress["textinfo"] and 0 < progress["progress"] < 1

    # A generation sent meanwhile waits in the queue behind the training run.
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault(
        "r", http.post("/sdapi/v1/txt2img", json={"prompt": "a cube", "steps": 2, "width": 64, "height": 64})))
    worker.start()
    queue = wait_until(lambda: (q := http.get("/sdapi/v1/queue").json())["pending"] >= 2 and q)
    assert queue["running"]["kind"] == "train-lora" and queue["running"]["id"] == job_id
    assert "r" not in result

    status = http.get(f"/sdapi/v1/train/{job_id}").json()
    assert status["job_state"] == "running" and status["state"] == "training" and status["step"] >= 2
    assert status["samples"] and status["losses"][0][0] == 1

    assert http.post(f"/sdapi/v1/train/{job_id}/interrupt").status_code == 200
    final = wait_until(lambda: (s := http.get(f"/sdapi/v1/train/{job_id}").json())["job_state"] == "done" and s)
    assert final["state"] == "interrupted" and final["saves"], final
    stopped_at = final["step"]
    assert 2 <= stopped_at < 500
    worker.join(240)
    assert result["r"].status_code == 200 and len(result["r"].json()["images"]) == 1
    meta = read_metadata(http.data_dir / "models" / "Lora" / "api-lora.safetensors")
    assert meta["ss_steps"] == str(stopped_at) and meta["ss_network_dim"] == "4"

    # Resume from the last save via the API: continues at the stopped step.
    again = http.post("/sdapi/v1/train/lora", json={**body, "resume": True, "max_train_steps": stopped_at + 1,
                                                   "sample_every_n_steps": 0})
    assert again.status_code == 200, again.text
    done = wait_until(lambda: (s := http.get(f"/sdapi/v1/train/{again.json()['job_id']}").json())["job_state"]
                      in ("done", "failed") and s)
    assert done["state"] == "done" and done["step"] == stopped_at + 1, done


def test_train_lora_bad_input_is_a_422_with_fields(http, train_folder, tmp_path):
    bad = http.post("/sdapi/v1/train/lora", json={"name": "x", "data_dir": str(train_folder), "rank": 0,
                                                 "unet_lr": "quick"})
    assert bad.status_code == 422
    fields = {d["field"] for d in bad.json()["detail"]}
    assert fields == {"rank", "unet_lr"}
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = http.post("/sdapi/v1/train/lora", json={"name": "x", "data_dir": str(empty)})
    assert bad.status_code == 422 and "no readable images" in bad.json()["error"]
    assert http.get("/sdapi/v1/train/job-999999").status_code == 404
    assert http.post("/sdapi/v1/train/lora", content=b"{nope", headers={"content-type": "application/json"}
                     ).status_code == 422


def test_a1111_create_and_train_embedding(http, train_folder):
    created = http.post("/sdapi/v1/create/embedding", json={"name": "api-emb", "num_vectors_per_token": 2,
                                                           "init_text": "red"})
    assert created.status_code == 200 and created.json()["info"].startswith("create embedding filename: ")
    assert created.json()["info"].endswith("api-emb.pt")
    again = http.post("/sdapi/v1/create/embedding", json={"name": "api-emb"})
    assert again.status_code == 422 and "already exists" in again.json()["error"]
    trained = http.post("/sdapi/v1/train/embedding", json={
        "embedding_name": "api-emb", "learn_rate": "0.005", "batch_size": 1, "gradient_step": 1,
        "data_root": str(train_folder), "log_directory": "textual_inversion", "training_width": 64,
        "training_height": 64, "steps": 2, "clip_grad_mode": "norm", "clip_grad_value": "1.0",
        "create_image_every": 0, "save_embedding_every": 0, "template_filename": "subject.txt"})
    assert trained.status_code == 200, trained.text
    assert trained.json()["info"].startswith("train embedding complete: filename: ")
    bad = http.post("/sdapi/v1/train/embedding", json={"embedding_name": "api-emb", "data_root": str(train_folder),
                                                      "learn_rate": "abc"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "learn_rate"
