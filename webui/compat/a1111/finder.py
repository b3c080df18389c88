"""The import hook that lets A1111 scripts ``import modules.shared`` and get our views.

Only the modules in SUPPORTED exist; importing any other ``modules.*`` (``sd_hijack``,
``sd_samplers``, ...) or A1111's model internals (``ldm``, ``sgm``, ``modules_forge``) raises
NeedsPortImport: an ImportError (extensions that try/except their optional imports go on)
that the loader also recognises as "needs a native port" when it is not caught.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

from webui.extensions.loader import NeedsPort

_PKG = "webui.compat.a1111.modules"
SUPPORTED = {
    "modules": _PKG,
    "modules.scripts": f"{_PKG}.scripts",
    "modules.script_callbacks": f"{_PKG}.script_callbacks",
    "modules.shared": f"{_PKG}.shared",
    "modules.options": f"{_PKG}.options",
    "modules.shared_state": f"{_PKG}.shared",
    "modules.processing": f"{_PKG}.processing",
    "modules.paths": f"{_PKG}.paths",
    "modules.paths_internal": f"{_PKG}.paths",
    "modules.infotext_utils": f"{_PKG}.infotext_utils",
    "modules.generation_parameters_copypaste": f"{_PKG}.infotext_utils",
    "modules.errors": f"{_PKG}.errors",
    "modules.devices": f"{_PKG}.devices",
    "modules.hashes": f"{_PKG}.hashes",
    "modules.ui_components": "webui.ui.a1111_components",  # Gradio widgets live under webui/ui
    "launch": f"{_PKG}.launch",
}
# Why the common unsupported ones are refused (shown in the Extensions tab).
REASONS = {
    "modules.sd_hijack": "A1111's CLIP/attention hijack does not exist on diffusers",
    "modules.sd_samplers": "A1111's k-diffusion samplers are replaced by diffusers schedulers",
    "modules.sd_samplers_kdiffusion": "A1111's k-diffusion samplers are replaced by diffusers schedulers",
    "modules.sd_models": "A1111's LDM model objects do not exist here",
    "modules.ui": "A1111's Gradio 3 UI module does not exist here",
    "ldm": "LDM model code (the UNet is diffusers' here)",
    "sgm": "SDXL LDM model code (the UNet is diffusers' here)",
    "modules_forge": "Forge internals",
    "backend": "Forge internals",
}
REFUSED_TOP = ("ldm", "sgm", "modules_forge", "k_diffusion", "repositories")


class NeedsPortImport(ImportError, NeedsPort):
    """An A1111 internal this app does not imitate."""


class _Alias(importlib.abc.Loader):
    """Hands out the already-imported real module under the A1111 name (one object, two names)."""

    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass


class A1111Finder(importlib.abc.MetaPathFinder):
    """Resolves A1111's module names while the compat layer is installed."""

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.split(".", 1)[0]
        if fullname in SUPPORTED:
            return importlib.machinery.ModuleSpec(fullname, _Alias(SUPPORTED[fullname]))
        if top == "modules" or top in REFUSED_TOP:
            reason = REASONS.get(fullname) or REASONS.get(top) or "not part of the supported A1111 API"
            raise NeedsPortImport(f"imports {fullname} ({reason})", name=fullname)
        return None


def install() -> None:
    """Put the finder first on sys.meta_path (idempotent)."""
    if not any(isinstance(f, A1111Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, A1111Finder())
