"""LoKr (LyCORIS): W += kron(w1, w2), each factor full (`lokr_w1`) or low rank (`lokr_w1_a @ lokr_w1_b`).

`lokr_t2` is a Tucker core for the second factor of a conv. The rank (for alpha / rank) is
w2's, else w1's; with both factors full LyCORIS ignores alpha, and so does this (scale 1).
"""
from __future__ import annotations

import torch

from webui.models.networks.kinds.base import NetworkModule, rebuild_tucker


class LokrModule(NetworkModule):
    kind = "lokr"

    def __init__(self, weights):
        super().__init__(weights)
        if "lokr_w2_b" in weights:
            self.dim = int(weights["lokr_w2_b"].shape[0])
        elif "lokr_w1_b" in weights:
            self.dim = int(weights["lokr_w1_b"].shape[0])

    @classmethod
    def matches(cls, weights) -> bool:
        keys = weights.keys()
        has1 = "lokr_w1" in keys or {"lokr_w1_a", "lokr_w1_b"} <= keys
        has2 = "lokr_w2" in keys or {"lokr_w2_a", "lokr_w2_b"} <= keys
        return has1 and has2

    def updown(self, weight, multiplier, dyn_dim):
        w1 = self.t("lokr_w1", weight)
        if w1 is None:
            w1 = self.t("lokr_w1_a", weight) @ self.t("lokr_w1_b", weight)
        w2 = self.t("lokr_w2", weight)
        if w2 is None:
            w2a, w2b, t2 = self.t("lokr_w2_a", weight), self.t("lokr_w2_b", weight), self.t("lokr_t2", weight)
            if t2 is not None:
                w2 = rebuild_tucker(t2, w2a, w2b)
            else:
                w2 = (w2a @ w2b.reshape(w2b.shape[0], -1)).reshape(w2a.shape[0], *w2b.shape[1:])
        if w2.ndim == 4:
            w1 = w1[:, :, None, None]
        updown = torch.kron(w1, w2.contiguous())
        return updown.reshape(weight.shape) if updown.numel() == weight.numel() else updown, None
