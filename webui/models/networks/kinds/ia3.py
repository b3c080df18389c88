"""(IA)^3: a learned vector scales the layer's weight per output row (or per input column with
`on_input`): W += W * w."""
from __future__ import annotations

from webui.models.networks.kinds.base import NetworkModule


class Ia3Module(NetworkModule):
    kind = "ia3"

    @classmethod
    def matches(cls, weights) -> bool:
        # A vector (any shape with one non-1 dimension); a full weight named ".weight" is a checkpoint's.
        vector = weights.get("weight")
        return vector is not None and vector.numel() == max(vector.shape, default=1)

    def updown(self, weight, multiplier, dyn_dim):
        w = self.t("weight", weight).reshape(-1)
        on_input = bool(self.w["on_input"].item()) if "on_input" in self.w else False
        if on_input:
            scale = w.reshape(1, -1, *[1] * (weight.ndim - 2))
        else:
            scale = w.reshape(-1, *[1] * (weight.ndim - 1))
        return weight * scale, None
