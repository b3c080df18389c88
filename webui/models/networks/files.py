"""Network files on disk: scan folders, hash lazily, read headers, previews, user metadata, safe loading.

One `NetworkFolder` per kind (lora, embedding, hypernetwork, vae) lists files by suffix under
its roots (subfolders too; hidden ones skipped). Nothing is opened by a scan. Names are
A1111's: the file stem for LoRAs, embeddings and hypernetworks, the file name for VAEs.

Hashes are A1111's and cached in cache.json (the checkpoint registry's `HashCache`):
`.safetensors` LoRAs use kohya's "addnet" hash (SHA-256 of the tensor data after the header,
section `hashes-addnet`), everything else the SHA-256 of the whole file (section `hashes`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from webui.models.errors import ModelLoadError
from webui.models.registry import BLOCK, HashCache, sha256_of
from webui.userfiles import write_json_atomic

log = logging.getLogger(__name__)

PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
UNSAFE_FLAG = "--disable-safe-unpickle"


class SectionedHashCache(HashCache):
    """cache.json's hash sections by name (`hashes`, `hashes-addnet`), as A1111 keeps them."""

    def snapshot(self) -> dict:
        """The whole file as read now (one read for a folder scan instead of one per file)."""
        with self._lock:
            return self._read()

    def put_section(self, section: str, key: str, entry: dict) -> None:
        if section == "hashes":
            self.put(key, entry)
            return
        with self._lock:
            data = self._read()
            values = data.get(section) if isinstance(data.get(section), dict) else {}
            values[key] = entry
            data[section] = values
            if self.path is None:
                return
            try:
                write_json_atomic(self.path, data)
            except OSError as exc:  # a read-only data dir costs a rehash next start, nothing more
                log.warning("could not write %s: %s", self.path, exc)


def addnet_hash(path: Path) -> str:
    """kohya's hash of a .safetensors file: SHA-256 of everything after the JSON header."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        header = fh.read(8)
        if len(header) < 8:
            raise ModelLoadError(f"{Path(path).name}: too short to be a safetensors file")
        fh.seek(8 + int.from_bytes(header, "little"))
        while block := fh.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class NetworkFile:
    """One network file as A1111 lists it."""

    kind: str  # "lora" | "embedding" | "hypernetwork" | "vae"
    name: str  # A1111's name: the stem (the file name for VAEs)
    filename: Path  # absolute
    root: Path  # the folder it was found under
    size: int
    mtime: float
    sha256: str | None = None
    _header: tuple[dict, dict] | None = field(default=None, repr=False)

    @property
    def is_safetensors(self) -> bool:
        return self.filename.suffix.lower() == ".safetensors"

    @property
    def subfolder(self) -> str:
        """The folder below the root, '/'-separated ('' at the top), for the cards' folder filter."""
        parent = self.filename.parent.relative_to(self.root).as_posix()
        return "" if parent == "." else parent

    @property
    def shorthash(self) -> str | None:
        """First 12 hex digits (A1111's LoRA / TI short hash); None until hashed."""
        return self.sha256[:12] if self.sha256 else None

    def header(self) -> tuple[dict[str, tuple], dict[str, str]]:
        """(tensor shapes, metadata) of a .safetensors file, read once; ({}, {}) for other files."""
        if self._header is None:
            if not self.is_safetensors:
                self._header = ({}, {})
            else:
                from webui.models.probe import read_safetensors_header

                self._header = read_safetensors_header(self.filename)
        return self._header

    def metadata(self) -> dict[str, Any]:
        """The safetensors metadata with JSON-looking values (kohya's ss_tag_frequency ...) decoded."""
        try:
            raw = self.header()[1]
        except ModelLoadError:
            return {}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, str) and value[:1] in "{[":
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            out[key] = value
        out.pop("ssmd_cover_images", None)  # base64 images: too big to show as text
        return out

    def preview(self) -> Path | None:
        return find_preview(self.filename)

    def user_metadata(self) -> dict[str, Any]:
        return read_user_metadata(self.filename)

    def save_user_metadata(self, data: dict[str, Any]) -> None:
        save_user_metadata(self.filename, data)


def _stem(path: Path) -> str:
    path = Path(path)
    return str(path.with_suffix("")) if path.is_file() or path.suffix else str(path)


def find_preview(path: Path) -> Path | None:
    """`<stem>.png`, `<stem>.preview.png`, then the other image types, as A1111 looks for them."""
    base = _stem(path)
    for ext in PREVIEW_EXTENSIONS:
        for candidate in (f"{base}.{ext}", f"{base}.preview.{ext}"):
            if os.path.isfile(candidate):
                return Path(candidate)
    return None


def user_metadata_path(path: Path) -> Path:
    """A1111's user metadata file of a model: `<stem>.json` beside it."""
    return Path(f"{_stem(path)}.json")


def read_user_metadata(path: Path) -> dict[str, Any]:
    """A1111's `<stem>.json` (description, activation text, preferred weight, notes, ...); {} if absent."""
    meta = user_metadata_path(path)
    if not meta.is_file():
        return {}
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable user metadata (%s)", meta, exc)
        return {}


def save_user_metadata(path: Path, data: dict[str, Any]) -> None:
    """Write `<stem>.json` atomically, keeping keys another tool wrote."""
    merged = {**read_user_metadata(path), **data}
    write_json_atomic(user_metadata_path(path), merged, indent=4)


