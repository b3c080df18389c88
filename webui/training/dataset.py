"""Training images from a folder: kohya's folder convention, captions, aspect-ratio buckets, batches.

A dataset folder holds images with ``.txt`` caption sidecars (``cat.png`` + ``cat.txt``),
either directly or in kohya subfolders ``<repeats>_<name>/`` (``10_mychar`` shows each of its
images 10 times per epoch). An image without a caption gets its folder's name (the part after
``<repeats>_``) as caption, as kohya does, and the scan says so.

Batches are a pure function of (seed, epoch): a resumed run sees exactly the data the
uninterrupted run would have seen, which is what makes "resume continues the same loss
curve" true.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_REPEATS_DIR = re.compile(r"^(\d+)_(.*)$")


class DatasetError(ValueError):
    """The folder cannot be trained on; the message says why and what to do."""


@dataclass(frozen=True)
class DatasetImage:
    """One training image and where its caption came from."""

    path: Path
    caption: str
    subset: str  # the subfolder name (kohya's "<repeats>_<name>") or "." for the root
    repeats: int
    size: tuple[int, int]  # (width, height) of the file
    captioned: bool  # False: the caption is the folder name


@dataclass
class Dataset:
    """What a folder scan found."""

    root: Path
    images: list[DatasetImage]
    notes: list[str] = field(default_factory=list)  # things the user should know (missing captions, skipped files)

    def subsets(self) -> dict[str, dict]:
        """kohya's ``ss_dataset_dirs``: per subfolder, repeats and image count."""
        out: dict[str, dict] = {}
        for image in self.images:
            entry = out.setdefault(image.subset, {"n_repeats": image.repeats, "img_count": 0})
            entry["img_count"] += 1
        return out

    def tag_frequency(self) -> dict[str, dict[str, int]]:
        """kohya's ``ss_tag_frequency``: per subfolder, how often each comma-separated tag occurs."""
        out: dict[str, Counter] = {}
        for image in self.images:
            counter = out.setdefault(image.subset, Counter())
            counter.update(t.strip() for t in image.caption.split(",") if t.strip())
        return {k: dict(v) for k, v in out.items()}

    @property
    def num_with_repeats(self) -> int:
        return sum(i.repeats for i in self.images)


def caption_path(image: Path, extension: str = ".txt") -> Path:
    """The caption sidecar of an image (``a.png`` -> ``a.txt``)."""
    return image.with_suffix(extension)


def read_caption(image: Path, extension: str = ".txt") -> str | None:
    """The caption text (one line, stripped), or None when the image has no sidecar."""
    path = caption_path(image, extension)
    if not path.is_file():
        return None
    return " ".join(path.read_text(encoding="utf-8", errors="replace").split())


def list_images(folder: Path) -> list[Path]:
    """Images directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _subfolders(root: Path) -> list[tuple[Path, int, str]]:
    """(folder, repeats, class name) for the root and each kohya ``<repeats>_<name>`` subfolder."""
    match = _REPEATS_DIR.match(root.name)
    found = [(root, int(match[1]) if match else 1, (match[2] if match else root.name).strip())]
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        m = _REPEATS_DIR.match(sub.name)
        if m:
            found.append((sub, max(1, int(m[1])), m[2].strip()))
    return found


def filename_words(path: Path) -> str:
    """A1111's caption for an image without a .txt: the file name's words, leading numbers dropped."""
    stem = re.sub(r"^[\d\-_ ().]+", "", path.stem)
    return " ".join(re.findall(r"[a-zA-Z]+", stem))


def scan_folder(root: str | Path, caption_extension: str = ".txt", missing_caption: str = "folder") -> Dataset:
    """Find the images and captions under ``root``; raise DatasetError when there is nothing to train on.

    An image without a caption file gets its folder's class name (kohya, ``missing_caption="folder"``)
    or the words of its file name (A1111's textual inversion, ``"filename"``).
    """
    text = str(root).strip()
    if not text:
        raise DatasetError("no dataset folder given: enter the path of a folder of images with .txt captions")
    root = Path(text).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a folder of images")
    try:
        folders = _subfolders(root)
    except OSError as exc:
        raise DatasetError(f"cannot read the dataset folder {root}: {exc.strerror or exc}") from None
    images: list[DatasetImage] = []
    unreadable: list[str] = []
    uncaptioned: Counter = Counter()
    for folder, repeats, class_name in folders:
        try:
            files = list_images(folder)
        except OSError as exc:
            unreadable.append(f"{folder.name}/ ({exc.strerror or exc})")
            continue
        subset = "." if folder == root else folder.name
        for path in files:
            try:
                with Image.open(path) as im:
                    size = im.size
            except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
                unreadable.append(f"{path.name} ({type(exc).__name__})")
                continue
            try:
                caption = read_caption(path, caption_extension)
            except OSError:
                caption = None
            if caption is None:
                uncaptioned[class_name] += 1
            fallback = filename_words(path) if missing_caption == "filename" else class_name
            images.append(DatasetImage(path, caption if caption is not None else fallback, subset, repeats, size,
                                       caption is not None))
    notes = []
    for name, count in uncaptioned.items():
        if missing_caption == "filename":
            notes.append(f"{count} image(s) have no {caption_extension} caption: using the words of their file "
                         "names (as A1111 does)")
        else:
            notes.append(f"{count} image(s) have no {caption_extension} caption: using the folder name "
                         f"{name!r} as their caption (as kohya does)")
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
        notes.append(f"skipped {len(unreadable)} file(s) that could not be read: {shown}")
    if not images:
        kinds = ", ".join(IMAGE_EXTENSIONS)
        raise DatasetError(f"no readable images in {root} (looked for {kinds} in the folder and in kohya "
                           f"'<repeats>_<name>' subfolders)" + (f"; {notes[-1]}" if unreadable else ""))
    return Dataset(root, images, notes)


# ------------------------------------------------------------------ buckets

def size_multiple(vae_scale_factor: int, unet_levels: int) -> int:
    """Pixel sizes must be multiples of this for the VAE and every UNet downsampling to divide evenly."""
    return int(vae_scale_factor) * 2 ** max(0, int(unet_levels) - 1)


def make_buckets(resolution: int, multiple: int, enable: bool = True) -> list[tuple[int, int]]:
    """kohya-style buckets: (width, height) with area <= resolution^2, sides stepped by ``multiple``.

    Sides run from half to twice the resolution; without buckets there is one square bucket.
    """
    side = max(multiple, resolution // multiple * multiple)
    if not enable:
        return [(side, side)]
    step = multiple if resolution < 256 else max(multiple, 64)
    low = max(step, (resolution // 2) // step * step)
    high = resolution * 2
    area = resolution * resolution
    buckets = set()
    width = low
    while width <= high:
        height = min(high, (area // width) // step * step)
        if height >= low:
            buckets.add((width, height))
            buckets.add((height, width))
        width += step
    buckets.add((side, side))
    return sorted(buckets)


def assign_bucket(size: tuple[int, int], buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to the image's (ties: the larger area)."""
    ratio = size[0] / size[1]
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - math.log(ratio)), -b[0] * b[1]))


