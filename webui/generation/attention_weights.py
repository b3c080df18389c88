"""Attention weights of prompt runs, computed the way A1111 multiplies them, in linear time.

The parser (`prompt_parser.parse_prompt_attention`) turns brackets into operations
``(start, end, factor)``: multiply runs[start:end] by factor, in A1111's order (each closing
bracket, then the unclosed ones). A1111 applies each to every run in its range, which is
quadratic (``"(a" * 30000`` is 450 million multiplications). `exact` gives the same floats bit
for bit at the cost of one multiplication per distinct weight an operation touches; past a
budget (adversarial nesting of many distinct weights, no human prompt comes near) `log_space`
computes the products rounded once instead.
"""
from __future__ import annotations

import math
from bisect import bisect_right

# Exact weights cost one multiplication per (distinct weight, enclosing group); past this many per
# character of prompt the weights are computed in log space instead.
EXACT_WORK_PER_CHAR = 2
EXACT_WORK_MIN = 50_000


def weights(count: int, ops: list[tuple[int, int, float]], text_length: int) -> list[float]:
    """The weight of each of `count` runs after `ops`: exact when affordable, else log space."""
    budget = max(EXACT_WORK_MIN, EXACT_WORK_PER_CHAR * text_length)
    result = exact(count, ops, budget)
    return result if result is not None else log_space(count, ops)


def exact(count: int, ops: list[tuple[int, int, float]], budget: int) -> list[float] | None:
    """Every run's weight, multiplied in A1111's order, so floats match A1111's bit for bit.

    A1111 multiplies each run in the range one by one. Here runs with equal weights that
    sit next to each other share one block (starts[i], values[i]): a multiplication
    touches each block once, and blocks that become equal merge again. Because an op's
    end never decreases, every op covers a tail of the blocks made so far, so the cost is
    the number of distinct weights it touches: one per op for ``"(a" * n`` or ``"((a))"``.
    Returns None once more than ``budget`` blocks have been touched (adversarial nesting
    of many distinct weights); the caller then uses log space.
    """
    starts: list[int] = []
    values: list[float] = []
    covered = 0  # runs [0, covered) are in blocks; the rest still have weight 1.0
    work = 0
    for start, end, factor in ops:
        if end > covered:  # runs added since the last op, all at 1.0: a new block, or the last one grows
            if not (values and _same(values[-1], 1.0)):
                starts.append(covered)
                values.append(1.0)
            covered = end
        if start >= end or factor == 1.0:
            continue  # empty group, or a multiplication that changes nothing
        first = bisect_right(starts, start) - 1
        if starts[first] < start:  # split the block the group starts inside
            first += 1
            starts.insert(first, start)
            values.insert(first, values[first - 1])
        # Blocks end at `covered`, which equals `end` (ends never decrease), so [first:] is the range.
        work += len(values) - first
        if work > budget:
            return None
        tail_starts, tail_values = [], []
        previous = values[first - 1] if first else None
        for block_start, value in zip(starts[first:], values[first:]):
            value *= factor
            if _same(tail_values[-1] if tail_values else previous, value):
                continue  # equal to its left neighbour: one block
            tail_starts.append(block_start)
            tail_values.append(value)
        starts[first:] = tail_starts
        values[first:] = tail_values
    weights = [1.0] * count
    bounds = starts[1:] + [covered]
    for block_start, block_end, value in zip(starts, bounds, values):
        weights[block_start:block_end] = [value] * (block_end - block_start)
    return weights


def _same(a: float | None, b: float) -> bool:
    """Equal and, for zeros, of the same sign: such blocks stay equal under every later multiplication."""
    return a is not None and a == b and (a != 0 or math.copysign(1.0, a) == math.copysign(1.0, b))


def log_space(count: int, ops: list[tuple[int, int, float]]) -> list[float]:
    """Weights as exact products rounded once (difference arrays, linear time).

    Only for prompts past the exact budget: they agree with A1111's repeated rounding to
    about 1e-15 relative per enclosing group, and overflow, zero and sign come out alike.
    """
    log_sum = [0.0] * (count + 1)
    negatives = [0] * (count + 1)
    zeros = [0] * (count + 1)
    infinities = [0] * (count + 1)
    for start, end, factor in ops:
        if start >= end:
            continue
        if factor == 0:
            zeros[start] += 1
            zeros[end] -= 1
        elif math.isinf(factor):
            infinities[start] += 1
            infinities[end] -= 1
        else:
            log_sum[start] += math.log(abs(factor))
            log_sum[end] -= math.log(abs(factor))
        if factor < 0:
            negatives[start] += 1
            negatives[end] -= 1
    weights = []
    total = 0.0
    negative = zero = infinite = 0
    for i in range(count):
        total += log_sum[i]
        negative += negatives[i]
        zero += zeros[i]
        infinite += infinities[i]
        sign = -1.0 if negative % 2 else 1.0
        if zero and infinite:
            weights.append(math.nan)
        elif zero:
            weights.append(sign * 0.0)
        elif infinite or total > 709.78:  # math.exp overflows past log(max float)
            weights.append(sign * math.inf)
        else:
            weights.append(sign * math.exp(total))
    return weights
