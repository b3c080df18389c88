"""X/Y/Z plot (A1111's script of that name) on the native extension API.

Every combination of the X, Y and Z values is one GenerationRequest run through the core in
the same queued job; the cells are laid out with legends (Z makes one sub-grid per value) and
the grid is saved with the first cell's infotext. Seeds left at -1 are fixed once, so every
cell shares them, unless "Keep -1 for seeds" is on. Checkpoint changes are grouped so each
checkpoint loads once.
"""
from __future__ import annotations

import dataclasses
import itertools
import time

from PIL import Image

from webui.extensions import grids
from webui.extensions.api import GenerationRequest, GenerationResult, Param
from webui.generation.seeds import resolve_seed

from .axes import Axis, AxisError, build_axes, cell_request

TITLE = "X/Y/Z plot"
MAX_CELLS = 1000


def _params(names: tuple[str, ...]) -> list[Param]:
    params = []
    for key, default in (("x", "Seed"), ("y", "Nothing"), ("z", "Nothing")):
        upper = key.upper()
        params += [Param(f"{key}_type", str, default, label=f"{upper} type", choices=names, row=key),
                   Param(f"{key}_values", str, "", label=f"{upper} values", row=key)]
    return params + [
        Param("draw_legend", bool, True, label="Draw legend", row="options"),
        Param("include_lone_images", bool, False, label="Include Sub Images", row="options"),
        Param("include_sub_grids", bool, False, label="Include Sub Grids", row="options"),
        Param("no_fixed_seeds", bool, False, label="Keep -1 for seeds", row="options"),
        Param("margin_size", int, 0, label="Grid margins (px)", minimum=0, maximum=500, step=2),
    ]


def register(api):
    axes = build_axes({f.name for f in dataclasses.fields(GenerationRequest)})
    api.script(TITLE, _params(tuple(axes)), lambda ctx, request, params: run(ctx, request, params, axes),
               tabs=("txt2img", "img2img"))


def _axis_values(ctx, axes: dict[str, Axis], params: dict, key: str) -> tuple[Axis, list]:
    name = params[f"{key}_type"]
    axis = axes.get(name)
    if axis is None:
        raise AxisError(f"{key.upper()} type: no axis named {name!r}; axes: {', '.join(axes)}")
    if axis.apply is None:
        return axis, [None]
    return axis, axis.parse(params[f"{key}_values"], ctx.host.app_view)


def _fix_seeds(request, chosen, keep_random: bool):
    """A1111: -1 seeds become one random seed for the whole plot (unless 'Keep -1 for seeds')."""
    if keep_random:
        return request, chosen
    request = dataclasses.replace(request, seed=resolve_seed(request.seed), subseed=resolve_seed(request.subseed))
    fixed = []
    for axis, values in chosen:
        if axis.label in ("Seed", "Var. seed"):
            values = [resolve_seed(v) if v == -1 else v for v in values]
        fixed.append((axis, values))
    return request, fixed


def _labels(axis: Axis, values: list, draw: bool) -> list[list[grids.Label]]:
    if not draw or axis.apply is None:
        return [[] for _ in values]
    return [[grids.Label(f"{axis.label}: {v}")] for v in values]


def _cell_image(result, size: tuple[int, int]) -> Image.Image:
    if result is None or not result.images:
        return Image.new("RGB", size, "white")  # interrupted before this cell
    if len(result.images) == 1:
        return result.images[0]
    return grids.image_grid(result.images)


def run(ctx, request, params: dict, axes: dict[str, Axis]) -> GenerationResult:
    started = time.perf_counter()
    chosen = [_axis_values(ctx, axes, params, key) for key in "xyz"]
    request, chosen = _fix_seeds(request, chosen, params["no_fixed_seeds"])
    (xa, xs), (ya, ys), (za, zs) = chosen
    total = len(xs) * len(ys) * len(zs)
    if total > MAX_CELLS:
        raise AxisError(f"{total} images is more than the {MAX_CELLS} an X/Y/Z plot may make")
    # Expensive axes (checkpoints) outermost, so a model loads once per value.
    order = sorted(itertools.product(range(len(zs)), range(len(ys)), range(len(xs))),
                   key=lambda c: tuple(c[i] for i in sorted(range(3), key=lambda i: -(za, ya, xa)[i].cost)))
    results: dict[tuple[int, int, int], GenerationResult] = {}
    for number, (zi, yi, xi) in enumerate(order, 1):
        if ctx.interrupted:
            break
        cell = [(xa, xs[xi], xs[0]), (ya, ys[yi], ys[0]), (za, zs[zi], zs[0])]
        cell_req, checkpoint = cell_request(request, cell)
        ctx.switch_checkpoint(checkpoint)
        ctx.set_text(f"{TITLE}: image {number} of {total}")
        results[(zi, yi, xi)] = ctx.process(cell_req)
    done = [r for r in results.values() if r.images]
    if not done:
        raise RuntimeError("no image was made (interrupted before the first one)")
    first = next(results[c] for c in sorted(results) if results[c].images)
    size = first.images[0].size
    margin = params["margin_size"]
    sub_grids = []
    for zi in range(len(zs)):
        cells = [_cell_image(results.get((zi, yi, xi)), size) for yi in range(len(ys)) for xi in range(len(xs))]
        title = f"{za.label}: {zs[zi]}" if za.apply is not None and params["draw_legend"] else ""
        sub_grids.append(grids.grid_with_legends(cells, _labels(xa, xs, params["draw_legend"]),
                                                 _labels(ya, ys, params["draw_legend"]), margin, title))
    grid = sub_grids[0] if len(sub_grids) == 1 else grids.stack(sub_grids, margin)
    info = first.infotexts[0] if first.infotexts else ""
    path = ctx.save_grid(grid, info, request)
    out = {"images": [grid], "infotexts": [info], "seeds": [first.seeds[0]], "subseeds": [first.subseeds[0]],
           "prompts": [first.prompts[0]], "negative_prompts": [first.negative_prompts[0]]}

    def add(images, infotexts, r):
        out["images"] += images
        out["infotexts"] += infotexts
        for name in ("seeds", "subseeds", "prompts", "negative_prompts"):
            out[name] += (list(getattr(r, name)) + [getattr(r, name)[-1]] * len(images))[:len(images)]

    if len(sub_grids) > 1 and params["include_sub_grids"]:
        add(sub_grids, [info] * len(sub_grids), first)
    paths = [path] if path else []
    for key in sorted(results):
        r = results[key]
        paths += r.paths
        if params["include_lone_images"] and r.images:
            add(r.images, r.infotexts, r)
    return GenerationResult(**out, timings={"total": time.perf_counter() - started}, request=request,
                            interrupted=ctx.interrupted, paths=paths)
