"""The plan of one job: a prompt, negative prompt, seed and subseed for every image.

A1111 keeps these as ``p.all_prompts`` / ``p.all_seeds``; here they are one object the core
builds after styles and seeds are resolved, hands to extensions (dynamic prompts, prompt
matrix, wildcards) and then slices per batch. Extensions change the lists; the core checks
the result before it samples, so a bad edit is refused instead of half-applied.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from webui.generation.seeds import MAX_SEED


class PlanError(ValueError):
    """A plan whose lists do not fit its batch layout, or whose seeds are out of range."""


@dataclass
class BatchPlan:
    """The prompts and seeds of one batch (``batch_size`` images sampled together)."""

    index: int
    prompts: list[str]
    negative_prompts: list[str]
    seeds: list[int]
    subseeds: list[int]


@dataclass
class GenerationPlan:
    """Per-image prompts and seeds for a whole job (n_iter batches of batch_size)."""

    prompts: list[str]
    negative_prompts: list[str]
    seeds: list[int]
    subseeds: list[int]
    n_iter: int
    batch_size: int
    extra_infotext: dict[str, Any] = field(default_factory=dict)  # A1111's extra_generation_params

    @classmethod
    def uniform(cls, prompt: str, negative_prompt: str, seeds: list[int], subseeds: list[int], n_iter: int,
                batch_size: int) -> "GenerationPlan":
        """Every image with the same prompt (the plan before any extension touches it)."""
        count = n_iter * batch_size
        return cls([prompt] * count, [negative_prompt] * count, list(seeds), list(subseeds), n_iter, batch_size)

    @property
    def count(self) -> int:
        return self.n_iter * self.batch_size

    def copy(self) -> "GenerationPlan":
        return copy.deepcopy(self)

    def check(self) -> "GenerationPlan":
        """Raise PlanError unless every list has one entry per image and values are sane."""
        if not (isinstance(self.n_iter, int) and isinstance(self.batch_size, int)) or self.n_iter < 1 \
                or self.batch_size < 1:
            raise PlanError(f"n_iter and batch_size must be whole numbers >= 1, got {self.n_iter!r}, "
                            f"{self.batch_size!r}")
        for name in ("prompts", "negative_prompts", "seeds", "subseeds"):
            values = getattr(self, name)
            if not isinstance(values, list) or len(values) != self.count:
                size = len(values) if isinstance(values, list) else type(values).__name__
                raise PlanError(f"{name} has {size} entries; the plan makes {self.count} images "
                                f"({self.n_iter} x {self.batch_size})")
        if not all(isinstance(p, str) for p in self.prompts + self.negative_prompts):
            raise PlanError("prompts and negative_prompts must be text")
        for name in ("seeds", "subseeds"):
            for value in getattr(self, name):
                # -1 is a subseed the core leaves unresolved because the variation strength is 0.
                lowest = -1 if name == "subseeds" else 0
                if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= MAX_SEED:
                    raise PlanError(f"{name}: {value!r} is not a seed from 0 to {MAX_SEED}")
        if not isinstance(self.extra_infotext, dict):
            raise PlanError("extra_infotext must be a dict of infotext key -> value")
        return self

    def batch(self, index: int) -> BatchPlan:
        """The slice for batch ``index`` (0-based)."""
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return BatchPlan(index, self.prompts[part], self.negative_prompts[part], self.seeds[part],
                         self.subseeds[part])


def batch_conditioning(conds: list, empty_chunk):
    """One Conditioning for a batch whose images have their own prompts.

    ``conds`` are per-image Conditionings (batch 1 each); identical objects mean one prompt for the
    batch and that object is returned as it is. Otherwise they are stacked on the batch axis, the
    shorter ones padded with ``empty_chunk()`` (the encoding of an empty 77-token chunk, [1, 77, dim])
    as A1111 pads prompts of different lengths in one batch; an all-zero negative (SDXL's empty
    negative) is padded with zeros.
    """
    import torch

    first = conds[0]
    if all(c is first for c in conds):
        return first
    length = max(c.prompt_embeds.shape[1] for c in conds)
    empty = empty_chunk() if any(c.prompt_embeds.shape[1] != length for c in conds) else None

    def pad(tensor, zero: bool):
        missing = length - tensor.shape[1]
        if missing == 0:
            return tensor
        chunks = missing // empty.shape[1]
        filler = torch.zeros_like(empty) if zero else empty
        return torch.cat([tensor, filler.to(tensor).repeat(1, chunks, 1)], dim=1)

    positive = torch.cat([pad(c.prompt_embeds, False) for c in conds])
    negative = torch.cat([pad(c.negative_prompt_embeds, not bool(c.negative_prompt_embeds.any())) for c in conds])
    pooled = negative_pooled = None
    if first.pooled_prompt_embeds is not None:
        pooled = torch.cat([c.pooled_prompt_embeds for c in conds])
        negative_pooled = torch.cat([c.negative_pooled_prompt_embeds for c in conds])
    return type(first)(positive, negative, pooled, negative_pooled)


def hires_for_batch(hr, hr_plan, request, pairs: list[tuple[str, str]], encode_hr):
    """The hires pass's conditioning for one batch of planned prompts.

    A1111 gives each image's second pass that image's own prompt where ``hr_prompt`` /
    ``hr_negative_prompt`` are empty. The job-wide ``(hr, hr_plan)`` is returned as it is when the
    batch's prompts are the job's; otherwise a copy of ``hr`` with the batch's conditioning (encoded
    by ``encode_hr``, the second pass's checkpoint) and a per-call guidance plan when the batch
    shares one prompt (a mixed batch uses each prompt's final schedule entry, as the first pass).
    """
    if hr is None:
        return None, None
    hr_pairs = [(request.hr_prompt or a, request.hr_negative_prompt or b) for a, b in pairs]
    if all(pair == (hr.prompt, hr.negative_prompt) for pair in hr_pairs):
        return hr, hr_plan
    import dataclasses

    from webui.generation import guidance, samplers

    steps = request.hr_second_pass_steps or request.steps
    conds = {pair: encode_hr(*pair, steps=steps) for pair in set(hr_pairs)}
    cond = batch_conditioning([conds[pair] for pair in hr_pairs], lambda: encode_hr("", "").prompt_embeds[:, :77])
    plan = None
    if len(conds) == 1:
        plan = guidance.build_plan(*hr_pairs[0], samplers.prompt_steps(hr.sampler_name, hr.run_steps), encode_hr,
                                   cond)
    return dataclasses.replace(hr, cond=cond, prompt=hr_pairs[0][0], negative_prompt=hr_pairs[0][1]), plan
