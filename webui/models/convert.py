"""Convert diffusers pipelines to A1111 / original-LDM single-file checkpoints.

A1111 users share models as one ``.safetensors`` file whose tensor names follow the
original CompVis/Stability code (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.*`` / ``conditioner.embedders.*``). diffusers only ships the
LDM -> diffusers direction (``diffusers.loaders.single_file_utils``); this module is
the inverse, written so that ``from_single_file`` reproduces every weight exactly.

Every parameter of every component must be mapped: an unknown name raises instead of
being dropped, because diffusers' single-file loader silently leaves missing weights
at their random init and a lossy export would go unnoticed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer.text_model."
# SD 2.x keeps its OpenCLIP ViT-H text tower in OpenCLIP's own layout.
SD2_OPEN_CLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer.text_model."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
# The SDXL refiner has only the OpenCLIP encoder, stored as embedder 0.
SDXL_REFINER_OPEN_CLIP_PREFIX = "conditioner.embedders.0.model."

# diffusers ResnetBlock2D layer -> LDM ResBlock layer (sequential indices in LDM).
_UNET_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}

_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "class_embedding.linear_1": "label_emb.0.0",
    "class_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}

_VAE_TOP_LEVEL = {
    "encoder.conv_in": "encoder.conv_in",
    "encoder.conv_out": "encoder.conv_out",
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_in": "decoder.conv_in",
    "decoder.conv_out": "decoder.conv_out",
    "decoder.conv_norm_out": "decoder.norm_out",
    "quant_conv": "quant_conv",
    "post_quant_conv": "post_quant_conv",
}

_VAE_ATTENTION_NAMES = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}

# diffusers CLIP encoder layer -> OpenCLIP resblock layer.
_OPEN_CLIP_LAYER_NAMES = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


class ConversionError(ValueError):
    """A diffusers weight has no known place in the LDM layout."""


def _rename_prefix(rest: str, table: Mapping[str, str]) -> str | None:
    """Rename the leading dotted module path of ``rest`` using ``table``."""
    for old, new in table.items():
        if rest.startswith(old + "."):
            return new + rest[len(old):]
    return None


def _per_level(value, levels: int) -> list[int]:
    """diffusers configs allow an int or one value per level."""
    if isinstance(value, int):
        return [value] * levels
    return list(value)


def _unet_block_offsets(config) -> tuple[list[int], list[int]]:
    """First LDM input/output block index of each diffusers down/up level.

    LDM numbers blocks flatly: input_blocks.0 is conv_in, then each level holds
    ``layers`` resnet(+attention) blocks plus one downsample block (except the
    last level); output blocks hold ``layers + 1`` blocks per level, the
    upsampler riding inside the last one.
    """
    levels = len(config.down_block_types)
    down_layers = _per_level(config.layers_per_block, levels)
    down_offsets, index = [], 1
    for level, layers in enumerate(down_layers):
        down_offsets.append(index)
        index += layers + (1 if level < levels - 1 else 0)
    up_layers = list(reversed(down_layers))
    up_offsets, index = [], 0
    for layers in up_layers:
        up_offsets.append(index)
        index += layers + 1
    return down_offsets, up_offsets


def _unet_key(key: str, config, down_offsets: list[int], up_offsets: list[int],
              up_has_attention: list[bool]) -> str:
    renamed = _rename_prefix(key, _UNET_TOP_LEVEL)
    if renamed is not None:
        return renamed
    levels = len(down_offsets)
    down_layers = _per_level(config.layers_per_block, levels)

    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)
    if m:
        level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        block = down_offsets[level] + j
        if kind == "resnets":
            return f"input_blocks.{block}.0." + (_rename_prefix(rest, _UNET_RESNET_NAMES) or rest)
        return f"input_blocks.{block}.1.{rest}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key)
    if m:
        level = int(m[1])
        return f"input_blocks.{down_offsets[level] + down_layers[level]}.0.op.{m[2]}"

    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key)
    if m:
        kind, j, rest = m[1], int(m[2]), m[3]
        if kind == "resnets":
            return f"middle_block.{2 * j}." + (_rename_prefix(rest, _UNET_RESNET_NAMES) or rest)
        return f"middle_block.{2 * j + 1}.{rest}"

    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)
    if m:
        level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        block = up_offsets[level] + j
        if kind == "resnets":
            return f"output_blocks.{block}.0." + (_rename_prefix(rest, _UNET_RESNET_NAMES) or rest)
        return f"output_blocks.{block}.1.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key)
    if m:
        level = int(m[1])
        last = up_offsets[level] + list(reversed(down_layers))[level]
        # The upsampler follows the attention module when the level has one.
        slot = 2 if up_has_attention[level] else 1
        return f"output_blocks.{last}.{slot}.conv.{m[2]}"
    hint = " (fuse or unload adapters before exporting)" if "lora" in key.lower() else ""
    raise ConversionError(f"UNet weight {key!r} has no LDM equivalent{hint}")


def unet_to_ldm(unet: torch.nn.Module, prefix: str = UNET_PREFIX) -> dict[str, torch.Tensor]:
    """Map a diffusers ``UNet2DConditionModel`` state dict to LDM ``input_blocks`` names."""
    config = unet.config
    down_offsets, up_offsets = _unet_block_offsets(config)
    up_has_attention = [
        getattr(block, "attentions", None) is not None and len(block.attentions) > 0
        for block in unet.up_blocks
    ]
    out = {}
    for key, tensor in unet.state_dict().items():
        out[prefix + _unet_key(key, config, down_offsets, up_offsets, up_has_attention)] = tensor
    return out


def _vae_key(key: str, levels: int) -> tuple[str, bool]:
    """Return the LDM name and whether the tensor is a linear that LDM stores as a 1x1 conv."""
    renamed = _rename_prefix(key, _VAE_TOP_LEVEL)
    if renamed is not None:
        return renamed, False
    m = re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key)
    if m:
        part, direction, i, j, rest = m[1], m[2], int(m[3]), m[4], m[5]
        # LDM numbers decoder levels from the lowest resolution upwards.
        level = i if direction == "down" else levels - 1 - i
        rest = _rename_prefix(rest, {"conv_shortcut": "nin_shortcut"}) or rest
        return f"{part}.{direction}.{level}.block.{j}.{rest}", False
    m = re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key)
    if m:
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}", False
    m = re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key)
    if m:
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}", False
    m = re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key)
    if m:
        rest = _rename_prefix(m[3], {"conv_shortcut": "nin_shortcut"}) or m[3]
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{rest}", False
    m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key)
    if m:
        rest = _rename_prefix(m[2], _VAE_ATTENTION_NAMES)
        if rest is not None:
            return f"{m[1]}.mid.attn_1.{rest}", not rest.startswith("norm.")
    raise ConversionError(f"VAE weight {key!r} has no LDM equivalent")


def vae_to_ldm(vae: torch.nn.Module, prefix: str = VAE_PREFIX) -> dict[str, torch.Tensor]:
    """Map a diffusers ``AutoencoderKL`` state dict to LDM ``encoder.down.N.block.M`` names."""
    levels = len(vae.config.block_out_channels)
    out = {}
    for key, tensor in vae.state_dict().items():
        name, as_conv = _vae_key(key, levels)
        if as_conv and tensor.ndim == 2:
            tensor = tensor.reshape(*tensor.shape, 1, 1)
        out[prefix + name] = tensor
    return out


def clip_to_ldm(text_encoder: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """Map a transformers ``CLIPTextModel`` under ``prefix`` (which ends in ``text_model.``).

    transformers >= 5.6 dropped the ``text_model.`` level from ``CLIPTextModel``;
    the LDM layout keeps it, so it is stripped here and ``prefix`` re-adds it.
    """
    out = {}
    for key, tensor in text_encoder.state_dict().items():
        key = key.removeprefix("text_model.")
        if key.startswith("text_projection") or key.endswith("position_ids"):
            # SD 1.x / SDXL CLIP-L checkpoints carry no projection; position_ids
            # is a constant buffer the loader recreates.
            continue
        out[prefix + key] = tensor
    return out


def open_clip_to_ldm(text_encoder: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """Map a ``CLIPTextModelWithProjection`` to the OpenCLIP layout under ``prefix``.

    OpenCLIP fuses q/k/v into one ``in_proj`` tensor and stores ``text_projection``
    as ``[width, projection_dim]`` (a matrix multiplied from the right), the
    transpose of a ``nn.Linear`` weight.
    """
    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    singles = {
        "embeddings.token_embedding.weight": "token_embedding.weight",
        "embeddings.position_embedding.weight": "positional_embedding",
        "final_layer_norm.weight": "ln_final.weight",
        "final_layer_norm.bias": "ln_final.bias",
    }
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if key in singles:
            out[prefix + singles[key]] = tensor
            continue
        if key == "text_projection.weight":
            out[prefix + "text_projection"] = tensor.T.contiguous()
            continue
        if key.endswith("position_ids"):
            continue
        m = re.match(r"encoder\.layers\.(\d+)\.(.+)", key)
        if not m:
            raise ConversionError(f"text encoder weight {key!r} has no OpenCLIP equivalent")
        layer, rest = int(m[1]), m[2]
        mq = re.match(r"self_attn\.(q|k|v)_proj\.(weight|bias)", rest)
        if mq:
            qkv.setdefault((layer, mq[2]), {})[mq[1]] = tensor
            continue
        renamed = _rename_prefix(rest, _OPEN_CLIP_LAYER_NAMES)
        if renamed is None:
            raise ConversionError(f"text encoder weight {key!r} has no OpenCLIP equivalent")
        out[f"{prefix}transformer.resblocks.{layer}.{renamed}"] = tensor
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ConversionError(f"layer {layer} {kind}: incomplete q/k/v projections")
        fused = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = fused
    return out


def pipeline_to_ldm(pipe) -> dict[str, torch.Tensor]:
    """Turn an SD 1.x, SD 2.x or SDXL diffusers pipeline into an A1111-style state dict.

    SD 1.x: ``model.diffusion_model.*``, ``first_stage_model.*``,
    ``cond_stage_model.transformer.text_model.*``. SDXL: the CLIP-L encoder under
    ``conditioner.embedders.0.transformer.text_model.*`` and the OpenCLIP-bigG one
    under ``conditioner.embedders.1.model.*`` (refiner pipelines without a first
    encoder put it at ``conditioner.embedders.0.model.*``). SD 2.x: the OpenCLIP
    encoder under ``cond_stage_model.model.*``; diffusers drops its unused last
    layer and projection, so the file lacks them too (A1111 and diffusers both
    load such files, as neither uses those weights).
    """
    state = unet_to_ldm(pipe.unet)
    state.update(vae_to_ldm(pipe.vae))
    text_encoder = getattr(pipe, "text_encoder", None)
    text_encoder_2 = getattr(pipe, "text_encoder_2", None)
    if text_encoder_2 is not None:
        if text_encoder is not None:
            state.update(clip_to_ldm(text_encoder, SDXL_CLIP_PREFIX))
            state.update(open_clip_to_ldm(text_encoder_2, SDXL_OPEN_CLIP_PREFIX))
        else:
            state.update(open_clip_to_ldm(text_encoder_2, SDXL_REFINER_OPEN_CLIP_PREFIX))
    elif text_encoder is not None:
        # OpenAI's CLIP (SD 1.x) uses quick_gelu, OpenCLIP (SD 2.x) exact gelu:
        # an architectural fact that survives fine-tuning, unlike widths.
        if getattr(text_encoder.config, "hidden_act", "quick_gelu") == "gelu":
            state.update(open_clip_to_ldm(text_encoder, SD2_OPEN_CLIP_PREFIX))
        else:
            state.update(clip_to_ldm(text_encoder, SD1_CLIP_PREFIX))
    else:
        raise ConversionError("pipeline has no text encoder to export")
    return state


def save_a1111_checkpoint(pipe, path, dtype: torch.dtype | None = None,
                          metadata: dict | None = None) -> Path:
    """Write ``pipeline_to_ldm(pipe)`` to ``path`` as ``.safetensors``.

    ``dtype`` casts floating-point tensors only (e.g. ``torch.float16`` for the
    usual half-size release); ``metadata`` values are stored as strings, which is
    all the safetensors header allows.
    """
    from safetensors.torch import save_file

    tensors = {}
    for name, tensor in pipeline_to_ldm(pipe).items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {str(k): str(v) for k, v in (metadata or {}).items()} or None
    save_file(tensors, str(path), metadata=header)
    return path
