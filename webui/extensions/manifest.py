"""What an extension folder is: its manifest (ours or A1111's), its kind, and its git state.

Kinds: ``native`` (``extension.toml`` with an entry point), ``a1111`` (``scripts/*.py``, loaded
through the opt-in compatibility layer), ``assets`` (only JavaScript, CSS or localizations,
e.g. A1111's localization packs). Git state is read from the files under ``.git`` (no
subprocess at start-up: 20 extensions must not cost 20 ``git`` runs).
"""
from __future__ import annotations

import configparser
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

_NAME = re.compile(r"[^a-z0-9_-]+")


class ManifestError(ValueError):
    """extension.toml or metadata.ini is unreadable or says something we refuse."""


def canonical(name: str) -> str:
    """A1111-style canonical name: lower case, anything but [a-z0-9_-] becomes '-'."""
    return _NAME.sub("-", name.strip().lower()).strip("-") or "extension"


@dataclass
class GitInfo:
    """What the Extensions tab shows about a git checkout (empty strings when not a checkout)."""

    remote: str = ""
    branch: str = ""
    commit: str = ""

    @property
    def short(self) -> str:
        return self.commit[:8]


@dataclass
class Manifest:
    """One extension folder, as discovered (nothing is imported yet)."""

    name: str
    path: Path
    builtin: bool
    kind: str  # native | a1111 | assets
    version: str = ""
    api: int | None = None
    entry: str = ""  # "module:function", relative to the folder
    requires: list[str] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    a1111_compat: bool = False  # also load scripts/*.py through the compat layer
    description: str = ""
    git: GitInfo = field(default_factory=GitInfo)
    error: str = ""  # a manifest problem: the extension is listed but not loaded

    @property
    def javascript(self) -> list[Path]:
        folder = self.path / "javascript"
        return sorted(p for p in folder.glob("*") if p.suffix in (".js", ".mjs")) if folder.is_dir() else []

    @property
    def css(self) -> list[Path]:
        style = self.path / "style.css"
        return [style] if style.is_file() else []

    @property
    def localizations(self) -> list[Path]:
        folder = self.path / "localizations"
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    @property
    def script_files(self) -> list[Path]:
        folder = self.path / "scripts"
        return sorted(folder.glob("*.py")) if folder.is_dir() else []


def _list(value, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in re.split(r"[,\s]+", value) if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ManifestError(f"{where} must be a list of names")


def _read_toml(path: Path, manifest: Manifest) -> None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"extension.toml: {exc}") from None
    section = data.get("extension")
    if not isinstance(section, dict):
        raise ManifestError("extension.toml: no [extension] table")
    if "name" in section:
        manifest.name = canonical(str(section["name"]))
    manifest.version = str(section.get("version", ""))
    manifest.description = str(section.get("description", ""))
    api = section.get("api", 1)
    if isinstance(api, bool) or not isinstance(api, int):
        raise ManifestError(f"extension.toml: api must be a whole number, got {api!r}")
    manifest.api = api
    entry = section.get("entry", "")
    if entry and (not isinstance(entry, str) or ":" not in entry):
        raise ManifestError(f"extension.toml: entry must look like 'module:function', got {entry!r}")
    manifest.entry = entry
    manifest.requires = _list(section.get("requires"), "requires")
    manifest.before = _list(section.get("before"), "before")
    manifest.after = _list(section.get("after"), "after")
    manifest.a1111_compat = bool(section.get("a1111_compat", False))
    manifest.kind = "native" if entry else ("a1111" if manifest.script_files else "assets")


def _read_metadata_ini(path: Path, manifest: Manifest) -> None:
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ManifestError(f"metadata.ini: {exc}") from None
    if parser.has_section("Extension"):
        # A1111 1.8 ignores [Extension] Name (the folder name wins); we keep the folder name too,
        # so config.json's disabled_extensions entries written by A1111 still match.
        manifest.requires = _list(parser.get("Extension", "Requires", fallback=""), "Requires")
    if parser.has_section("scripts"):
        manifest.before = _list(parser.get("scripts", "Before", fallback=""), "Before")
        manifest.after = _list(parser.get("scripts", "After", fallback=""), "After")


def read_git(folder: Path) -> GitInfo:
    """Remote URL, branch and commit from .git files; empty fields when unknown."""
    git = folder / ".git"
    if git.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = git.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir:"):
            git = (folder / text[7:].strip()).resolve()
    if not git.is_dir():
        return GitInfo()
    info = GitInfo()
    try:
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        return info
    if head.startswith("ref:"):
        ref = head[4:].strip()
        info.branch = ref.rsplit("/", 1)[-1] if ref.startswith("refs/heads/") else ref
        ref_file = git / ref
        if ref_file.is_file():
            info.commit = ref_file.read_text(encoding="utf-8").strip()
        elif (git / "packed-refs").is_file():
            for line in (git / "packed-refs").read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    info.commit = parts[0]
    else:
        info.commit = head
    config = configparser.ConfigParser(strict=False)
    try:
        config.read(git / "config", encoding="utf-8")
        info.remote = config.get('remote "origin"', "url", fallback="")
    except configparser.Error:
        pass
    return info


def read_manifest(folder: Path, builtin: bool) -> Manifest:
    """Describe one extension folder; a bad manifest gives ``error`` instead of raising."""
    manifest = Manifest(name=canonical(folder.name), path=folder, builtin=builtin,
                        kind="a1111" if (folder / "scripts").is_dir() else "assets")
    try:
        if (folder / "metadata.ini").is_file():
            _read_metadata_ini(folder / "metadata.ini", manifest)
        if (folder / "extension.toml").is_file():
            _read_toml(folder / "extension.toml", manifest)
    except ManifestError as exc:
        manifest.error = str(exc)
    if not builtin:
        manifest.git = read_git(folder)
    return manifest
