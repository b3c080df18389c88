"""Apply LoRA-family networks by changing layer weights in place, A1111's way.

Per pipeline, a `WeightPatcher` remembers which networks (with which multipliers) are in the
weights now, and a CPU copy of the original weight (and bias) of every layer it changed. A job
asks for a set of networks; when it differs from what is applied, each touched layer is first
restored from its copy, then every wanted network's change is added (in float32, each
computed against the weight as changed by the networks before it, as A1111 does), and the
result is cast back to the layer's dtype once. So:

- a job costs nothing per step: the UNet runs plain layers with changed weights, no hooks;
- the same set again costs nothing; other multipliers cost one restore + patch of those layers;
- with no networks wanted every layer is copied back from its original: bit-exact, fp16 too.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import torch

from webui.models.networks.network import BoundNetwork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Activation:
    """One network in a job, with A1111's multipliers (te for text encoders, unet for the UNet)."""

    bound: BoundNetwork
    te: float = 1.0
    unet: float = 1.0
    dyn: int | None = None

    def key(self) -> tuple:
        net = self.bound.network
        return (net.name, str(net.filename), id(net), self.te, self.unet, self.dyn)


@dataclass
class _Backup:
    module: torch.nn.Module
    weight: torch.Tensor  # CPU copy of the original
    bias: torch.Tensor | None
    had_bias: bool


@dataclass
class PatchStats:
    """What the last `apply` did, for logs and the bench."""

    layers_restored: int = 0
    layers_patched: int = 0
    seconds: float = 0.0
    skipped: bool = False  # the wanted set was already applied
    applied: list[str] = field(default_factory=list)


def compact_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU copy of `tensor`, in a 16-bit type when that holds every value exactly.

    A float32 model loaded from an fp16 checkpoint (the usual file on a CPU or --no-half run)
    has only fp16 values; keeping its originals as fp16 halves the RAM exact restore costs,
    and copying them back into the float32 weight gives back the very same bits.
    """
    data = tensor.detach()
    if data.dtype == torch.float32:
        for smaller in (torch.float16, torch.bfloat16):
            candidate = data.to(smaller)
            if torch.equal(candidate.to(torch.float32), data):
                return candidate.to("cpu")
    return data.to("cpu", copy=True)


class WeightPatcher:
    """The network state of one pipeline's weights."""

    def __init__(self):
        self._backups: dict[int, _Backup] = {}
        self._applied: tuple = ()
        self._names: list[str] = []
        self._lock = threading.Lock()

    @property
    def applied_names(self) -> list[str]:
        """Names of the networks whose changes are in the weights now."""
        return list(self._names)

    @property
    def patched_layers(self) -> int:
        return len(self._backups)

    def originals(self) -> list[tuple[torch.nn.Module, torch.Tensor]]:
        """(layer, CPU copy of its original weight) for every changed layer (read-only; for benches)."""
        return [(b.module, b.weight) for b in self._backups.values()]

    def backup_bytes(self) -> int:
        """RAM held by the original-weight copies (the price of exact restore)."""
        return sum(b.weight.numel() * b.weight.element_size() + (b.bias.numel() * b.bias.element_size()
                                                                  if b.bias is not None else 0)
                   for b in self._backups.values())

    def apply(self, activations: list[Activation]) -> PatchStats:
        """Make the weights hold exactly `activations` (an empty list restores the originals)."""
        wanted = tuple(a.key() for a in activations)
        stats = PatchStats(applied=[a.bound.network.name for a in activations])
        with self._lock:
            if wanted == self._applied:
                stats.skipped = True
                return stats
            started = time.perf_counter()
            with torch.no_grad():
                stats.layers_restored = self._restore_all()
                self._applied, self._names = (), []
                layers: dict[int, tuple[torch.nn.Module, list[tuple]]] = {}
                for activation in activations:
                    for target, module in activation.bound.layers:
                        multiplier = activation.te if target.is_text else activation.unet
                        entry = layers.setdefault(id(target.module), (target.module, []))
                        entry[1].append((module, multiplier, activation.dyn))
                try:
                    for layer, changes in layers.values():
                        if all(multiplier == 0 for _, multiplier, _ in changes):
                            continue  # weight 0: the layer stays exactly as it is
                        self._patch(layer, changes)
                        stats.layers_patched += 1
                except BaseException:
                    self._restore_all()  # never leave a half-applied set behind
                    raise
            self._applied = wanted
            self._names = stats.applied
            stats.seconds = time.perf_counter() - started
        return stats

    def restore(self) -> int:
        """Put every changed layer back to its original weights; returns how many were restored."""
        with self._lock, torch.no_grad():
            count = self._restore_all()
            self._applied, self._names = (), []
            return count

    def _restore_all(self) -> int:
        count = 0
        for backup in self._backups.values():
            module = backup.module
            module.weight.copy_(backup.weight)
            if backup.had_bias:
                module.bias.copy_(backup.bias)
            elif getattr(module, "bias", None) is not None:
                module.bias = None  # a network added a bias the layer did not have
            count += 1
        self._backups.clear()
        return count

    def _patch(self, layer: torch.nn.Module, changes: list[tuple]) -> None:
        weight_param = layer.weight
        if weight_param.device.type == "meta":
            raise RuntimeError("layer weights are offloaded (--lowvram); networks cannot be applied to them")
        bias_param = getattr(layer, "bias", None)
        self._backups[id(layer)] = _Backup(layer, compact_copy(weight_param),
                                           None if bias_param is None else compact_copy(bias_param),
                                           bias_param is not None)
        weight = weight_param.detach().to(torch.float32)
        bias = None
        for module, multiplier, dyn in changes:
            if multiplier == 0:
                continue
            delta, bias_delta = module.delta(weight, multiplier, dyn)
            weight = weight + delta
            if bias_delta is not None:
                base = bias if bias is not None else (
                    bias_param.detach().to(torch.float32) if bias_param is not None
                    else torch.zeros(weight.shape[0], device=weight.device))
                bias = base + bias_delta.reshape(-1).to(weight.device)
        weight_param.copy_(weight.to(weight_param.dtype))
        if bias is not None:
            if bias_param is not None:
                bias_param.copy_(bias.to(bias_param.dtype))
            else:
                layer.bias = torch.nn.Parameter(bias.to(weight_param.dtype), requires_grad=False)
