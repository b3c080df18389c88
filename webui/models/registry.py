"""Find checkpoints on disk, name them the way A1111 does, and hash them lazily with a cache.

A scan only lists and stats files; no file contents are read. Hashes (SHA-256, A1111's
"short hash" is its first 10 hex digits) are computed when a checkpoint is first loaded or
when a caller asks (`ensure_hash`), and kept in `cache.json` under A1111's section
`"hashes"` -> `"checkpoint/<name>"` -> `{"mtime", "sha256"}` (plus `size` and `filename`,
which A1111 ignores). An entry is trusted only while the file's mtime and size are unchanged.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from webui.models.errors import ModelLoadError
from webui.userfiles import read_json_object

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt")
SIDECAR_SUFFIX = ".config"  # `<stem>.config/`: a diffusers config folder describing `<stem>.<ext>`
BUNDLED_PREFIX = "demo-"  # only the demo model ships in the repo's checkpoint folder (see .gitignore)
BLOCK = 1 << 20

Hasher = Callable[[Path], str]


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, or of a diffusers folder (every file, sorted, each prefixed by its path).

    Streams 1 MiB blocks so a 7 GB checkpoint never sits in memory.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            _feed(digest, file)
    else:
        _feed(digest, path)
    return digest.hexdigest()


def _feed(digest, file: Path) -> None:
    with open(file, "rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)


@dataclass
class CheckpointInfo:
    """One checkpoint file or diffusers folder, named as A1111 names it."""

    filename: Path  # absolute
    name: str  # path relative to its checkpoint folder, '/'-separated (A1111 shows subfolders)
    kind: str  # "safetensors" | "ckpt" | "diffusers"
    size: int
    mtime: float
    bundled: bool = False
    sha256: str | None = None

    @property
    def model_name(self) -> str:
        """A1111's model_name: the name without extension, subfolder separators as '_'."""
        return os.path.splitext(self.name.replace("/", "_"))[0] if self.kind != "diffusers" \
            else self.name.replace("/", "_")

    @property
    def shorthash(self) -> str | None:
        """A1111's short hash: the first 10 hex digits of the SHA-256 (None until hashed)."""
        return self.sha256[:10] if self.sha256 else None

    @property
    def title(self) -> str:
        """`name [shorthash]` once hashed, plain `name` before (as A1111 shows it)."""
        return f"{self.name} [{self.shorthash}]" if self.sha256 else self.name

    def aliases(self) -> set[str]:
        """Every string an A1111 client may send to mean this checkpoint."""
        found = {self.title, self.name, self.model_name, os.path.splitext(self.name)[0],
                 self.filename.name, self.filename.stem, str(self.filename)}
        if self.sha256:
            found |= {self.sha256, self.shorthash, f"{self.model_name} [{self.shorthash}]"}
        return found


class HashCache:
    """The `hashes` section of cache.json; other sections are kept as they are.

    Every write re-reads the file first so entries written by another part of the app (LoRA
    hashes, say) survive, and replaces it atomically so a crash never truncates it.
    """

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._hashes: dict | None = None
        self._warned = False

    def _read(self) -> dict | None:
        """The file's object; None when it exists but is unreadable (then it is never rewritten)."""
        if self.path is None:
            return {}
        data, problem = read_json_object(self.path)  # hardening: damaged files never crash start-up
        if problem is not None:
            if not self._warned:
                log.warning("%s is unreadable (%s); it is moved aside when a hash is next written",
                            self.path, problem)
                self._warned = True
            return None
        return data

    def _set_aside(self) -> bool:
        """Rename an unreadable cache.json to `cache.json.unreadable-<time>` so a fresh one can be written.

        The damaged file is kept for the user (never overwritten); False when it cannot be moved.
        """
        if self.path is None or not self.path.is_file():
            return False
        kept = self.path.with_name(f"{self.path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(self.path, kept)
        except OSError as exc:
            log.warning("could not move the unreadable %s aside: %s", self.path, exc)
            return False
        log.warning("moved the unreadable %s to %s; hashes are cached in a new file", self.path, kept)
        return True

    def get(self, key: str) -> dict | None:
        with self._lock:
            if self._hashes is None:
                section = (self._read() or {}).get("hashes")
                self._hashes = dict(section) if isinstance(section, dict) else {}
            entry = self._hashes.get(key)
            return entry if isinstance(entry, dict) else None

    def put(self, key: str, entry: dict) -> None:
        with self._lock:
            data = self._read()
            if data is None and not self._set_aside():
                self._hashes = {**(self._hashes or {}), key: entry}  # memory only: the file stays as it is
                return
            data = data or {}
            hashes = data.get("hashes") if isinstance(data.get("hashes"), dict) else {}
            hashes[key] = entry
            data["hashes"] = hashes
            self._hashes = dict(hashes)
            if self.path is None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=".cache-", suffix=".json", dir=self.path.parent)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, indent=2, ensure_ascii=False)
                os.replace(tmp, self.path)
            except OSError as exc:  # a read-only data dir costs a rehash next start, nothing more
                log.warning("could not write %s: %s", self.path, exc)


