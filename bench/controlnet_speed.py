"""Per-step time with one ControlNet unit through core.generate, against a bare diffusers ControlNet call.

Same checkpoint modules, ControlNetModel, scheduler, steps, size, CFG, seed and control map.
Per-step time is measured between the first and the last step callback of a run (so prompt
encoding, preprocessing and decoding are outside it, on both sides); the two paths are
interleaved and the medians of the repeats are compared, so machine load hits both alike.

    .venv/bin/python bench/controlnet_speed.py [--size 256] [--steps 12] [--repeats 5] [--mode Balanced]

Defaults: the bundled demo model and demo ControlNet (the issue's target: ratio <= 1.02).
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from webui.generation import samplers  # noqa: E402
from webui.generation.progress import Progress  # noqa: E402

DEMO_MODEL = ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
DEMO_CONTROLNET = ROOT / "models" / "ControlNet" / "demo-shapes-canny-scribble.safetensors"


class StepClock(Progress):
    """A Progress that remembers when each step ended."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def step(self, step: int, latents=None) -> None:
        self.times.append(time.perf_counter())
        super().step(step, latents)


def per_step(times: list[float]) -> float:
    return (times[-1] - times[0]) / (len(times) - 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path, default=DEMO_MODEL)
    p.add_argument("--controlnet", type=Path, default=DEMO_CONTROLNET)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sampler", default="Euler a")
    p.add_argument("--mode", default="Balanced", help="control mode of the unit")
    p.add_argument("--threads", type=int, default=1)
    opts = p.parse_args(argv)
    torch.set_num_threads(opts.threads)

    from diffusers import StableDiffusionControlNetPipeline

    from webui.context import context_from_flags
    from webui.generation.controlnet import ControlNetUnit
    from webui.generation.core import generate
    from webui.generation.request import GenerationRequest
    from webui.training.shapes_control import scribble_map
    from webui.training.shapes import ShapeSpec

    data = Path(tempfile.mkdtemp(prefix="bench-cn-"))
    ctx = context_from_flags(["--data-dir", str(data), "--ckpt-dir", str(opts.ckpt.parent), "--ckpt", str(opts.ckpt),
                              "--controlnet-dir", str(opts.controlnet.parent)], {"live_previews_enable": False})
    model = ctx.models.current()
    pipe, size = model.pipe, opts.size
    import random

    control = scribble_map(ShapeSpec("square", "red", "blue", 20, 30, 24), random.Random(1))
    control_rgb = np.repeat(control[:, :, None], 3, axis=2)
    prompt, seed = "a red square on a blue background", 1234
    unit = ControlNetUnit(module="none", model=opts.controlnet.stem, image=control_rgb, resize_mode="Just Resize",
                          control_mode=opts.mode)
    request = GenerationRequest(prompt=prompt, seed=seed, steps=opts.steps, width=size, height=size,
                                sampler_name=opts.sampler, scheduler="Automatic", cfg_scale=7, save_images=False,
                                clip_skip=1, controlnet_units=[unit])
    loaded = ctx.controlnets.get(opts.controlnet.stem, torch_dtype=pipe.unet.dtype)
    bare_pipe = StableDiffusionControlNetPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
        controlnet=loaded.model, scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    bare_pipe.set_progress_bar_config(disable=True)
    control_tensor = torch.from_numpy(control_rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
    control_tensor = torch.nn.functional.interpolate(control_tensor, size=(size, size), mode="bilinear")

    def bare() -> float:
        bare_pipe.scheduler = samplers.build_scheduler(model.scheduler_config, opts.sampler, "Automatic")
        times: list[float] = []

        def clock(p, i, t, kw):
            times.append(time.perf_counter())
            return kw

        bare_pipe(prompt=prompt, image=control_tensor, num_inference_steps=opts.steps, guidance_scale=7, width=size,
                  height=size, generator=torch.Generator("cpu").manual_seed(seed), output_type="latent",
                  callback_on_step_end=clock)
        return per_step(times)

    def ours() -> float:
        clock = StepClock()
        generate(request, ctx.core, clock)
        return per_step(clock.times)

    bare(), ours()  # warm-up
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    for i in range(opts.repeats):  # alternate which goes first, so drift in machine load cancels
        order = (("bare", bare), ("ours", ours)) if i % 2 == 0 else (("ours", ours), ("bare", bare))
        for name, fn in order:
            times[name].append(fn())
    ctx.queue.stop()
    b, o = statistics.median(times["bare"]), statistics.median(times["ours"])
    print(f"size {size}x{size}, {opts.steps} steps, {opts.sampler}, one unit ({opts.mode}), {opts.repeats} repeats")
    print(f"per step (median): bare diffusers ControlNet pipeline {b * 1000:.1f} ms, core.generate with one unit "
          f"{o * 1000:.1f} ms, ratio {o / b:.3f}")
    # On a shared machine the fastest run is the least disturbed one: its ratio is the cost of our path.
    print(f"per step (fastest run): bare {min(times['bare']) * 1000:.1f} ms, ours {min(times['ours']) * 1000:.1f} ms, "
          f"ratio {min(times['ours']) / min(times['bare']):.3f}")
    print(f"all runs (ms): bare {[round(t * 1000, 1) for t in times['bare']]}, "
          f"ours {[round(t * 1000, 1) for t in times['ours']]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
