"""Read the user's files defensively: a damaged file is reported, never fatal, never overwritten.

config.json, cache.json and styles.csv are edited by people, other tools and crashed
processes. Every reader here returns the data or a one-line reason (for a warning that
names the file), and never raises for what a file contains: binary junk, NaN / Infinity,
nesting deep enough to exhaust the parser's recursion, a directory where a file belongs.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# Bigger than any settings or hash cache we write by far; a bigger file is a mistake, not data.
MAX_JSON_BYTES = 64 << 20


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json_strict(text: str | bytes, allow_non_finite: bool = False) -> Any:
    """json.loads without Python's extensions: NaN, Infinity and overflowing numbers are errors.

    Raises ValueError (with a readable message) for anything that is not plain JSON, including
    nesting too deep for the parser (RecursionError) and bytes that are not UTF-8. With
    `allow_non_finite`, NaN / Infinity are read as floats (for files: the settings layer then
    refuses them key by key, so one bad value does not cost the user the whole file).
    """
    try:
        if allow_non_finite:
            return json.loads(text)
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_json_object(path: Path, allow_non_finite: bool = True) -> tuple[dict | None, str | None]:
    """(data, None) for a readable JSON object file; (None, reason) otherwise; ({}, None) if absent.

    NaN / Infinity are read as floats by default (an older version of this app wrote them);
    callers check values.
    """
    path = Path(path)
    try:
        if not path.exists():
            return {}, None
        if not path.is_file():
            return None, "not a regular file"
        if path.stat().st_size > MAX_JSON_BYTES:
            return None, f"larger than {MAX_JSON_BYTES >> 20} MB"
        data = parse_json_strict(path.read_bytes(), allow_non_finite)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    except ValueError as exc:
        return None, str(exc)
    if not isinstance(data, dict):
        return None, "top level is not an object"
    return data, None


def has_lone_surrogate(text: str) -> bool:
    """True for text Python holds but UTF-8 cannot (JSON's '\\ud800' without its pair decodes to this)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def is_valid_text(text: str) -> bool:
    """False for text that cannot be stored as UTF-8 (lone surrogates) or holds a NUL character."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
