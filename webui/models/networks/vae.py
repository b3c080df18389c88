"""VAE files: list, resolve A1111's `sd_vae` choice, load once, swap into a loaded model.

`sd_vae` is `Automatic` (a VAE named after the checkpoint if there is one, e.g.
`<stem>.vae.safetensors` beside it or `<stem>.safetensors` in models/VAE; else the checkpoint's
own), `None` (always the checkpoint's own) or a file name from models/VAE (or a `*.vae.*` file
in the checkpoint folder), as in A1111.

A swap copies weights into the model's existing VAE module (`load_state_dict`), so the module
keeps its dtype, device, offload hooks and tiling, `--no-half-vae` and the NaN fallback keep
working, and the checkpoint is never reloaded. The checkpoint's own VAE weights are kept on the
CPU at the first swap so `None` restores them exactly; loaded VAE files are cached (LRU).

Base check: SD 1.x and SD 2.x share one VAE architecture, SDXL has the same shapes but other
weights, so shapes cannot tell them apart. A file is taken as SDXL or SD by its safetensors
metadata (`modelspec.architecture`) or, failing that, its name (`sdxl`, `xl` as a word; `sd15`,
`sd1`, `sd2`, `v1-5`, `vae-ft-mse`, `kl-f8` ...); a file that says neither is accepted.
"""
from __future__ import annotations

import logging
import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from webui.models import convert
from webui.models.errors import ModelLoadError
from webui.models.networks.files import NetworkFile, NetworkFolder, load_tensors

log = logging.getLogger(__name__)

AUTOMATIC, NONE = "Automatic", "None"
VAE_SUFFIXES = (".safetensors", ".pt", ".ckpt")
_VAE_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
_XL = re.compile(r"(^|[^a-z0-9])(sdxl|xl)([^a-z0-9]|$)")
_SD = re.compile(r"(^|[^a-z0-9])(sd15|sd1|sd2|sd21|v1-5|v2-1|sd-v1|vae-ft-mse|vae-ft-ema|kl-f8)([^a-z0-9]|$)")
FAMILY_WORDS = {"sd": "SD 1.x / 2.x", "sdxl": "SDXL"}


class VaeError(ModelLoadError):
    """A VAE choice that cannot be used; the previous VAE stays."""


def vae_family_of(arch: str) -> str:
    """'sdxl' for SDXL and its refiner, 'sd' for SD 1.x / 2.x (they share one VAE)."""
    return "sdxl" if arch.startswith("sdxl") else "sd"


def vae_file_family(file: NetworkFile) -> str | None:
    """'sdxl', 'sd' or None (unknown) from the file's metadata, then its name."""
    try:
        metadata = file.header()[1]
    except ModelLoadError:
        metadata = {}
    arch = str(metadata.get("modelspec.architecture", "")).lower()
    if "stable-diffusion-xl" in arch:
        return "sdxl"
    if "stable-diffusion-v1" in arch or "stable-diffusion-v2" in arch:
        return "sd"
    name = file.filename.name.lower()
    if _XL.search(name):
        return "sdxl"
    if _SD.search(name):
        return "sd"
    return None


def to_diffusers_state(state: dict, vae: torch.nn.Module, label: str) -> dict[str, torch.Tensor]:
    """A VAE state dict (LDM names, possibly under `first_stage_model.`, or diffusers names) in `vae`'s names.

    Every weight of `vae` must be present with its shape; VaeError says which is not.
    """
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if any(k.startswith("first_stage_model.") for k in tensors):
        tensors = {k.removeprefix("first_stage_model."): v for k, v in tensors.items() if k.startswith("first_stage_model.")}
    tensors = {k: v for k, v in tensors.items() if k.startswith(_VAE_PARTS)}
    if not tensors:
        raise VaeError(f"{label}: no VAE weights in it (expected encoder.* / decoder.* tensors)")
    diffusers_layout = any(".down_blocks." in k or ".up_blocks." in k or ".mid_block." in k for k in tensors)
    levels = len(vae.config.block_out_channels)
    out, missing, misshaped = {}, [], []
    for key, target in vae.state_dict().items():
        if diffusers_layout:
            name, as_conv = key, False
        else:
            name, as_conv = convert._vae_key(key, levels)
        value = tensors.get(name)
        if value is None:
            missing.append(name)
            continue
        if as_conv and value.ndim == 4 and target.ndim == 2:
            value = value[:, :, 0, 0]
        if value.shape != target.shape:
            misshaped.append(f"{name} {tuple(value.shape)} vs {tuple(target.shape)}")
            continue
        out[key] = value
    if missing or misshaped:
        what = f"{len(missing)} weights missing (e.g. {missing[0]})" if missing else \
            f"{len(misshaped)} shapes differ (e.g. {misshaped[0]})"
        raise VaeError(f"{label}: does not fit this model's VAE: {what}")
    return out


