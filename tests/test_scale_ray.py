"""Scale-out on a real local Ray cluster started here: 2 CPU replicas on the tiny fixture models.

One cluster and one front serve the whole module (starting replicas is the slow part); the tests
that kill replicas run last. Needs requirements-scale.txt (./launch.sh --test installs it).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import threading
import time

import numpy as np
import pytest
import ray
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ray import serve

from tests.scale_helpers import one_thread
from webui.api.routes import mount_api
from webui.context import context_from_flags, generate_with_checkpoint
from webui.generation.progress import Progress
from webui.generation.request import GenerationRequest
from webui.scale.options import APP_NAME, DEPLOYMENT_NAME


def req(seed: int, **kw) -> GenerationRequest:
    base = dict(prompt="a red circle", negative_prompt="blue", seed=seed, steps=3, width=64, height=64,
                sampler_name="Euler a", save_images=True)
    base.update(kw)
    return GenerationRequest(**base)


def running_replicas() -> int:
    app = serve.status().applications.get(APP_NAME)
    deployment = app.deployments.get(DEPLOYMENT_NAME) if app else None
    return deployment.replica_states.get("RUNNING", 0) if deployment else 0


def wait_until(check, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pid_of(job) -> int:
    match = re.search(r"pid (\d+)", job.worker)
    assert match, job.worker
    return int(match.group(1))


def pixels(image):
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    """A LoRA folder the front, the replicas and the in-process reference share."""
    from tests.kit import build_pipeline
    from tests.networks_kit import write_lora

    folder = tmp_path_factory.mktemp("scale-lora")
    write_lora(folder / "style.safetensors", build_pipeline("sd15"), "sd15")
    return folder


@pytest.fixture(scope="module")
def cluster(tiny_sd15, tiny_sdxl, lora_dir, tmp_path_factory):
    """A front with --ray-replicas 2 on a 2-CPU local Ray cluster, both replicas running."""
    os.environ.pop("RAY_ADDRESS", None)  # never join someone else's cluster from a test
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False,
             log_to_driver=False, object_store_memory=256 * 1024**2)  # results are small; spare the shared RAM
    data = tmp_path_factory.mktemp("scale-data")
    ctx = context_from_flags(["--api", "--data-dir", str(data), "--ckpt-dir", str(tiny_sd15.single_file.parent),
                              "--ckpt", str(tiny_sd15.single_file), "--lora-dir", str(lora_dir),
                              "--ray-replicas", "2"])
    try:
        wait_until(lambda: running_replicas() == 2, 180, "2 running replicas", every=0.5)
        yield ctx
    finally:
        ctx.queue.stop()
        ray.shutdown()


def run_in_process(ctx, request: GenerationRequest):
    """The in-process core's result (what the in-process executor runs), with one torch thread as a replica."""
    return one_thread(generate_with_checkpoint, dataclasses.replace(request, save_images=False), ctx.core, Progress())


@pytest.fixture(scope="module")
def local(tiny_sd15, lora_dir, tmp_path_factory):
    """The in-process executor on a fresh load of the same checkpoint (the session's shared context may
    carry weights other tests patched and restored, which differ in the last bits)."""
    ctx = context_from_flags(["--data-dir", str(tmp_path_factory.mktemp("scale-local")), "--ckpt-dir",
                              str(tiny_sd15.single_file.parent), "--ckpt", str(tiny_sd15.single_file),
                              "--lora-dir", str(lora_dir)])
    yield ctx
    ctx.queue.stop()


@pytest.fixture(scope="module")
def reference(local):
    """The in-process executor's images for seeds 100..103 on the same checkpoint."""
    return {seed: run_in_process(local, req(seed)) for seed in range(100, 104)}


def test_four_clients_five_jobs_each_complete_in_arrival_order(cluster, reference):
    jobs, lock = [], threading.Lock()

    def client(n):
        for i in range(5):
            with lock:  # record the arrival order with the submission
                jobs.append(cluster.submit_txt2img(req(100 + (n + i) % 4), source=f"client{n}"))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    results = [job.wait(180) for job in jobs]
    assert len(results) == 20 and all(job.state == "done" for job in jobs)
    assert [i for i in cluster.queue.dispatched_order if i in {j.id for j in jobs}] == [j.id for j in jobs]
    assert len({job.worker for job in jobs}) == 2, "both replicas took jobs"
    for job, result in zip(jobs, results):
        expected = reference[job.payload.seed]
        assert result.seeds == [job.payload.seed] and result.infotexts == expected.infotexts
        assert np.array_equal(pixels(result.images[0]), pixels(expected.images[0])), "same seed, same image"
    saved = [path for result in results for path in result.paths]
    assert len(saved) == 20 and len(set(saved)) == 20 and all(path.exists() for path in saved)
    assert all(str(path).startswith(str(cluster.paths.outputs_dir)) for path in saved), "the front saves"


