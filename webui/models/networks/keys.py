"""Which diffusers module a network key means: kohya, LyCORIS and diffusers/peft layouts.

A network file names the layer it changes in one of these ways (then `.lora_up.weight`, ...):

- kohya / LyCORIS, diffusers names with '_' for '.': `lora_unet_down_blocks_1_attentions_0_..._to_q`,
  `lora_te_text_model_encoder_layers_0_self_attn_q_proj` (SD 1.x / 2.x), `lora_te1_...` / `lora_te2_...`
  (SDXL's two text encoders);
- kohya SDXL UNet keys in the original LDM names: `lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`,
  mapped through the project's own diffusers->LDM converter (`webui.models.convert`), so every
  UNet layer has both spellings;
- diffusers / peft: `unet.down_blocks.1.attentions.0....to_q.lora_A.weight`,
  `text_encoder.text_model.encoder.layers.0.self_attn.q_proj...`, `text_encoder_2....`, and the older
  attention-processor form `unet....attn1.processor.to_q_lora.down.weight`.

transformers 5 dropped the `text_model.` level of CLIPTextModel; keys keep it, so it is added
back when indexing. Module names are normalised to one spelling: '.' and '_' both become '_'.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from webui.models import convert

TEXT_COMPONENTS = ("text_encoder", "text_encoder_2")
PATCHABLE = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)

# Parameter suffixes of every supported network type, longest first so 'lora_A.weight' wins over 'weight'.
PARAM_SUFFIXES = tuple(sorted((
    "lora_up.weight", "lora_down.weight", "lora_mid.weight", "lora_A.weight", "lora_B.weight",
    "lora.up.weight", "lora.down.weight", "lora_linear_layer.up.weight", "lora_linear_layer.down.weight",
    "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2",
    "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2",
    "diff", "diff_b", "w_norm", "b_norm", "on_input", "weight", "bias",
    "oft_blocks", "oft_diag", "rescale", "alpha", "scale", "dora_scale",
    "lora_magnitude_vector", "lora_magnitude_vector.weight",
), key=len, reverse=True))

# Older diffusers attention-processor LoRAs: `to_q_lora.down.weight` means module `to_q`.
_PROCESSOR_LORA = re.compile(r"\.processor\.(to_q|to_k|to_v|to_out)_lora\.(up|down)\.weight$")
_ALIASES = {"lora.up.weight": "lora_up.weight", "lora.down.weight": "lora_down.weight",
            "lora_linear_layer.up.weight": "lora_up.weight", "lora_linear_layer.down.weight": "lora_down.weight",
            "lora_magnitude_vector": "dora_scale", "lora_magnitude_vector.weight": "dora_scale"}


def normalise(name: str) -> str:
    return name.replace(".", "_")


@dataclass(frozen=True)
class Target:
    """A module a network may change: its component ('unet', 'text_encoder', ...), name and object."""

    component: str
    name: str
    module: torch.nn.Module

    @property
    def is_text(self) -> bool:
        return self.component in TEXT_COMPONENTS

    @property
    def block(self) -> str:
        """'down' / 'mid' / 'up' for UNet layers (A1111's per-block multipliers), '' otherwise."""
        for prefix, block in (("down_blocks", "down"), ("mid_block", "mid"), ("up_blocks", "up")):
            if self.name.startswith(prefix):
                return block
        return ""


class ModuleIndex:
    """Every patchable module of a pipeline under every key spelling networks use."""

    def __init__(self, pipe):
        self.targets: dict[str, Target] = {}
        unet = getattr(pipe, "unet", None)
        first = getattr(pipe, "text_encoder", None)
        second = getattr(pipe, "text_encoder_2", None)
        self.is_sdxl = second is not None
        if unet is not None:
            self._add_unet(unet)
        if first is not None:
            # SD 1.x/2.x kohya: lora_te_; SDXL kohya: lora_te1_; diffusers: text_encoder.
            prefixes = ["text_encoder_"] + (["lora_te1_"] if self.is_sdxl else ["lora_te_"])
            self._add_text("text_encoder", first, prefixes)
        if second is not None:
            prefixes = ["lora_te2_", "text_encoder_2_"] + ([] if first is not None else ["lora_te_"])
            self._add_text("text_encoder_2", second, prefixes)

    def _add(self, key: str, target: Target) -> None:
        self.targets.setdefault(key, target)

    def _add_unet(self, unet) -> None:
        config = unet.config
        down, up = convert._unet_block_offsets(config)
        up_attention = [bool(getattr(b, "attentions", None)) for b in unet.up_blocks]
        for name, module in unet.named_modules():
            if not isinstance(module, PATCHABLE):
                continue
            target = Target("unet", name, module)
            for prefix in ("lora_unet_", "unet_", ""):
                self._add(prefix + normalise(name), target)
            try:
                ldm = convert._unet_key(name + ".weight", config, down, up, up_attention).removesuffix(".weight")
            except convert.ConversionError:
                continue
            for prefix in ("lora_unet_", "diffusion_model_"):
                self._add(prefix + normalise(ldm), target)

    def _add_text(self, component: str, encoder, prefixes: list[str]) -> None:
        for name, module in encoder.named_modules():
            if not isinstance(module, PATCHABLE):
                continue
            target = Target(component, name, module)
            plain = name.removeprefix("text_model.")
            for prefix in prefixes:
                self._add(prefix + "text_model_" + normalise(plain), target)
                self._add(prefix + normalise(plain), target)

    def find(self, key: str) -> Target | None:
        """The module a network's module key names (any spelling), or None."""
        return self.targets.get(normalise(key))


def split_key(key: str) -> tuple[str, str] | None:
    """'lora_unet_x.lora_up.weight' -> ('lora_unet_x', 'lora_up.weight'); None for unknown parameters."""
    m = _PROCESSOR_LORA.search(key)
    if m:
        module = key[:m.start()] + "." + m.group(1) + (".0" if m.group(1) == "to_out" else "")
        return module, f"lora_{m.group(2)}.weight"
    for suffix in PARAM_SUFFIXES:
        if key.endswith("." + suffix):
            module = key[: -len(suffix) - 1]
            return module, _ALIASES.get(suffix, suffix)
    return None


def group_by_module(state: dict) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """A network state dict grouped as {module key: {parameter: tensor}}, plus keys not understood."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            unknown.append(str(key))
            continue
        parts = split_key(str(key))
        if parts is None:
            unknown.append(str(key))
            continue
        module, param = parts
        groups.setdefault(module, {})[param] = value
    return groups, unknown