def _is_sidecar(folder: Path) -> bool:
    return folder.name.endswith(SIDECAR_SUFFIX)


def _folder_stat(folder: Path) -> tuple[int, float]:
    """Total size and newest mtime of a diffusers folder (stat only)."""
    size, mtime = 0, folder.stat().st_mtime
    for file in folder.rglob("*"):
        if file.is_file():
            st = file.stat()
            size += st.st_size
            mtime = max(mtime, st.st_mtime)
    return size, mtime


def scan_folder(root: Path, bundled_root: Path | None = None) -> list[CheckpointInfo]:
    """List checkpoints under `root`: files by suffix, diffusers folders by model_index.json.

    Sidecar `<stem>.config/` folders and anything inside a diffusers folder are not checkpoints;
    hidden folders are skipped. Nothing is opened, only stat'ed.
    """
    root = Path(root)
    found: list[CheckpointInfo] = []
    if not root.is_dir():
        return found
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        keep = []
        for d in sorted(dirs):
            sub = here / d
            if d.startswith(".") or _is_sidecar(sub):
                continue
            if (sub / "model_index.json").is_file():
                size, mtime = _folder_stat(sub)
                found.append(_info(root, sub, "diffusers", size, mtime, bundled_root))
            else:
                keep.append(d)
        dirs[:] = keep  # never descend into diffusers folders or sidecars
        for f in sorted(files):
            if f.lower().endswith(CHECKPOINT_SUFFIXES) and not f.startswith("."):
                path = here / f
                st = path.stat()
                kind = "safetensors" if f.lower().endswith(".safetensors") else "ckpt"
                found.append(_info(root, path, kind, st.st_size, st.st_mtime, bundled_root))
    return found


def _info(root: Path, path: Path, kind: str, size: int, mtime: float, bundled_root: Path | None) -> CheckpointInfo:
    bundled = bool(bundled_root and root == bundled_root and path.name.startswith(BUNDLED_PREFIX))
    # Not resolve(): a symlinked checkpoint keeps its own folder, where its sidecar config lives.
    return CheckpointInfo(filename=path.absolute(), name=path.relative_to(root).as_posix(), kind=kind,
                          size=size, mtime=mtime, bundled=bundled)


_WITH_HASH = re.compile(r"^(?P<name>.*?)\s*\[(?P<hash>[0-9a-fA-F]{8,64})\]$")
_HEX = re.compile(r"^[0-9a-fA-F]{10,64}$")


