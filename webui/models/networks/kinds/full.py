"""Full / diff (LyCORIS "full"): the stored difference itself, `diff` for the weight, `diff_b` for the bias."""
from __future__ import annotations

from webui.models.networks.kinds.base import NetworkModule


class FullModule(NetworkModule):
    kind = "full"

    @classmethod
    def matches(cls, weights) -> bool:
        return "diff" in weights

    def updown(self, weight, multiplier, dyn_dim):
        return self.t("diff", weight), self.t("diff_b", weight)
