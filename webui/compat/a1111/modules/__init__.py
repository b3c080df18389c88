"""A1111's ``modules`` package as A1111 extensions import it; each submodule is a view over our app.

``from modules import X`` asks this package for attribute X first, so unsupported names are
refused here with the reason (the import hook in finder.py covers ``import modules.X``).
"""
from __future__ import annotations

import importlib


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    from webui.compat.a1111 import finder

    full = f"modules.{name}"
    if full in finder.SUPPORTED:
        return importlib.import_module(finder.SUPPORTED[full])
    reason = finder.REASONS.get(full, "not part of the supported A1111 API")
    raise finder.NeedsPortImport(f"imports {full} ({reason})", name=full)
