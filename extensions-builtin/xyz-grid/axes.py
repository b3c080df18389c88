"""X/Y/Z plot axes: what each varies, how its values are written, and how a value changes a request.

Values follow A1111's syntax: comma-separated (CSV quoting for text), and for numbers the
ranges ``1-5`` (every whole number), ``1-5 (+2)`` / ``10-4 (-3)`` (a step) and ``0-1 [5]``
(that many evenly spaced values).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import re
from dataclasses import dataclass
from typing import Any, Callable

from webui.generation import samplers

_RANGE = re.compile(r"^\s*([+-]?\d+(?:\.\d*)?)\s*-\s*([+-]?\d+(?:\.\d*)?)\s*(?:\(\s*([+-]\d+(?:\.\d*)?)\s*\)|"
                    r"\[\s*(\d+)\s*\])?\s*$")


class AxisError(ValueError):
    """A value that does not fit its axis; the message names the axis."""


@dataclass(frozen=True)
class Axis:
    label: str  # A1111's name, also the legend prefix
    kind: type
    apply: Callable[[dict[str, Any], Any], None] | None  # writes the value into request fields
    choices: Callable[[Any], list[str]] | None = None  # valid values, given the app view
    cost: int = 0  # higher: looped outermost, so expensive changes (checkpoints) happen least

    def parse(self, text: str, app=None) -> list[Any]:
        """The axis values written in ``text``; AxisError says which one is wrong."""
        if self.kind is str:
            values = [v.strip() for row in csv.reader(io.StringIO(text or ""), skipinitialspace=True)
                      for v in row if v.strip()]
        else:
            values = []
            for part in [p for row in csv.reader(io.StringIO(text or ""), skipinitialspace=True) for p in row]:
                if part.strip():
                    values += self._numbers(part)
        if not values:
            raise AxisError(f"{self.label}: no values given")
        if self.choices is not None:
            known = self.choices(app)
            lookup = {c.lower(): c for c in known}
            fixed = []
            for v in values:
                if v.lower() not in lookup and not self.accepts(v):
                    raise AxisError(f"{self.label}: unknown value {v!r}; valid: {', '.join(known)}")
                fixed.append(lookup.get(v.lower(), v))
            values = fixed
        return values

    def accepts(self, value: str) -> bool:
        """Old combined sampler names ('DPM++ 2M Karras') are valid for the Sampler axis."""
        if self.label != "Sampler":
            return False
        try:
            samplers.normalize_sampler(value, None)
        except ValueError:
            return False
        return True

    def _numbers(self, part: str) -> list[Any]:
        match = _RANGE.match(part)
        if match is None:
            try:
                return [self.kind(float(part.strip())) if self.kind is int else float(part.strip())]
            except ValueError:
                raise AxisError(f"{self.label}: {part.strip()!r} is not a number or a range") from None
        start, end, step, count = match.groups()
        start_f, end_f = float(start), float(end)
        if count is not None:
            n = int(count)
            if n < 1:
                raise AxisError(f"{self.label}: [{n}] must be at least 1")
            values = [start_f + (end_f - start_f) * i / max(n - 1, 1) for i in range(n)]
        else:
            step_f = float(step) if step else (1.0 if end_f >= start_f else -1.0)
            if step_f == 0 or (end_f - start_f) * step_f < 0:
                raise AxisError(f"{self.label}: the step {step_f:g} never gets from {start_f:g} to {end_f:g}")
            values, v = [], start_f
            while (v <= end_f + 1e-9) if step_f > 0 else (v >= end_f - 1e-9):
                values.append(v)
                v += step_f
                if len(values) > 1000:
                    raise AxisError(f"{self.label}: more than 1000 values in {part.strip()!r}")
        return [int(round(v)) for v in values] if self.kind is int else [round(v, 6) for v in values]


def _set(name: str):
    def apply(fields: dict[str, Any], value: Any) -> None:
        fields[name] = value
    return apply


def _sampler(fields: dict[str, Any], value: str) -> None:
    name, schedule = samplers.normalize_sampler(value, None)
    fields["sampler_name"] = name
    if schedule != samplers.AUTOMATIC:  # 'DPM++ 2M Karras' carries its schedule
        fields["scheduler"] = schedule


def _size(fields: dict[str, Any], value: str) -> None:
    match = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", value)
    if not match:
        raise AxisError(f"Size: {value!r} is not WIDTHxHEIGHT")
    fields["width"], fields["height"] = int(match.group(1)), int(match.group(2))


def _prompt_sr(fields: dict[str, Any], value: str) -> None:
    search = fields.get("_sr_search")
    if search is None:
        raise AxisError("Prompt S/R: no search text")
    if search not in fields["prompt"] and search not in fields["negative_prompt"]:
        raise AxisError(f"Prompt S/R: {search!r} is not in the prompt or the negative prompt")
    fields["prompt"] = fields["prompt"].replace(search, value)
    fields["negative_prompt"] = fields["negative_prompt"].replace(search, value)


def _checkpoint(fields: dict[str, Any], value: str) -> None:
    fields["_checkpoint"] = value  # the script swaps models around the cells (see plugin.run)


def _checkpoints(app) -> list[str]:
    return app.checkpoints() if app is not None else []


def build_axes(request_fields: set[str]) -> dict[str, Axis]:
    """The axes this app supports; fields the request type lacks (denoising before img2img) are left out."""
    axes = [
        Axis("Nothing", str, None),
        Axis("Seed", int, _set("seed")),
        Axis("Var. seed", int, _set("subseed")),
        Axis("Var. strength", float, _set("subseed_strength")),
        Axis("Steps", int, _set("steps")),
        Axis("CFG Scale", float, _set("cfg_scale")),
        Axis("Prompt S/R", str, _prompt_sr),
        Axis("Sampler", str, _sampler, lambda app: samplers.sampler_names()),
        Axis("Schedule type", str, _set("scheduler"), lambda app: list(samplers.schedule_names())),
        Axis("Checkpoint name", str, _checkpoint, _checkpoints, cost=10),
        Axis("Size", str, _size),
        Axis("Clip skip", int, _set("clip_skip")),
        Axis("Denoising", float, _set("denoising_strength")),
    ]
    needs = {"Denoising": "denoising_strength", "Clip skip": "clip_skip"}
    return {a.label: a for a in axes if needs.get(a.label, "prompt") in request_fields}


def cell_request(request, cell: list[tuple[Axis, Any, Any]]):
    """The request of one cell and its checkpoint (or None).

    ``cell`` holds (axis, value, first value of that axis); Prompt S/R searches for its first value.
    """
    fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    checkpoint = None
    for axis, value, first in cell:
        if axis.apply is None:
            continue
        fields["_sr_search"] = first
        axis.apply(fields, value)
        fields.pop("_sr_search", None)
        checkpoint = fields.pop("_checkpoint", checkpoint)
    return dataclasses.replace(request, **fields), checkpoint
