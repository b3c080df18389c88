"""Prompt styles in A1111's ``styles.csv`` format, and applying them to prompts.

The file has the columns ``name, prompt, negative_prompt`` (UTF-8 with BOM,
quoted CSV, as A1111 writes it), so users can copy their A1111 file over.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
FIELDS = ("name", "prompt", "negative_prompt")
PROMPT_PLACEHOLDER = "{prompt}"


@dataclass(frozen=True)
class Style:
    """One saved style: text merged into the prompt and the negative prompt."""

    name: str
    prompt: str = ""
    negative_prompt: str = ""


def check_style_name(name: str | None) -> str:
    """The name a style is saved under (surrounding spaces dropped), or ValueError saying what is wrong.

    Refused: an empty name (the row would be skipped when read back), one starting with "#" (A1111
    reads such rows as comments) and line breaks or other control characters (the Styles list
    shows one line per style).
    """
    name = (name or "").strip()
    if not name:
        raise ValueError("A style needs a name: type one in the Style box.")
    if name.startswith("#"):
        raise ValueError(f"A style name cannot start with '#' (styles.csv reads such rows as comments): {name!r}.")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise ValueError(f"A style name must be one line without control characters: {name!r}.")
    return name


def merge_style(style_text: str, prompt: str) -> str:
    """A1111's rule: substitute at ``{prompt}`` if present, else join with ", " (skipping empty sides)."""
    if PROMPT_PLACEHOLDER in style_text:
        return style_text.replace(PROMPT_PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


class StyleStore:
    """The styles of one CSV file, loaded on creation and saved atomically on change."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._styles: dict[str, Style] = {}
        # Why the file could not be read, if it could not: then it is never overwritten (hardening).
        self.unreadable: str | None = None
        self._stamp: tuple | None = None  # the file as last read or written (see reload_if_changed)
        self.reload()

    def reload(self) -> None:
        """Read the file again (a missing file means no styles; a damaged one, none and a warning)."""
        styles: dict[str, Style] = {}
        problem = None
        with self._lock:  # a save running meanwhile must not be undone by an older read
            stamp = self._file_stamp()
            try:
                if self.path.exists():
                    styles = self._read()
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                problem = f"{self.path}: unreadable ({exc}); no styles are loaded, the file is left as it is"
                log.warning(problem)
                styles = {}
            self._styles = styles
            self.unreadable = problem
            self._stamp = stamp

    def reload_if_changed(self) -> bool:
        """Reload when the file changed on disk since it was last read or written (edited by hand,
        copied over from A1111); cheap enough for every page load. True if it reloaded."""
        if self._file_stamp() == self._stamp:
            return False
        self.reload()
        return True

    def _file_stamp(self) -> tuple | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def _read(self) -> dict[str, Style]:
        styles: dict[str, Style] = {}
        # utf-8-sig: A1111 writes a BOM, and spreadsheet programs often do too
        with open(self.path, encoding="utf-8-sig", newline="") as file:
            reader = csv.DictReader(file, skipinitialspace=True)
            try:
                for row in reader:
                    name = (row.get("name") or "").strip()
                    if not name or name.startswith("#"):  # blank rows and A1111 comment rows
                        continue
                    # very old A1111 files call the prompt column "text"
                    prompt = row.get("prompt", row.get("text")) or ""
                    styles[name] = Style(name, prompt, row.get("negative_prompt") or "")
            except csv.Error as exc:  # NUL bytes, a field over csv's 131072-character limit, ...
                raise csv.Error(f"line {reader.reader.line_num}: {exc}") from None
        return styles

    def names(self) -> list[str]:
        """Style names in file order."""
        return list(self._styles)

    def all(self) -> list[Style]:
        """All styles in file order."""
        return list(self._styles.values())

    def get(self, name: str) -> Style | None:
        """The style called ``name``, or None."""
        return self._styles.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._styles

    def put(self, style: Style) -> None:
        """Add or replace a style and save the file (the name checked by ``check_style_name``)."""
        name = check_style_name(style.name)
        if name != style.name:
            style = Style(name, style.prompt, style.negative_prompt)
        with self._lock:
            styles = {**self._styles, style.name: style}
            self._write(styles)
            self._styles = styles  # only once it is on disk

    def delete(self, name: str) -> None:
        """Remove a style and save the file; unknown names raise ValueError."""
        with self._lock:
            if name not in self._styles:
                raise ValueError(f"unknown style: {name}" if name else "Pick the style to delete first.")
            styles = {key: value for key, value in self._styles.items() if key != name}
            self._write(styles)
            self._styles = styles

    def save(self) -> None:
        """Write all styles to the file."""
        with self._lock:
            self._write(self._styles)

    def _write(self, styles: dict[str, Style]) -> None:
        if self.unreadable:
            raise ValueError(f"styles not saved: {self.unreadable}")
        # Write a temporary file beside the target and rename it over, so a
        # crash mid-write never leaves a truncated styles.csv.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=FIELDS)
                writer.writeheader()
                for style in styles.values():
                    writer.writerow({"name": style.name, "prompt": style.prompt,
                                     "negative_prompt": style.negative_prompt})
                file.flush()
                os.fsync(file.fileno())
            # mkstemp makes the file private; keep the old file's mode, or the usual one
            os.chmod(temp_name, self.path.stat().st_mode & 0o777 if self.path.exists() else 0o644)
            os.replace(temp_name, self.path)
            self._stamp = self._file_stamp()  # our own write is no reason to read the file again
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise


def apply_styles(prompt: str, negative: str, style_names: list[str], store: StyleStore) -> tuple[str, str]:
    """Merge the named styles, in order, into prompt and negative prompt.

    Each style's text replaces ``{prompt}`` with the prompt so far, or is
    appended with ", ". Unknown names raise ValueError listing all of them
    (A1111 silently skips them; a request naming a missing style is a mistake
    worth reporting).
    """
    styles = [store.get(name) for name in style_names]  # one lookup each: the store may change meanwhile
    unknown = [name for name, style in zip(style_names, styles) if style is None]
    if unknown:
        raise ValueError(f"unknown style{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    for style in styles:
        prompt = merge_style(style.prompt, prompt)
        negative = merge_style(style.negative_prompt, negative)
    return prompt, negative


def apply_known_styles(prompt: str, negative: str, style_names: list[str],
                       store: StyleStore) -> tuple[str, str, list[str]]:
    """``apply_styles`` for the UI's apply button: styles deleted meanwhile are skipped and returned.

    A1111 skips unknown names silently; the page names them instead, and still applies the rest.
    """
    unknown = []
    for name in style_names:
        style = store.get(name)  # one lookup: the store may change meanwhile
        if style is None:
            unknown.append(name)
            continue
        prompt = merge_style(style.prompt, prompt)
        negative = merge_style(style.negative_prompt, negative)
    return prompt, negative, unknown
