"""Registry: scanning, A1111 names and titles, lazy cached hashes, lookups."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from webui.models.registry import Registry, scan_folder, sha256_of


class CountingHasher:
    """The real hasher, counting the files whose contents it reads."""

    def __init__(self):
        self.calls: list[Path] = []

    def __call__(self, path: Path) -> str:
        self.calls.append(Path(path))
        return sha256_of(path)


def write(path: Path, data: bytes = b"weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def layout(tmp_path):
    """A checkpoint folder with every kind of entry and every kind of non-entry."""
    root = tmp_path / "Stable-diffusion"
    write(root / "alpha.safetensors", b"alpha" * 1000)
    write(root / "sub" / "beta.ckpt", b"beta")
    write(root / "gamma.pt", b"gamma")
    write(root / "notes.txt", b"not a model")
    write(root / "alpha.config" / "model_index.json", b"{}")  # sidecar, not a checkpoint
    write(root / "lonely.config" / "model_index.json", b"{}")  # *.config folders are never checkpoints
    write(root / "pipe" / "model_index.json", b'{"_class_name": "StableDiffusionPipeline"}')
    write(root / "pipe" / "unet" / "diffusion_pytorch_model.safetensors", b"unet")
    write(root / "pipe" / "inner" / "model_index.json", b"{}")  # inside a diffusers folder
    write(root / "pipe" / "inner" / "x.safetensors", b"x")
    write(root / ".hidden" / "secret.safetensors", b"s")
    return root


def test_scan_lists_files_and_diffusers_folders_only(layout):
    found = {i.name: i for i in scan_folder(layout)}
    assert sorted(found) == ["alpha.safetensors", "gamma.pt", "pipe", "sub/beta.ckpt"]
    assert found["pipe"].kind == "diffusers" and found["sub/beta.ckpt"].kind == "ckpt"
    assert found["sub/beta.ckpt"].model_name == "sub_beta"  # A1111's model_name
    assert found["alpha.safetensors"].size == 5000
    assert found["pipe"].size == len(b'{"_class_name": "StableDiffusionPipeline"}') + 4 + 2 + 1
    assert all(i.filename.is_absolute() and i.sha256 is None for i in found.values())


def test_titles_and_short_hash_match_hashlib(tiny_sd15, tmp_path):
    registry = Registry([tiny_sd15.single_file.parent], tmp_path / "cache.json")
    entries = registry.refresh()
    info = next(i for i in entries if i.filename == tiny_sd15.single_file)
    assert info.title == "tiny-sd15.safetensors"  # A1111 shows no brackets before hashing
    assert not any(i.name.endswith(".config") for i in entries)
    registry.ensure_hash(info)
    expected = hashlib.sha256(tiny_sd15.single_file.read_bytes()).hexdigest()
    assert info.sha256 == expected and info.shorthash == expected[:10]
    assert info.title == f"tiny-sd15.safetensors [{expected[:10]}]"


def test_rescan_reads_no_file_contents(layout, tmp_path):
    cache = tmp_path / "cache.json"
    hasher = CountingHasher()
    first = Registry([layout], cache, hasher)
    for info in first.refresh():
        first.ensure_hash(info)
    assert len(hasher.calls) == 4
    first.refresh()
    for info in first.checkpoints():
        first.ensure_hash(info)
    assert len(hasher.calls) == 4  # same instance: cache hit

    hasher.calls.clear()
    second = Registry([layout], cache, hasher)  # a restart
    entries = second.refresh()
    assert all(i.sha256 for i in entries) and hasher.calls == []
    for info in entries:
        second.ensure_hash(info)
    assert hasher.calls == []

    changed = layout / "gamma.pt"
    changed.write_bytes(b"gamma, retrained")
    os.utime(changed, (1_000_000, 1_000_000))
    third = Registry([layout], cache, hasher)
    entry = next(i for i in third.refresh() if i.name == "gamma.pt")
    assert entry.sha256 is None  # size and mtime changed: the cached hash is not trusted
    third.ensure_hash(entry)
    assert hasher.calls == [changed] and entry.sha256 == hashlib.sha256(b"gamma, retrained").hexdigest()


def test_cache_file_is_a1111_shaped_and_keeps_other_sections(layout, tmp_path):
    cache = tmp_path / "cache.json"
    cache.write_text(json.dumps({"hashes": {"lora/x": {"mtime": 1, "sha256": "ab"}}, "safetensors-metadata": {}}))
    registry = Registry([layout], cache)
    info = registry.find("alpha")
    registry.ensure_hash(info)
    data = json.loads(cache.read_text())
    assert "safetensors-metadata" in data and data["hashes"]["lora/x"]["sha256"] == "ab"
    entry = data["hashes"]["checkpoint/alpha.safetensors"]
    assert entry["sha256"] == info.sha256 and entry["mtime"] == info.mtime

    # A cache written by A1111 (mtime and sha256 only) is used as is.
    a1111 = tmp_path / "a1111.json"
    a1111.write_text(json.dumps({"hashes": {"checkpoint/gamma.pt": {
        "mtime": (layout / "gamma.pt").stat().st_mtime, "sha256": "f" * 64}}}))
    hasher = CountingHasher()
    other = Registry([layout], a1111, hasher)
    other.refresh()
    assert other.find("gamma.pt").shorthash == "f" * 10 and hasher.calls == []


def test_unreadable_cache_is_ignored(layout, tmp_path):
    cache = tmp_path / "cache.json"
    cache.write_text("{not json")
    registry = Registry([layout], cache)
    registry.ensure_hash(registry.refresh()[0])
    assert json.loads(cache.read_text())["hashes"]


def test_lookup_by_every_a1111_form(layout, tmp_path):
    registry = Registry([layout], tmp_path / "cache.json")
    registry.refresh()
    beta = registry.find("sub/beta.ckpt")
    registry.ensure_hash(beta)
    short = beta.shorthash
    for query in (beta.title, "sub/beta.ckpt", "sub/beta", "sub_beta", "beta.ckpt", "beta", short,
                  beta.sha256, f"sub/beta.ckpt [{short}]", f"renamed.ckpt [{short}]", str(beta.filename),
                  f"sub_beta [{short}]", Path(beta.filename)):
        assert registry.find(query) is beta, query
    assert registry.find("pipe").kind == "diffusers"
    assert registry.find("alpha.safetensors [0123456789]").name == "alpha.safetensors"  # stale hash, same name
    assert registry.find("alph").name == "alpha.safetensors"  # A1111's "title contains" fallback
    assert registry.find("nothing-like-this") is None
    assert registry.find("") is None and registry.find(None) is None


def test_user_folder_first_bundled_marked_and_deduped(tmp_path):
    user = tmp_path / "user"
    bundled = tmp_path / "repo" / "models" / "Stable-diffusion"
    write(bundled / "demo-shapes.safetensors", b"demo")
    write(bundled / "same.safetensors", b"bundled copy")
    write(user / "same.safetensors", b"user copy")
    write(user / "zeta.safetensors", b"zeta")
    registry = Registry([user, bundled, user], tmp_path / "cache.json", bundled_root=bundled)
    assert len(registry.roots) == 2
    entries = registry.refresh()
    assert [i.name for i in entries] == ["same.safetensors", "zeta.safetensors", "demo-shapes.safetensors"]
    assert entries[0].filename.parent == user and [i.bundled for i in entries] == [False, False, True]

    # One folder for both (the default layout): the demo is still last and still marked.
    write(bundled / "aaa.safetensors", b"user model in the repo folder")
    same = Registry([bundled, bundled], tmp_path / "cache2.json", bundled_root=bundled)
    names = [(i.name, i.bundled) for i in same.refresh()]
    assert names == [("aaa.safetensors", False), ("same.safetensors", False), ("demo-shapes.safetensors", True)]


def test_files_outside_the_folders_can_be_added(tmp_path):
    outside = write(tmp_path / "elsewhere" / "mine.safetensors", b"mine")
    registry = Registry([tmp_path / "empty"], tmp_path / "cache.json")
    assert registry.refresh() == []
    info = registry.add_file(outside)
    assert registry.add_file(outside) is info
    assert registry.find("mine.safetensors") is info
    assert [i.filename for i in registry.refresh()] == [outside]  # survives a rescan


def test_folder_hash_covers_every_file(layout):
    pipe = layout / "pipe"
    before = sha256_of(pipe)
    assert before == sha256_of(pipe)
    write(pipe / "unet" / "diffusion_pytorch_model.safetensors", b"unet, changed")
    assert sha256_of(pipe) != before
