"""Quality evaluation of the bundled demo ControlNet (shapes placed by a canny or scribble map).

Over held-out cases (every colour x shape, 3 backgrounds, a canny and a scribble map each, at
positions and sizes drawn from a seed the trainer never uses) it checks that:

- the drawn shape's centroid lies within 8 px of the control map's (the region the map outlines);
- the shape's colour is the one the prompt asks for (and the shape the map's);
- a unit at weight 0 gives exactly the pixels of a generation without a unit.

    .venv/bin/python bench/eval_controlnet.py                     # shipped files, generation core
    .venv/bin/python bench/eval_controlnet.py --controlnet work-demo-controlnet/controlnet   # mid-run, plain diffusers

``evaluate`` takes any ``generate(prompt, control_image, weight, seed) -> PIL.Image`` (weight None:
no unit), so the project's core and a bare diffusers pipeline are measured the same way.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webui.training.shapes import BACKGROUNDS, SHAPE_COLOURS, SHAPES, ShapeSpec, canonical_caption, classify  # noqa: E402
from webui.training.shapes_control import MAP_KINDS, control_map, map_centroid, map_to_image, shape_centroid  # noqa: E402

DEMO_MODEL = ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
DEMO_CONTROLNET = ROOT / "models" / "ControlNet" / "demo-shapes-canny-scribble.safetensors"
HELD_OUT_SEED = 2_000_003  # the trainer's pool uses seed*31+7 with seed 4321; this stream is disjoint

Generate = Callable[[str, Image.Image | None, float | None, int], Image.Image]


@dataclass(frozen=True)
class Case:
    """One held-out case: what the prompt asks, where the map puts the shape, which map."""

    spec: ShapeSpec
    kind: str
    seed: int

    @property
    def prompt(self) -> str:
        return canonical_caption(self.spec.shape, self.spec.colour, self.spec.background)

    def control(self) -> np.ndarray:
        return control_map(self.spec, random.Random(self.seed * 13 + 5), self.kind)


def case_set(backgrounds_per_pair: int = 3, kinds: tuple[str, ...] = MAP_KINDS) -> list[Case]:
    """Every colour x shape x ``backgrounds_per_pair`` backgrounds x map kind; positions from a held-out seed."""
    rng = random.Random(HELD_OUT_SEED)
    cases, k = [], 0
    for colour in SHAPE_COLOURS:
        others = [b for b in BACKGROUNDS if b != colour]
        for shape in SHAPES:
            for j in range(backgrounds_per_pair):
                background = others[(k + j * 3) % len(others)]
                for kind in kinds:
                    size = rng.uniform(18, 40)
                    half = size / 2
                    spec = ShapeSpec(shape, colour, background, rng.uniform(half + 1, 63 - half),
                                     rng.uniform(half + 1, 63 - half), size)
                    cases.append(Case(spec, kind, seed=len(cases) + 1))
            k += 1
    return cases


def evaluate(generate: Generate, cases: list[Case], max_px: float = 8.0) -> tuple[dict, list, list]:
    """Generate and grade every case; returns (summary, images, per-case pass)."""
    images, ok, misses = [], [], []
    near = colour_hits = shape_hits = bg_hits = 0
    distances = []
    for case in cases:
        control = case.control()
        img = generate(case.prompt, map_to_image(control), 1.0, case.seed)
        reading = classify(img)
        want, got = map_centroid(control), shape_centroid(img)
        dist = math.dist(want, got) if want and got else float("inf")
        distances.append(dist)
        hit = dist <= max_px
        near += hit
        colour_hits += reading.colour == case.spec.colour
        shape_hits += reading.shape == case.spec.shape
        bg_hits += reading.background == case.spec.background
        images.append((control, img))
        ok.append(hit and reading.colour == case.spec.colour)
        if not ok[-1]:
            misses.append(f"{case.prompt} ({case.kind} at {want[0]:.0f},{want[1]:.0f}, seed {case.seed}) -> "
                          f"{reading.colour} {reading.shape} on {reading.background}, centroid off {dist:.1f}px")
    n = len(cases)
    finite = [d for d in distances if math.isfinite(d)]
    summary = {"cases": n, "centroid_within_px": max_px, "centroid_accuracy": near / n,
               "colour_accuracy": colour_hits / n, "shape_accuracy": shape_hits / n,
               "background_accuracy": bg_hits / n,
               "median_centroid_error_px": float(np.median(finite)) if finite else None,
               "per_kind": {kind: sum(d <= max_px for c, d in zip(cases, distances) if c.kind == kind)
                            / max(1, sum(c.kind == kind for c in cases)) for kind in MAP_KINDS},
               "misses": misses}
    return summary, images, ok


def weight_zero_check(generate: Generate, cases: list[Case]) -> dict:
    """Pixels of a unit at weight 0 against no unit at all, same prompt and seed."""
    same = 0
    worst = 0
    for case in cases:
        with_unit = np.asarray(generate(case.prompt, map_to_image(case.control()), 0.0, case.seed))
        without = np.asarray(generate(case.prompt, None, None, case.seed))
        same += bool(np.array_equal(with_unit, without))
        worst = max(worst, int(np.abs(with_unit.astype(int) - without.astype(int)).max()))
    return {"cases": len(cases), "identical": same, "max_pixel_difference": worst}


def pipeline_generate(controlnet_path: str, model: str, steps: int = 20, cfg: float = 7.0) -> Generate:
    """Bare diffusers: StableDiffusionControlNetPipeline from the demo model's parts (Euler a)."""
    import torch
    from diffusers import ControlNetModel, EulerAncestralDiscreteScheduler, StableDiffusionControlNetPipeline

    from webui.models.loader import load_pipeline

    base, _ = load_pipeline(Path(model), torch_dtype=torch.float32)
    base.scheduler = EulerAncestralDiscreteScheduler.from_config(base.scheduler.config)
    base.set_progress_bar_config(disable=True)
    path = Path(controlnet_path)
    if path.is_dir():
        controlnet = ControlNetModel.from_pretrained(path, local_files_only=True)
    else:
        from webui.models.controlnet import load_controlnet

        controlnet = load_controlnet(path).model
    pipe = StableDiffusionControlNetPipeline.from_pipe(base, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)

    def generate(prompt: str, control: Image.Image | None, weight: float | None, seed: int) -> Image.Image:
        gen = torch.Generator().manual_seed(seed)
        if control is None:
            return base(prompt, num_inference_steps=steps, guidance_scale=cfg, height=64, width=64,
                        generator=gen).images[0]
        return pipe(prompt, image=control, controlnet_conditioning_scale=weight, num_inference_steps=steps,
                    guidance_scale=cfg, height=64, width=64, generator=gen).images[0]

    return generate


