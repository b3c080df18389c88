"""Upscalers: A1111's built-in resamplers, its latent modes, and model upscalers loaded by spandrel.

Model upscalers are files in A1111's folders (`models/ESRGAN`, `models/RealESRGAN`,
`models/SwinIR`, `models/DAT`, ...). spandrel (the library A1111 1.8+ and ComfyUI use) detects
the architecture and its hyper-parameters from the weights alone; we read the weights ourselves
so a pickled `.pth` never runs code (the checkpoints' safe unpickler), and cache loaded models
like checkpoints. Large images run in overlapping tiles (A1111's `ESRGAN_tile` / `..._overlap`
settings) blended with linear ramps, so memory stays bounded and seams do not show.
"""
from __future__ import annotations

import logging
import math
import sys
import threading
import types
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from webui.models.errors import ModelLoadError

log = logging.getLogger(__name__)

BUILTIN = ("None", "Lanczos", "Nearest")
# A1111's latent_upscale_modes: name -> (torch interpolate mode, antialias)
LATENT_MODES = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
# A1111's model folders (and ComfyUI's), with the settings that size their tiles.
FOLDERS = {"ESRGAN": "ESRGAN", "RealESRGAN": "ESRGAN", "BSRGAN": "ESRGAN", "SwinIR": "SWIN", "DAT": "DAT",
           "HAT": "ESRGAN", "ScuNET": "ESRGAN", "upscale_models": "ESRGAN"}
SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
TILE_DEFAULT, OVERLAP_DEFAULT = 192, 8
MAX_SIDE = 16384  # an upscaled image larger than this per side is refused


class UpscalerError(ValueError):
    """An upscaler is unknown, unreadable or unsupported; the message names it, for the user."""


@dataclass(frozen=True)
class UpscalerInfo:
    """One upscaler the user can pick."""

    name: str
    kind: str  # "builtin" | "latent" | "model"
    path: Path | None = None
    tile_setting: str = "ESRGAN"  # prefix of the <prefix>_tile / <prefix>_tile_overlap settings

    def as_api(self, scale: float | None = None) -> dict:
        """A1111's /sdapi/v1/upscalers row."""
        return {"name": self.name, "model_name": self.path.stem if self.path else None,
                "model_path": str(self.path) if self.path else None, "model_url": None, "scale": scale}


def import_spandrel():
    """Import spandrel even where torchvision cannot be installed.

    spandrel imports torchvision at import time, but only two of its architectures use it
    (LaMa inpainting and RestoreFormer face restoration, neither an upscaler we offer). Our torch
    pin is a CPU build on some machines, where PyPI's torchvision (built for CUDA torch) cannot
    load and breaks transformers too, so it is not a requirement. When it is missing, spandrel
    is imported with placeholders for the three names those two architectures import; the
    placeholders are removed from sys.modules right after, so no other library sees them.
    """
    try:
        import spandrel
        return spandrel
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("torchvision"):
            raise

    def unavailable(*_args, **_kwargs):
        raise RuntimeError("this spandrel architecture needs torchvision, which is not installed")

    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    stubs = {name: types.ModuleType(name) for name in names}
    functional = stubs["torchvision.transforms.functional"]
    functional.normalize = functional.rotate = unavailable
    functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", NEAREST="nearest", BICUBIC="bicubic")
    stubs["torchvision"].transforms = stubs["torchvision.transforms"]
    stubs["torchvision.transforms"].functional = functional
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update(stubs)
    try:
        import spandrel
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return spandrel


