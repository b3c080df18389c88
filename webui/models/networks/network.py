"""Load a LoRA-family file into per-layer modules, and match it against a loaded model.

Public entry points (the training room saves kohya-format LoRAs and loads them through these):

    network = load_network(path)                          # any supported file, never runs pickled code
    network = network_from_state_dict(tensors, "name")    # tensors already in memory
    bound = bind(network, ModuleIndex(pipe), arch="sd15")  # which layers it changes here, or why not

A network whose metadata names another base model, or whose tensors do not fit this model's
layer shapes, is refused as a whole (`BoundNetwork.problem`), never half applied.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from webui.models.errors import ModelLoadError
from webui.models.networks.files import load_tensors
from webui.models.networks.keys import ModuleIndex, Target, group_by_module
from webui.models.networks.kinds import NetworkModule, UnsupportedNetwork, module_for

log = logging.getLogger(__name__)

FAMILY_NAMES = {"sd15": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "sdxl-refiner": "SDXL refiner"}


def family_of(arch: str) -> str:
    """The model family an arch string belongs to (inpainting variants share their base's LoRAs)."""
    return {"sd15-inpaint": "sd15"}.get(arch, arch)


def base_from_metadata(metadata: dict) -> str | None:
    """The base family a kohya / modelspec header names ('sd15', 'sd2', 'sdxl'), or None."""
    version = str(metadata.get("ss_base_model_version", "")).lower()
    if version.startswith("sdxl"):
        return "sdxl"
    if version.startswith("sd_v2") or str(metadata.get("ss_v2", "")) == "True":
        return "sd2"
    if version.startswith("sd_v1"):
        return "sd15"
    arch = str(metadata.get("modelspec.architecture", "")).lower()
    if "stable-diffusion-xl" in arch:
        return "sdxl"
    if "stable-diffusion-v2" in arch:
        return "sd2"
    if "stable-diffusion-v1" in arch:
        return "sd15"
    return None


@dataclass
class Network:
    """A LoRA-family file parsed into one module per layer key."""

    name: str
    modules: dict[str, NetworkModule]
    metadata: dict = field(default_factory=dict)
    unknown_keys: list[str] = field(default_factory=list)  # tensors that are not network weights
    unsupported: dict[str, str] = field(default_factory=dict)  # layer key -> why it was not understood
    filename: Path | None = None

    @property
    def base(self) -> str | None:
        return base_from_metadata(self.metadata)

    @property
    def kinds(self) -> set[str]:
        return {m.kind for m in self.modules.values()}


def network_from_state_dict(state: dict, name: str, metadata: dict | None = None,
                            filename: Path | None = None) -> Network:
    """Group the tensors by layer and give each layer its type; ModelLoadError if nothing is usable."""
    groups, unknown = group_by_module(state)
    modules: dict[str, NetworkModule] = {}
    unsupported: dict[str, str] = {}
    for key, weights in groups.items():
        if set(weights) <= {"alpha", "scale", "dora_scale", "bias", "on_input"}:
            unknown.extend(f"{key}.{p}" for p in weights)  # leftovers of a layer with no weights
            continue
        try:
            modules[key] = module_for(weights)
        except UnsupportedNetwork as exc:
            unsupported[key] = str(exc)
    if not modules:
        what = next(iter(unsupported.values()), None) or f"keys like {', '.join(sorted(map(str, state))[:3])}"
        raise ModelLoadError(f"{name}: not a LoRA / LyCORIS network this app understands ({what})")
    if unsupported:
        log.warning("%s: %d layers of an unsupported type are ignored, e.g. %s", name, len(unsupported),
                    next(iter(unsupported.values())))
    return Network(name, modules, dict(metadata or {}), unknown, unsupported, filename)


def load_network(path: Path, name: str | None = None, allow_unsafe_pickle: bool = False) -> Network:
    """Read a .safetensors / .pt / .ckpt network file (pickles only through the safe loader)."""
    path = Path(path)
    state, metadata = load_tensors(path, allow_unsafe_pickle)
    while isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    return network_from_state_dict(tensors, name or path.stem, metadata, path)


@dataclass
class BoundNetwork:
    """A network matched against one model: the layers it changes, or why it cannot be used."""

    network: Network
    layers: list[tuple[Target, NetworkModule]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    problem: str | None = None


def _fits(module: NetworkModule, target: Target) -> str | None:
    """None when the module's change has the layer's shape; computed on the meta device (no math)."""
    weight = target.module.weight
    meta = torch.empty(weight.shape, device="meta", dtype=torch.float32)
    try:
        with torch.no_grad():
            delta, bias = module.delta(meta, 1.0)
    except (UnsupportedNetwork, RuntimeError, ValueError) as exc:
        return str(exc).splitlines()[0]
    if tuple(delta.shape) != tuple(weight.shape):
        return f"change {tuple(delta.shape)} vs weight {tuple(weight.shape)}"
    if bias is not None and bias.numel() != weight.shape[0]:
        return f"bias change {tuple(bias.shape)} vs {weight.shape[0]} outputs"
    return None


def bind(network: Network, index: ModuleIndex, arch: str) -> BoundNetwork:
    """Match a network's layers to the model's modules; refuse it whole if it was made for another base."""
    bound = BoundNetwork(network)
    family = family_of(arch)
    base = network.base
    if base is not None and base != family and not (base == "sdxl" and family == "sdxl-refiner"):
        bound.problem = (f"made for {FAMILY_NAMES.get(base, base)}, the loaded model is "
                         f"{FAMILY_NAMES.get(family, family)}")
        return bound
    misfits = []
    for key, module in network.modules.items():
        target = index.find(key)
        if target is None:
            bound.unmatched.append(key)
            continue
        why = _fits(module, target)
        if why is not None:
            misfits.append(f"{key}: {why}")
            continue
        bound.layers.append((target, module))
    if misfits:
        bound.problem = (f"its layers do not fit this {FAMILY_NAMES.get(family, family)} model "
                         f"({len(misfits)} mismatched, e.g. {misfits[0]}); it was probably made for another base model")
        bound.layers = []
    elif not bound.layers:
        bound.problem = (f"none of its {len(network.modules)} layers exist in this "
                         f"{FAMILY_NAMES.get(family, family)} model (e.g. {next(iter(network.modules))})")
    elif bound.unmatched:
        log.warning("%s: %d of %d layers have no counterpart in the model, e.g. %s", network.name,
                    len(bound.unmatched), len(network.modules), bound.unmatched[0])
    return bound
