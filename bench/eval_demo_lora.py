"""Quality of the demo LoRA: does ``<lora:demo-pink-cyan:1>`` draw pink and cyan, and keep the rest?

Through the real path (GenerationRequest -> queue -> core, the UI's default sampler DPM++ 2M,
20 steps, CFG 7, 64x64), every image read back with the shapes classifier over all eleven colours:

- new colours: pink and cyan x 3 shapes x the 9 backgrounds x 2 seeds = 108 prompts, with the
  LoRA and without it (the model alone must not already draw them);
- known colours: the 7 demo colours x 3 shapes x 3 backgrounds x 1 seed = 63 prompts, LoRA on;
- ``--held-out colour:background,...`` reports pairs left out of a training folder on their own.

Seeds are not training data and no training image is reused: every generated image is a new case.

    .venv/bin/python bench/eval_demo_lora.py [--lora models/Lora/demo-pink-cyan.safetensors]
                                             [--out bench/results/demo-lora-eval]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw  # noqa: E402

from webui.training.shapes import (ALL_COLOURS, BACKGROUNDS, NEW_COLOURS, SHAPE_COLOURS, SHAPES,  # noqa: E402
                                   canonical_caption, classify)

DEMO = ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"


def new_cases(seeds=(11, 12)) -> list[tuple[str, str, str, int]]:
    return [(c, s, b, seed) for c in NEW_COLOURS for s in SHAPES for b in BACKGROUNDS for seed in seeds]


def known_cases(seed: int = 11) -> list[tuple[str, str, str, int]]:
    cases, k = [], 0
    for colour in SHAPE_COLOURS:
        others = [b for b in BACKGROUNDS if b != colour]
        for shape in SHAPES:
            cases += [(colour, shape, others[(k + 3 * j) % len(others)], seed) for j in range(3)]
            k += 1
    return cases


def make_generator(lora: Path, sampler: str, steps: int, via: str = "tag"):
    """generate(prompt, seed, with_lora) through the core. ``via="tag"``: the LoRA comes from its
    prompt tag (the Networks code, what users do); ``"attach"``: the trainer's own in-memory network
    is patched in around the job (what the Train tab's samples show)."""
    from webui.context import context_from_flags
    from webui.generation.request import GenerationRequest

    data = Path(tempfile.mkdtemp(prefix="eval-demo-lora-"))
    ctx = context_from_flags(["--data-dir", str(data), "--ckpt", str(DEMO), "--lora-dir", str(lora.parent)],
                             {"live_previews_enable": False})
    tag = f"<lora:{lora.stem}:1>"
    network = None
    if via == "attach":
        from webui.training.lora import network_from_file

        pipe = ctx.models.current().pipe
        network = network_from_file(lora, ctx.models.current().arch, pipe.unet, [pipe.text_encoder])

    def generate(prompt: str, seed: int, with_lora: bool) -> Image.Image:
        text = f"{prompt} {tag}" if with_lora and network is None else prompt
        request = GenerationRequest(prompt=text, seed=seed, steps=steps, cfg_scale=7, width=64, height=64,
                                    sampler_name=sampler, save_images=False)
        if network is not None and with_lora:
            network.attach()
        try:
            return ctx.queue.run(request).images[0]
        finally:
            if network is not None:
                network.detach()

    return generate, ctx


def run(generate, cases, with_lora: bool) -> tuple[list[dict], list[Image.Image]]:
    rows, images = [], []
    for colour, shape, background, seed in cases:
        image = generate(canonical_caption(shape, colour, background), seed, with_lora)
        reading = classify(image, ALL_COLOURS)
        rows.append({"colour": colour, "shape": shape, "background": background, "seed": seed,
                     "read_colour": reading.colour, "read_shape": reading.shape, "ok": reading.colour == colour})
        images.append(image)
    return rows, images


def rate(rows: list[dict], pick=lambda r: True) -> tuple[float, int]:
    chosen = [r for r in rows if pick(r)]
    return (sum(r["ok"] for r in chosen) / len(chosen) if chosen else float("nan")), len(chosen)


def contact_sheet(images: list[Image.Image], rows: list[dict], columns: int = 18) -> Image.Image:
    cell = 68
    sheet = Image.new("RGB", (columns * cell, -(-len(images) // columns) * cell), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for i, (image, row) in enumerate(zip(images, rows)):
        x, y = i % columns * cell, i // columns * cell
        draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(40, 180, 60) if row["ok"] else (200, 40, 40))
        sheet.paste(image.resize((64, 64)), (x + 2, y + 2))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lora", type=Path, default=ROOT / "models" / "Lora" / "demo-pink-cyan.safetensors")
    parser.add_argument("--sampler", default="DPM++ 2M")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "demo-lora-eval")
    parser.add_argument("--quick", action="store_true", help="one seed, 3 backgrounds: a mid-training look")
    parser.add_argument("--held-out", default="", help="colour:background pairs the training never saw")
    parser.add_argument("--via", choices=("tag", "attach"), default="tag",
                        help="tag: <lora:name:1> in the prompt (Networks code); attach: the trainer's network")
    args = parser.parse_args()
    started = time.time()
    generate, ctx = make_generator(args.lora.resolve(), args.sampler, args.steps, args.via)
    new = new_cases((11,) if args.quick else (11, 12))
    if args.quick:
        new = [c for c in new if c[2] in ("blue", "black", "white")]
    known = known_cases()[:: 3 if args.quick else 1]
    with_rows, with_images = run(generate, new, True)
    without_rows, without_images = run(generate, new, False)
    known_rows, known_images = run(generate, known, True)
    ctx.queue.stop()
    held_out = {tuple(p.split(":")) for p in args.held_out.split(",") if ":" in p}
    held = lambda r: (r["colour"], r["background"]) in held_out  # noqa: E731
    summary = {
        "lora": str(args.lora), "via": args.via, "sampler": args.sampler, "steps": args.steps, "seconds": round(time.time() - started),
        "new_with_lora": rate(with_rows), "new_without_lora": rate(without_rows), "known_with_lora": rate(known_rows),
        "held_out_pairs_with_lora": rate(with_rows, held),
        "per_colour_with_lora": {c: rate(with_rows, lambda r, c=c: r["colour"] == c) for c in NEW_COLOURS},
        "shape_with_lora": sum(r["read_shape"] == r["shape"] for r in with_rows) / len(with_rows),
        "misses_with_lora": [f"{r['colour']} {r['shape']} on {r['background']} (seed {r['seed']}) -> "
                             f"{r['read_colour']}" for r in with_rows + known_rows if not r["ok"]],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    contact_sheet(with_images + known_images, with_rows + known_rows).save(args.out / "with-lora.png")
    contact_sheet(without_images, without_rows).save(args.out / "without-lora.png")
    for key in ("new_with_lora", "new_without_lora", "known_with_lora", "held_out_pairs_with_lora"):
        value, n = summary[key]
        if n:
            print(f"{key}: {value * 100:.1f}% of {n}")
    print(f"per colour with LoRA: {summary['per_colour_with_lora']}; shapes read right: "
          f"{summary['shape_with_lora'] * 100:.1f}%; {summary['seconds']} s; sheets in {args.out}")


if __name__ == "__main__":
    main()