def read_state_dict(path: Path, allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Weights of an upscaler file; pickles are read without running code (as checkpoints are)."""
    from webui.models.loader import read_legacy_checkpoint

    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = read_legacy_checkpoint(path, allow_unsafe_pickle)
    except ModelLoadError as exc:
        raise UpscalerError(f"upscaler {path.stem}: {exc}") from exc
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise UpscalerError(f"upscaler {path.stem}: not a readable weights file ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    # Some trainers save {"params_ema": {...}} or {"params": {...}}; spandrel canonicalises those too.
    return state


def load_descriptor(path: Path, allow_unsafe_pickle: bool = False):
    """A spandrel ImageModelDescriptor for an upscaler file, or UpscalerError naming what is wrong."""
    spandrel = import_spandrel()
    state = read_state_dict(path, allow_unsafe_pickle)
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError as exc:
        raise UpscalerError(f"upscaler {path.stem}: spandrel does not recognise this architecture "
                            f"({path.name})") from exc
    except Exception as exc:  # shapes that match an architecture's keys but not its layers
        raise UpscalerError(f"upscaler {path.stem}: could not be built from its weights: "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.input_channels != 3 \
            or descriptor.output_channels != 3:
        raise UpscalerError(f"upscaler {path.stem}: a {descriptor.architecture.name} model is not an RGB image "
                            f"upscaler")
    return descriptor.eval()


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` pixels covering `length` with at least `overlap` shared."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def _ramp(size: int, start: int, length: int, overlap: int, scale: int) -> torch.Tensor:
    """Blend weights along one axis for a tile: linear ramps where it overlaps its neighbours."""
    weights = torch.ones(size)
    fade = overlap * scale
    if fade <= 0:
        return weights
    ramp = (torch.arange(fade, dtype=torch.float32) + 0.5) / fade
    if start > 0:
        weights[:fade] = ramp
    if start + size < length * scale:
        weights[-fade:] = torch.minimum(weights[-fade:], ramp.flip(0))
    return weights


def run_tiled(model: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, scale: int, tile: int,
              overlap: int, should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """Apply `model` ([1,3,h,w] in [0,1] -> [1,3,h*s,w*s]) in overlapping tiles; tile <= 0 runs it whole."""
    _, channels, height, width = image.shape
    if tile <= 0 or (height <= tile and width <= tile):
        return model(image)
    overlap = max(0, min(overlap, tile // 2))
    out = torch.zeros(1, channels, height * scale, width * scale, dtype=torch.float32)
    weight = torch.zeros(1, 1, height * scale, width * scale, dtype=torch.float32)
    for y in tile_starts(height, tile, overlap):
        for x in tile_starts(width, tile, overlap):
            if should_stop is not None and should_stop():
                raise InterruptedError("upscaling interrupted")
            h, w = min(tile, height - y), min(tile, width - x)
            piece = model(image[:, :, y:y + h, x:x + w]).float().cpu()
            wy = _ramp(h * scale, y, height, overlap, scale)
            wx = _ramp(w * scale, x, width, overlap, scale)
            mask = (wy[:, None] * wx[None, :])[None, None]
            ys, xs = slice(y * scale, (y + h) * scale), slice(x * scale, (x + w) * scale)
            out[:, :, ys, xs] += piece * mask
            weight[:, :, ys, xs] += mask
    return out / weight.clamp_min(1e-8)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    array = tensor[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


class UpscalerManager:
    """Lists upscalers from the folders, loads model upscalers on demand, keeps a few in RAM."""

    def __init__(self, models_dir: Path, settings=None, device: str = "cpu", half: bool = False,
                 allow_unsafe_pickle: bool = False, cache_size: int = 2, extra_dirs: dict[str, Path] | None = None):
        self.models_dir = Path(models_dir)
        self.extra_dirs = dict(extra_dirs or {})
        self.settings = settings
        self.device = device
        self.half = half
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.cache_size = cache_size
        self._lock = threading.Lock()
        self._cache: OrderedDict[Path, object] = OrderedDict()
        self._models: list[UpscalerInfo] = []
        self.refresh()

    def folders(self) -> dict[str, Path]:
        """Folder name -> path, A1111's layout under models/ unless a flag moved one."""
        out = {name: self.models_dir / name for name in FOLDERS}
        out.update(self.extra_dirs)
        return out

    def refresh(self) -> list[UpscalerInfo]:
        """Rescan the folders (A1111's refresh-upscalers)."""
        found: list[UpscalerInfo] = []
        seen: set[str] = set()
        for folder_name, folder in self.folders().items():
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() not in SUFFIXES or not path.is_file():
                    continue
                name = path.stem if path.stem.lower() not in seen else f"{path.stem} ({folder_name})"
                seen.add(name.lower())
                found.append(UpscalerInfo(name, "model", path, FOLDERS.get(folder_name, "ESRGAN")))
        with self._lock:
            self._models = found
            for stale in [p for p in self._cache if p not in {i.path for i in found}]:
                del self._cache[stale]
        return found

    def upscalers(self) -> list[UpscalerInfo]:
        """Every pixel upscaler: the built-ins first, then model files (A1111's order)."""
        with self._lock:
            models = list(self._models)
        return [UpscalerInfo(name, "builtin") for name in BUILTIN] + models

    def names(self, latent: bool = False) -> list[str]:
        """Upscaler names for a dropdown; with latent=True the latent modes first (hires fix)."""
        names = [u.name for u in self.upscalers()]
        return (list(LATENT_MODES) + names) if latent else names

    def find(self, name: str | None) -> UpscalerInfo | None:
        if name is None:
            return None
        if name in LATENT_MODES:
            return UpscalerInfo(name, "latent")
        wanted = name.strip().lower()
        for info in self.upscalers():
            if info.name.lower() == wanted:
                return info
        return None

    def get(self, name: str | None, latent: bool = False) -> UpscalerInfo:
        """The named upscaler or an UpscalerError listing the valid names."""
        info = self.find(name)
        if info is None or (info.kind == "latent" and not latent):
            raise UpscalerError(f"unknown upscaler {name!r}; available: {', '.join(self.names(latent))}")
        return info

    def _descriptor(self, info: UpscalerInfo):
        with self._lock:
            if info.path in self._cache:
                self._cache.move_to_end(info.path)
                return self._cache[info.path]
        descriptor = load_descriptor(info.path, self.allow_unsafe_pickle)
        dtype = torch.float16 if self.half and self.device != "cpu" and descriptor.supports_half else torch.float32
        descriptor.to(self.device).to(dtype)
        with self._lock:
            self._cache[info.path] = descriptor
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return descriptor

    def _tiles(self, info: UpscalerInfo) -> tuple[int, int]:
        get = self.settings.get if self.settings is not None else (lambda _key: None)
        tile, overlap = get(f"{info.tile_setting}_tile"), get(f"{info.tile_setting}_tile_overlap")
        return (TILE_DEFAULT if tile is None else int(tile)), (OVERLAP_DEFAULT if overlap is None else int(overlap))

    def upscale_once(self, image: Image.Image, info: UpscalerInfo,
                     should_stop: Callable[[], bool] | None = None) -> Image.Image:
        """One pass of a model upscaler at its native scale."""
        descriptor = self._descriptor(info)
        tile, overlap = self._tiles(info)
        param = next(descriptor.model.parameters())
        with torch.inference_mode():
            tensor = pil_to_tensor(image).to(param.device, param.dtype)
            out = run_tiled(descriptor, tensor, descriptor.scale, tile, overlap, should_stop)
        return tensor_to_pil(out.float())

    def upscale(self, image: Image.Image, name: str, scale: float | None = None, size: tuple[int, int] | None = None,
                should_stop: Callable[[], bool] | None = None) -> Image.Image:
        """Upscale `image` by `scale` (or to `size`) with the named pixel upscaler.

        A1111's rule: a model upscaler runs up to three passes until the image is at least the
        target size, then a Lanczos resize lands on it exactly; "None" and "Lanczos" resize with
        Lanczos, "Nearest" with nearest neighbour.
        """
        info = self.get(name)
        if size is None:
            if scale is None or not math.isfinite(scale) or scale <= 0:
                raise UpscalerError(f"upscale factor must be a positive number, got {scale!r}")
            # A1111 rounds a scaled size down to a multiple of 8 (Upscaler.upscale).
            size = (max(8, int(image.width * scale // 8 * 8)), max(8, int(image.height * scale // 8 * 8)))
        width, height = size
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise UpscalerError(f"target size {width}x{height} is outside 1..{MAX_SIDE} pixels per side")
        image = image.convert("RGB")
        if info.kind == "builtin":
            method = Image.NEAREST if info.name == "Nearest" else Image.LANCZOS
            return image.resize((width, height), method) if image.size != (width, height) else image.copy()
        for _ in range(3):
            if image.width >= width and image.height >= height:
                break
            before = image.size
            image = self.upscale_once(image, info, should_stop)
            if image.size == before:
                break
        return image if image.size == (width, height) else image.resize((width, height), Image.LANCZOS)

    def model_scale(self, name: str) -> int | None:
        """The native scale of a model upscaler (loads it), None for the built-ins."""
        info = self.get(name)
        return None if info.kind != "model" else int(self._descriptor(info).scale)


def upscale_latents(latents: torch.Tensor, mode: str, size: tuple[int, int]) -> torch.Tensor:
    """A1111's latent upscale: interpolate [b,c,h,w] latents to (h, w) with the named mode."""
    if mode not in LATENT_MODES:
        raise UpscalerError(f"unknown latent upscale mode {mode!r}; available: {', '.join(LATENT_MODES)}")
    interpolate_mode, antialias = LATENT_MODES[mode]
    return torch.nn.functional.interpolate(latents.float(), size=size, mode=interpolate_mode,
                                           antialias=antialias).to(latents.dtype)
