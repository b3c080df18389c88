"""ui-config.json: the user's own defaults for the UI's controls (A1111's file and key format).

Keys are ``<tab>/<label>/<field>`` as A1111 writes them, e.g. ``txt2img/Sampling steps/value``.
Only ``value`` entries are used here; A1111's other fields (``visible``, ``minimum``, ...) and keys
of controls this app does not have are kept verbatim and written back untouched, so a file shared
with an A1111 install survives. A damaged file never stops the app: it is reported and ignored,
and it is not overwritten (Apply refuses, like Settings does for config.json).
Pure: the UI (webui/ui/defaults.py) decides which entry fits which control.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webui.userfiles import read_json_object, write_json_atomic

FILE_NAME = "ui-config.json"


class UiConfigError(ValueError):
    """The file cannot be written without losing what the user has in it."""


def value_key(tab: str, label: str) -> str:
    """A1111's key for a control's default value."""
    return f"{tab}/{label}/value"


@dataclass
class UiConfig:
    """The entries of one ui-config.json, read once per UI build."""

    path: Path | None
    entries: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unwritable: str | None = None  # why Apply must refuse (the file was unreadable)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: Path | None) -> "UiConfig":
        config = cls(path=path)
        if path is None:
            return config
        data, problem = read_json_object(path, allow_non_finite=False)
        if problem is not None:
            config.warnings.append(f"{path}: unreadable ({problem}); UI defaults are the built-in ones, "
                                   "the file is left as it is")
            config.unwritable = f"{path} is unreadable ({problem})"
            return config
        config.entries = data
        return config

    def value(self, key: str, default: Any = None) -> Any:
        return self.entries.get(key, default)

    def has(self, key: str) -> bool:
        return key in self.entries

    def save_values(self, values: dict[str, Any]) -> None:
        """Write ``values`` (key -> value) over the file's entries, keeping every other entry."""
        if self.unwritable:
            raise UiConfigError(f"{self.unwritable}; fix or move it, then press Reload UI")
        if self.path is None:
            raise UiConfigError("this app has no data folder to keep ui-config.json in")
        with self._lock:
            # Re-read: another page may have applied its own defaults since this build.
            current, problem = read_json_object(self.path, allow_non_finite=False)
            if problem is not None:
                raise UiConfigError(f"{self.path} is unreadable now ({problem}); not overwritten")
            data = {**current, **values}
            write_json_atomic(self.path, data, indent=4, durable=True)
            self.entries = data
