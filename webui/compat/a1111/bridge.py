"""Bridge: loads A1111-style ``scripts/*.py`` and turns what they register into native declarations.

Loading imitates A1111 where extensions depend on it: the extension folder is on ``sys.path``
only while its scripts import, and ``scripts.basedir()`` returns it meanwhile. Unlike A1111,
module-name collisions are found and reported: when a second extension ships a module
(``utils.py``, ``lib/``, ``scripts/helper.py``) that another extension already imported, the
first one's copy is set aside while the second imports its own, and both load-table rows
name the other. Callbacks (``script_callbacks.on_*``) become native hooks of the extension that
registered them; AlwaysOn ``Script`` classes become panels (webui/compat/a1111/adapter.py).
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from webui.compat.a1111 import active, finder
from webui.extensions.loader import NeedsPort

log = logging.getLogger(__name__)

# script_callbacks categories we refuse: they reach into A1111's sampler or UI internals.
UNSUPPORTED_CALLBACKS = {
    "cfg_denoiser": "runs inside A1111's k-diffusion CFG denoiser",
    "cfg_denoised": "runs inside A1111's k-diffusion CFG denoiser",
    "cfg_after_cfg": "runs inside A1111's k-diffusion CFG denoiser",
    "list_optimizers": "adds A1111 cross-attention optimisations",
    "list_unets": "replaces A1111's LDM UNet",
    "before_component": "hooks every Gradio component (needs a Gradio monkeypatch)",
    "after_component": "hooks every Gradio component (needs a Gradio monkeypatch)",
    "image_grid": "changes A1111's grid layout loop",
    "extra_noise": "changes A1111's img2img extra noise",
    "before_token_counter": "changes A1111's token counter",
    "ui_train_tabs": "adds to A1111's Train tab",
}


def _module_file(module) -> Path | None:
    file = getattr(module, "__file__", None)
    if file:
        return Path(file).resolve()
    paths = list(getattr(module, "__path__", []) or [])
    return Path(paths[0]).resolve() if paths else None


def _provides(folder: Path, name: str) -> Path | None:
    """The file or package folder in ``folder`` (on sys.path) importable as ``name``, if any."""
    rel = folder / Path(*name.split("."))
    if rel.with_suffix(".py").is_file():
        return rel.with_suffix(".py")
    return rel if rel.is_dir() else None


class Bridge:
    """The compat state of one app: what each A1111-style extension registered."""

    def __init__(self, host):
        self.host = host
        self.loading = None  # the ExtensionAPI whose scripts are importing now
        self.loading_dir: Path | None = None
        self.running: list[str] = []  # extensions whose hooks run now (for runtime registrations)
        self.owned: dict[str, tuple[str, Any]] = {}  # module name -> (extension, module) first loaded
        self.collisions: list[str] = []
        self.app_started_callbacks: list[tuple[str, Callable]] = []
        self.ui_tabs_callbacks: list[tuple[str, Callable]] = []
        self.ui_settings_pending: list[Callable] = []
        self.adapters: list = []
        self.paste_bindings: list[Any] = []
        self._registered: dict[str, list[tuple[str, Callable]]] = {}  # ext -> (native hook, wrapper)
        finder.install()
        active.set_bridge(self)

    # -- who is calling ---------------------------------------------------------------------------
    def current_api(self):
        """The extension a callback registration belongs to: the one importing, else the one running."""
        if self.loading is not None:
            return self.loading
        if self.running:
            return self.host.apis.get(self.running[-1])
        raise RuntimeError("script_callbacks used outside an extension's import or hook")

    @contextlib.contextmanager
    def running_as(self, ext: str):
        self.running.append(ext)
        try:
            yield
        finally:
            self.running.pop()

    # -- loading ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _loading_scope(self, manifest, api):
        """sys.path + basedir for one extension, with other extensions' same-named modules set aside."""
        folder = manifest.path.resolve()
        stashed = {}
        for name, (owner, module) in list(self.owned.items()):
            mine = _provides(folder, name) if owner != api.name else None
            if mine is not None:
                stashed[name] = sys.modules.pop(name, module)
                note = (f"module {name!r} exists in both {owner} ({_module_file(module)}) and {api.name} "
                        f"({mine}); each got its own copy at import time, but a "
                        f"later 'import {name}' gets {owner}'s")
                self.collisions.append(note)
                for ext in (owner, api.name):
                    record = self.host.record(ext)
                    if record is not None and note not in record.warnings:
                        record.warnings.append(note)
        before = set(sys.modules)
        self.loading, self.loading_dir = api, folder
        sys.path.insert(0, str(folder))
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(folder))
            self.loading, self.loading_dir = None, None
            for name in set(sys.modules) - before:
                module = sys.modules.get(name)
                file = _module_file(module) if module is not None else None
                if file is not None and file.is_relative_to(folder) and not name.startswith("webui_a1111."):
                    if name in stashed:
                        sys.modules[name] = stashed.pop(name)  # the first owner keeps the plain name
                    else:
                        self.owned.setdefault(name, (api.name, module))
            for name, module in stashed.items():
                sys.modules.setdefault(name, module)

    def load_extension(self, manifest, api) -> list[str]:
        """Import every scripts/*.py of one extension; returns load-table notes. Raises NeedsPort to refuse."""
        from webui.compat.a1111.adapter import adapt_scripts
        from webui.compat.a1111.modules.scripts import Script

        notes: list[str] = []
        found = []
        with self._loading_scope(manifest, api):
            for file in manifest.script_files:
                module_name = f"webui_a1111.{api.name.replace('-', '_')}.{file.stem}"
                spec = importlib.util.spec_from_file_location(module_name, file)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(module_name, None)
                    raise
                for obj in vars(module).values():
                    if inspect.isclass(obj) and issubclass(obj, Script) and obj is not Script \
                            and obj.__module__ == module_name:
                        found.append(obj)
            pending, self.ui_settings_pending = self.ui_settings_pending, []
            for fn in pending:  # on_ui_settings: they only declare options, so run them now
                fn()
        notes += adapt_scripts(self, api, found)
        return notes + [c for c in self.collisions if api.name in c and c not in notes]

    # -- callbacks --------------------------------------------------------------------------------
    def register(self, category: str, fn: Callable) -> None:
        """script_callbacks.on_<category>(fn) -> a native hook of the registering extension."""
        if category in UNSUPPORTED_CALLBACKS:
            raise NeedsPort(f"uses script_callbacks.on_{category} ({UNSUPPORTED_CALLBACKS[category]})")
        api = self.current_api()
        from webui.compat.a1111 import callbacks

        if category == "ui_settings":
            if self.loading is not None:
                self.ui_settings_pending.append(fn)
            else:
                fn()
            return
        if category == "app_started":
            self.app_started_callbacks.append((api.name, fn))
            return
        if category == "ui_tabs":
            self.ui_tabs_callbacks.append((api.name, fn))
            return
        if category in ("script_unloaded", "before_ui", "before_reload"):
            if category == "before_ui":
                fn()
            return
        hook, wrapper = callbacks.native_hook(self, category, fn)
        api.on(hook, wrapper)
        self._registered.setdefault(api.name, []).append((hook, wrapper))

    def remove_current(self) -> None:
        """remove_current_script_callbacks(): drop what the running extension registered via callbacks."""
        api = self.current_api()
        for hook, wrapper in self._registered.pop(api.name, []):
            with contextlib.suppress(ValueError):
                api.hooks[hook].remove(wrapper)

    def app_started(self, app, demo) -> list[str]:
        """Run on_app_started(demo, app) callbacks with a route-recording app proxy."""
        from webui.compat.a1111.callbacks import AppProxy

        warnings: list[str] = []
        for ext, fn in self.app_started_callbacks:
            proxy = AppProxy(app, ext) if app is not None else None
            with self.running_as(ext):
                self.host.call(ext, "on_app_started callback", fn, demo, proxy, warnings=warnings)
        return warnings
