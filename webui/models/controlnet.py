"""ControlNet files: find them, name them as sd-webui-controlnet does, load and cache them in RAM.

Folders, in order: the user's ``models/ControlNet`` (``--controlnet-dir``), the
``extensions/sd-webui-controlnet/models`` folder many guides point to, and the bundled
``models/ControlNet`` of the repository (the demo ControlNet). Names are sd-webui-controlnet's
``<stem> [<hash>]``, the hash being A1111's old 8-digit one (SHA-256 of 64 KiB at 1 MiB), which
its API clients send back; a name without the hash, or with a stale one, also matches.

Loaded ControlNets stay in an LRU cache of ``control_net_model_cache_size`` entries (on the
CPU, moved to the device when a job uses them). ``check_compatible`` refuses a ControlNet
built for another base than the loaded checkpoint, with a message naming both.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from webui.models.controlnet_probe import (FAMILY_BY_WIDTH, FAMILY_NAMES, SUFFIXES, LoadedControlNet,
                                           load_controlnet)
from webui.models.errors import ModelLoadError
from webui.settings import Option

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "models" / "ControlNet"
OPTIONS = (
    Option("control_net_unit_count", 3, "ControlNet units per tab and per request (restart to apply)", "ControlNet",
           1, 10),
    Option("control_net_model_cache_size", 2, "ControlNet models kept in RAM", "ControlNet", 1, 10),
    Option("control_net_no_detectmap", False, "Do not show or return the detected maps with the results", "ControlNet"),
)


def legacy_hash(path: Path) -> str:
    """A1111's old model hash: first 8 hex digits of SHA-256 over 64 KiB starting at 1 MiB."""
    path = Path(path)
    if path.is_dir():
        weights = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))
        if not weights:
            return "00000000"
        path = weights[0]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(0x100000)
        digest.update(fh.read(0x10000))
    return digest.hexdigest()[:8]


@dataclass
class ControlNetInfo:
    """One ControlNet file or diffusers folder as the model list shows it."""

    filename: Path
    stem: str
    short_hash: str
    size: int
    mtime: float
    bundled: bool = False

    @property
    def title(self) -> str:
        """sd-webui-controlnet's name: ``<stem> [<hash>]``."""
        return f"{self.stem} [{self.short_hash}]"

    def aliases(self) -> set[str]:
        """Every string a client may send for this model."""
        return {self.title, self.stem, self.filename.name, str(self.filename)}


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        p.suffix in (".safetensors", ".bin") for p in folder.iterdir())


def scan(roots: list[Path], bundled_root: Path | None = None) -> list[ControlNetInfo]:
    """List ControlNet files (by suffix) and diffusers folders under ``roots``; sidecars are skipped."""
    found: list[ControlNetInfo] = []
    seen: set[str] = set()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for folder, dirs, files in os.walk(root, followlinks=True):
            here = Path(folder)
            keep = []
            for d in sorted(dirs):
                sub = here / d
                if d.startswith(".") or d.endswith(".config"):
                    continue
                if _is_model_folder(sub):
                    _add(found, seen, sub, root, bundled_root)
                else:
                    keep.append(d)
            dirs[:] = keep
            for f in sorted(files):
                if f.lower().endswith(SUFFIXES) and not f.startswith("."):
                    _add(found, seen, here / f, root, bundled_root)
    return found


def _add(found, seen, path: Path, root: Path, bundled_root: Path | None) -> None:
    stem = path.name if path.is_dir() else path.stem
    if stem in seen:  # the user's copy wins over a bundled file of the same name
        return
    seen.add(stem)
    st = path.stat()
    try:
        short = legacy_hash(path)
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return
    bundled = bool(bundled_root and root.resolve() == Path(bundled_root).resolve())
    found.append(ControlNetInfo(path.absolute(), stem, short, st.st_size, st.st_mtime, bundled))


def unet_family(unet) -> str:
    """The SD family of a loaded UNet (for messages)."""
    width = unet.config.cross_attention_dim
    family = FAMILY_BY_WIDTH.get(width)
    if family == "sdxl" or unet.config.addition_embed_type == "text_time":
        return "SDXL"
    return FAMILY_NAMES.get(family, f"a custom model (cross-attention width {width})")


def _signature(config) -> tuple:
    def get(key):
        value = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
        return tuple(value) if isinstance(value, list) else value

    return (get("cross_attention_dim"), tuple(get("block_out_channels") or ()), get("addition_embed_type"),
            get("down_block_types"))


