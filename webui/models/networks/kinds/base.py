"""What every network type shares (A1111's NetworkModule): scale, bias, DoRA, multiplier.

A type computes its raw weight change (`updown`) for one layer; `finalize` then turns it into
the delta that is added to the layer's weight, in A1111's order: reshape to the layer's shape,
add the type's own `bias` tensor, times scale (`scale` key, else alpha / rank, else 1), DoRA
renormalisation when a `dora_scale` is present, times the user's multiplier.
Everything is computed in float32 whatever the model's dtype; the patcher casts once at the end.
"""
from __future__ import annotations

import torch


class UnsupportedNetwork(ValueError):
    """The tensors of one layer match no supported type (or a variant we do not handle)."""


class NetworkModule:
    """One layer's change from one network file."""

    kind = "base"

    def __init__(self, weights: dict[str, torch.Tensor]):
        self.w = weights
        self.alpha = float(weights["alpha"]) if "alpha" in weights else None
        self.scale = float(weights["scale"]) if "scale" in weights else None
        self.bias = weights.get("bias")
        self.dora_scale = weights.get("dora_scale")
        self.dim: int | None = None  # rank; set by types that have one

    @classmethod
    def matches(cls, weights: dict[str, torch.Tensor]) -> bool:
        raise NotImplementedError

    def t(self, key: str, like: torch.Tensor) -> torch.Tensor | None:
        """A stored tensor as float32 on the weight's device (None when absent)."""
        value = self.w.get(key)
        return None if value is None else value.to(like.device, torch.float32)

    def calc_scale(self) -> float:
        if self.scale is not None:
            return self.scale
        if self.dim is not None and self.alpha is not None:
            return self.alpha / self.dim
        return 1.0

    def updown(self, weight: torch.Tensor, multiplier: float, dyn_dim: int | None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(raw weight change, raw bias change or None) for a float32 `weight`."""
        raise NotImplementedError

    def delta(self, weight: torch.Tensor, multiplier: float, dyn_dim: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight delta shaped like `weight`, bias delta or None); `weight` is float32."""
        updown, ex_bias = self.updown(weight, multiplier, dyn_dim)
        if self.bias is not None:
            updown = (updown.reshape(self.bias.shape) + self.t("bias", weight))
        updown = fit(updown, weight)
        if ex_bias is not None:
            ex_bias = ex_bias * multiplier
        updown = updown * self.calc_scale()
        if self.dora_scale is not None:
            updown = self.decompose(updown, weight)
        return updown * multiplier, ex_bias

    def decompose(self, updown: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """DoRA: rescale W + dW so its norms equal `dora_scale`; return the new delta.

        kohya / LyCORIS store one norm per input column (shape [1, in, ...]), as A1111 reads
        them; peft's `lora_magnitude_vector` is one per output row ([out]).
        """
        merged = weight + updown
        magnitude = self.t("dora_scale", weight)
        rows = weight.shape[0]
        if magnitude.numel() == rows and (magnitude.ndim == 1 or magnitude.shape[0] == rows):
            norm = merged.reshape(rows, -1).norm(dim=1).reshape(rows, *[1] * (weight.ndim - 1))
            magnitude = magnitude.reshape(norm.shape)
        else:
            cols = weight.shape[1]
            norm = merged.transpose(0, 1).reshape(cols, -1).norm(dim=1)
            norm = norm.reshape(1, cols, *[1] * (weight.ndim - 2))
            magnitude = magnitude.reshape(norm.shape)
        return merged * (magnitude / norm) - weight


def fit(updown: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Reshape a change to the layer's shape (a Linear LoRA on a 1x1 conv and vice versa).

    An SD 1.x inpainting UNet's first conv takes 9 channels; a LoRA made on a 4-channel model
    changes only the first 4, as A1111 pads it.
    """
    if updown.shape == weight.shape:
        return updown
    if updown.numel() == weight.numel():
        return updown.reshape(weight.shape)
    if weight.ndim == 4 and updown.ndim == 4 and updown.shape[1] == 4 and weight.shape[1] == 9 \
            and updown.shape[0] == weight.shape[0]:
        return torch.nn.functional.pad(updown, (0, 0, 0, 0, 0, 5))
    raise UnsupportedNetwork(f"a change of shape {tuple(updown.shape)} does not fit a weight of shape "
                             f"{tuple(weight.shape)}")


def rebuild_conventional(up: torch.Tensor, down: torch.Tensor, shape, dyn_dim: int | None = None) -> torch.Tensor:
    """up @ down, flattening conv kernels into the input dimension (optionally the first dyn_dim ranks)."""
    up = up.reshape(up.shape[0], -1)
    down = down.reshape(down.shape[0], -1)
    if dyn_dim is not None:
        up, down = up[:, :dyn_dim], down[:dyn_dim, :]
    return (up @ down).reshape(shape)


def rebuild_tucker(t: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """LyCORIS CP/Tucker form: core t [r, r, kh, kw], wa [r, out], wb [r, in] -> [out, in, kh, kw]."""
    temp = torch.einsum("i j k l, j r -> i r k l", t, wb)
    return torch.einsum("i j k l, i r -> r j k l", temp, wa)
