"""Prompts from file or textbox (A1111's script): one generation per line.

A plain line is a prompt, put before or after the prompt box's text. A line of ``--name value``
options sets request fields for that line (A1111's names: --prompt, --negative_prompt, --seed,
--steps, --cfg_scale, --sampler_name, --scheduler, --width, --height, --batch_size, --n_iter,
--subseed, --subseed_strength, --styles, --clip_skip). Each line runs through the core in
this one queued job; a bad line stops the job with its line number before anything runs.
"""
from __future__ import annotations

import dataclasses
import shlex
import time

from webui.extensions.api import GenerationResult, Param
from webui.generation.request import GenerationRequest, RequestError
from webui.generation.seeds import resolve_seed

TITLE = "Prompts from file or textbox"
OPTIONS = {"prompt": str, "negative_prompt": str, "seed": int, "steps": int, "cfg_scale": float,
           "sampler_name": str, "scheduler": str, "width": int, "height": int, "batch_size": int, "n_iter": int,
           "subseed": int, "subseed_strength": float, "styles": list, "clip_skip": int}
OPTIONS = {k: v for k, v in OPTIONS.items() if k in {f.name for f in dataclasses.fields(GenerationRequest)}}


def register(api):
    api.script(TITLE, [
        Param("iterate_seed", bool, False, label="Iterate seed every line", row="options"),
        Param("same_random_seed", bool, False, label="Use same random seed for all lines", row="options"),
        Param("prompt_position", str, "start", label="Insert prompts at the", choices=("start", "end"),
              row="options"),
        Param("prompt_txt", str, "", label="List of prompt inputs", lines=4,
              info="One prompt per line, or --prompt \"...\" --steps 20 style options"),
    ], run)


def parse_line(line: str, number: int) -> dict:
    """The request fields one line sets; ValueError naming the line when it is malformed."""
    if not line.startswith("--"):
        return {"prompt": line}
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise ValueError(f"line {number}: {exc}") from None
    fields: dict = {}
    i = 0
    while i < len(words):
        word = words[i]
        name = word[2:].replace("-", "_") if word.startswith("--") else None
        if name not in OPTIONS:
            raise ValueError(f"line {number}: unknown option {word!r}; options: --{', --'.join(OPTIONS)}")
        values = []
        i += 1
        while i < len(words) and not words[i].startswith("--"):
            values.append(words[i])
            i += 1
        kind = OPTIONS[name]
        if kind is list:
            fields[name] = values
            continue
        if len(values) != 1:
            raise ValueError(f"line {number}: --{name} takes one value, got {len(values)}")
        try:
            fields[name] = kind(values[0])
        except ValueError:
            raise ValueError(f"line {number}: --{name} {values[0]!r} is not a {kind.__name__}") from None
    return fields


def run(ctx, request, params: dict) -> GenerationResult:
    started = time.perf_counter()
    lines = [line.strip() for line in (params["prompt_txt"] or "").splitlines() if line.strip()]
    if not lines:
        raise ValueError("List of prompt inputs is empty")
    seed = resolve_seed(request.seed) if params["same_random_seed"] or params["iterate_seed"] else request.seed
    jobs = []
    for number, line in enumerate(lines, 1):
        fields = parse_line(line, number)
        if "prompt" in fields and not line.startswith("--") and request.prompt:
            fields["prompt"] = f"{fields['prompt']} {request.prompt}" if params["prompt_position"] == "start" \
                else f"{request.prompt} {fields['prompt']}"
        fields.setdefault("seed", seed)
        try:
            jobs.append(dataclasses.replace(request, **fields).validate())
        except (RequestError, TypeError) as exc:
            raise ValueError(f"line {number}: {exc}") from None
        if params["iterate_seed"] and "seed" not in parse_line(line, number):
            seed = seed + jobs[-1].batch_size * jobs[-1].n_iter
    out = GenerationResult(images=[], infotexts=[], seeds=[], subseeds=[], prompts=[], negative_prompts=[],
                           timings={}, request=request)
    for number, job in enumerate(jobs, 1):
        if ctx.interrupted:
            break
        ctx.set_text(f"{TITLE}: line {number} of {len(jobs)}")
        r = ctx.process(job)
        for name in ("images", "infotexts", "seeds", "subseeds", "prompts", "negative_prompts", "paths"):
            getattr(out, name).extend(getattr(r, name))
    out.interrupted = ctx.interrupted
    out.timings["total"] = time.perf_counter() - started
    return out

