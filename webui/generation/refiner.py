"""The refiner (A1111 1.6+): switch to a second checkpoint mid-sampling, at a fraction of the schedule.

A core Feature. When a job names ``refiner_checkpoint``, the refiner model comes from the model
manager's cache (a companion of the active model, so a second run does not reload it) and a step
callback swaps the pipeline's UNet for the refiner's once the sampling is ``refiner_switch_at``
through (A1111's default measure: ``(999 - timestep) / 1000``), returning the refiner's own
conditioning: its text encoders' embeddings, and for an SDXL refiner its pooled embeddings and
aesthetic-score time ids. The sampler keeps its state, as in A1111. With hires fix the refiner
runs in the pass the ``hires_fix_refiner_pass`` setting names (A1111's default: the second pass).
"""
from __future__ import annotations

from typing import Any

import torch

from webui.generation import conditioning
from webui.generation.processing import Processing, StepState

REFINER_PASSES = ("first pass", "second pass", "both passes")
AESTHETIC_SCORE, NEGATIVE_AESTHETIC_SCORE = 6.0, 2.5  # diffusers' and A1111's SDXL-refiner defaults


def _completed(state: StepState) -> float:
    """How far sampling will be before the next step, by A1111's timestep measure."""
    scheduler = state.pipe.scheduler
    timesteps = scheduler.timesteps
    order = int(getattr(scheduler, "order", 1) or 1)
    begin = getattr(scheduler, "begin_index", None) or 0
    index = begin + (state.step + 1) * order
    if index >= len(timesteps):
        return 1.0
    return (999 - float(timesteps[index])) / 1000


def _cfg_pair(negative: torch.Tensor, positive: torch.Tensor, like: torch.Tensor, cfg: bool) -> torch.Tensor:
    """Negative and positive repeated for the batch (shaped like ``like``), concatenated under CFG."""
    def repeat(t: torch.Tensor, n: int) -> torch.Tensor:
        return t.repeat(n, *[1] * (t.dim() - 1))

    out = torch.cat([repeat(negative, like.shape[0] // 2), repeat(positive, like.shape[0] // 2)]) if cfg \
        else repeat(positive, like.shape[0])
    return out.to(like.device, like.dtype)


class RefinerFeature:
    """Registers the refiner switch into every job that asks for one."""

    name = "refiner"

    def __init__(self, models, settings):
        self.models = models
        self.settings = settings

    def _passes(self, p: Processing) -> tuple[str, ...]:
        if not p.request.enable_hr:
            return ("main",)
        which = (p.request.override_settings or {}).get("hires_fix_refiner_pass") or \
            (self.settings.get("hires_fix_refiner_pass") if "hires_fix_refiner_pass" in self.settings.options
             else "second pass")
        return {"first pass": ("main",), "second pass": ("hires",), "both passes": ("main", "hires")}.get(
            which, ("hires",))

    def prepare(self, p: Processing) -> None:
        req = p.request
        if not req.refiner_checkpoint or req.refiner_switch_at >= 1.0:
            return
        from webui.generation.hires import companion

        refiner = companion(p, self.models, req.refiner_checkpoint, "refiner_checkpoint")
        p.extra_infotext["Refiner"] = refiner.info.title
        p.extra_infotext["Refiner switch at"] = req.refiner_switch_at
        if refiner is p.model:
            return  # the same checkpoint: nothing to switch (A1111 writes the keys all the same)
        passes = self._passes(p)
        cache: dict[str, Any] = {}
        swapped: dict[int, tuple[Any, Any]] = {}  # id(pipe) -> (pipe, its own UNet)

        def restore():
            for pipe, unet in swapped.values():
                pipe.unet = unet
            swapped.clear()

        p.stack.callback(restore)  # an interrupted or failed call must not leave the refiner's UNet in place

        def encoded(state: StepState):
            if "cond" not in cache:
                clip_skip = req.clip_skip or self.settings.get("CLIP_stop_at_last_layers")
                cache["cond"] = conditioning.encode_prompts(refiner.pipe, p.prompt, p.negative_prompt,
                                                            clip_skip=clip_skip, steps=req.steps,
                                                            embeddings=p.embeddings)
            return cache["cond"]

        def on_step(state: StepState):
            if state.pass_name not in passes:
                return None
            pipe = state.pipe
            if state.step + 1 >= state.total:
                if id(pipe) in swapped:  # the next pipeline call (batch) starts on the base model again
                    pipe.unet = swapped.pop(id(pipe))[1]
                return None
            if id(pipe) in swapped or _completed(state) < req.refiner_switch_at:
                return None
            swapped[id(pipe)] = (pipe, pipe.unet)
            pipe.unet = refiner.pipe.unet
            return self._conditioning(state, encoded(state), refiner)

        names = ["prompt_embeds"]
        if getattr(p.model.pipe, "text_encoder_2", None) is not None:
            names += ["add_text_embeds", "add_time_ids"]
        p.on_step(on_step, tensors=tuple(names))

    @staticmethod
    def _conditioning(state: StepState, cond, refiner) -> dict[str, torch.Tensor]:
        tensors = state.tensors
        cfg = bool(getattr(state.pipe, "do_classifier_free_guidance", True))
        out = {"prompt_embeds": _cfg_pair(cond.negative_prompt_embeds, cond.prompt_embeds, tensors["prompt_embeds"],
                                          cfg)}
        if "add_text_embeds" in tensors and cond.pooled_prompt_embeds is not None:
            out["add_text_embeds"] = _cfg_pair(cond.negative_pooled_prompt_embeds, cond.pooled_prompt_embeds,
                                               tensors["add_text_embeds"], cfg)
        if "add_time_ids" in tensors:
            ids = tensors["add_time_ids"]
            wants_score = bool(getattr(refiner.pipe.config, "requires_aesthetics_score", False)) or \
                getattr(refiner.pipe, "text_encoder", None) is None
            if wants_score and ids.shape[-1] == 6:
                # base ids: (orig h, orig w, crop top, crop left, target h, target w) -> refiner's 5 values
                base = ids[-1, :4]
                positive = torch.cat([base, base.new_tensor([AESTHETIC_SCORE])])[None]
                negative = torch.cat([base, base.new_tensor([NEGATIVE_AESTHETIC_SCORE])])[None]
                out["add_time_ids"] = _cfg_pair(negative, positive, ids[:, :5], cfg)
        return out