def check_compatible(controlnet: LoadedControlNet, unet, checkpoint_name: str = "the loaded checkpoint") -> None:
    """Raise ModelLoadError when a ControlNet was built for another base than ``unet``."""
    want = _signature(unet.config)
    have = _signature(controlnet.model.config)
    if want == have:
        return
    cn_family = FAMILY_NAMES.get(controlnet.probe.family, "a custom model")
    raise ModelLoadError(
        f"ControlNet {controlnet.path.stem} is for {cn_family} (cross-attention width {have[0]}, channels "
        f"{'/'.join(map(str, have[1]))}), but {checkpoint_name} is {unet_family(unet)} (width {want[0]}, "
        f"channels {'/'.join(map(str, want[1]))}). Choose a ControlNet made for this checkpoint's base model.")


class ControlNetManager:
    """The ControlNet model list and an LRU RAM cache of loaded ControlNets."""

    def __init__(self, roots: list[Path], settings, configs_dir: Path | None = None,
                 allow_unsafe_pickle: bool = False, bundled_root: Path | None = BUNDLED_DIR):
        self.roots = [Path(r) for r in roots]
        self.bundled_root = bundled_root
        if bundled_root is not None and Path(bundled_root) not in self.roots:
            self.roots.append(Path(bundled_root))
        self.settings = settings
        for option in OPTIONS:
            if option.key not in settings.options:
                settings.add_option(option)
        self.configs_dir = configs_dir
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.loads = 0
        self._lock = threading.RLock()
        self._entries: list[ControlNetInfo] | None = None
        self._cache: OrderedDict[Path, tuple[tuple, LoadedControlNet]] = OrderedDict()

    @classmethod
    def from_paths(cls, paths, settings, allow_unsafe_pickle: bool = False) -> "ControlNetManager":
        """Folders from the app's Paths: --controlnet-dir, the extension's models folder, the bundled one."""
        roots = [paths.controlnet_dir, paths.data_dir / "extensions" / "sd-webui-controlnet" / "models"]
        return cls(roots, settings, paths.configs_dir, allow_unsafe_pickle)

    def refresh(self) -> list[ControlNetInfo]:
        """Rescan the folders."""
        entries = scan(self.roots, self.bundled_root)
        entries.sort(key=lambda i: (i.bundled, i.stem.lower()))
        with self._lock:
            self._entries = entries
        return list(entries)

    def models(self) -> list[ControlNetInfo]:
        """The entries of the last scan (scans once if needed)."""
        with self._lock:
            if self._entries is None:
                self.refresh()
            return list(self._entries)

    def titles(self) -> list[str]:
        """``<stem> [<hash>]`` of every model, as /controlnet/model_list gives them (without "None")."""
        return [info.title for info in self.models()]

    def find(self, name: str | None) -> ControlNetInfo | None:
        """Resolve what a client sends: title, stem, file name, path; a stale hash still matches the stem."""
        if name is None:
            return None
        text = str(name).strip()
        if not text or text.lower() == "none":
            return None
        for attempt in (0, 1):
            entries = self.models()
            for info in entries:
                if text in info.aliases():
                    return info
            bare = text.rsplit(" [", 1)[0] if text.endswith("]") else text
            for info in entries:
                if bare in info.aliases():
                    return info
            if attempt == 0:
                self.refresh()  # a file added since the last scan
        return None

    def get(self, name: str | ControlNetInfo, torch_dtype: torch.dtype | None = None) -> LoadedControlNet:
        """The loaded ControlNet for a name (from the cache, or read from disk)."""
        info = name if isinstance(name, ControlNetInfo) else self.find(name)
        if info is None:
            raise ModelLoadError(f"ControlNet model {name!r} not found; known: {', '.join(self.titles()) or 'none'} "
                                 f"(put models in {self.roots[0]})")
        stamp = (info.size, info.mtime, torch_dtype)
        with self._lock:
            cached = self._cache.get(info.filename)
            if cached is not None and cached[0] == stamp:
                self._cache.move_to_end(info.filename)
                return cached[1]
            loaded = load_controlnet(info.filename, self.configs_dir, torch_dtype, self.allow_unsafe_pickle)
            self.loads += 1
            self._cache[info.filename] = (stamp, loaded)
            self._cache.move_to_end(info.filename)
            limit = int(self.settings.get("control_net_model_cache_size"))
            while len(self._cache) > limit:
                dropped, _ = self._cache.popitem(last=False)
                log.info("unloaded ControlNet %s from the RAM cache", dropped.name)
            return loaded

    def cached(self) -> list[Path]:
        """Files of the loaded ControlNets, least recently used first."""
        with self._lock:
            return list(self._cache)
