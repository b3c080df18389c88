"""Dataset tools for the Train tab: caption editing, tag edits across a folder, flip/crop/resize into buckets.

Captions are comma-separated tags (kohya / booru style). Edits write each caption file
atomically; images without a caption file are reported, not invented.
"""
from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from webui.training import dataset as ds


class ToolError(ValueError):
    """Bad input for a dataset tool; the message is for the user."""


def split_tags(caption: str) -> list[str]:
    return [t.strip() for t in caption.split(",") if t.strip()]


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text.strip() + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _inside(folder: Path, path: Path) -> Path:
    """``path`` resolved, refusing anything outside ``folder`` (the UI sends paths back to us)."""
    folder, resolved = Path(folder).resolve(), Path(path).resolve()
    if folder != resolved and folder not in resolved.parents:
        raise ToolError(f"{path} is not inside the dataset folder {folder}")
    return resolved


def write_caption(folder: str | Path, image: str | Path, text: str, extension: str = ".txt") -> Path:
    """Save one image's caption (creates the sidecar when missing)."""
    image = _inside(Path(folder), Path(image))
    if not image.is_file():
        raise ToolError(f"{image.name} is not in the folder any more")
    target = ds.caption_path(image, extension)
    _write_text(target, " ".join(text.split()))
    return target


@dataclass
class TagEdit:
    """What a folder-wide tag edit did."""

    changed: int
    unchanged: int
    without_caption: int

    def message(self, what: str) -> str:
        text = f"{what}: {self.changed} caption(s) changed, {self.unchanged} unchanged"
        if self.without_caption:
            text += f"; {self.without_caption} image(s) have no caption file and were left alone"
        return text


def edit_tags(folder: str | Path, action: str, tag: str, new_tag: str = "", extension: str = ".txt") -> TagEdit:
    """``add`` (to the front), ``append`` (to the end), ``remove`` or ``replace`` one tag in every caption."""
    tag, new_tag = tag.strip().strip(","), new_tag.strip().strip(",")
    if not tag:
        raise ToolError("give the tag to " + {"replace": "replace"}.get(action, action))
    if action == "replace" and not new_tag:
        raise ToolError("give the new tag (to delete a tag, use Remove)")
    if action not in ("add", "append", "remove", "replace"):
        raise ToolError(f"unknown tag action {action!r}")
    data = ds.scan_folder(folder, extension)
    changed = unchanged = missing = 0
    for image in data.images:
        if not image.captioned:
            missing += 1
            continue
        tags = split_tags(image.caption)
        if action in ("add", "append"):
            new = tags if tag in tags else ([tag] + tags if action == "add" else tags + [tag])
        elif action == "remove":
            new = [t for t in tags if t != tag]
        else:
            new = []
            for t in tags:
                t = new_tag if t == tag else t
                if t not in new:
                    new.append(t)
        if new != tags:
            _write_text(ds.caption_path(image.path, extension), ", ".join(new))
            changed += 1
        else:
            unchanged += 1
    return TagEdit(changed, unchanged, missing)


def tag_counts(data: ds.Dataset) -> list[tuple[str, int]]:
    """Every tag in the folder with how many captions carry it, most common first."""
    counts: Counter = Counter()
    for image in data.images:
        counts.update(set(split_tags(image.caption)))
    return counts.most_common()


def prepare_buckets(source: str | Path, target: str | Path, resolution: int, multiple: int = 64,
                    enable_bucket: bool = True, flip: bool = False, extension: str = ".txt") -> dict[str, int]:
    """Resize and centre-crop every image into its aspect-ratio bucket under ``target`` (same subfolders),
    copying captions; with ``flip`` also a mirrored copy. Returns images written per bucket."""
    src, dst = Path(source).expanduser(), Path(target).expanduser()
    if not str(target).strip():
        raise ToolError("give an output folder")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ToolError("the output folder must be outside the dataset folder (the originals are kept)")
    if not 64 <= resolution <= 4096:
        raise ToolError(f"resolution must be from 64 to 4096, got {resolution}")
    data = ds.scan_folder(src, extension)
    buckets = ds.make_buckets(resolution, multiple, enable_bucket)
    written: Counter = Counter()
    for image in data.images:
        bucket = ds.assign_bucket(image.size, buckets)
        sub = dst if image.subset == "." else dst / image.subset
        sub.mkdir(parents=True, exist_ok=True)
        fitted, _ = ds.fit_to_bucket(ds.load_rgb(image.path), bucket)
        copies = [(image.path.stem, fitted)]
        if flip:
            copies.append((image.path.stem + "_flip", fitted.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
        for stem, picture in copies:
            picture.save(sub / f"{stem}.png")
            caption_file = ds.caption_path(image.path, extension)
            if caption_file.exists():
                shutil.copyfile(caption_file, sub / f"{stem}{extension}")
            written[f"{bucket[0]}x{bucket[1]}"] += 1
    return dict(written)
