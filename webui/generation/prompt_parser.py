"""A1111 prompt syntax: attention weights, BREAK, prompt editing and alternation.

Two independent passes, as in AUTOMATIC1111's ``modules/prompt_parser.py``:

1. :func:`get_prompt_schedule` resolves prompt editing (``[from:to:when]``,
   ``[to:when]``, ``[from::when]``) and alternation (``[a|b]``) into a list of
   ``(end_step, text)`` pairs.  The texts keep attention syntax untouched.
2. :func:`parse_prompt_attention` turns one such text into weighted runs
   (``(word)``, ``[word]``, ``(word:1.3)``, escapes, ``BREAK``).

A1111 uses a Lark grammar for pass 1.  We parse by hand instead: the grammar is
small, a recursive-descent parser needs no extra dependency, and it lets us
memoise group parses so pathological prompts (thousands of unclosed brackets)
stay fast.  Where Lark's grammar is ambiguous, A1111 resolves in favour of the
structured reading (``a [b:3]`` is an edit, not stray brackets); the parser
below tries the structured reading first and falls back to literal text only at
the top level, which gives the same results.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple, Union

from webui.generation import attention_weights

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1


class PromptRun(NamedTuple):
    """A stretch of prompt text and the attention weight applied to its tokens."""

    text: str
    weight: float


@dataclass(frozen=True)
class BreakMarker:
    """``BREAK`` in a prompt: the encoder starts a new 75-token chunk here."""

    def __repr__(self) -> str:
        return "BREAK"


BREAK = BreakMarker()

Run = Union[PromptRun, BreakMarker]

# Token order matters: the first alternative that matches wins, exactly like
# A1111's regex (an escape beats a lone backslash, ``:1.2)`` beats ``:``).
_ATTENTION_TOKEN = re.compile(
    r"""
    (?P<escape>\\[()\[\]\\])
  | (?P<backslash>\\)
  | (?P<open>[(\[])
  | :(?P<weight>[+-]?[.\d]+)\)
  | (?P<close>[)\]])
  | (?P<text>[^\\()\[\]:]+)
  | (?P<colon>:)
    """,
    re.VERBOSE,
)
_BREAK_WORD = re.compile(r"\bBREAK\b")



def _split_breaks(piece: str) -> list[str]:
    """A1111's ``re.split(r"\s*\bBREAK\b\s*", piece)``, in linear time.

    The regex backtracks over every whitespace run that is not followed by BREAK
    (quadratic on a prompt of spaces); finding the word and stripping around it gives
    the same parts, because ``\s`` and ``str.strip()`` agree on what whitespace is.
    """
    if "BREAK" not in piece:
        return [piece]
    parts, last = [], 0
    for match in _BREAK_WORD.finditer(piece):
        parts.append(piece[last : match.start()])
        last = match.end()
    parts.append(piece[last:])
    if len(parts) == 1:
        return parts
    return [part.rstrip() if i == 0 else part.lstrip() if i == len(parts) - 1 else part.strip()
            for i, part in enumerate(parts)]


def parse_prompt_attention(text: str) -> list[Run]:
    """Split ``text`` into weighted runs and BREAK markers, A1111 style.

    ``(x)`` multiplies by 1.1, ``[x]`` divides by 1.1, ``(x:w)`` multiplies by
    ``w``; nesting multiplies; brackets still open at the end apply to the rest
    of the prompt; unmatched closers are literal text.  Adjacent runs of equal
    weight are merged.  Never returns an empty list.

    Deviations from A1111, both where A1111 misbehaves: a BREAK inside brackets
    stays a BREAK (A1111 multiplies its -1 sentinel and then encodes the word
    "BREAK"), and a malformed weight such as ``(a:1.2.3)`` is read as text
    closed by ``)`` (A1111 raises ValueError).

    Linear time (A1111's loop is quadratic: ``"(a" * 30000`` took minutes): see
    ``attention_weights.py`` for how the floats stay bit-identical to A1111's.
    """
    texts: list = []  # run texts in order; BREAK where a chunk break goes
    # (start, end, factor): A1111 multiplies runs[start:end] by factor when a group closes,
    # in this order; end is the run count at that moment (runs added later are not scaled).
    ops: list[tuple[int, int, float]] = []
    round_opens: list[int] = []
    square_opens: list[int] = []

    def add_text(piece: str) -> None:
        for index, part in enumerate(_split_breaks(piece)):
            if index:
                texts.append(BREAK)
            if part:
                texts.append(part)

    for match in _ATTENTION_TOKEN.finditer(text):
        kind = match.lastgroup
        token = match.group(0)
        if kind == "escape":
            texts.append(token[1:])
        elif kind == "backslash":
            continue  # A1111 keeps an empty string for it, which carries no tokens
        elif kind == "open":
            (round_opens if token == "(" else square_opens).append(len(texts))
        elif kind == "weight" and round_opens:
            try:
                factor = float(match.group("weight"))
            except ValueError:
                add_text(token[:-1])
                factor = ROUND_MULTIPLIER
            ops.append((round_opens.pop(), len(texts), factor))
        elif token == ")" and round_opens:
            ops.append((round_opens.pop(), len(texts), ROUND_MULTIPLIER))
        elif token == "]" and square_opens:
            ops.append((square_opens.pop(), len(texts), SQUARE_MULTIPLIER))
        else:
            add_text(token)

    ops.extend((start, len(texts), ROUND_MULTIPLIER) for start in round_opens)
    ops.extend((start, len(texts), SQUARE_MULTIPLIER) for start in square_opens)

    return _merge(texts, attention_weights.weights(len(texts), ops, len(text)))


def _merge(texts: list, weights: list[float]) -> list[Run]:
    """Adjacent runs of equal weight as one run (joined once: no quadratic string growth)."""
    merged: list[Run] = []
    pending: list[str] = []
    weight = None

    def flush() -> None:
        if pending:
            merged.append(PromptRun("".join(pending), weight))
            pending.clear()

    for text, value in zip(texts, weights):
        if text is BREAK:
            flush()
            merged.append(BREAK)
            weight = None
        elif pending and weight == value:
            pending.append(text)
        else:
            flush()
            pending.append(text)
            weight = value
    flush()
    return merged or [PromptRun("", 1.0)]


# --- prompt editing and alternation -------------------------------------------------

# Lark's SIGNED_NUMBER, optionally padded with whitespace, then the closing bracket.
_WHEN_TAIL = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*\]")
_PLAIN = re.compile(r"[^\\\[\]():|]+")
_STRAY = "[]():"
# Deeper nesting than this is treated as invalid editing syntax (prompt used
# verbatim) rather than risking Python's recursion limit; real prompts nest a
# handful of levels.
MAX_NESTING = 100


@dataclass
class _Scheduled:
    before: list | None
    after: list
    when: str


@dataclass
class _Alternate:
    options: list


class _ParseFailed(Exception):
    """The prompt is not valid editing syntax; A1111 then uses it verbatim."""


class _ScheduleParser:
    """Recursive descent over A1111's schedule grammar, producing a node tree.

    Nodes are ``str`` (literal text), ``list`` (sequence), ``_Scheduled`` and
    ``_Alternate``.  Emphasis groups are kept as literal text around their
    contents, because this pass must not change attention syntax.
    """

    def __init__(self, text: str):
        self.text = text
        self.groups: dict[int, tuple[object, int] | None] = {}
        self.depth = 0

    def char(self, pos: int) -> str:
        return self.text[pos] if pos < len(self.text) else ""

    def parse(self) -> list:
        items: list = []
        pos = 0
        while pos < len(self.text):
            seq, pos = self.sequence(pos)
            items.extend(seq)
            char = self.char(pos)
            if char and char in _STRAY:
                items.append(char)
                pos += 1
            elif char:
                raise _ParseFailed  # '|' outside [a|b], or a backslash with nothing to escape
        return items

    def sequence(self, pos: int) -> tuple[list, int]:
        """Longest run of text and well-formed groups from ``pos``."""
        items: list = []
        while pos < len(self.text):
            char = self.text[pos]
            plain = _PLAIN.match(self.text, pos)
            if plain:
                items.append(plain.group(0))
                pos = plain.end()
            elif char == "\\":
                # Lark's '\\.' does not match a newline or the end of input.
                following = self.char(pos + 1)
                if not following or following == "\n":
                    break
                items.append(self.text[pos : pos + 2])
                pos += 2
            elif char in "([":
                group = self.group(pos)
                if group is None:
                    break
                node, pos = group
                items.append(node)
            else:
                break
        return items, pos

    def group(self, pos: int) -> tuple[object, int] | None:
        if pos not in self.groups:
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise _ParseFailed
            self.groups[pos] = self.round_group(pos) if self.text[pos] == "(" else self.square_group(pos)
            self.depth -= 1
        return self.groups[pos]

    def round_group(self, pos: int) -> tuple[object, int] | None:
        first, end = self.sequence(pos + 1)
        if self.char(end) == ")":
            return ["(", first, ")"], end + 1
        if self.char(end) == ":":
            second, end2 = self.sequence(end + 1)
            if self.char(end2) == ")":
                return ["(", first, ":", second, ")"], end2 + 1
        return None

    def square_group(self, pos: int) -> tuple[object, int] | None:
        first, end = self.sequence(pos + 1)
        char = self.char(end)
        if char == "]":
            return ["[", first, "]"], end + 1
        if char == "|":
            options = [first]
            while self.char(end) == "|":
                option, end = self.sequence(end + 1)
                options.append(option)
            if self.char(end) == "]":
                return _Alternate(options), end + 1
            return None
        if char == ":":
            tail = _WHEN_TAIL.match(self.text, end + 1)
            if tail:
                return _Scheduled(None, first, tail.group(1)), tail.end()
            second, end2 = self.sequence(end + 1)
            if self.char(end2) == ":":
                tail = _WHEN_TAIL.match(self.text, end2 + 1)
                if tail:
                    return _Scheduled(first, second, tail.group(1)), tail.end()
        return None


def _walk(node, visit) -> None:
    """Call ``visit`` on every edit/alternation node, including nested ones."""
    if isinstance(node, list):
        for child in node:
            _walk(child, visit)
    elif isinstance(node, _Scheduled):
        visit(node)
        _walk(node.before or [], visit)
        _walk(node.after, visit)
    elif isinstance(node, _Alternate):
        visit(node)
        for option in node.options:
            _walk(option, visit)


def _render(node, step: int, when_of: dict[int, int]) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "".join(_render(child, step, when_of) for child in node)
    if isinstance(node, _Scheduled):
        if step <= when_of[id(node)]:
            return _render(node.before or [], step, when_of)
        return _render(node.after, step, when_of)
    return _render(node.options[(step - 1) % len(node.options)], step, when_of)


def get_prompt_schedule(
    prompt: str,
    steps: int,
    hires_steps: int | None = None,
    use_old_scheduling: bool = False,
) -> list[tuple[int, str]]:
    """Resolve prompt editing and alternation into ``[(end_step, text), ...]``.

    Same semantics as A1111's ``get_learned_conditioning_prompt_schedules`` for
    one prompt: entry ``(end, text)`` applies to steps up to and including
    ``end``; the last entry always ends at ``steps``.  ``when`` written with a
    decimal point is a fraction of the steps (``0.25``), without one it is an
    absolute step (``5``).  With ``hires_steps`` the schedule covers the hires
    pass (``when`` counted on from the base pass: ``1.5`` is halfway through
    it).  ``use_old_scheduling`` is A1111's legacy rule: ``when < 1`` is a
    fraction, anything else a step.  Text that is not valid editing syntax
    (e.g. a stray ``|``, or brackets nested over ``MAX_NESTING`` deep) is
    returned unchanged as one entry.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if hires_steps is None or use_old_scheduling:
        total, int_offset, float_offset = steps, 0, 0.0
    else:
        total, int_offset, float_offset = hires_steps, steps, 1.0

    try:
        tree = _ScheduleParser(prompt).parse()
    except _ParseFailed:
        return [(total, prompt)]

    when_of: dict[int, int] = {}
    ends = {total}

    def collect(node) -> None:
        if isinstance(node, _Alternate):
            ends.update(range(1, total + 1))
            return
        value = float(node.when)
        if use_old_scheduling:
            value = value * total if value < 1 else value
        elif "." in node.when:
            value = (value - float_offset) * total
        else:
            value = value - int_offset
        # int() truncates toward zero like A1111; the isfinite guard avoids its
        # OverflowError on "1e999".
        when = min(total, int(value)) if math.isfinite(value) else (total if value > 0 else 0)
        when_of[id(node)] = when
        if when >= 1:
            ends.add(when)

    _walk(tree, collect)
    return [(end, _render(tree, end, when_of)) for end in sorted(ends)]
