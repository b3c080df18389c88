"""The image browser's index of outputs/: PNG infotext, search by prompt / model / seed, safe delete.

Nothing here touches a file outside the outputs folder: paths are resolved (symlinks included)
and refused unless they stay inside it. Parsed infotexts are cached by (path, mtime, size), so
a search over thousands of images reads only the new ones.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from webui.infotext import parse_infotext

SORTS = ("Newest first", "Oldest first", "Seed", "File name")
ALL = "All"
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class BrowserError(ValueError):
    """A refused request (a path outside outputs/, a missing file); the message is for the user."""


@dataclass
class Entry:
    path: Path
    folder: str  # first folder under outputs/ (txt2img-images, txt2img-grids, ...)
    mtime: float
    infotext: str
    params: dict = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        try:
            return int(self.params.get("Seed", ""))
        except ValueError:
            return None

    @property
    def model(self) -> str:
        return str(self.params.get("Model", ""))

    def matches(self, terms: list[str]) -> bool:
        text = " ".join([self.params.get("Prompt", ""), self.params.get("Negative prompt", ""), self.model,
                         self.path.name]).lower()
        for term in terms:
            low = term.lower()
            if low.startswith("seed:"):
                if str(self.seed) != low[5:].strip():
                    return False
            elif low.startswith("model:"):
                if low[6:].strip() not in self.model.lower():
                    return False
            elif term.isdigit():  # a bare number is a seed (and may be part of a file name)
                if str(self.seed) != term and term not in self.path.stem:
                    return False
            elif low not in text:
                return False
        return True


class Library:
    """The images under one outputs folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._cache: dict[Path, tuple[tuple[float, int], Entry]] = {}

    def _inside(self, path: Path) -> Path:
        root = self.root.resolve()
        try:
            resolved = Path(path).resolve(strict=True)
        except (OSError, RuntimeError):
            raise BrowserError(f"{path} does not exist") from None
        if not resolved.is_relative_to(root) or resolved == root:
            raise BrowserError(f"{path} is not inside {root}; only images in the outputs folder are handled")
        return resolved

    def folders(self) -> list[str]:
        if not self.root.is_dir():
            return [ALL]
        return [ALL] + sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def scan(self) -> list[Entry]:
        """Every image under outputs/, with its infotext (read once per file version)."""
        entries, seen = [], set()
        if not self.root.is_dir():
            return entries
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.lower().endswith(SUFFIXES) or name.startswith("."):
                    continue
                path = Path(dirpath) / name
                try:
                    stat = path.stat()
                except OSError:
                    continue
                key = (stat.st_mtime, stat.st_size)
                seen.add(path)
                cached = self._cache.get(path)
                if cached is None or cached[0] != key:
                    cached = (key, self._read(path, stat.st_mtime))
                    self._cache[path] = cached
                entries.append(cached[1])
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        return entries

    def _read(self, path: Path, mtime: float) -> Entry:
        text = ""
        try:
            with Image.open(path) as image:
                text = image.info.get("parameters") or ""
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            pass
        rel = path.relative_to(self.root)
        folder = rel.parts[0] if len(rel.parts) > 1 else ""
        return Entry(path, folder, mtime, text, parse_infotext(text) if text else {})

    def search(self, query: str = "", folder: str = ALL, sort: str = SORTS[0]) -> list[Entry]:
        try:
            terms = shlex.split(query or "")
        except ValueError:
            terms = (query or "").split()
        found = [e for e in self.scan() if (folder in (ALL, "", None) or e.folder == folder) and e.matches(terms)]
        if sort == "Oldest first":
            found.sort(key=lambda e: (e.mtime, e.path.name))
        elif sort == "Seed":
            found.sort(key=lambda e: (e.seed is None, e.seed or 0, e.path.name))
        elif sort == "File name":
            found.sort(key=lambda e: str(e.path.relative_to(self.root)))
        else:
            found.sort(key=lambda e: (e.mtime, e.path.name), reverse=True)
        return found

    def delete(self, path: str | Path) -> Path:
        """Delete one image inside outputs/ (and nothing else)."""
        resolved = self._inside(Path(path))
        if resolved.suffix.lower() not in SUFFIXES or not resolved.is_file():
            raise BrowserError(f"{path} is not an image file")
        resolved.unlink()
        self._cache.pop(Path(path), None)
        return resolved
