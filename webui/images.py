"""Save images as A1111 does: `outputs/txt2img-images/<date>/NNNNN-<seed>.png` with infotext, and grids."""
from __future__ import annotations

import math
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image, PngImagePlugin

MAX_FILENAME_PART = 128
_NUMBER = re.compile(r"^(?:grid-)?(\d+)[-.]")
# A PNG is written to `.saving-<pid>-<random>.png` and linked to its name when complete.
PARTIAL_PREFIX = ".saving-"
_PARTIAL = re.compile(r"^\.saving-(?:(\d+)-)?.*\.png$")


@dataclass(frozen=True)
class NameFields:
    """Values the filename pattern can use ([seed], [prompt_words], ...)."""

    seed: int
    prompt: str = ""
    model_name: str = ""
    sampler: str = ""
    steps: int = 0
    cfg: float = 0
    width: int = 0
    height: int = 0


def _sanitize(text: str) -> str:
    text = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", text).strip(" .")
    return text[:MAX_FILENAME_PART]


def expand_pattern(pattern: str, fields: NameFields, now: datetime | None = None) -> str:
    """Fill A1111's filename pattern tags; unknown tags are left as written."""
    now = now or datetime.now()
    words = " ".join(re.findall(r"[\w']+", fields.prompt)[:8])
    values = {"seed": fields.seed, "prompt_words": words, "prompt": fields.prompt, "model_name": fields.model_name,
              "sampler": fields.sampler, "steps": fields.steps, "cfg": f"{fields.cfg:g}", "width": fields.width,
              "height": fields.height, "date": now.strftime("%Y-%m-%d"), "datetime": now.strftime("%Y%m%d%H%M%S")}
    out = re.sub(r"\[(\w+)\]", lambda m: str(values.get(m.group(1), m.group(0))), pattern or "[seed]")
    return _sanitize(out) or str(fields.seed)


def png_info(infotext: str | None, extra_text: dict[str, str] | None = None) -> PngImagePlugin.PngInfo | None:
    """The `parameters` text chunk A1111 writes (PIL picks tEXt or iTXt as A1111's call does).

    ``extra_text`` adds other chunks, e.g. A1111's ``postprocessing`` for Extras outputs.
    """
    chunks = {"parameters": infotext, **(extra_text or {})}
    if not any(chunks.values()):
        return None
    info = PngImagePlugin.PngInfo()
    for key, text in chunks.items():
        if text:
            info.add_text(key, text)
    return info


def read_infotext(image: Image.Image) -> str | None:
    """The A1111 parameters text of a loaded image, if any."""
    return image.info.get("parameters") or (image.text.get("parameters") if hasattr(image, "text") else None)


class ImageSaver:
    """Numbered, atomic, never-overwriting PNG writer; one per app, safe across threads."""

    def __init__(self):
        self._lock = threading.Lock()

    @staticmethod
    def next_number(folder: Path) -> int:
        """One past the highest `NNNNN-` prefix in the folder, so numbering survives restarts."""
        highest = -1
        if folder.is_dir():
            for entry in os.scandir(folder):
                match = _NUMBER.match(entry.name)
                if match:
                    highest = max(highest, int(match.group(1)))
        return highest + 1

    def save(self, image: Image.Image, folder: Path, stem: str, infotext: str | None,
             extra_text: dict[str, str] | None = None) -> Path:
        """Write `folder/NNNNN-<stem>.png` (A1111's sample naming)."""
        return self._save(image, folder, infotext, lambda n: f"{n:05d}-{stem}.png", extra_text)

    def save_grid(self, image: Image.Image, folder: Path, infotext: str | None) -> Path:
        """Write `folder/grid-NNNN.png` (A1111's grid naming)."""
        return self._save(image, folder, infotext, lambda n: f"grid-{n:04d}.png")

    def _save(self, image: Image.Image, folder: Path, infotext: str | None, name_for,
              extra_text: dict[str, str] | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd, tmp = tempfile.mkstemp(prefix=f"{PARTIAL_PREFIX}{os.getpid()}-", suffix=".png", dir=folder)
            try:
                with os.fdopen(fd, "wb") as fh:
                    image.save(fh, format="PNG", pnginfo=png_info(infotext, extra_text))
                number = self.next_number(folder)
                while True:
                    target = folder / name_for(number)
                    try:
                        # link() fails if the name exists, so a file is never replaced, even by another process.
                        os.link(tmp, target)
                        return target
                    except FileExistsError:
                        number += 1
            finally:
                Path(tmp).unlink(missing_ok=True)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # at start-up nothing of ours is being saved: the pid is a previous process's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_partial_files(roots) -> list[Path]:
    """Delete half-written `.saving-*.png` files a killed process left under `roots`.

    Called at start: a PNG killed mid-write never got its real name, so these are all
    incomplete. Files of another live process (a second instance on the same folders) stay.
    """
    removed = []
    for root in roots:
        if not Path(root).is_dir():
            continue
        for folder, _, files in os.walk(root):
            for name in files:
                match = _PARTIAL.match(name)
                if not match or (match.group(1) and _running(int(match.group(1)))):
                    continue
                path = Path(folder) / name
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass
    return removed


def image_grid(images: list[Image.Image], rows: int | None = None) -> Image.Image:
    """Lay images out as A1111's automatic grid: about square, rows = round(sqrt(n))."""
    if not images:
        raise ValueError("no images for a grid")
    rows = rows or max(1, min(len(images), round(math.sqrt(len(images)))))
    cols = math.ceil(len(images) / rows)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), "black")
    for i, img in enumerate(images):
        grid.paste(img, ((i % cols) * w, (i // cols) * h))
    return grid
