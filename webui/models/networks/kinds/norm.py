"""Norm (LyCORIS): trained GroupNorm / LayerNorm parameters as differences, `w_norm` and `b_norm`."""
from __future__ import annotations

from webui.models.networks.kinds.base import NetworkModule


class NormModule(NetworkModule):
    kind = "norm"

    @classmethod
    def matches(cls, weights) -> bool:
        return "w_norm" in weights

    def updown(self, weight, multiplier, dyn_dim):
        return self.t("w_norm", weight), self.t("b_norm", weight)