def fit_to_bucket(image: Image.Image, bucket: tuple[int, int], rng: random.Random | None = None
                  ) -> tuple[Image.Image, tuple[int, int]]:
    """Resize so the image covers the bucket, then crop to it (centre, or random with ``rng``).

    Returns the image and the crop's top-left corner in the resized image (SDXL's crop conditioning).
    """
    width, height = bucket
    scale = max(width / image.width, height / image.height)
    resized_size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    if resized_size != image.size:
        image = image.resize(resized_size, Image.Resampling.LANCZOS)
    extra_w, extra_h = image.width - width, image.height - height
    if rng is not None:
        left, top = rng.randint(0, extra_w), rng.randint(0, extra_h)
    else:
        left, top = extra_w // 2, extra_h // 2
    return image.crop((left, top, left + width, top + height)), (top, left)


def load_rgb(path: Path) -> Image.Image:
    """An image as RGB, EXIF orientation applied; transparency flattened on white."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return im.convert("RGB")


def to_tensor_array(image: Image.Image) -> np.ndarray:
    """HWC uint8 image -> CHW float32 in [-1, 1]."""
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0


# ------------------------------------------------------------------ captions

def process_caption(caption: str, rng: random.Random, shuffle: bool = False, keep_tokens: int = 0,
                    dropout_rate: float = 0.0) -> str:
    """kohya's caption handling: drop the whole caption with ``dropout_rate`` (trains the
    unconditional case), else shuffle the comma-separated tags after the first ``keep_tokens``."""
    if dropout_rate > 0 and rng.random() < dropout_rate:
        return ""
    if not shuffle:
        return caption
    tags = [t.strip() for t in caption.split(",") if t.strip()]
    fixed, rest = tags[:keep_tokens], tags[keep_tokens:]
    rng.shuffle(rest)
    return ", ".join(fixed + rest)


# ------------------------------------------------------------------ batches

@dataclass(frozen=True)
class Sample:
    """One item of a batch: which image, in which bucket."""

    index: int  # into Dataset.images
    bucket: tuple[int, int]


class BatchPlan:
    """Batches per epoch, bucket by bucket, seeded: ``batch(i)`` is the i-th batch of the whole run."""

    def __init__(self, dataset: Dataset, buckets: list[tuple[int, int]], batch_size: int, seed: int):
        self.dataset = dataset
        self.batch_size = max(1, int(batch_size))
        self.seed = int(seed)
        self.by_bucket: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(dataset.images):
            bucket = assign_bucket(image.size, buckets)
            self.by_bucket.setdefault(bucket, []).extend([index] * image.repeats)
        self.batches_per_epoch = sum(math.ceil(len(v) / self.batch_size) for v in self.by_bucket.values())
        self._epoch_cache: tuple[int, list[list[Sample]]] | None = None

    def epoch(self, epoch: int) -> list[list[Sample]]:
        """Every batch of one epoch in order (deterministic in seed and epoch)."""
        if self._epoch_cache and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        rng = random.Random(self.seed * 1_000_003 + epoch)
        batches = []
        for bucket in sorted(self.by_bucket):
            items = list(self.by_bucket[bucket])
            rng.shuffle(items)
            for start in range(0, len(items), self.batch_size):
                batches.append([Sample(i, bucket) for i in items[start:start + self.batch_size]])
        rng.shuffle(batches)
        self._epoch_cache = (epoch, batches)
        return batches

    def batch(self, index: int) -> tuple[int, list[Sample]]:
        """(epoch, samples) of the ``index``-th batch counted from the start of training."""
        epoch, within = divmod(index, self.batches_per_epoch)
        return epoch, self.epoch(epoch)[within]

    def bucket_info(self) -> dict:
        """kohya's ``ss_bucket_info``: images per bucket resolution."""
        return {"buckets": {str(i): {"resolution": list(b), "count": len(v)}
                            for i, (b, v) in enumerate(sorted(self.by_bucket.items()))}}
