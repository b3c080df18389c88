"""Read the user's files defensively: a damaged file is reported, never fatal, never overwritten.

config.json, cache.json and styles.csv are edited by people, other tools and crashed
processes. Every reader here returns the data or a one-line reason (for a warning that
names the file), and never raises for what a file contains: binary junk, NaN / Infinity,
nesting deep enough to exhaust the parser's recursion, a directory where a file belongs.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
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


def _current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask alone must set one)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: set and restore at once (process-wide, hence the /proc path first)
    os.umask(mask)
    return mask


def follow_umask(fd: int) -> None:
    """Give a file from tempfile.mkstemp (always 0600) the mode a plain open() would: 0666 minus the umask.

    Outputs, grids, config.json and caches are served and synced by people (A1111's follow the
    umask, 0644 usually); private-by-accident files break that.
    """
    os.fchmod(fd, 0o666 & ~_current_umask())


def write_json_atomic(path: Path, data: Any, indent: int = 2, durable: bool = False) -> None:
    """Write ``data`` as JSON to ``path`` in one step: a crash mid-write leaves the old file whole.

    The file gets the mode a plain open() would (``follow_umask``); ``durable`` also syncs it to
    disk before the rename (settings the user would not want to lose to a power cut).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".json", dir=path.parent)
    follow_umask(fd)  # mkstemp makes it 0600; people serve and sync these
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=indent, ensure_ascii=False)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
