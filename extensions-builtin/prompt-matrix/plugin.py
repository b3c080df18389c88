"""Prompt matrix (A1111's script): ``a cat|red|in snow`` makes the 4 images with and without each part.

The first ``|`` part is always used; each further part is switched on and off in every
combination. Columns vary the first half of the parts, rows the second half; the legends show
each part, greyed and struck through where it is off. Every image is its own GenerationRequest
through the core, in this one queued job.
"""
from __future__ import annotations

import dataclasses
import math
import time

from webui.extensions import grids
from webui.extensions.api import GenerationResult, Param
from webui.generation.seeds import resolve_seed

TITLE = "Prompt matrix"
MAX_PARTS = 8  # 256 images


def register(api):
    api.script(TITLE, [
        Param("put_at_start", bool, False, label="Put variable parts at start of prompt", row="options"),
        Param("different_seeds", bool, False, label="Use different seed for each picture", row="options"),
        Param("prompt_type", str, "positive", label="Select prompt", choices=("positive", "negative"), row="choices"),
        Param("variations_delimiter", str, "comma", label="Select joining char", choices=("comma", "space"),
              row="choices"),
        Param("margin_size", int, 0, label="Grid margins (px)", minimum=0, maximum=500, step=2),
    ], run)


def combinations(text: str, put_at_start: bool, joiner: str) -> tuple[list[str], list[str]]:
    """(the option parts, the prompt of every combination; bit i of the index switches part i on)."""
    base, *parts = [p.strip() for p in text.split("|")]
    if not parts:
        raise ValueError("put the variable parts after | in the prompt, e.g. 'a cat|red|in snow'")
    if len(parts) > MAX_PARTS:
        raise ValueError(f"{len(parts)} variable parts make {2 ** len(parts)} images; at most {MAX_PARTS} parts")
    prompts = []
    for index in range(2 ** len(parts)):
        chosen = [p for bit, p in enumerate(parts) if index & (1 << bit)]
        pieces = chosen + ([base] if base else []) if put_at_start else ([base] if base else []) + chosen
        prompts.append(joiner.join(pieces))
    return parts, prompts


def _legends(parts: list[str], bits: range, count: int) -> list[list[grids.Label]]:
    return [[grids.Label(parts[b], active=bool(i & (1 << (b - bits.start)))) for b in bits] for i in range(count)]


def run(ctx, request, params: dict) -> GenerationResult:
    started = time.perf_counter()
    positive = params["prompt_type"] == "positive"
    joiner = ", " if params["variations_delimiter"] == "comma" else " "
    parts, prompts = combinations(request.prompt if positive else request.negative_prompt,
                                  params["put_at_start"], joiner)
    seed = resolve_seed(request.seed)
    results = []
    for i, prompt in enumerate(prompts):
        if ctx.interrupted:
            break
        ctx.set_text(f"{TITLE}: image {i + 1} of {len(prompts)}")
        field = "prompt" if positive else "negative_prompt"
        cell = dataclasses.replace(request, **{field: prompt}, seed=seed + i if params["different_seeds"] else seed,
                                   n_iter=1, batch_size=1)
        results.append(ctx.process(cell))
    made = [r for r in results if r.images]
    if not made:
        raise RuntimeError("no image was made (interrupted before the first one)")
    size = made[0].images[0].size
    from PIL import Image

    images = [r.images[0] if r.images else Image.new("RGB", size, "white") for r in results]
    images += [Image.new("RGB", size, "white")] * (len(prompts) - len(images))
    col_bits = math.ceil(len(parts) / 2)
    cols, rows = 2 ** col_bits, 2 ** (len(parts) - col_bits)
    grid = grids.grid_with_legends(images, _legends(parts, range(0, col_bits), cols),
                                   _legends(parts, range(col_bits, len(parts)), rows), params["margin_size"])
    first = made[0]
    path = ctx.save_grid(grid, first.infotexts[0] if first.infotexts else None, request)
    out = GenerationResult(images=[grid], infotexts=[first.infotexts[0]], seeds=[first.seeds[0]],
                           subseeds=[first.subseeds[0]], prompts=[first.prompts[0]],
                           negative_prompts=[first.negative_prompts[0]], timings={}, request=request,
                           interrupted=ctx.interrupted, paths=[path] if path else [])
    for r in made:
        out.images += r.images
        out.infotexts += r.infotexts
        out.seeds += r.seeds
        out.subseeds += r.subseeds
        out.prompts += r.prompts
        out.negative_prompts += r.negative_prompts
        out.paths += r.paths
    out.timings["total"] = time.perf_counter() - started
    return out
