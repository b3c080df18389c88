"""Saving a replica's result on the front: the one writer of outputs/ (numbered, atomic, never overwriting)."""
from __future__ import annotations

from pathlib import Path

from webui.generation import core as generation_core
from webui.generation.request import GenerationResult


def save_result(ctx: generation_core.CoreContext, result: GenerationResult, model_name: str) -> list[Path]:
    """Save samples and grid as generate() would have; [] when the request or settings say not to."""
    if not result.images:
        return []
    prompt = result.prompts[0] if result.prompts else result.request.prompt
    return generation_core.save_images(ctx, result.request, result.images, result.infotexts, result.seeds,
                                       model_name, prompt, result.interrupted, incomplete=result.incomplete)
