"""Learning-rate schedules: kohya's named schedulers and A1111's "rate:step, rate:step" syntax.

Each returns a multiplier of the base learning rate per optimiser step, for
``torch.optim.lr_scheduler.LambdaLR`` (via ``LoopConfig.lr_lambda``).
"""
from __future__ import annotations

import math
from typing import Callable

LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts")


def lr_multiplier(name: str, warmup_steps: int, total_steps: int, cycles: int = 1) -> Callable[[int], float]:
    """The multiplier function of a named scheduler (diffusers/kohya semantics); warmup is linear from 0."""
    if name not in LR_SCHEDULERS:
        raise ValueError(f"LR scheduler must be one of {', '.join(LR_SCHEDULERS)}, got {name!r}")
    warmup = max(0, int(warmup_steps))
    total = max(1, int(total_steps))
    cycles = max(1, int(cycles))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if name in ("constant", "constant_with_warmup"):
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if name == "linear":
            return max(0.0, 1.0 - progress)
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        # cosine_with_restarts: hard restarts, `cycles` times
        if progress >= 1.0:
            return 0.0
        return 0.5 * (1.0 + math.cos(math.pi * ((cycles * progress) % 1.0)))

    return f


def parse_a1111_rate(text: str | float | int, max_steps: int) -> list[tuple[float, int]]:
    """A1111's learning-rate field: ``0.005`` or ``0.005:100, 1e-3:1000, 1e-5`` (rate until step).

    Returns (rate, until_step) pairs; the last one runs to ``max_steps``. Raises ValueError
    with a message that names the bad part.
    """
    if isinstance(text, bool):
        raise ValueError(f"learning rate must be a number, got {text!r}")
    if isinstance(text, (int, float)):
        text = str(text)
    if not isinstance(text, str) or not text.strip():
        raise ValueError("learning rate is empty; give a number such as 0.005 or a schedule such as "
                         "0.005:100, 1e-3:1000")
    pairs: list[tuple[float, int]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        rate_text, sep, step_text = part.partition(":")
        try:
            rate = float(rate_text)
        except ValueError:
            raise ValueError(f"learning rate {rate_text.strip()!r} is not a number "
                             "(expected e.g. 0.005 or 0.005:100, 1e-3:1000)") from None
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"learning rate must be a positive number, got {rate_text.strip()!r}")
        if sep:
            try:
                until = int(step_text)
            except ValueError:
                raise ValueError(f"step {step_text.strip()!r} in learning rate {part!r} is not a whole number") from None
            if until <= 0:
                raise ValueError(f"step in learning rate {part!r} must be positive")
        else:
            until = max_steps
        pairs.append((rate, until))
        if until >= max_steps:
            break
    if not pairs:
        raise ValueError("learning rate is empty")
    return pairs


def a1111_multiplier(pairs: list[tuple[float, int]]) -> Callable[[int], float]:
    """Multiplier of the first rate for a parsed A1111 schedule (so LambdaLR's base lr is pairs[0][0])."""
    base = pairs[0][0]

    def f(step: int) -> float:
        for rate, until in pairs:
            if step < until:
                return rate / base
        return pairs[-1][0] / base

    return f
