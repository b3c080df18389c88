"""How much one generation request may ask for, so one request cannot hold the single queue.

The limits come from flags (`--max-prompt-length`, `--max-image-pixels`, `--max-pixel-steps`)
and are checked when a request is submitted (`AppContext.submit_txt2img`), for the UI, the API,
MCP and extensions alike. A refused request gets a RequestError naming the field, the limit and
the flag that raises it. Work is counted as width x height x steps x images, plus the hires-fix
pass when a request has one: it is what sampling time grows with.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from webui.generation.request import FieldError, RequestError
from webui.userfiles import is_valid_text


@dataclass(frozen=True)
class RequestBudget:
    max_prompt_length: int = 20_000
    max_image_pixels: int = 2048 * 2048
    max_pixel_steps: float = 100 * 1024 * 1024 * 50

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "RequestBudget":
        defaults = cls()
        return cls(max_prompt_length=getattr(args, "max_prompt_length", None) or defaults.max_prompt_length,
                   max_image_pixels=getattr(args, "max_image_pixels", None) or defaults.max_image_pixels,
                   max_pixel_steps=getattr(args, "max_pixel_steps", None) or defaults.max_pixel_steps)

    def problems(self, request: Any) -> list[FieldError]:
        """What in a validated request is over budget or not storable text (empty list: fine)."""
        errors = []
        for name in ("prompt", "negative_prompt"):
            text = getattr(request, name, "") or ""
            if not is_valid_text(text):
                errors.append(FieldError(name, "contains invalid Unicode (a lone surrogate or a NUL character)"))
            elif len(text) > self.max_prompt_length:
                errors.append(FieldError(name, f"{len(text)} characters; at most {self.max_prompt_length} are "
                                               "accepted (the owner can raise --max-prompt-length)"))
        width, height = (int(getattr(request, k, 0) or 0) for k in ("width", "height"))
        if width * height > self.max_image_pixels:
            errors.append(FieldError("width", f"{width}x{height} is {width * height} pixels; at most "
                                              f"{self.max_image_pixels} are accepted (the owner can raise "
                                              "--max-image-pixels)"))
        work = self.work(request)
        if work > self.max_pixel_steps:
            images = int(getattr(request, "batch_size", 1) or 1) * int(getattr(request, "n_iter", 1) or 1)
            errors.append(FieldError("steps", f"{width}x{height} x {getattr(request, 'steps', 0)} steps x {images} "
                                              f"images is {work:.3g} pixel-steps; one request may ask for "
                                              f"{self.max_pixel_steps:.3g} (fewer steps, images or pixels; the "
                                              "owner can raise --max-pixel-steps)"))
        return errors

    @staticmethod
    def work(request: Any) -> float:
        """width x height x steps x images, with a hires pass (fields of later issues) when enabled."""
        images = int(getattr(request, "batch_size", 1) or 1) * int(getattr(request, "n_iter", 1) or 1)
        width, height, steps = (int(getattr(request, k, 0) or 0) for k in ("width", "height", "steps"))
        work = float(width * height * steps)
        if getattr(request, "enable_hr", False):
            scale = float(getattr(request, "hr_scale", 2.0) or 2.0)
            hr_steps = int(getattr(request, "hr_second_pass_steps", 0) or steps)
            work += width * scale * height * scale * hr_steps
        return work * images

    def check(self, request: Any) -> None:
        """Raise RequestError listing every problem (the caller turns it into a 422 or a UI message)."""
        errors = self.problems(request)
        if errors:
            raise RequestError(errors)
