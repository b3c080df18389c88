"""Per-image time of core.generate() against a bare diffusers pipeline call, in one run.

Same pipeline object, scheduler, steps, size, CFG and seed; the two are interleaved and
the median of the repeats is compared, so machine load affects both alike.

    python bench/overhead.py [--ckpt FILE] [--steps 20] [--size 64] [--repeats 7]

Without --ckpt it uses the bundled demo model if present, else the tiny SD 1.x test fixture.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from webui.context import context_from_flags  # noqa: E402
from webui.generation import samplers  # noqa: E402
from webui.generation.request import GenerationRequest  # noqa: E402


def default_checkpoint() -> Path:
    demo = ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
    if demo.exists():
        return demo
    from tests.kit import build_tiny, kit_root

    return build_tiny("sd15", kit_root(ROOT / "tests" / ".cache" / "kit")).single_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=0, help="width=height (default: the model's native size)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sampler", default="Euler a")
    parser.add_argument("--previews", action="store_true", help="keep live previews on (the UI default)")
    opts = parser.parse_args()

    ckpt = opts.ckpt or default_checkpoint()
    data = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    ctx = context_from_flags(["--data-dir", str(data), "--ckpt-dir", str(ckpt.parent), "--ckpt", str(ckpt)],
                             {"live_previews_enable": opts.previews})
    model = ctx.models.current()
    pipe, size = model.pipe, opts.size or model.native_size
    prompt, negative, seed = "a red circle on a blue background", "green", 1234
    request = GenerationRequest(prompt=prompt, negative_prompt=negative, seed=seed, steps=opts.steps, width=size,
                                height=size, sampler_name=opts.sampler, scheduler="Automatic", cfg_scale=7,
                                save_images=False, clip_skip=1)

    def bare() -> float:
        pipe.scheduler = samplers.build_scheduler(model.scheduler_config, opts.sampler, "Automatic")
        pipe.set_progress_bar_config(disable=True)
        start = time.perf_counter()
        pipe(prompt=prompt, negative_prompt=negative, num_inference_steps=opts.steps, guidance_scale=7, width=size,
             height=size, generator=torch.Generator("cpu").manual_seed(seed), output_type="pil")
        return time.perf_counter() - start

    def ours() -> float:
        start = time.perf_counter()
        ctx.queue.run(request)
        return time.perf_counter() - start

    bare(), ours()  # warm-up: first calls pay for lazy imports and allocator growth
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    for _ in range(opts.repeats):
        times["bare"].append(bare())
        times["ours"].append(ours())
    ctx.queue.stop()
    b, o = statistics.median(times["bare"]), statistics.median(times["ours"])
    print(f"model: {model.info.title} ({model.arch}), {size}x{size}, {opts.steps} steps, {opts.sampler}, "
          f"previews {'on' if opts.previews else 'off'}, device {ctx.policy.device}, {opts.repeats} repeats")
    print(f"bare diffusers call: median {b * 1000:.1f} ms/image")
    print(f"core.generate via queue: median {o * 1000:.1f} ms/image")
    print(f"ratio ours/bare: {o / b:.3f}x")


if __name__ == "__main__":
    main()