def scan(kind: str, roots: Iterable[Path], suffixes: tuple[str, ...], name_of: Callable[[Path], str]) -> list[NetworkFile]:
    """Every file with one of `suffixes` under `roots` (recursively), sorted by name; stat only."""
    found: list[NetworkFile] = []
    seen: set[Path] = set()
    for root in roots:
        root = Path(root).absolute()
        if not root.is_dir():
            continue
        for folder, dirs, files in os.walk(root, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or not name.lower().endswith(suffixes):
                    continue
                path = Path(folder) / name
                if path.resolve() in seen:
                    continue
                seen.add(path.resolve())
                try:
                    st = path.stat()
                except OSError:
                    continue
                found.append(NetworkFile(kind, name_of(path), path, root, st.st_size, st.st_mtime))
    found.sort(key=lambda f: (f.name.lower(), str(f.filename)))
    return found


class NetworkFolder:
    """The files of one network kind, with lazy hashes cached in cache.json."""

    def __init__(self, kind: str, roots: Iterable[Path], suffixes: tuple[str, ...], cache: SectionedHashCache,
                 name_of: Callable[[Path], str] = lambda p: p.stem, use_addnet_hash: bool = False):
        self.kind = kind
        self.roots = [Path(r) for r in roots]
        self.suffixes = suffixes
        self.cache = cache
        self.name_of = name_of
        self.use_addnet_hash = use_addnet_hash
        self._lock = threading.RLock()
        self._files: list[NetworkFile] | None = None

    @property
    def cache_prefix(self) -> str:
        # A1111's cache.json titles: "lora/<name>", "textual_inversion/<name>", "hypernet/<name>", "vae/<name>".
        return {"embedding": "textual_inversion", "hypernetwork": "hypernet"}.get(self.kind, self.kind)

    def refresh(self) -> list[NetworkFile]:
        """Rescan the folders; later files with the same name shadow nothing (first one wins)."""
        files = scan(self.kind, self.roots, self.suffixes, self.name_of)
        known = self.cache.snapshot()
        for item in files:
            self._from_cache(item, known)
        with self._lock:
            self._files = files
        return list(files)

    def files(self) -> list[NetworkFile]:
        with self._lock:
            if self._files is None:
                self.refresh()
            return list(self._files)

    def find(self, name: str) -> NetworkFile | None:
        """By name (A1111: the stem), then case-insensitively, then by file name or subfolder path."""
        files = self.files()
        for predicate in (lambda f: f.name == name, lambda f: f.name.lower() == name.lower(),
                          lambda f: f.filename.name == name,
                          lambda f: f"{f.subfolder}/{f.name}".lstrip("/") == name):
            for item in files:
                if predicate(item):
                    return item
        return None

    def _section(self, item: NetworkFile) -> str:
        return "hashes-addnet" if self.use_addnet_hash and item.is_safetensors else "hashes"

    def _key(self, item: NetworkFile) -> str:
        return f"{self.cache_prefix}/{item.name}"

    def _from_cache(self, item: NetworkFile, known: dict) -> None:
        section = known.get(self._section(item))
        entry = section.get(self._key(item)) if isinstance(section, dict) else None
        if isinstance(entry, dict) and entry.get("mtime") == item.mtime and isinstance(entry.get("sha256"), str):
            item.sha256 = entry["sha256"]

    def ensure_hash(self, item: NetworkFile) -> str:
        """The file's A1111 hash (read once, then from cache.json while mtime is unchanged)."""
        if item.sha256:
            return item.sha256
        addnet = self.use_addnet_hash and item.is_safetensors
        if addnet:
            # kohya stores the same hash in the metadata; trusted only when it looks like one.
            claimed = str(item.metadata().get("sshs_model_hash", "")).lower()
            digest = claimed if _HEX64.match(claimed) else addnet_hash(item.filename)
        else:
            digest = sha256_of(item.filename)
        item.sha256 = digest
        self.cache.put_section(self._section(item), self._key(item), {"mtime": item.mtime, "sha256": digest})
        return digest


def safe_torch_load(path: Path, allow_unsafe_pickle: bool = False) -> Any:
    """torch.load that never runs code from the file unless the user allowed it by flag.

    Unlike the checkpoint loader this keeps the nested structure (embeddings and hypernetworks
    are dicts of dicts with ints and strings), which `weights_only=True` permits.
    """
    from webui.models.loader import _first_line, _unsafe_globals

    path = Path(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        refused = _unsafe_globals(path, exc)
        if refused is None:
            raise ModelLoadError(f"{path.name}: not a readable PyTorch file (truncated or corrupt?): "
                                 f"{_first_line(exc)}") from exc
        if not allow_unsafe_pickle:
            raise ModelLoadError(f"{path.name}: refused: its pickle needs {', '.join(refused) or 'code'}, which "
                                 f"could run arbitrary code. Convert it to .safetensors, or, only if you trust it, "
                                 f"start with {UNSAFE_FLAG}.") from exc
        log.warning("%s: unpickling with %s; this runs code from the file", path.name, UNSAFE_FLAG)
        return torch.load(str(path), map_location="cpu", weights_only=False)


def load_tensors(path: Path, allow_unsafe_pickle: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """(state dict, safetensors metadata) of a network file; ModelLoadError naming the file otherwise."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from webui.models.probe import read_safetensors_header

        _, metadata = read_safetensors_header(path)  # names truncation / non-safetensors clearly
        try:
            return load_file(str(path), device="cpu"), metadata
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"{path.name}: cannot be read: {exc}") from exc
    data = safe_torch_load(path, allow_unsafe_pickle)
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path.name}: holds a {type(data).__name__}, not a dict of tensors")
    return data, {}
