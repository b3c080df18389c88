"""One module per network type; `module_for` picks the type of one layer's tensors, in A1111's order."""
from __future__ import annotations

from webui.models.networks.kinds.base import NetworkModule, UnsupportedNetwork
from webui.models.networks.kinds.full import FullModule
from webui.models.networks.kinds.ia3 import Ia3Module
from webui.models.networks.kinds.loha import LohaModule
from webui.models.networks.kinds.lokr import LokrModule
from webui.models.networks.kinds.lora import LoraModule
from webui.models.networks.kinds.norm import NormModule
from webui.models.networks.kinds.oft import OftModule

MODULE_TYPES: tuple[type[NetworkModule], ...] = (LoraModule, LohaModule, Ia3Module, LokrModule, FullModule,
                                                 NormModule, OftModule)
__all__ = ["MODULE_TYPES", "NetworkModule", "UnsupportedNetwork", "module_for"]


def module_for(weights: dict) -> NetworkModule:
    """The network module for one layer's tensors; UnsupportedNetwork naming the keys otherwise."""
    for cls in MODULE_TYPES:
        if cls.matches(weights):
            return cls(weights)
    raise UnsupportedNetwork(f"no supported network type has the tensors {', '.join(sorted(weights))}")
