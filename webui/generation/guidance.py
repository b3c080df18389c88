"""Per-step conditioning and composable guidance, A1111's way, through a UNet hook.

A1111 applies three pieces of prompt syntax inside its CFG denoiser, once per model call:

- prompt editing ``[from:to:when]`` and alternation ``[a|b]``: the conditioning of call ``c``
  (0-based, counting every model evaluation) is the first schedule entry with ``c <= end``,
  the schedule spanning ``steps`` (twice that for second-order samplers);
- ``AND`` (composable diffusion): each sub-prompt ``text :weight`` is encoded on its own and
  the guided prediction is ``eps_u + cfg * sum_i w_i * (eps_i - eps_u)``; a lone ``text :w``
  is one sub-prompt with weight w;
- DDIM CFG++ needs the unconditional prediction and a CFG scale divided by 12.5.

A diffusers pipeline evaluates ``[uncond, cond]`` in one batch and combines them with
``guidance_scale``. ``guidance_hook`` replaces the UNet's ``forward`` for one pipeline call
with ``_Hook``, which picks this call's embeddings from a ``GuidancePlan``, runs the real
UNet on ``[uncond, cond_1 .. cond_K]`` and hands the pipeline ``[eps_u, eps_u + m * sum_i
w_i (eps_i - eps_u)]``, so the pipeline's own CFG arithmetic yields A1111's result. Without
editing, AND or such a sampler, no hook is installed and nothing changes.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch

from webui.generation.prompt_parser import get_prompt_schedule

# A1111's prompt_parser.re_AND / re_weight.
_AND = re.compile(r"\bAND\b")
_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_and(prompt: str) -> list[tuple[str, float, bool]]:
    """A1111's sub-prompts of one prompt: ``(text, weight, weight_written)`` per ``AND`` part."""
    parts = []
    for sub in _AND.split(prompt):
        match = _WEIGHT.search(sub)
        text, weight = match.groups() if match is not None else (sub, None)
        parts.append((text, 1.0 if weight is None else float(weight), weight is not None))
    return parts