def test_img2img_and_inpaint_run_on_replicas_with_the_same_pixels(cluster, local):
    from PIL import Image, ImageDraw

    init = Image.new("RGB", (64, 64), (30, 60, 200))
    ImageDraw.Draw(init).ellipse((16, 16, 48, 48), fill=(220, 30, 30))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((20, 20, 44, 44), fill=255)
    requests = [req(31, mode="img2img", init_images=[init], denoising_strength=0.6),
                req(32, mode="inpaint", init_images=[init], mask=mask, inpaint_full_res=False, mask_blur=2)]
    jobs = [cluster.submit_generation(r) for r in requests]
    results = [job.wait(120) for job in jobs]
    assert [job.kind for job in jobs] == ["img2img", "img2img"]
    for request, result in zip(requests, results):
        expected = run_in_process(local, request)
        assert result.infotexts == expected.infotexts
        assert np.array_equal(pixels(result.images[0]), pixels(expected.images[0]))
        assert all("img2img-images" in str(path) for path in result.paths) and result.paths, "saved where A1111 does"


def test_outpainting_runs_on_a_replica_and_extras_on_the_front(cluster, local):
    from PIL import Image

    from webui.generation.outpaint import OutpaintJob, run_outpaint
    from webui.generation.postprocess import ExtrasRequest

    init = Image.new("RGB", (64, 64), (30, 160, 60))
    outpaint = OutpaintJob(req(33, mode="img2img", init_images=[init], steps=2, denoising_strength=0.8),
                           pixels=32, directions=("left",), mask_blur=2)
    job = cluster.submit_generation(outpaint)
    extras = cluster.submit_extras(ExtrasRequest(images=[init], upscaler_1="Nearest", upscaling_resize=2))
    result, upscaled = job.wait(120), extras.wait(60)
    unsaved = dataclasses.replace(outpaint, request=dataclasses.replace(outpaint.request, save_images=False))
    expected = one_thread(run_outpaint, unsaved, local.core, Progress())
    assert "pid" in job.worker and result.images[0].size == (128, 64)
    assert np.array_equal(pixels(result.images[0]), pixels(expected.images[0])), "the in-process canvas"
    assert len(result.paths) == 1 and "img2img-images" in str(result.paths[0]), "saved once, by the front"
    assert str(result.paths[0]).startswith(str(cluster.paths.outputs_dir))
    assert extras.worker == "front" and upscaled.images[0].size == (128, 128) and upscaled.paths


def test_hires_fix_and_a_lora_run_on_a_replica_with_the_same_pixels(cluster, local):
    # The replica's core comes from the same build_core as the front's: upscalers and networks included.
    request = req(34, prompt="a red circle <lora:style:1>", enable_hr=True, hr_upscaler="Latent",
                  denoising_strength=0.6, save_images=False)
    job = cluster.submit_txt2img(request)
    result = job.wait(120)
    expected = run_in_process(local, request)
    assert "pid" in job.worker and result.images[0].size == (128, 128), "hires fix ran (2x)"
    assert result.infotexts == expected.infotexts and "Lora hashes" in result.infotexts[0]
    assert np.array_equal(pixels(result.images[0]), pixels(expected.images[0]))
    plain = run_in_process(local, dataclasses.replace(request, prompt="a red circle"))
    assert not np.array_equal(pixels(plain.images[0]), pixels(result.images[0])), "the LoRA moved the pixels"


