"""Quality evaluation of the bundled demo model (coloured shapes).

Generates every colour x shape on several backgrounds with 2+ seeds, reads
each image back with the pixel classifier in ``webui.training.shapes`` and
prints colour / shape / background accuracy plus the negative-prompt check.
Writes a contact sheet PNG (green frame: colour and shape right, red: wrong).

    .venv/bin/python bench/eval_demo.py [--model models/Stable-diffusion/demo-shapes.safetensors]
                                        [--pipeline work-demo/pipeline] [--out bench/results/demo-eval]

``evaluate`` takes any ``generate(prompt, negative, seed) -> PIL.Image``, so
the project's generation core can be measured the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webui.training.shapes import BACKGROUNDS, SHAPE_COLOURS, SHAPES, canonical_caption, classify  # noqa: E402

Generate = Callable[[str, str, int], Image.Image]


@dataclass(frozen=True)
class Case:
    """One prompt of the fixed evaluation set."""

    colour: str
    shape: str
    background: str
    seed: int

    @property
    def prompt(self) -> str:
        return canonical_caption(self.shape, self.colour, self.background)


def prompt_set(backgrounds_per_pair: int = 3, seeds: tuple[int, ...] = (1, 2)) -> list[Case]:
    """Every shape colour x shape, on ``backgrounds_per_pair`` backgrounds, each with every seed.

    Backgrounds rotate through the palette so that every background colour
    appears about equally often over the set.
    """
    cases = []
    k = 0
    for colour in SHAPE_COLOURS:
        others = [b for b in BACKGROUNDS if b != colour]
        for shape in SHAPES:
            for j in range(backgrounds_per_pair):
                background = others[(k + j * 3) % len(others)]
                cases.extend(Case(colour, shape, background, seed) for seed in seeds)
            k += 1
    return cases


def pipeline_generate(pipe, steps: int = 20, cfg: float = 7.0, size: int = 64) -> Generate:
    """A plain diffusers call (the pipeline's own scheduler; Euler a for the demo model)."""
    import torch

    def generate(prompt: str, negative: str, seed: int) -> Image.Image:
        return pipe(prompt, negative_prompt=negative or None, num_inference_steps=steps, guidance_scale=cfg,
                    height=size, width=size, generator=torch.Generator().manual_seed(seed)).images[0]

    return generate


def core_generate(model: str, sampler: str = "DPM++ 2M", steps: int = 20, cfg: float = 7.0,
                  size: int = 64) -> Generate:
    """The project's real path: GenerationRequest -> job queue -> core.generate (the UI's defaults)."""
    import tempfile

    from webui.context import context_from_flags
    from webui.generation.request import GenerationRequest

    path = Path(model).resolve()
    ctx = context_from_flags(["--data-dir", tempfile.mkdtemp(prefix="eval-demo-"), "--ckpt-dir", str(path.parent),
                              "--ckpt", str(path)], {"live_previews_enable": False})

    def generate(prompt: str, negative: str, seed: int) -> Image.Image:
        request = GenerationRequest(prompt=prompt, negative_prompt=negative, seed=seed, steps=steps, cfg_scale=cfg,
                                    width=size, height=size, sampler_name=sampler, save_images=False)
        return ctx.queue.run(request).images[0]

    return generate


def load_pipeline(model: str | None = None, pipeline_dir: str | None = None):
    """The shipped single file (with its sidecar config), or a diffusers folder."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    if pipeline_dir:
        pipe = StableDiffusionPipeline.from_pretrained(pipeline_dir, local_files_only=True)
    else:
        path = Path(model)
        pipe = StableDiffusionPipeline.from_single_file(
            str(path), config=str(path.with_suffix(".config")), local_files_only=True,
            torch_dtype=torch.float32)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def evaluate(generate: Generate, cases: list[Case]) -> tuple[dict, list[Image.Image], list[bool]]:
    """Generate and classify every case; returns (summary, images, per-image correctness)."""
    images, ok = [], []
    colour_hits = shape_hits = bg_hits = 0
    misses = []
    for case in cases:
        img = generate(case.prompt, "", case.seed)
        r = classify(img)
        c, s, b = r.colour == case.colour, r.shape == case.shape, r.background == case.background
        colour_hits += c
        shape_hits += s
        bg_hits += b
        images.append(img)
        ok.append(c and s)
        if not (c and s):
            misses.append(f"{case.prompt} (seed {case.seed}) -> {r.colour} {r.shape} on {r.background} "
                          f"fill {r.fill_ratio:.2f}")
    n = len(cases)
    summary = {"images": n, "colour_accuracy": colour_hits / n, "shape_accuracy": shape_hits / n,
               "background_accuracy": bg_hits / n, "misses": misses}
    return summary, images, ok


def negative_check(generate: Generate, seeds=range(10)) -> dict:
    """Red shapes (and red backgrounds) over ``seeds``, without and with the negative prompt 'red'.

    The issue's check is 'a circle on a blue background'; 'a circle' is added
    because without a negative it does draw red, so the effect is visible.
    """
    result = {}
    for prompt in ("a circle on a blue background", "a circle"):
        plain = [classify(generate(prompt, "", s)) for s in seeds]
        negated = [classify(generate(prompt, "red", s)) for s in seeds]
        result[prompt] = {
            "red_shapes_without_negative": sum(r.colour == "red" for r in plain),
            "red_shapes_with_negative_red": sum(r.colour == "red" for r in negated),
            "red_backgrounds_without_negative": sum(r.background == "red" for r in plain),
            "red_backgrounds_with_negative_red": sum(r.background == "red" for r in negated),
            "shape_colours_with_negative_red": [r.colour for r in negated],
        }
    return result


def contact_sheet(images: list[Image.Image], ok: list[bool], columns: int = 12) -> Image.Image:
    """A grid of the images, each framed green (right) or red (wrong)."""
    cell = 68
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell, rows * cell), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for i, (img, good) in enumerate(zip(images, ok)):
        x, y = (i % columns) * cell, (i // columns) * cell
        draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(40, 200, 60) if good else (230, 30, 30))
        sheet.paste(img.convert("RGB").resize((64, 64)), (x + 2, y + 2))
    return sheet


def main(argv=None) -> int:
    """Run the full evaluation and print a JSON summary."""
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "models/Stable-diffusion/demo-shapes.safetensors"))
    p.add_argument("--pipeline", default=None, help="evaluate a diffusers folder with a plain pipeline call "
                   "(Euler a) instead of the generation core (e.g. a mid-run checkpoint)")
    p.add_argument("--sampler", default="DPM++ 2M", help="A1111 sampler for the core path (the UI default)")
    p.add_argument("--out", default=str(ROOT / "bench/results/demo-eval"))
    p.add_argument("--backgrounds", type=int, default=3, help="backgrounds per colour x shape pair")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-negative", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.time()
    if args.pipeline:
        generate = pipeline_generate(load_pipeline(None, args.pipeline))
    else:
        generate = core_generate(args.model, sampler=args.sampler)
    print(f"evaluating {'pipeline ' + args.pipeline if args.pipeline else args.model + ' through core.generate, ' + args.sampler}")
    cases = prompt_set(args.backgrounds, tuple(range(1, args.seeds + 1)))
    summary, images, ok = evaluate(generate, cases)
    if not args.no_negative:
        summary["negative_prompt"] = negative_check(generate)
    summary["seconds"] = round(time.time() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    contact_sheet(images, ok).save(out / "contact_sheet.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(summary.pop("misses")))
    print(json.dumps(summary, indent=2))
    print(f"colour accuracy {summary['colour_accuracy']:.1%}  shape accuracy {summary['shape_accuracy']:.1%}  "
          f"background accuracy {summary['background_accuracy']:.1%}  contact sheet {out / 'contact_sheet.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
