"""Tell what a ControlNet file is from its tensor names and shapes, and load it offline.

Layouts: A1111 / original-LDM single files (``control_model.*`` or bare ``input_hint_block``,
``zero_convs``... names), diffusers-keyed single files (``controlnet_cond_embedding``...), and
diffusers folders (``config.json`` + weights). ``.pth`` / ``.ckpt`` files are read without
running pickled code (``webui.models.loader.read_legacy_checkpoint``).

The architecture config, in order: a sidecar ``<stem>.config/config.json`` next to the file;
a folder's own ``config.json``; else the shipped ``configs/controlnet-<family>/config.json``
for the family the cross-attention width names (768 SD 1.x, 1024 SD 2.x, 2048 SDXL), adjusted
for the conditioning channels and per-level transformer depth read from the keys (SDXL
"mid"/"small" variants). Every tensor is then checked against that architecture, so a file
that does not fit says so instead of loading half-random weights.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from webui.models.controlnet_convert import LDM_PREFIX, ldm_to_diffusers, strip_ldm
from webui.models.convert import ConversionError, _unet_block_offsets
from webui.models.errors import ModelLoadError

FAMILY_BY_WIDTH = {768: "sd15", 1024: "sd2", 2048: "sdxl"}
FAMILY_NAMES = {"sd15": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
_TO_K = re.compile(r"attn2\.to_k\.weight$")


@dataclass(frozen=True)
class ControlNetProbe:
    """What a ControlNet file is: its base family, layout and architecture config."""

    family: str  # "sd15" | "sd2" | "sdxl"
    layout: str  # "ldm" | "diffusers"
    config: dict = field(hash=False)
    source: str = "probe"  # "sidecar" | "folder" | "probe"
    detail: str = ""

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES.get(self.family, self.family)


@dataclass
class LoadedControlNet:
    """A loaded ControlNetModel and what its file was."""

    path: Path
    model: Any  # diffusers.ControlNetModel
    probe: ControlNetProbe
    ram_bytes: int = 0


def sidecar_config(path: Path) -> Path | None:
    """``<stem>.config/config.json`` next to a ControlNet file, if there is one."""
    path = Path(path)
    candidate = path.with_name(path.stem + ".config") / "config.json"
    return candidate if candidate.is_file() else None


def describe_other(keys: list[str]) -> str | None:
    """Name a file in the ControlNet folder that is some other kind of control model."""
    has = lambda *parts: any(p in k for k in keys for p in parts)  # noqa: E731
    if has("lora_controlnet"):
        return "a Control-LoRA (not supported; use a full ControlNet)"
    if has("lllite"):
        return "a ControlLLLite model (not supported)"
    if has("adapter.body.", "body.0.block1", "body.0.resnets"):
        return "a T2I-Adapter (not supported)"
    if has("image_proj.", "ip_adapter"):
        return "an IP-Adapter (not supported)"
    if has("task_embedding", "transformer_layes", "spatial_ch_projs"):
        return "a ControlNet union model (not supported yet)"
    if has("difference"):
        return "a 'difference' ControlNet that needs its base UNet merged in (not supported)"
    if has("model.diffusion_model.") and not has("control_model."):
        return "a Stable Diffusion checkpoint (put it in models/Stable-diffusion)"
    return None


def _layout(keys: list[str]) -> str | None:
    if "controlnet_cond_embedding.conv_in.weight" in keys:
        return "diffusers"
    if any(k in keys for k in ("input_hint_block.0.weight", LDM_PREFIX + "input_hint_block.0.weight")):
        return "ldm"
    return None


def read_shapes(path: Path) -> dict[str, tuple]:
    """Tensor shapes of a .safetensors file (header only)."""
    from webui.models.probe import read_safetensors_header

    return read_safetensors_header(path)[0]


def _family(shapes: Mapping[str, tuple], label: str) -> str:
    width = next((shape[1] for key, shape in sorted(shapes.items()) if _TO_K.search(key) and len(shape) == 2), None)
    if width is None:
        raise ModelLoadError(f"{label}: a ControlNet without cross-attention layers; its base cannot be told from "
                             f"its shapes. Put its diffusers config.json in a sidecar folder next to it")
    family = FAMILY_BY_WIDTH.get(width)
    if family is None:
        raise ModelLoadError(f"{label}: cross-attention width {width} matches no SD family (768 SD 1.x, "
                             f"1024 SD 2.x, 2048 SDXL); put its diffusers config.json in a sidecar folder")
    return family


def _transformer_depths(shapes: Mapping[str, tuple], config: dict, layout: str) -> list[int] | None:
    """Transformer blocks per down level as the keys show them (None: same as the config)."""
    from types import SimpleNamespace

    levels = len(config["down_block_types"])
    offsets, _ = _unet_block_offsets(SimpleNamespace(**config))
    depths = []
    for level in range(levels):
        if layout == "diffusers":
            pattern = re.compile(rf"^down_blocks\.{level}\.attentions\.0\.transformer_blocks\.(\d+)\.")
        else:
            pattern = re.compile(rf"^input_blocks\.{offsets[level]}\.1\.transformer_blocks\.(\d+)\.")
        found = {int(m[1]) for k in shapes if (m := pattern.match(k))}
        depths.append(max(found) + 1 if found else 0)
    return depths


def _family_config(family: str, shapes: Mapping[str, tuple], layout: str, configs_dir: Path) -> dict:
    config = json.loads((configs_dir / f"controlnet-{family}" / "config.json").read_text())
    hint = "controlnet_cond_embedding.conv_in.weight" if layout == "diffusers" else "input_hint_block.0.weight"
    if hint in shapes:
        config["conditioning_channels"] = int(shapes[hint][1])
    depths = _transformer_depths(shapes, config, layout)
    crossattn = [t.startswith("CrossAttn") for t in config["down_block_types"]]
    if depths and any(depths):
        standard = config["transformer_layers_per_block"]
        standard = standard if isinstance(standard, list) else [standard] * len(depths)
        new = [d if cross else s for d, s, cross in zip(depths, standard, crossattn)]
        if new != standard:
            config["transformer_layers_per_block"] = new
    return config


def probe_controlnet(path: Path, shapes: Mapping[str, tuple] | None = None,
                     configs_dir: Path | None = None) -> ControlNetProbe:
    """Classify a ControlNet file or diffusers folder from names and shapes (weights not needed)."""
    from webui.paths import REPO_ROOT

    path = Path(path)
    configs_dir = Path(configs_dir or REPO_ROOT / "configs")
    label = path.name
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ModelLoadError(f"{label}: a folder without config.json is not a diffusers ControlNet")
        config = json.loads(config_file.read_text())
        if config.get("_class_name") != "ControlNetModel":
            raise ModelLoadError(f"{label}: config.json describes a {config.get('_class_name')}, not a ControlNetModel")
        family = FAMILY_BY_WIDTH.get(config.get("cross_attention_dim"), "custom")
        return ControlNetProbe(family, "diffusers", config, "folder", f"diffusers folder ({family})")
    if shapes is None:
        shapes = read_shapes(path)
    keys = sorted(shapes)
    layout = _layout(keys)
    if layout is None:
        other = describe_other(keys)
        what = other or f"not a ControlNet: no hint encoder (input_hint_block / controlnet_cond_embedding); " \
                        f"{len(keys)} tensors, first {', '.join(keys[:3]) or 'none'}"
        raise ModelLoadError(f"{label}: this looks like {what}" if other else f"{label}: {what}")
    if layout == "ldm" and any(k.startswith(LDM_PREFIX) for k in keys):
        shapes = {k[len(LDM_PREFIX):]: v for k, v in shapes.items() if k.startswith(LDM_PREFIX)}
    other = describe_other(sorted(shapes))
    if other and "checkpoint" not in other:
        raise ModelLoadError(f"{label}: this looks like {other}")
    sidecar = sidecar_config(path)
    if sidecar is not None:
        config = json.loads(sidecar.read_text())
        family = FAMILY_BY_WIDTH.get(config.get("cross_attention_dim"), "custom")
        return ControlNetProbe(family, layout, config, "sidecar",
                               f"{layout} keys, config from {sidecar.parent.name}/config.json")
    family = _family(shapes, label)
    config = _family_config(family, shapes, layout, configs_dir)
    return ControlNetProbe(family, layout, config, "probe",
                           f"{FAMILY_NAMES[family]} by cross-attention width, {layout} keys")


def _read_state(path: Path, allow_unsafe_pickle: bool) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # a header error was already reported by the probe; this is the data part
            raise ModelLoadError(f"{path.name}: cannot be read: {exc}") from exc
    from webui.models.loader import read_legacy_checkpoint

    return read_legacy_checkpoint(path, allow_unsafe_pickle)


def load_controlnet(path: Path, configs_dir: Path | None = None, torch_dtype: torch.dtype | None = None,
                    allow_unsafe_pickle: bool = False) -> LoadedControlNet:
    """Load a ControlNet file or diffusers folder on the CPU, offline; every failure is a ModelLoadError."""
    from diffusers import ControlNetModel

    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        probe = probe_controlnet(path, configs_dir=configs_dir)
        try:
            model = ControlNetModel.from_pretrained(str(path), local_files_only=True,
                                                    torch_dtype=torch_dtype or torch.float32)
        except Exception as exc:  # diffusers raises many kinds for broken folders
            raise ModelLoadError(f"{path.name}: could not load the diffusers ControlNet: {exc}") from exc
        return LoadedControlNet(path, model.eval(), probe, _bytes(model))
    if path.suffix.lower() not in SUFFIXES:
        raise ModelLoadError(f"{path.name}: unknown ControlNet file type (expected {', '.join(SUFFIXES)})")
    if path.suffix.lower() == ".safetensors":
        probe = probe_controlnet(path, configs_dir=configs_dir)
        state = _read_state(path, allow_unsafe_pickle)
    else:
        state = _read_state(path, allow_unsafe_pickle)
        probe = probe_controlnet(path, {k: tuple(v.shape) for k, v in state.items()}, configs_dir)
    # Files are often fp16, which CPUs run slowly or not at all: weights go in at the dtype asked for.
    model = _build(path, probe, state, torch_dtype or torch.float32)
    return LoadedControlNet(path, model.eval(), probe, _bytes(model))


def _build(path: Path, probe: ControlNetProbe, state: dict[str, torch.Tensor], dtype: torch.dtype):
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel

    try:
        with init_empty_weights():
            model = ControlNetModel.from_config(probe.config)
    except Exception as exc:
        raise ModelLoadError(f"{path.name}: its config does not build a ControlNetModel: {exc}") from exc
    try:
        if probe.layout == "ldm":
            weights = ldm_to_diffusers(strip_ldm(state), model, label=path.name)
        else:
            weights = _check_diffusers(state, model, path.name)
    except ConversionError as exc:
        hint = "" if probe.source == "sidecar" else (
            f" It does not match the standard {probe.family_name} ControlNet; if it is a custom architecture, "
            f"put its diffusers config.json in {path.stem}.config/ next to it.")
        raise ModelLoadError(f"{exc}.{hint}") from exc
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()},
                          strict=True, assign=True)
    return model


def _check_diffusers(state: Mapping[str, torch.Tensor], model, label: str) -> dict[str, torch.Tensor]:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing:
        raise ConversionError(f"{label}: {len(missing)} tensors missing, first {missing[0]!r}")
    if extra:
        raise ConversionError(f"{label}: {len(extra)} tensors have no place in this architecture, first {extra[0]!r}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ConversionError(f"{label}: {key} has shape {tuple(state[key].shape)}, the architecture "
                                  f"needs {tuple(tensor.shape)}")
    return dict(state)


def _bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))

