"""A1111 hypernetworks (`models/hypernetworks/*.pt`, `<hypernet:name:weight>`).

A hypernetwork holds, per context width (768 for SD 1.x cross-attention, 320/640/1280 for
self-attention if trained), a pair of small MLPs: one transforms the context before `to_k`,
the other before `to_v`, in every UNet attention layer: `x + mlp(x) * multiplier`. Several
hypernetworks chain, each on the previous one's output, as in A1111.

On diffusers this is a forward pre-hook on each attention layer's `to_k` / `to_v` (so any
attention processor keeps working), attached for one job by `attach(...)` and removed after.
Unlike LoRA this costs a little per step, as it does in A1111.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch

from webui.models.errors import ModelLoadError
from webui.models.networks.files import NetworkFile, safe_torch_load

ACTIVATIONS: dict[str, type] = {"linear": torch.nn.Identity, "relu": torch.nn.ReLU, "leakyrelu": torch.nn.LeakyReLU,
                                "elu": torch.nn.ELU, "swish": torch.nn.Hardswish, "tanh": torch.nn.Tanh,
                                "sigmoid": torch.nn.Sigmoid}
# A1111 also accepts every activation class of torch.nn by its lower-case name.
ACTIVATIONS.update({name.lower(): cls for name, cls in inspect.getmembers(torch.nn.modules.activation, inspect.isclass)
                    if cls.__module__ == "torch.nn.modules.activation"})


def dropout_structure(layers: list, use_dropout: bool, last_layer_dropout: bool) -> list[float]:
    """A1111's default dropout per layer when the file does not store one (dropout is off at inference,
    but it occupies a slot in the layer list, so the weight names depend on it)."""
    if not use_dropout:
        return [0.0] * len(layers)
    return [0.0] + [0.3] * (len(layers) - 3) + [0.3 if last_layer_dropout else 0.0, 0.0]


class HyperLayer(torch.nn.Module):
    """One MLP of a hypernetwork: x + mlp(x) * multiplier, with A1111's layer order and names."""

    def __init__(self, dim: int, state: dict, structure: list, activation: str | None, layer_norm: bool,
                 activate_output: bool, dropouts: list[float]):
        super().__init__()
        if not structure or structure[0] != 1 or structure[-1] != 1:
            raise ModelLoadError(f"layer_structure must start and end with 1, got {structure}")
        layers: list[torch.nn.Module] = []
        for i in range(len(structure) - 1):
            layers.append(torch.nn.Linear(int(dim * structure[i]), int(dim * structure[i + 1])))
            last = i >= len(structure) - 2
            if activation not in (None, "linear") and not (last and not activate_output):
                if activation not in ACTIVATIONS:
                    raise ModelLoadError(f"unsupported activation function {activation!r}")
                layers.append(ACTIVATIONS[activation]())
            if layer_norm:
                layers.append(torch.nn.LayerNorm(int(dim * structure[i + 1])))
            if dropouts and len(dropouts) > i + 1 and dropouts[i + 1] > 0:
                layers.append(torch.nn.Dropout(p=float(dropouts[i + 1])))
        self.linear = torch.nn.Sequential(*layers)
        self.multiplier = 1.0
        renamed = {"linear1.weight": "linear.0.weight", "linear1.bias": "linear.0.bias",
                   "linear2.weight": "linear.1.weight", "linear2.bias": "linear.1.bias"}  # the oldest files
        state = {renamed.get(k, k): v for k, v in state.items()}
        try:
            self.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelLoadError(f"weights do not match layer structure {structure}: {str(exc).splitlines()[0]}") from exc
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(x) * self.multiplier


@dataclass
class Hypernetwork:
    """A loaded hypernetwork: (k, v) MLP pairs per context width."""

    name: str
    layers: dict[int, tuple[HyperLayer, HyperLayer]]
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    info: dict = field(default_factory=dict)
    file: NetworkFile | None = None

    def set_multiplier(self, multiplier: float) -> None:
        for pair in self.layers.values():
            for layer in pair:
                layer.multiplier = multiplier


def hypernetwork_from_data(data: dict, name: str, file: NetworkFile | None = None) -> Hypernetwork:
    """Build from the dict A1111 saves; ModelLoadError naming the file if it is not one."""
    if not isinstance(data, dict) or not any(isinstance(k, int) for k in data):
        raise ModelLoadError(f"{name}: not a hypernetwork (no per-width layer pairs)")
    structure = list(data.get("layer_structure") or [1, 2, 1])
    activation = data.get("activation_func")
    layer_norm = bool(data.get("is_layer_norm", False))
    activate_output = bool(data.get("activate_output", True))
    dropouts = data.get("dropout_structure")
    if dropouts is None:
        dropouts = dropout_structure(structure, bool(data.get("use_dropout", False)),
                                     bool(data.get("last_layer_dropout", False)))
    layers = {}
    for size, pair in data.items():
        if not isinstance(size, int):
            continue
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ModelLoadError(f"{name}: width {size} should hold a (k, v) pair of state dicts")
        try:
            layers[size] = tuple(HyperLayer(size, dict(sd), structure, activation, layer_norm, activate_output,
                                            list(dropouts)) for sd in pair)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{name}: width {size}: {exc}") from exc
    info = {k: data.get(k) for k in ("layer_structure", "activation_func", "is_layer_norm", "activate_output")}
    text = lambda v: v if isinstance(v, (str, int)) else None  # noqa: E731
    return Hypernetwork(str(data.get("name") or name), layers, text(data.get("step")), text(data.get("sd_checkpoint")),
                        text(data.get("sd_checkpoint_name")), info, file)


def load_hypernetwork(file: NetworkFile, allow_unsafe_pickle: bool = False) -> Hypernetwork:
    """Read a hypernetwork .pt through the safe unpickler."""
    hyper = hypernetwork_from_data(safe_torch_load(file.filename, allow_unsafe_pickle), file.name, file)
    hyper.name = file.name  # the prompt names it by file, whatever name it was trained under
    return hyper


def attention_layers(unet) -> list[torch.nn.Module]:
    """The UNet's attention modules (self- and cross-attention of every transformer block)."""
    from diffusers.models.attention_processor import Attention

    return [m for m in unet.modules() if isinstance(m, Attention)]


@contextmanager
def attach(unet, hypernetworks: list[Hypernetwork]) -> Iterator[int]:
    """Route every attention layer's k / v context through the hypernetworks for the duration.

    Yields how many attention layers were hooked. The MLPs are moved to the UNet's device and
    dtype for the job.
    """
    if not hypernetworks:
        yield 0
        return
    param = next(unet.parameters())
    for hyper in hypernetworks:
        for pair in hyper.layers.values():
            for layer in pair:
                layer.to(param.device, param.dtype)

    def chain(which: int):
        def hook(_module, args):
            x = args[0]
            for hyper in hypernetworks:
                pair = hyper.layers.get(int(x.shape[-1]))
                if pair is not None:
                    x = pair[which](x)
            return (x, *args[1:])
        return hook

    handles = []
    try:
        for attn in attention_layers(unet):
            handles.append(attn.to_k.register_forward_pre_hook(chain(0)))
            handles.append(attn.to_v.register_forward_pre_hook(chain(1)))
        yield len(handles) // 2
    finally:
        for handle in handles:
            handle.remove()
