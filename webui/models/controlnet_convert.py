"""ControlNet weights between diffusers names and A1111 / original-LDM names (both directions).

sd-webui-controlnet and the original ControlNet release store a ControlNet as the LDM
``ControlNet`` module, optionally under ``control_model.``: ``time_embed``, ``input_blocks``,
``middle_block`` (the UNet encoder, named as in LDM UNets), plus ``input_hint_block`` (the
conditioning encoder, a Sequential of convs with SiLUs between them, so convs sit at the even
indices), ``zero_convs.N.0`` and ``middle_block_out.0``.

The mapping is computed from a model's own parameter names, so it covers any block layout,
including hint encoders shorter than the standard four stages (diffusers' single-file
converter assumes the final hint conv is ``input_hint_block.14``; the bundled demo ControlNet
downsamples 4x, not 8x, so its final conv is ``input_hint_block.10``).
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from webui.models.convert import ConversionError, _unet_block_offsets, _unet_key

LDM_PREFIX = "control_model."


def ldm_name(key: str, config, n_hint_blocks: int) -> str:
    """The LDM name (without ``control_model.``) of one diffusers ControlNetModel parameter."""
    m = re.match(r"controlnet_cond_embedding\.(conv_in|conv_out|blocks\.(\d+))\.(weight|bias)$", key)
    if m:
        if m[1] == "conv_in":
            index = 0
        elif m[1] == "conv_out":
            index = 2 * (n_hint_blocks + 1)
        else:
            index = 2 * (int(m[2]) + 1)
        return f"input_hint_block.{index}.{m[3]}"
    m = re.match(r"controlnet_down_blocks\.(\d+)\.(weight|bias)$", key)
    if m:
        return f"zero_convs.{m[1]}.0.{m[2]}"
    m = re.match(r"controlnet_mid_block\.(weight|bias)$", key)
    if m:
        return f"middle_block_out.0.{m[1]}"
    down_offsets, up_offsets = _unet_block_offsets(config)
    return _unet_key(key, config, down_offsets, up_offsets, [])


def name_map(model: torch.nn.Module) -> dict[str, str]:
    """diffusers name -> LDM name for every tensor of ``model`` (parameters may live on meta)."""
    n_hint = len(model.controlnet_cond_embedding.blocks)
    return {key: ldm_name(key, model.config, n_hint) for key in model.state_dict()}


def controlnet_to_ldm(model: torch.nn.Module, prefix: str = LDM_PREFIX) -> dict[str, torch.Tensor]:
    """A diffusers ``ControlNetModel`` state dict under A1111's ``control_model.*`` names."""
    names = name_map(model)
    return {prefix + names[k]: v for k, v in model.state_dict().items()}


# Tensors of a full LDM training checkpoint that are not part of the ControlNet.
_OTHER_PARTS = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conditioner.",
                "model_ema.", "lvlb_", "betas", "alphas", "sqrt_", "log_one_minus", "posterior_")


def strip_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ControlNet's own tensors of an LDM file, without ``control_model.``.

    A ControlNet saved inside a whole training checkpoint (the first releases did this) also
    holds the UNet, VAE and text encoder; those are dropped. Files without the prefix are
    taken as they are.
    """
    if any(k.startswith(LDM_PREFIX) for k in state):
        return {k[len(LDM_PREFIX):]: v for k, v in state.items() if k.startswith(LDM_PREFIX)}
    return {k: v for k, v in state.items() if not k.startswith(_OTHER_PARTS)}


def ldm_to_diffusers(state: Mapping[str, torch.Tensor], model: torch.nn.Module,
                     label: str = "ControlNet") -> dict[str, torch.Tensor]:
    """Rename an LDM ControlNet state dict (prefix already stripped) to ``model``'s names.

    Strict both ways: a tensor the model needs but the file lacks, a tensor the file holds
    that the model has no place for, or a shape that differs raises ConversionError naming it.
    """
    names = name_map(model)
    expected = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    missing = []
    for key, ldm_key in names.items():
        tensor = state.get(ldm_key)
        if tensor is None:
            missing.append(ldm_key)
            continue
        want = tuple(expected[key].shape)
        if tuple(tensor.shape) != want:
            # LDM stores SD 1.x attention projections as 1x1 convs; diffusers may use linears.
            if tensor.ndim == 4 and tensor.shape[2:] == (1, 1) and tuple(tensor.shape[:2]) == want:
                tensor = tensor[:, :, 0, 0]
            elif tensor.ndim == 2 and len(want) == 4 and tuple(tensor.shape) == want[:2]:
                tensor = tensor[:, :, None, None]
            else:
                raise ConversionError(f"{label}: {ldm_key} has shape {tuple(tensor.shape)}, the architecture "
                                      f"needs {want}")
        out[key] = tensor
    if missing:
        raise ConversionError(f"{label}: {len(missing)} tensors missing for this architecture, first "
                              f"{missing[0]!r}")
    extra = sorted(set(state) - set(names.values()))
    if extra:
        raise ConversionError(f"{label}: {len(extra)} tensors have no place in this architecture, first "
                              f"{extra[0]!r}")
    return out
