"""Hires fix, measured (issue 10): quality on the demo model, time against a bare diffusers pair.

- ``--quality``: the demo model, txt2img 64 px + Hires. fix 2x (128 px) with a latent and a pixel
  upscaler; the demo's shape/colour classifier (webui.training.shapes.classify) reads every
  upscaled image. Target: >= 90 % colour and >= 80 % shape.
- ``--speed``: one hires-fix image through our job queue against a bare diffusers
  ``StableDiffusionPipeline`` (latents out) + the same latent upscale + a
  ``StableDiffusionImg2ImgPipeline`` built from the same components, with the same seed, the
  same scheduler and the same number of UNet calls in each pass (counted, and printed).
  Interleaved, medians of wall and process CPU time. Target: <= 1.02x. Run it on the real
  SD 1.5 architecture (``tools/make_random_sd15.py``); hold the heavy lock on a shared machine.

    python bench/hires.py --quality [--out bench/results/hires]
    flock /work/coord/heavy.lock python bench/hires.py --speed --ckpt random-sd15.safetensors \
        [--size 64] [--steps 6] [--hr-steps 3] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
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

DEMO = ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
PROMPT, NEGATIVE, SEED = "a red circle on a blue background", "green", 1234


def make_context(ckpt: Path):
    from webui.context import context_from_flags

    data = tempfile.mkdtemp(prefix="bench-hires-")
    return context_from_flags(["--data-dir", data, "--ckpt-dir", str(ckpt.parent), "--ckpt", str(ckpt)],
                              {"live_previews_enable": False})


def quality(opts) -> dict:
    from bench.eval_demo import contact_sheet, evaluate, prompt_set
    from webui.generation.request import GenerationRequest

    ctx = make_context(DEMO)
    cases = prompt_set(backgrounds_per_pair=opts.backgrounds, seeds=(1,))
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for upscaler in ("Latent", "Lanczos"):
            sizes = set()

            def generate(prompt, negative, seed, upscaler=upscaler):
                request = GenerationRequest(prompt=prompt, negative_prompt=negative, seed=seed, steps=20, cfg_scale=7,
                                            width=64, height=64, sampler_name="DPM++ 2M", save_images=False,
                                            enable_hr=True, hr_scale=2, hr_upscaler=upscaler,
                                            denoising_strength=0.55 if upscaler == "Lanczos" else 0.6)
                image = ctx.queue.run(request, timeout=600).images[0]
                sizes.add(image.size)
                return image

            summary, images, ok = evaluate(generate, cases)
            summary["sizes"] = sorted(sizes)
            contact_sheet(images, ok).save(out / f"hires-{upscaler.lower()}.png")
            results[upscaler] = summary
            print(f"{upscaler}: colour {summary['colour_accuracy']:.1%} shape {summary['shape_accuracy']:.1%} "
                  f"over {summary['images']} images of {summary['sizes']}", flush=True)
    finally:
        ctx.queue.stop()
    return results


def _count_calls(unet, counter: list):
    return unet.register_forward_hook(lambda *a: counter.append(1))


def speed(opts) -> dict:
    from diffusers import StableDiffusionImg2ImgPipeline

    from webui.generation import samplers
    from webui.generation.request import GenerationRequest

    ctx = make_context(Path(opts.ckpt))
    model = ctx.models.current()
    pipe = model.pipe
    size, big = opts.size, opts.size * 2
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=SEED, steps=opts.steps, width=size,
                                height=size, sampler_name="Euler", scheduler="Automatic", cfg_scale=7,
                                save_images=False, clip_skip=1, enable_hr=True, hr_scale=2, hr_upscaler="Latent",
                                hr_second_pass_steps=opts.hr_steps, denoising_strength=opts.denoise)
    calls: list = []
    hook = _count_calls(pipe.unet, calls)

    def ours() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        image = ctx.queue.run(request, timeout=3600).images[0]
        assert image.size == (big, big), image.size
        return time.perf_counter() - wall, time.process_time() - cpu

    ours()  # warm-up, and the UNet calls our two passes make
    our_calls = len(calls)
    first_calls = opts.steps
    second_calls = our_calls - first_calls
    # The bare img2img runs int(steps * strength) steps; pick its step count so it makes as many
    # UNet calls as our second pass (A1111 runs t_enc + 1 there).
    bare_steps = max(1, round(second_calls / opts.denoise))
    while int(bare_steps * opts.denoise) < second_calls:
        bare_steps += 1
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    for p in (pipe, img2img):
        p.set_progress_bar_config(disable=True)

    def bare() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        scheduler = samplers.build_scheduler(model.scheduler_config, "Euler", "Automatic")
        pipe.scheduler = scheduler
        generator = torch.Generator("cpu").manual_seed(SEED)
        latents = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=opts.steps, guidance_scale=7,
                       width=size, height=size, generator=generator, output_type="latent").images
        latents = torch.nn.functional.interpolate(latents, scale_factor=2, mode="bilinear", align_corners=False)
        img2img.scheduler = samplers.build_scheduler(model.scheduler_config, "Euler", "Automatic")
        image = img2img(prompt=PROMPT, negative_prompt=NEGATIVE, image=latents, strength=opts.denoise,
                        num_inference_steps=bare_steps, guidance_scale=7, generator=generator,
                        output_type="pil").images[0]
        assert image.size == (big, big), image.size
        return time.perf_counter() - wall, time.process_time() - cpu

    calls.clear()
    bare()
    bare_calls = len(calls)
    times: dict[str, list] = {"bare": [], "ours": []}
    try:
        for _ in range(opts.repeats):
            times["bare"].append(bare())
            times["ours"].append(ours())
    finally:
        hook.remove()
        ctx.queue.stop()
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    result = {"unet_calls": {"ours": our_calls, "bare": bare_calls}, "size": [size, big], "steps": opts.steps,
              "hr_steps": opts.hr_steps, "denoise": opts.denoise, "times": times,
              "median_wall": {k: v[0] for k, v in med.items()}, "median_cpu": {k: v[1] for k, v in med.items()},
              "ratio_wall": med["ours"][0] / med["bare"][0], "ratio_cpu": med["ours"][1] / med["bare"][1]}
    print(f"UNet calls ours {our_calls} / bare {bare_calls}; median wall ours {med['ours'][0]:.2f} s, "
          f"bare {med['bare'][0]:.2f} s -> {result['ratio_wall']:.3f}x; CPU {result['ratio_cpu']:.3f}x", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--ckpt", default=str(DEMO))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--hr-steps", type=int, default=3)
    parser.add_argument("--denoise", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backgrounds", type=int, default=2, help="backgrounds per colour x shape (quality)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "hires"))
    opts = parser.parse_args()
    report = {}
    if opts.quality:
        report["quality"] = quality(opts)
    if opts.speed:
        report["speed"] = speed(opts)
    if not report:
        parser.error("say --quality and/or --speed")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "results.json" if opts.quality and opts.speed else ("quality.json" if opts.quality else "speed.json")
    (out / name).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