def test_api_progress_shows_the_job_asked_for_and_interrupt_reaches_the_replica(cluster):
    app = FastAPI(docs_url=None, redoc_url=None)
    mount_api(app, cluster)
    client = TestClient(app)
    job = cluster.submit_txt2img(req(7, steps=150, n_iter=4, save_images=True), source="api")
    # Live previews (every 10 steps by default) are made on the replica and shown by the front.
    wait_until(lambda: job.progress.snapshot().preview is not None, 60, "a live preview from the replica")
    body = client.get("/sdapi/v1/progress", params={"job_id": job.id}).json()
    assert body["state"]["job_id"] == job.id and body["state"]["sampling_steps"] == 150 and body["progress"] > 0
    assert body["current_image"], "the replica's live preview, as a PNG"
    assert client.get("/sdapi/v1/progress", params={"job_id": "job-999999"}).status_code == 404
    assert client.post("/sdapi/v1/interrupt", params={"job_id": job.id}).status_code == 200
    result = job.wait(60)
    assert result.interrupted, "the interrupt reached the replica (only a signal from the front sets it)"
    snap = job.progress.snapshot()
    assert snap.job_no * 150 + snap.sampling_step < 600 and result.paths == [], "stopped early; nothing saved"


def test_skip_ends_one_batch_early_on_the_replica(cluster):
    job = cluster.submit_txt2img(req(8, steps=30, n_iter=3))
    wait_until(lambda: job.progress.snapshot().sampling_step >= 1, 60, "the first batch running")
    assert cluster.queue.skip(job.id)
    result = job.wait(60)
    # The skipped batch's partial image comes back marked incomplete (A1111), the other two in full.
    assert not result.interrupted and len(result.images) == 3 and len(result.incomplete) == 1


def test_a_checkpoint_swap_applies_to_the_jobs_submitted_after_it(cluster, tiny_sd15, tiny_sdxl):
    before = cluster.submit_txt2img(req(60, save_images=False))
    swap = cluster.submit_checkpoint(tiny_sdxl.single_file.name)
    after = cluster.submit_txt2img(req(61, save_images=False))
    back = cluster.submit_checkpoint(tiny_sd15.single_file.name)
    last = cluster.submit_txt2img(req(62, save_images=False))
    models = [re.search(r"Model: ([\w-]+)", job.wait(120).infotexts[0]).group(1) for job in (before, after, last)]
    assert models == ["tiny-sd15", "tiny-sdxl", "tiny-sd15"]
    # The front's own swaps run beside the replicas' jobs: the last image may be back before the front's
    # swap to tiny-sd15 has finished, so wait for them before checking where the front ended up.
    swap.wait(120), back.wait(120)
    assert swap.state == back.state == "done"
    assert cluster.models.current().info.name == tiny_sd15.single_file.name, "the front follows the swaps too"


def test_a_job_whose_replica_dies_twice_fails_with_a_message_and_the_queue_goes_on(cluster, monkeypatch):
    from webui.scale.executor import ReplicaLost, _NotStarted
    from webui.jobs import JobFailed

    executor = cluster.queue.executor
    real_stream = executor._stream
    calls = []

    def dying(job, ticket, info):  # a replica that takes the job, then dies; once, no replica takes it at all
        calls.append(job.id)
        if len(calls) == 1:
            raise _NotStarted("no replica yet")
        job.attempts += 1
        raise ReplicaLost("node lost")

    monkeypatch.setattr(executor, "_stream", dying)
    doomed = cluster.submit_txt2img(req(70))
    with pytest.raises(JobFailed, match="stopped, and so did the one it was re-run on"):
        doomed.wait(60)
    assert doomed.attempts == 2 and len(calls) == 3, "a run no replica took does not count; two lost runs end it"
    monkeypatch.setattr(executor, "_stream", real_stream)
    assert cluster.submit_txt2img(req(71)).wait(120).seeds == [71]


def test_jobs_go_to_the_replica_that_holds_their_checkpoint(cluster, tiny_sdxl):
    # Both replicas hold sd15 now. The first sdxl job goes to either (neither holds it) and replaces
    # sd15 there (one checkpoint per replica: sd_checkpoints_limit); from then on each kind has its replica.
    workers = {"sd15": set(), "sdxl": set()}
    for arch in ["sdxl", "sd15"] * 3:
        overrides = {"sd_model_checkpoint": tiny_sdxl.single_file.name} if arch == "sdxl" else {}
        job = cluster.submit_txt2img(req(9, override_settings=overrides, save_images=False))
        result = job.wait(120)
        assert ("tiny-sdxl" in result.infotexts[0]) == (arch == "sdxl")
        workers[arch].add(job.worker)
        time.sleep(1.5)  # let the replica's loaded checkpoint reach Serve's router (pushed every 0.1 s)
    assert len(workers["sd15"]) == 1 and len(workers["sdxl"]) == 1 and workers["sd15"] != workers["sdxl"]