@dataclass(frozen=True)
class Embedding:
    """One encoded text: ``embeds`` [1, L, D]; ``pooled`` [1, P] for SDXL; ``zero`` for SDXL's empty negative."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    @property
    def zero(self) -> bool:
        return not bool(self.embeds.any())


@dataclass(frozen=True)
class Schedule:
    """``(end, Embedding)`` entries: entry i serves calls up to and including ``end``."""

    entries: tuple[tuple[int, Embedding], ...]

    def at(self, call: int) -> Embedding:
        for end, embedding in self.entries:
            if call <= end:
                return embedding
        # A1111 falls back to the first entry past the end (only DPM adaptive gets there); the last is meant.
        return self.entries[-1][1]


@dataclass(frozen=True)
class GuidancePlan:
    negative: Schedule
    positives: tuple[tuple[float, Schedule], ...]
    empty: Callable[[], Embedding]  # the empty prompt's chunk, for padding
    trivial: bool  # one sub-prompt of weight 1 and no schedule: the pipeline's own call does the same

    def at(self, call: int) -> tuple[Embedding, list[tuple[float, Embedding]]]:
        return self.negative.at(call), [(w, s.at(call)) for w, s in self.positives]


Encoder = Callable[[str, str], object]  # (prompt, negative) -> conditioning.Conditioning


def build_plan(prompt: str, negative: str, total_steps: int, encode: Encoder, base=None) -> GuidancePlan:
    """The per-call conditioning of ``prompt``/``negative``.

    ``encode(prompt, negative)`` is the core's encoder (weights, clip skip, embeddings...),
    called once per distinct text; ``base`` (the core's Conditioning of the whole prompt)
    is reused when the plan is trivial, so then nothing is encoded twice.
    """
    subprompts = split_and(prompt)
    negative_schedule = get_prompt_schedule(negative, total_steps)
    positive_schedules = [(w, get_prompt_schedule(text, total_steps)) for text, w, _ in subprompts]
    trivial = (len(subprompts) == 1 and not subprompts[0][2] and len(negative_schedule) == 1
               and len(positive_schedules[0][1]) == 1)
    cache: dict[tuple[str, bool | None], Embedding] = {}

    def embed(text: str, is_negative: bool) -> Embedding:
        key = (text, is_negative)
        if key not in cache:
            if trivial and base is not None:
                cache[key] = (Embedding(base.negative_prompt_embeds, base.negative_pooled_prompt_embeds)
                              if is_negative else Embedding(base.prompt_embeds, base.pooled_prompt_embeds))
            else:
                c = encode("", text) if is_negative else encode(text, "")
                cache[key] = (Embedding(c.negative_prompt_embeds, c.negative_pooled_prompt_embeds)
                              if is_negative else Embedding(c.prompt_embeds, c.pooled_prompt_embeds))
        return cache[key]

    def empty() -> Embedding:
        # Its own cache slot: a trivial plan's ("", False) entry may be a padded base embedding.
        if ("", None) not in cache:
            c = encode("", "")
            cache[("", None)] = Embedding(c.prompt_embeds[:, :77], c.pooled_prompt_embeds)
        return cache[("", None)]

    negative_plan = Schedule(tuple((end, embed(text, True)) for end, text in negative_schedule))
    positives = tuple((w, Schedule(tuple((end, embed(text, False)) for end, text in schedule)))
                      for w, schedule in positive_schedules)
    return GuidancePlan(negative_plan, positives, empty, trivial)


def _pad_last(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """A1111's reconstruct_multicond_batch: shorter sub-prompts repeat their last vector."""
    length = max(t.shape[1] for t in tensors)
    return [t if t.shape[1] == length else torch.cat([t, t[:, -1:].expand(-1, length - t.shape[1], -1)], dim=1)
            for t in tensors]


def _pad_chunks(t: torch.Tensor, length: int, filler: torch.Tensor) -> torch.Tensor:
    """Pad cond or uncond with whole empty-prompt chunks (what the core does between prompt and negative)."""
    if t.shape[1] >= length:
        return t
    chunks = (length - t.shape[1]) // filler.shape[1]
    return torch.cat([t, filler.to(t).repeat(1, chunks, 1)], dim=1)


def _remap(value, index: torch.Tensor, n: int):
    """Re-batch a UNet keyword argument whose batch dimension is the pipeline's (n rows)."""
    if isinstance(value, torch.Tensor):
        return value.index_select(0, index.to(value.device)) if value.ndim and value.shape[0] == n else value
    if isinstance(value, (list, tuple)):
        return type(value)(_remap(v, index, n) for v in value)
    if isinstance(value, dict):
        return {k: _remap(v, index, n) for k, v in value.items()}
    return value


class _Hook:
    """The UNet's forward for one pipeline call (see the module docstring)."""

    def __init__(self, forward, plan: GuidancePlan | None, batch_size: int, scheduler, guidance_scale: float):
        self.forward, self.plan, self.batch_size = forward, plan, batch_size
        self.scheduler, self.guidance_scale = scheduler, guidance_scale
        self.calls = 0
        self.last_hidden: torch.Tensor | None = None  # the last call's encoder_hidden_states (tests, debugging)

    @staticmethod
    def _wrap(result: torch.Tensor, out, return_dict: bool):
        if not return_dict:
            return (result,) + (tuple(out[1:]) if isinstance(out, tuple) else ())
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        return UNet2DConditionOutput(sample=result)

    def __call__(self, sample, timestep, encoder_hidden_states=None, **kwargs):
        call = self.calls
        self.calls += 1
        return_dict = kwargs.get("return_dict", True)
        if getattr(self.scheduler, "finished", False):
            return self._wrap(torch.zeros_like(sample), None, return_dict)  # DPM adaptive's unused slots
        b, n = self.batch_size, sample.shape[0]
        if n not in (b, 2 * b):
            raise RuntimeError(f"guidance hook: the pipeline sent {n} rows for a batch of {b}")
        cfg = n == 2 * b
        if self.plan is None:
            out = self.forward(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)
            if not (cfg and getattr(self.scheduler, "needs_uncond", False)):
                return out
            # CFG++ on the pipeline's own [uncond, cond] batch.
            eps_u, eps_c = (out[0] if isinstance(out, tuple) else out.sample).float().chunk(2)
            self.scheduler.uncond_output = eps_u
            multiplier = getattr(self.scheduler, "guidance_scale_multiplier", 1.0)
            result = torch.cat([eps_u, eps_u + multiplier * (eps_c - eps_u)])
            return self._wrap(result.to(sample.dtype), out, return_dict)
        negative, subs = self.plan.at(call)
        k = len(subs)
        # Rows: [uncond] + [cond_i for each sub-prompt], each a copy of the batch's latents.
        source = (list(range(b)) + list(range(b, 2 * b)) * k) if cfg else list(range(b)) * (k + 1)
        index = torch.tensor(source)
        conds = _pad_last([e.embeds for _, e in subs])
        uncond = negative.embeds
        length = max(conds[0].shape[1], uncond.shape[1])
        if uncond.shape[1] < length:
            filler = uncond.new_zeros(1, 77, uncond.shape[2]) if negative.zero else self.plan.empty().embeds
            uncond = _pad_chunks(uncond, length, filler)
        elif conds[0].shape[1] < length:
            conds = [_pad_chunks(c, length, self.plan.empty().embeds) for c in conds]
        ref = encoder_hidden_states
        hidden = torch.cat([t.to(ref.device, ref.dtype).expand(b, -1, -1) for t in [uncond] + conds])
        self.last_hidden = hidden
        kwargs = {key: _remap(value, index, n) for key, value in kwargs.items()}
        added = kwargs.get("added_cond_kwargs")
        if added and negative.pooled is not None and "text_embeds" in added:
            pooled = [negative.pooled] + [e.pooled for _, e in subs]
            text = added["text_embeds"]
            added = dict(added, text_embeds=torch.cat([p.to(text.device, text.dtype).expand(b, -1) for p in pooled]))
            kwargs["added_cond_kwargs"] = added
        out = self.forward(sample.index_select(0, index.to(sample.device)), _remap(timestep, index, n),
                           encoder_hidden_states=hidden, **kwargs)
        eps = (out[0] if isinstance(out, tuple) else out.sample).float()
        eps_u = eps[:b]
        delta = sum(w * (eps[(i + 1) * b:(i + 2) * b] - eps_u) for i, (w, _) in enumerate(subs))
        multiplier = getattr(self.scheduler, "guidance_scale_multiplier", 1.0)
        if getattr(self.scheduler, "needs_uncond", False):
            self.scheduler.uncond_output = eps_u
        if cfg:  # the pipeline computes eps_u + g * (second - eps_u)
            result = torch.cat([eps_u, eps_u + multiplier * delta])
        else:  # guidance_scale <= 1: the pipeline uses the output as it is
            result = eps_u + self.guidance_scale * multiplier * delta
        return self._wrap(result.to(sample.dtype), out, return_dict)


def hook_needed(plan: GuidancePlan | None, scheduler) -> bool:
    return ((plan is not None and not plan.trivial) or bool(getattr(scheduler, "needs_uncond", False))
            or bool(getattr(scheduler, "needs_unet_hook", False)))


@contextmanager
def guidance_hook(pipe, plan: GuidancePlan | None, batch_size: int, guidance_scale: float):
    """Route ``pipe.unet`` through ``_Hook`` for one pipeline call when the plan or sampler needs it.

    Yields the hook (or None when not needed). The UNet's previous ``forward`` (its own, or an
    offload hook's) is restored on exit.
    """
    scheduler = pipe.scheduler
    if not hook_needed(plan, scheduler):
        yield None
        return
    unet = pipe.unet
    had_instance_forward = "forward" in unet.__dict__
    previous = unet.__dict__.get("forward")
    # A trivial plan only matters to CFG++ (which also needs the uncond when the pipeline skips CFG).
    needs_plan = (plan is not None and not plan.trivial) or getattr(scheduler, "needs_uncond", False)
    hook = _Hook(unet.forward, plan if needs_plan else None, batch_size, scheduler, guidance_scale)
    unet.forward = hook
    try:
        yield hook
    finally:
        if had_instance_forward:
            unet.forward = previous
        else:
            del unet.forward
