"""Find extension folders and decide, before anything is imported, which ones load and why not.

A1111's rules, kept so its config.json works unchanged: ``disabled_extensions`` (folder names)
turns single extensions off; ``disable_all_extensions`` = "extra" turns off user extensions,
"all" turns off every one; the flags ``--disable-extra-extensions`` / ``--disable-all-extensions``
do the same for one start. Safe mode (after a start that crashed while loading extensions)
acts like ``--disable-extra-extensions`` and says why.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from webui.extensions.manifest import Manifest, read_manifest
from webui.paths import REPO_ROOT

BUILTIN_DIR = REPO_ROOT / "extensions-builtin"

# Extensions that cannot work on a diffusers engine and have a built-in replacement here
# (Forge keeps the same kind of list). Loading them would only produce confusing errors.
KNOWN_INCOMPATIBLE = {
    "sd-webui-controlnet": "needs a native port: it patches A1111's LDM UNet; use the built-in ControlNet",
    "sd-webui-additional-networks": "needs a native port: it patches LDM layers; LoRA is built in",
    "multidiffusion-upscaler-for-automatic1111": "needs a native port: it replaces A1111's sampler internals",
}


@dataclass
class Candidate:
    """One discovered extension and the decision whether to load it."""

    manifest: Manifest
    enabled: bool  # the user's choice (disabled_extensions)
    state: str  # pending | disabled | off | refused | error
    reason: str = ""

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def will_load(self) -> bool:
        return self.state == "pending"


def user_extensions_dir(data_dir: Path) -> Path:
    """A1111 keeps user extensions in <data dir>/extensions."""
    return data_dir / "extensions"


def _folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
                  and not p.name.endswith(".disabled"))


def discover(builtin_dir: Path, user_dir: Path, disabled: list[str] | tuple = (), disable_all: str = "none",
             flag_all: bool = False, flag_extra: bool = False, safe_mode_reason: str = "") -> list[Candidate]:
    """Every extension folder with its load decision, built-ins first, in load order."""
    found: list[Candidate] = []
    seen: dict[str, Path] = {}
    disabled_set = {d.lower() for d in disabled}
    for root, builtin in ((builtin_dir, True), (user_dir, False)):
        for folder in _folders(root):
            manifest = read_manifest(folder, builtin)
            enabled = folder.name.lower() not in disabled_set and manifest.name not in disabled_set
            cand = Candidate(manifest, enabled, "pending")
            if manifest.name in seen:
                cand.state, cand.reason = "error", f"another extension already has the name {manifest.name!r} " \
                                                   f"({seen[manifest.name]})"
            elif manifest.error:
                cand.state, cand.reason = "error", manifest.error
            elif flag_all or disable_all == "all":
                cand.state, cand.reason = "off", "all extensions are off (" + (
                    "--disable-all-extensions" if flag_all else "disable_all_extensions in config.json") + ")"
            elif not builtin and safe_mode_reason:
                cand.state, cand.reason = "off", f"safe mode: {safe_mode_reason}"
            elif not builtin and (flag_extra or disable_all == "extra"):
                cand.state, cand.reason = "off", "user extensions are off (" + (
                    "--disable-extra-extensions" if flag_extra else "disable_all_extensions in config.json") + ")"
            elif not enabled:
                cand.state, cand.reason = "disabled", "disabled in the Extensions tab"
            elif manifest.name in KNOWN_INCOMPATIBLE:
                cand.state, cand.reason = "refused", KNOWN_INCOMPATIBLE[manifest.name]
            elif manifest.kind == "native" and manifest.api != 1:
                cand.state, cand.reason = "refused", f"written for extension API {manifest.api}; this app has API 1"
            seen.setdefault(manifest.name, folder)
            found.append(cand)
    _check_requires(found)
    return _order(found)


def _check_requires(found: list[Candidate]) -> None:
    """A1111's Requires (with 'a|b' alternatives): missing ones keep the extension from loading."""
    changed = True
    while changed:  # a refusal can cascade to extensions that require the refused one
        changed = False
        loading = {c.name for c in found if c.will_load}
        for cand in found:
            if not cand.will_load:
                continue
            for need in cand.manifest.requires:
                options = [o.strip().lower() for o in need.split("|")]
                if not any(o in loading for o in options):
                    cand.state, cand.reason = "error", f"requires {need}, which is not installed and enabled"
                    changed = True
                    break


def _order(found: list[Candidate]) -> list[Candidate]:
    """Keep discovery order (built-ins, then by folder name) but honour before/after constraints."""
    names = [c.name for c in found]
    index = {n: i for i, n in enumerate(names)}
    edges: dict[str, set[str]] = {n: set() for n in names}  # n -> names that must come after n
    for cand in found:
        for other in cand.manifest.before:
            if other in index:
                edges[cand.name].add(other)
        for other in cand.manifest.after:
            if other in index:
                edges[other].add(cand.name)
    incoming = {n: 0 for n in names}
    for targets in edges.values():
        for t in targets:
            incoming[t] += 1
    ready = sorted((n for n in names if incoming[n] == 0), key=index.get)
    out: list[str] = []
    while ready:
        n = ready.pop(0)
        out.append(n)
        for t in sorted(edges[n], key=index.get):
            incoming[t] -= 1
            if incoming[t] == 0:
                ready.append(t)
                ready.sort(key=index.get)
    by_name: dict[str, Candidate] = {}
    for cand in found:
        by_name.setdefault(cand.name, cand)
    for n in names:  # a cycle: keep the rest in discovery order and say so
        if n not in out:
            out.append(n)
            by_name[n].reason = by_name[n].reason or "before/after constraints form a cycle; loaded in name order"
    # Duplicate names (state error) share a key: keep every candidate, in discovery order.
    ordered = [by_name[n] for n in out]
    return ordered + [c for c in found if c not in ordered]
