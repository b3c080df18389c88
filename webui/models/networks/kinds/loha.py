"""LoHa (LyCORIS): W += (w1a @ w1b) * (w2a @ w2b), elementwise; Tucker cores `hada_t1` / `hada_t2`."""
from __future__ import annotations

from webui.models.networks.kinds.base import NetworkModule, rebuild_conventional, rebuild_tucker


class LohaModule(NetworkModule):
    kind = "loha"

    def __init__(self, weights):
        super().__init__(weights)
        self.dim = int(weights["hada_w1_b"].shape[0])

    @classmethod
    def matches(cls, weights) -> bool:
        return {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"} <= weights.keys()

    def updown(self, weight, multiplier, dyn_dim):
        w1a, w1b = self.t("hada_w1_a", weight), self.t("hada_w1_b", weight)
        w2a, w2b = self.t("hada_w2_a", weight), self.t("hada_w2_b", weight)
        t1, t2 = self.t("hada_t1", weight), self.t("hada_t2", weight)
        if t1 is not None:
            # Tucker: w1a is [rank, out], w1b [rank, in] around a [rank, rank, kh, kw] core.
            part1 = rebuild_tucker(t1, w1a, w1b)
        else:
            part1 = rebuild_conventional(w1a, w1b, [w1a.shape[0], w1b.shape[1], *w1b.shape[2:]])
        part2 = rebuild_tucker(t2, w2a, w2b) if t2 is not None else rebuild_conventional(w2a, w2b, part1.shape)
        return part1 * part2, None