def contact_sheet(images: list, ok: list[bool], columns: int = 12) -> Image.Image:
    """Pairs of (control map, generated image), framed green (pass) or red (fail)."""
    cell_w, cell_h = 132, 68
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for i, ((control, img), good) in enumerate(zip(images, ok)):
        x, y = (i % columns) * cell_w, (i // columns) * cell_h
        draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=(40, 200, 60) if good else (230, 30, 30))
        sheet.paste(map_to_image(control), (x + 2, y + 2))
        sheet.paste(img.convert("RGB").resize((64, 64)), (x + 66, y + 2))
    return sheet


def main(argv=None) -> int:
    """Run the evaluation and print a JSON summary."""
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEMO_MODEL))
    p.add_argument("--controlnet", default=None, help="evaluate this ControlNet (file or diffusers folder) with a "
                   "bare diffusers pipeline (Euler a) instead of the shipped one through the generation core")
    p.add_argument("--sampler", default="DPM++ 2M", help="A1111 sampler for the core path (the UI default)")
    p.add_argument("--backgrounds", type=int, default=3, help="backgrounds per colour x shape pair")
    p.add_argument("--limit", type=int, default=0, help="evaluate only every n-th case (quick look)")
    p.add_argument("--zero-cases", type=int, default=20, help="cases for the weight-0 check")
    p.add_argument("--out", default=str(ROOT / "bench/results/controlnet-eval"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.time()
    if args.controlnet:
        generate = pipeline_generate(args.controlnet, args.model)
        what = f"{args.controlnet} through a bare diffusers ControlNet pipeline (Euler a)"
    else:
        from bench.controlnet_core import core_generate

        generate = core_generate(args.model, str(DEMO_CONTROLNET), sampler=args.sampler)
        what = f"{DEMO_CONTROLNET.name} through core.generate ({args.sampler})"
    print(f"evaluating {what}", flush=True)
    cases = case_set(args.backgrounds)
    if args.limit:
        cases = cases[::args.limit]
    summary, images, ok = evaluate(generate, cases)
    if args.zero_cases:
        summary["weight_zero"] = weight_zero_check(generate, cases[:args.zero_cases])
    summary["seconds"] = round(time.time() - t0, 1)
    summary["evaluated"] = what
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    contact_sheet(images, ok).save(out / "contact_sheet.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(summary.pop("misses")))
    print(json.dumps(summary, indent=2))
    print(f"centroid within 8 px {summary['centroid_accuracy']:.1%}  colour {summary['colour_accuracy']:.1%}  "
          f"shape {summary['shape_accuracy']:.1%}  contact sheet {out / 'contact_sheet.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
