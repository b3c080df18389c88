"""Import extensions one by one, each inside try/except, and record the outcome in a load table.

A native extension is imported as its own package ``webui_ext.<name>`` (its folder is the
package path), so two extensions can both have a ``utils.py`` without meeting, and nothing
is added to ``sys.path``. Its ``register(api)`` records declarations on the ExtensionAPI; they
are committed to the host only if register returns normally, so a half-registered extension
leaves nothing behind. A1111-style ``scripts/*.py`` go through webui/compat/a1111 (imported
only when such an extension is enabled).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import time
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

from webui.extensions.api import ExtensionAPI
from webui.extensions.discover import Candidate
from webui.extensions.manifest import GitInfo

log = logging.getLogger(__name__)
PACKAGE_ROOT = "webui_ext"


class NeedsPort(Exception):
    """Raised by the compat layer for A1111 features we refuse rather than half-run."""


@dataclass
class LoadRecord:
    """One row of the Extensions tab's load table."""

    name: str
    path: Path
    builtin: bool
    kind: str
    enabled: bool
    state: str  # loaded | failed | needs-port | disabled | off | refused | error | auto-disabled
    error: str = ""
    load_ms: float = 0.0
    version: str = ""
    git: GitInfo = field(default_factory=GitInfo)
    warnings: list[str] = field(default_factory=list)
    description: str = ""

    def as_row(self) -> list[str]:
        note = self.error or "; ".join(self.warnings)
        return [self.name, "built-in" if self.builtin else "user", self.kind, self.state,
                f"{self.load_ms:.0f} ms" if self.state == "loaded" else "", note]


def short_traceback(exc: BaseException, limit: int = 4, root: Path | None = None) -> str:
    """'Type: message' first, then the innermost frames (file:line code), the extension's own when known."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    if root is not None:
        own = [f for f in frames if Path(f.filename).is_relative_to(root)]
        frames = own or frames
    lines = [f"{type(exc).__name__}: {exc}"]
    for frame in frames[-limit:]:
        lines.append(f"  at {frame.filename}:{frame.lineno} {(frame.line or '').strip()}")
    return "\n".join(lines)


def _package_name(name: str) -> str:
    return f"{PACKAGE_ROOT}.{name.replace('-', '_')}"


def _ensure_root() -> None:
    if PACKAGE_ROOT not in sys.modules:
        root = types.ModuleType(PACKAGE_ROOT)
        root.__path__ = []  # a namespace for extension packages; nothing is found through it by itself
        sys.modules[PACKAGE_ROOT] = root


def import_package(name: str, folder: Path) -> types.ModuleType:
    """Make the extension folder importable as ``webui_ext.<name>`` (fresh on every load)."""
    _ensure_root()
    package = _package_name(name)
    for key in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
        del sys.modules[key]  # a reload (tests, restart in-process) must see the files as they are now
    init = folder / "__init__.py"
    if init.is_file():
        spec = importlib.util.spec_from_file_location(package, init, submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(package, None)
            raise
    else:
        module = types.ModuleType(package)
        module.__path__ = [str(folder)]
        module.__package__ = package
        module.__file__ = None
        sys.modules[package] = module
    return module


def load_native(cand: Candidate, api: ExtensionAPI) -> None:
    """Import the entry module and call its register function (exceptions propagate to the caller)."""
    manifest = cand.manifest
    module_name, _, func_name = manifest.entry.partition(":")
    import_package(manifest.name, manifest.path)
    module = importlib.import_module(f"{_package_name(manifest.name)}.{module_name}")
    register = getattr(module, func_name or "register", None)
    if not callable(register):
        raise AttributeError(f"{manifest.entry}: {module_name}.py has no function {func_name or 'register'}()")
    register(api)


def load_one(cand: Candidate, api: ExtensionAPI, compat_loader=None) -> LoadRecord:
    """Load one candidate; never raises (SystemExit from an extension included)."""
    m = cand.manifest
    record = LoadRecord(m.name, m.path, m.builtin, m.kind, cand.enabled, cand.state, cand.reason,
                        version=m.version, git=m.git, description=m.description)
    if not cand.will_load:
        return record
    started = time.perf_counter()
    try:
        if m.kind == "native":
            load_native(cand, api)
        if m.kind == "a1111" or (m.kind == "native" and m.a1111_compat and m.script_files):
            if compat_loader is None:
                raise RuntimeError("A1111 compatibility layer unavailable")
            record.warnings += compat_loader(m, api)
        record.state = "loaded"
    except NeedsPort as exc:
        record.state, record.error = "needs-port", f"needs a native port: {exc}"
    except (Exception, SystemExit) as exc:  # an extension must never stop the app from starting
        record.state, record.error = "failed", short_traceback(exc, root=m.path)
        log.error("extension %s failed to load:\n%s", m.name, record.error)
    record.load_ms = (time.perf_counter() - started) * 1000
    return record
