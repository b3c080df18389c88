"""OFT (kohya `oft_blocks`, LyCORIS `oft_diag`): rotate the weight's output rows block by block.

Each block's rotation is R = I + multiplier * (Q - Q^T) (the skew-symmetric part of the stored
block, A1111's first-order form); W' = R^T W per block of rows, optionally times `rescale`.
The multiplier acts inside R, so the change is not scaled again afterwards. LyCORIS BOFT
(4-D `oft_diag`) is not supported.
"""
from __future__ import annotations

import torch

from webui.models.networks.kinds.base import NetworkModule, UnsupportedNetwork


class OftModule(NetworkModule):
    kind = "oft"

    @classmethod
    def matches(cls, weights) -> bool:
        return "oft_blocks" in weights or "oft_diag" in weights

    def updown(self, weight, multiplier, dyn_dim):
        blocks = self.t("oft_blocks", weight)
        if blocks is None:
            blocks = self.t("oft_diag", weight)
        if blocks.ndim != 3:
            raise UnsupportedNetwork(f"OFT blocks of shape {tuple(blocks.shape)} (BOFT) are not supported")
        count, size = blocks.shape[0], blocks.shape[1]
        if count * size != weight.shape[0]:
            raise UnsupportedNetwork(f"{count} OFT blocks of {size} rows do not cover {weight.shape[0]} rows")
        skew = blocks - blocks.transpose(1, 2)
        rotation = skew * multiplier + torch.eye(size, device=weight.device)
        grouped = weight.reshape(count, size, *weight.shape[1:])
        merged = torch.einsum("k n m, k n ... -> k m ...", rotation, grouped).reshape(weight.shape)
        rescale = self.t("rescale", weight)
        if rescale is not None:
            merged = merged * rescale.reshape(-1, *[1] * (weight.ndim - 1))
        return merged - weight, None

    def delta(self, weight, multiplier, dyn_dim=None):
        updown, _ = self.updown(weight, multiplier, dyn_dim)
        return updown, None