def test_a_second_front_attaches_to_the_deployed_app(cluster, tiny_sd15, tmp_path):
    # What a front does under a KubeRay RayService: --ray-address alone attaches to the sd-webui app.
    # It loads its startup checkpoint behind the page, as the server does: jobs sent meanwhile wait for it.
    from webui import cli
    from webui.context import build_context
    from webui.paths import Paths
    from webui.scale.front import front_policy
    from webui.settings import Settings

    args = cli.parse_args(["--data-dir", str(tmp_path), "--ckpt-dir", str(tiny_sd15.single_file.parent),
                           "--ckpt", str(tiny_sd15.single_file), "--ray-address", "auto"])
    paths = Paths.from_args(args)
    front = build_context(args, paths, front_policy(args), Settings(path=None), load_in_background=True)
    try:
        executor = front.queue.executor
        tickets = []
        make_ticket = executor._ticket
        executor._ticket = lambda job, info: tickets.append(make_ticket(job, info)) or tickets[-1]
        assert not executor.plan.deploy and executor._gate.limit == 2, "the app's replica count, read from Serve"
        vae = front.submit_vae("None")  # a front job later generations read (sd_vae), queued before them
        result = front.submit_txt2img(req(55)).wait(120)
        assert front.startup_job.state == vae.state == "done" and not front.loading
        assert result.seeds == [55] and result.paths and result.paths[0].is_relative_to(tmp_path)
        assert "tiny-sd15" in result.infotexts[0] and tickets[0].settings["sd_vae"] == "None"
    finally:
        front.queue.stop()
    assert running_replicas() == 2, "an attached front leaves the app running when it stops"


def test_a_replica_killed_mid_job_costs_one_rerun_and_no_job(cluster, local):
    jobs = [cluster.submit_txt2img(req(100 + i, steps=20)) for i in range(3)]
    victim = wait_until(lambda: next((j for j in jobs if "pid" in j.worker and not j.done), None), 60,
                        "a job started on a replica", every=0.005)
    os.kill(pid_of(victim), signal.SIGKILL)
    results = [job.wait(240) for job in jobs]
    assert victim.attempts == 2 and all(job.state == "done" and job.attempts <= 2 for job in jobs)
    saved = [path for result in results for path in result.paths]
    assert len(saved) == 3 and len(set(saved)) == 3, "each job saved once"
    assert [result.seeds for result in results] == [[100], [101], [102]]
    again = run_in_process(local, victim.payload)
    assert np.array_equal(pixels(again.images[0]), pixels(results[jobs.index(victim)].images[0])), "re-run, same image"


def test_with_every_replica_gone_jobs_wait_and_progress_says_why(cluster):
    # Right after the previous test one replica runs and the killed one is restarting: kill the
    # running one too, so none runs while Serve brings them back.
    from ray.serve.context import _get_global_client

    def kill_running() -> bool:
        # Again until none runs: the replica the previous test killed can come back between a look
        # at Serve's details and the kill (seen once in a full run).
        details = _get_global_client().get_serve_details()
        replicas = details["applications"][APP_NAME]["deployments"][DEPLOYMENT_NAME]["replicas"]
        for pid in {r["pid"] for r in replicas if r["state"] == "RUNNING" and r.get("pid")}:
            with contextlib.suppress(ProcessLookupError):  # Serve's details may still list one just killed
                os.kill(pid, signal.SIGKILL)
        return running_replicas() == 0

    wait_until(kill_running, 60, "Serve to notice no replica runs", every=0.5)
    job = cluster.submit_txt2img(req(101, save_images=False))
    wait_until(lambda: "none is running" in job.progress.snapshot().textinfo, 30, "the waiting job to say why")
    assert job.state == "running" and not job.done
    app = FastAPI(docs_url=None, redoc_url=None)
    mount_api(app, cluster)
    body = TestClient(app).get("/sdapi/v1/progress").json()
    assert body["state"]["job_id"] == job.id and "none is running" in body["textinfo"], "the front keeps serving"
    result = job.wait(240)
    assert result.seeds == [101] and job.attempts == 1