class Registry:
    """The checkpoints found in the configured folders, with lazy cached hashes.

    `hasher` is injectable so tests can count how often file contents are read.
    """

    def __init__(self, roots: Sequence[Path], cache_file: Path | None = None, hasher: Hasher = sha256_of,
                 bundled_root: Path | None = None):
        self.roots: list[Path] = []
        for root in roots:  # the user folder and the bundled folder are often the same one
            root = Path(root).resolve()
            if root not in self.roots:
                self.roots.append(root)
        self.bundled_root = Path(bundled_root).resolve() if bundled_root else None
        self.hasher = hasher
        self.cache = HashCache(cache_file)
        self._lock = threading.RLock()
        self._entries: list[CheckpointInfo] | None = None  # None until the first scan
        self._external: dict[Path, CheckpointInfo] = {}  # files named by --ckpt outside the folders
        self.hash_reads = 0

    @classmethod
    def from_paths(cls, paths, hasher: Hasher = sha256_of) -> "Registry":
        """Registry over `paths.ckpt_dir` and `paths.bundled_ckpt_dir`, cached in `paths.cache_file`."""
        return cls([paths.ckpt_dir, paths.bundled_ckpt_dir], paths.cache_file, hasher, paths.bundled_ckpt_dir)

    def refresh(self) -> list[CheckpointInfo]:
        """Rescan the folders; known hashes come from the cache, no file is read."""
        entries: list[CheckpointInfo] = []
        names: set[str] = set()
        for root in self.roots:
            for info in sorted(scan_folder(root, self.bundled_root), key=lambda i: i.name.lower()):
                if info.name in names:  # the user's file wins over a bundled one of the same name
                    continue
                names.add(info.name)
                self._from_cache(info)
                entries.append(info)
        for path in list(self._external):
            if path.exists() and not any(e.filename == path for e in entries):
                st = path.stat()
                info = self._external[path]
                if (info.size, info.mtime) != (st.st_size, st.st_mtime):
                    info.size, info.mtime, info.sha256 = st.st_size, st.st_mtime, None
                self._from_cache(info)
                entries.append(info)
        # User checkpoints first: "first found" at startup must not pick the demo over the user's model.
        entries.sort(key=lambda i: i.bundled)
        with self._lock:
            self._entries = entries
        return list(entries)

    def checkpoints(self) -> list[CheckpointInfo]:
        """The entries of the last scan (user checkpoints first, then the bundled demo); scans once if needed."""
        with self._lock:
            if self._entries is None:
                self.refresh()
            return list(self._entries)

    def add_file(self, path: Path) -> CheckpointInfo:
        """Register a checkpoint outside the folders (A1111's --ckpt may name any file)."""
        path = Path(path).absolute()
        found = self.find(str(path))
        if found is not None and found.filename.resolve() == path.resolve():
            return found
        if not path.exists():
            raise ModelLoadError(f"checkpoint {path} does not exist")
        if path.is_dir():
            size, mtime = _folder_stat(path)
            kind = "diffusers"
        else:
            st = path.stat()
            size, mtime = st.st_size, st.st_mtime
            kind = "safetensors" if path.suffix.lower() == ".safetensors" else "ckpt"
        info = CheckpointInfo(filename=path, name=path.name, kind=kind, size=size, mtime=mtime)
        self._from_cache(info)
        with self._lock:
            self._external[path] = info
            self._entries = self.checkpoints() + [info]
        return info

    def _key(self, info: CheckpointInfo) -> str:
        return f"checkpoint/{info.name}"

    def _from_cache(self, info: CheckpointInfo) -> None:
        entry = self.cache.get(self._key(info))
        if not entry or not isinstance(entry.get("sha256"), str):
            return
        if entry.get("mtime") != info.mtime or entry.get("size", info.size) != info.size:
            return
        if entry.get("filename", str(info.filename)) != str(info.filename):
            return
        info.sha256 = entry["sha256"]

    def ensure_hash(self, info: CheckpointInfo) -> CheckpointInfo:
        """Fill in `info.sha256` (reading the file once) unless the cache already knows it."""
        with self._lock:
            if info.sha256:
                return info
            try:
                digest = self.hasher(info.filename)
            except OSError as exc:
                raise ModelLoadError(f"cannot read {info.filename}: {exc}") from exc
            self.hash_reads += 1
            info.sha256 = digest
        self.cache.put(self._key(info), {"mtime": info.mtime, "sha256": digest, "size": info.size,
                                         "filename": str(info.filename)})
        return info

    def find(self, query: str | os.PathLike | None) -> CheckpointInfo | None:
        """Resolve what an A1111 client sends: title, name with or without hash, short hash, path.

        Hash lookups only see hashes already known; a last resort is A1111's "shortest title
        containing the text".
        """
        if query is None:
            return None
        text = str(query).strip()
        if not text:
            return None
        entries = self.checkpoints()
        for info in entries:
            if text in info.aliases():
                return info
        m = _WITH_HASH.match(text)
        if m:
            by_hash = self._by_hash(entries, m["hash"])
            if by_hash:
                return by_hash
            text = m["name"]
            for info in entries:
                if text in info.aliases():
                    return info
        if _HEX.match(text):
            by_hash = self._by_hash(entries, text)
            if by_hash:
                return by_hash
        path = Path(text).expanduser()
        try:
            is_file = path.exists()
        except (OSError, ValueError):  # a name too long for the file system, a NUL byte: not a path here
            is_file = False
        if is_file:
            absolute = path.absolute()
            for info in entries:
                if info.filename == absolute or info.filename.resolve() == absolute.resolve():
                    return info
        containing = [info for info in entries if text in info.title]
        return min(containing, key=lambda i: len(i.title)) if containing else None

    @staticmethod
    def _by_hash(entries: Iterable[CheckpointInfo], text: str) -> CheckpointInfo | None:
        text = text.lower()
        for info in entries:
            if info.sha256 and info.sha256.startswith(text):
                return info
        return None
