"""Per-image time of our generation path against a bare diffusers pipeline call, in one run.

Two modes, both interleaving the two sides and comparing medians, so machine load affects both
alike:

- in-process (default): ``core.generate`` through the job queue's worker thread against a bare
  call of the same pipeline object on the main thread (same scheduler, steps, size, CFG, seed);
- ``--api``: the app as a user starts it (``./launch.sh --api``, its own process, default
  settings) answering ``POST /sdapi/v1/txt2img``, against a bare diffusers script in another
  process that loads the same file with ``from_single_file`` and calls the pipeline on its main
  thread. This is the number users see.

    python bench/overhead.py [--ckpt FILE] [--steps 20] [--size 64] [--repeats 7] [--api]

Without --ckpt it uses the bundled demo model if present, else the tiny SD 1.x test fixture.
Issue 14's setting: ``--ckpt <tools/make_random_sd15.py output> --steps 8 --size 64 --repeats 3``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webui.allocator import configure_allocator  # noqa: E402

configure_allocator()  # as app.py does, before torch and before any thread

import torch  # noqa: E402

PROMPT, NEGATIVE, SEED = "a red circle on a blue background", "green", 1234


def default_checkpoint() -> Path:
    demo = ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
    if demo.exists():
        return demo
    from tests.kit import build_tiny, kit_root

    return build_tiny("sd15", kit_root(ROOT / "tests" / ".cache" / "kit")).single_file


def in_process(opts, ckpt: Path) -> dict[str, list[float]]:
    from webui.context import context_from_flags
    from webui.generation import samplers
    from webui.generation.request import GenerationRequest

    data = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    ctx = context_from_flags(["--data-dir", str(data), "--ckpt-dir", str(ckpt.parent), "--ckpt", str(ckpt)],
                             {"live_previews_enable": opts.previews})
    model = ctx.models.current()
    pipe, size = model.pipe, opts.size or model.native_size
    opts.size = size
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=SEED, steps=opts.steps, width=size,
                                height=size, sampler_name=opts.sampler, scheduler="Automatic", cfg_scale=7,
                                save_images=False, clip_skip=1)

    def bare() -> float:
        pipe.scheduler = samplers.build_scheduler(model.scheduler_config, opts.sampler, "Automatic")
        pipe.set_progress_bar_config(disable=True)
        start = time.perf_counter()
        pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=opts.steps, guidance_scale=7, width=size,
             height=size, generator=torch.Generator("cpu").manual_seed(SEED), output_type="pil")
        return time.perf_counter() - start

    def ours() -> float:
        start = time.perf_counter()
        ctx.queue.run(request)
        return time.perf_counter() - start

    try:
        return interleave(bare, ours, opts.repeats)
    finally:
        ctx.queue.stop()


def interleave(bare, ours, repeats: int) -> dict[str, list[float]]:
    bare(), ours()  # warm-up: first calls pay for lazy imports and allocator growth
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    for _ in range(repeats):
        times["bare"].append(bare())
        times["ours"].append(ours())
    return times


# --- the --api mode: two processes --------------------------------------------------------------

def bare_server(ckpt: Path, config: Path, sampler: str) -> None:
    """A bare diffusers script: load with from_single_file, then run one image per stdin line."""
    from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_single_file(str(ckpt), config=str(config), local_files_only=True,
                                                    torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    cls = EulerAncestralDiscreteScheduler if sampler == "Euler a" else EulerDiscreteScheduler
    pipe.scheduler = cls.from_config(pipe.scheduler.config)
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        start = time.perf_counter()
        pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=job["steps"], guidance_scale=7,
             width=job["size"], height=job["size"], generator=torch.Generator("cpu").manual_seed(SEED),
             output_type="pil")
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


def config_for(ckpt: Path) -> Path:
    from webui.models.probe import probe_checkpoint

    return probe_checkpoint(ckpt, configs_dir=ROOT / "configs").config_dir


def over_api(opts, ckpt: Path) -> dict[str, list[float]]:
    import httpx

    from tests.server_fixture import free_port

    size = opts.size or 512
    opts.size = size
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-api-"))
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MALLOC_ARENA_MAX", None)  # the app must not depend on the caller's environment
    app_log = open(work / "app.log", "wb")
    app = subprocess.Popen([str(ROOT / "launch.sh"), "--api", "--port", str(port), "--data-dir", str(work / "data"),
                            "--ckpt-dir", str(ckpt.parent), "--ckpt", str(ckpt)], cwd=ROOT, env=env,
                           stdout=app_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    bare = subprocess.Popen([sys.executable, __file__, "--bare-server", "--ckpt", str(ckpt), "--sampler", opts.sampler,
                             "--config", str(config_for(ckpt))], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert bare.stdout.readline().strip() == "ready", "bare process failed to load the checkpoint"
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(url + "/sdapi/v1/sd-models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if app.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"app did not start; see {work / 'app.log'}")
            time.sleep(0.5)
        body = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": opts.steps, "width": size,
                "height": size, "sampler_name": opts.sampler, "scheduler": "Automatic", "cfg_scale": 7}
        client = httpx.Client(timeout=3600)

        def ours() -> float:
            start = time.perf_counter()
            response = client.post(url + "/sdapi/v1/txt2img", json=body)
            response.raise_for_status()
            return time.perf_counter() - start

        def bare_call() -> float:
            start = time.perf_counter()
            bare.stdin.write(json.dumps({"steps": opts.steps, "size": size}) + "\n")
            bare.stdin.flush()
            json.loads(bare.stdout.readline())
            return time.perf_counter() - start

        return interleave(bare_call, ours, opts.repeats)
    finally:
        bare.kill()
        app.terminate()
        try:
            app.wait(30)
        except subprocess.TimeoutExpired:
            app.kill()
        app_log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=0, help="width=height (default: the model's native size)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sampler", default="Euler a")
    parser.add_argument("--previews", action="store_true", help="in-process mode: keep live previews on")
    parser.add_argument("--api", action="store_true", help="app process over HTTP vs a bare diffusers process")
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()

    ckpt = (opts.ckpt or default_checkpoint()).resolve()
    if opts.bare_server:
        return bare_server(ckpt, opts.config, opts.sampler)
    started = time.perf_counter()
    times = over_api(opts, ckpt) if opts.api else in_process(opts, ckpt)
    b, o = statistics.median(times["bare"]), statistics.median(times["ours"])
    what = ("app over /sdapi/v1/txt2img (./launch.sh --api)", "bare diffusers process") if opts.api else \
        ("core.generate via the job queue", "bare diffusers call, same pipeline")
    print(f"checkpoint: {ckpt.name}, {opts.size}x{opts.size}, {opts.steps} steps, {opts.sampler}, "
          f"{opts.repeats} repeats, load avg {os.getloadavg()[0]:.2f}, {time.perf_counter() - started:.0f}s in all")
    print(f"{what[1]}: median {b * 1000:.1f} ms/image  {[round(t, 2) for t in times['bare']]}")
    print(f"{what[0]}: median {o * 1000:.1f} ms/image  {[round(t, 2) for t in times['ours']]}")
    print(f"ratio ours/bare: {o / b:.3f}x")


if __name__ == "__main__":
    main()
