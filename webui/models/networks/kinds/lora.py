"""LoRA and LoCon: W += up @ down (3x3 convs included), or the Tucker form with `lora_mid`.

Keys: `lora_up.weight` / `lora_down.weight` (kohya, LyCORIS), `lora_A.weight` / `lora_B.weight`
(peft: A is down, B is up), optional `lora_mid.weight` (LoCon's CP decomposition of a conv),
`alpha`. Rank is the first dimension of `down`; `dyn` keeps only the first ranks (A1111's dyn).
"""
from __future__ import annotations

import torch

from webui.models.networks.kinds.base import NetworkModule


class LoraModule(NetworkModule):
    kind = "lora"

    def __init__(self, weights):
        if "lora_A.weight" in weights:
            weights = {**weights, "lora_down.weight": weights["lora_A.weight"], "lora_up.weight": weights["lora_B.weight"]}
        super().__init__(weights)
        self.dim = int(weights["lora_down.weight"].shape[0])

    @classmethod
    def matches(cls, weights) -> bool:
        return {"lora_up.weight", "lora_down.weight"} <= weights.keys() or \
            {"lora_A.weight", "lora_B.weight"} <= weights.keys()

    def updown(self, weight, multiplier, dyn_dim):
        up, down = self.t("lora_up.weight", weight), self.t("lora_down.weight", weight)
        mid = self.t("lora_mid.weight", weight)
        if mid is not None:
            # The mid core maps rank to rank; up and down are 1x1 around it.
            updown = torch.einsum("n m k l, i n, m j -> i j k l", mid, up.reshape(up.shape[0], -1),
                                  down.reshape(down.shape[0], -1))
            return updown, None
        shape = [up.shape[0], down.shape[1], *down.shape[2:]]
        up = up.reshape(up.shape[0], -1)
        down = down.reshape(down.shape[0], -1)
        if dyn_dim is not None:
            up, down = up[:, :dyn_dim], down[:dyn_dim, :]
        return (up @ down).reshape(shape), None
