"""Scale-out throughput on this machine: the in-process worker vs 1 and 2 Ray Serve replicas, one thread each.

All three run in one process on the same checkpoint, request and job count, measured in turn
round after round, so machine load affects them alike (check `uptime` first: every replica
wants a free core). "1 replica" is the 2-replica deployment with one job in flight at a time.
Also the Ray path's per-job overhead: the time a job takes as seen by the front minus the
generation time the replica measured (dispatch, pickling, streamed progress, result transfer),
as a share of the latter, with the same measure for the in-process queue beside it.

    python bench/scale_out.py [--ckpt FILE] [--jobs 12] [--steps 20] [--rounds 3]

Without --ckpt it uses the bundled demo model. Goals: 2 replicas >= 1.8x one replica's
throughput; overhead <= 5 % per job on the demo model.

On a machine without a free core per replica the wall-clock ratio measures the machine's load,
not the app, so the replicas' CPU seconds per job (user + system, every thread of the replica
processes, read with psutil) are reported too: equal CPU per job with 1 and 2 replicas means
running two adds no work of its own, and throughput scales with the cores (or GPUs) given.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("RAY_ADDRESS", None)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webui.allocator import configure_allocator  # noqa: E402

configure_allocator()  # as app.py does, before torch and before any thread (replicas get MALLOC_ARENA_MAX=1)

import torch  # noqa: E402

from webui.context import context_from_flags  # noqa: E402
from webui.generation.request import GenerationRequest  # noqa: E402


def throughput(ctx, request: GenerationRequest, jobs: int) -> tuple[float, list]:
    """Submit `jobs` at once (seeds differ), wait for all; jobs per second and the jobs."""
    started = time.perf_counter()
    submitted = [ctx.submit_txt2img(dataclasses.replace(request, seed=request.seed + i), source="bench")
                 for i in range(jobs)]
    for job in submitted:
        job.wait(3600)
    return jobs / (time.perf_counter() - started), submitted


def replica_cpu_seconds() -> float:
    """User + system CPU seconds of every running replica process so far."""
    import psutil
    from ray.serve.context import _get_global_client

    from webui.scale.options import APP_NAME, DEPLOYMENT_NAME

    details = _get_global_client().get_serve_details()
    replicas = details["applications"][APP_NAME]["deployments"][DEPLOYMENT_NAME]["replicas"]
    total = 0.0
    for pid in {r["pid"] for r in replicas if r.get("pid")}:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def measured(ctx, request: GenerationRequest, jobs: int, cpu: list[float]) -> float:
    """throughput() of the scaled context, appending the replicas' CPU seconds per job to `cpu`."""
    before = replica_cpu_seconds()
    rate = throughput(ctx, request, jobs)[0]
    cpu.append((replica_cpu_seconds() - before) / jobs)
    return rate


def one_by_one(ctx, request: GenerationRequest, jobs: int) -> list[tuple[float, float]]:
    """Jobs one at a time: (seconds at the front from submit to result, seconds the core reported)."""
    out = []
    for i in range(jobs):
        started = time.perf_counter()
        job = ctx.submit_txt2img(dataclasses.replace(request, seed=request.seed + i), source="bench")
        result = job.wait(3600)
        out.append((time.perf_counter() - started, result.timings["total"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors")
    parser.add_argument("--jobs", type=int, default=12, help="jobs per throughput measurement")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="repeats of each measurement (median reported)")
    opts = parser.parse_args()

    import diffusers.utils.logging as diffusers_logging
    import ray

    diffusers_logging.disable_progress_bar()
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs", flush=True)
    data = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    base = ["--data-dir", str(data), "--ckpt-dir", str(opts.ckpt.parent), "--ckpt", str(opts.ckpt)]
    settings = {"live_previews_enable": False}
    request = GenerationRequest(prompt="a red circle on a blue background", negative_prompt="green", seed=1000,
                                steps=opts.steps, width=0, height=0, sampler_name="Euler a", save_images=False)
    torch.set_num_threads(1)  # the in-process worker gets one thread, as each replica does
    local = context_from_flags(base, settings)
    size = local.models.current().native_size
    request = dataclasses.replace(request, width=size, height=size)
    print(f"checkpoint {opts.ckpt.name} at {size}px, {opts.steps} steps, {opts.jobs} jobs per measurement", flush=True)

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False,
             object_store_memory=256 * 1024**2)
    rates: dict[str, list[float]] = {"in-process": [], "1 replica": [], "2 replicas": []}
    overhead: list[float] = []
    cpu: dict[str, list[float]] = {"1 replica": [], "2 replicas": []}
    local_overhead: list[float] = []
    # One deployment of 2 replicas; "1 replica" lets one job in flight at a time, so only one replica
    # works. The three are measured in turn, round after round, so a change of machine load between
    # rounds hits all three alike (redeploying per count would take minutes between them).
    scaled = context_from_flags(base + ["--ray-replicas", "2"], settings)
    executor = scaled.queue.executor
    try:
        throughput(local, request, 2)  # warm up: lazy imports, allocator growth
        throughput(scaled, request, 4)  # warm up: replicas started, checkpoint loaded on both
        for _ in range(opts.rounds):
            rates["in-process"].append(throughput(local, request, opts.jobs)[0])
            local_overhead += [(front - core) / core for front, core in one_by_one(local, request, 3)]
            executor.limit_in_flight(1)
            rates["1 replica"].append(measured(scaled, request, opts.jobs, cpu["1 replica"]))
            overhead += [(front - core) / core for front, core in one_by_one(scaled, request, 3)]
            executor.limit_in_flight(2)
            rates["2 replicas"].append(measured(scaled, request, opts.jobs, cpu["2 replicas"]))
    finally:
        scaled.queue.stop()
        local.queue.stop()
        ray.shutdown()

    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\n{'executor':<12} {'jobs/s':>8}  (median; each round)")
    for name, value in median.items():
        print(f"{name:<12} {value:8.3f}  {' '.join(f'{v:.3f}' for v in rates[name])}")
    print(f"\n2 replicas / 1 replica     = {median['2 replicas'] / median['1 replica']:.2f}x  (goal >= 1.8x)")
    print(f"1 replica / in-process     = {median['1 replica'] / median['in-process']:.2f}x")
    print(f"2 replicas / in-process    = {median['2 replicas'] / median['in-process']:.2f}x")
    cpu_per_job = {name: statistics.median(values) for name, values in cpu.items()}
    print(f"replica CPU s per job      = {cpu_per_job['1 replica']:.3f} (1 replica), "
          f"{cpu_per_job['2 replicas']:.3f} (2 replicas): 2 / 1 = "
          f"{cpu_per_job['2 replicas'] / cpu_per_job['1 replica']:.2f}x (1.00 = a second replica adds no work)")
    print(f"2 replicas with a free core each (CPU-bound estimate) = "
          f"{2 * cpu_per_job['1 replica'] / cpu_per_job['2 replicas']:.2f}x one replica")
    print(f"Ray overhead per job       = {100 * statistics.median(overhead):.1f} % of the replica's generation time "
          f"(median of {len(overhead)}; goal <= 5 %)")
    print(f"in-process queue overhead  = {100 * statistics.median(local_overhead):.1f} % (the same measure, no Ray)")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
