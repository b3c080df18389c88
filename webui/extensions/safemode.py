"""Safe mode: a start that died while loading extensions is followed by one without user extensions.

Before extensions load, a marker file is written to the data dir; it names the extension being
loaded and is removed once the app is up. A Python exception never leaves it behind (the
loader catches those); a hard crash (segfault, ``os._exit``, the OOM killer) does, and the
next start reads it and says which extension was loading.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

MARKER = ".extensions-loading.json"


class StartMarker:
    """The marker file of one data dir."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / MARKER

    def previous_crash(self) -> str:
        """Why the last start is believed to have crashed ('' when it did not)."""
        if not self.path.exists():
            return ""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        when = data.get("time")
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if isinstance(when, (int, float)) else "?"
        stage = data.get("stage") or "loading extensions"
        name = data.get("extension")
        where = f"while {stage} ({name})" if name else f"while {stage}"
        return (f"the start at {at} stopped {where}; user extensions are off for this start. "
                f"Disable or remove the extension, then restart")

    def write(self, stage: str, extension: str = "") -> None:
        """Record what is being done now (cheap: one small file write)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"time": time.time(), "pid": os.getpid(), "stage": stage,
                                       "extension": extension}), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only data dir only costs us the safe-mode detection

    def clear(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