@dataclass
class _PipeVae:
    original: dict[str, torch.Tensor] | None = None  # the checkpoint's own VAE, saved at the first swap
    current: NetworkFile | None = None  # None: the checkpoint's own is in place


class VaeLibrary:
    """The VAE files, a small cache of loaded ones, and which one each loaded model has."""

    def __init__(self, vae_dir: Path, ckpt_dir: Path | None, cache, allow_unsafe_pickle: bool = False,
                 cache_limit: int = 2):
        self.folder = NetworkFolder("vae", [vae_dir], VAE_SUFFIXES, cache, name_of=lambda p: p.name)
        # A1111 also lists `<name>.vae.<ext>` files kept beside checkpoints.
        self.beside = NetworkFolder("vae", [ckpt_dir] if ckpt_dir else [], tuple(f".vae{s}" for s in VAE_SUFFIXES),
                                    cache, name_of=lambda p: p.name)
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.cache_limit = cache_limit
        self._cache: OrderedDict[tuple, dict] = OrderedDict()
        self._pipes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.RLock()

    def refresh(self) -> list[NetworkFile]:
        self.folder.refresh()
        self.beside.refresh()
        return self.files()

    def files(self) -> list[NetworkFile]:
        seen, out = set(), []
        for item in self.folder.files() + self.beside.files():
            if item.name not in seen:
                seen.add(item.name)
                out.append(item)
        return out

    def choices(self) -> list[str]:
        """What the `sd_vae` dropdown offers, A1111's order."""
        return [AUTOMATIC, NONE] + [f.name for f in self.files()]

    def find(self, name: str) -> NetworkFile | None:
        for item in self.files():
            if name in (item.name, str(item.filename), item.filename.stem):
                return item
        return None

    def check_choice(self, choice: str) -> str | None:
        """None when `choice` is a valid sd_vae value, else the message for the user."""
        if choice in (AUTOMATIC, NONE) or self.find(choice) is not None:
            return None
        return f"no VAE named {choice!r}; choose Automatic, None or one of: {', '.join(self.choices()[2:]) or '(none found)'}"

    def resolve(self, choice: str, checkpoint: Path | None) -> NetworkFile | None:
        """The file `choice` means for `checkpoint`, or None for the checkpoint's own VAE."""
        if choice == NONE or not choice:
            return None
        if choice == AUTOMATIC:
            if checkpoint is None:
                return None
            stem = Path(checkpoint).name.rsplit(".", 1)[0]
            for item in self.files():  # A1111: a VAE whose file name starts with the checkpoint's
                if item.filename.name.startswith(stem + "."):
                    return item
            return None
        found = self.find(choice)
        if found is None:
            raise VaeError(self.check_choice(choice))
        return found

    def current(self, pipe) -> NetworkFile | None:
        """The VAE file in `pipe` now (None: the checkpoint's own)."""
        state = self._pipes.get(pipe)
        return state.current if state else None

    def _state_for(self, file: NetworkFile, vae) -> dict[str, torch.Tensor]:
        key = (str(file.filename), file.mtime, file.size, id(type(vae)), tuple(vae.config.block_out_channels))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        raw, _ = load_tensors(file.filename, self.allow_unsafe_pickle)
        while isinstance(raw.get("state_dict"), dict):
            raw = raw["state_dict"]
        state = to_diffusers_state(raw, vae, file.name)
        with self._lock:
            self._cache[key] = state
            while len(self._cache) > max(self.cache_limit, 1):
                self._cache.popitem(last=False)
        return state

    def apply(self, pipe, arch: str, choice: str, checkpoint: Path | None) -> NetworkFile | None:
        """Put the VAE `choice` means into `pipe` (no-op when it is there already); return the file.

        VaeError (the model keeps the VAE it had) for an unknown name, a file that cannot be
        read, one of another base model, or one whose weights do not fit.
        """
        target = self.resolve(choice, checkpoint)
        vae = pipe.vae
        with self._lock:
            state = self._pipes.setdefault(pipe, _PipeVae())
            if target is state.current or (target is not None and state.current is not None
                                           and target.filename == state.current.filename
                                           and target.mtime == state.current.mtime):
                return state.current
            if target is None:
                if state.original is not None:
                    vae.load_state_dict(state.original)
                state.current = None
                return None
            family = vae_file_family(target)
            if family is not None and family != vae_family_of(arch):
                raise VaeError(f"{target.name} is an {FAMILY_WORDS[family]} VAE; the "
                               f"loaded model is {FAMILY_WORDS[vae_family_of(arch)]}")
            try:
                weights = self._state_for(target, vae)
            except VaeError:
                raise
            except ModelLoadError as exc:
                raise VaeError(str(exc)) from exc
            if state.original is None:
                state.original = {k: v.detach().to("cpu", copy=True) for k, v in vae.state_dict().items()}
            with torch.no_grad():
                vae.load_state_dict(weights)
            state.current = target
            log.info("VAE %s in place", target.name)
            return target
