"""LoRA / LoCon networks for training, saved with kohya's key names so every UI loads them.

A ``LoRANetwork`` wraps chosen ``Linear`` / ``Conv2d`` modules of a diffusers UNet and
CLIP text encoder(s): the wrapped module's output gains ``up(down(x)) * alpha / rank``.
The base weights are never touched, so removing the network restores the model exactly
(the model is the one the UI generates with; training borrows it).

Key names follow kohya sd-scripts, the format A1111, Forge, ComfyUI and diffusers read:
``lora_unet_<module path with _>`` (diffusers names for SD 1.x/2.x; LDM ``input_blocks``
names for SDXL, as kohya trains SDXL on the LDM UNet), ``lora_te_text_model_<...>`` (SD
1.x/2.x) or ``lora_te1_`` / ``lora_te2_`` (SDXL), each with ``.lora_down.weight``,
``.lora_up.weight`` and ``.alpha``.

Which modules (kohya's choice): every Linear and 1x1 Conv inside the UNet's transformer
blocks (attention projections, proj_in/out, feed-forward), and the text encoders'
attention and MLP projections. LoCon adds the ResNet blocks and the down/upsamplers
(3x3 convs at ``conv_rank``; their 1x1 / Linear layers at ``rank``).
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

NETWORK_TYPES = ("LoRA", "LoCon")
# diffusers classes whose Linear / Conv2d children kohya wraps.
UNET_ATTENTION_BLOCKS = ("Transformer2DModel",)
UNET_CONV_BLOCKS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
TEXT_ENCODER_BLOCKS = ("CLIPAttention", "CLIPMLP", "CLIPSdpaAttention", "CLIPFlashAttention2")


class LoRAModule(nn.Module):
    """One low-rank adapter on one Linear or Conv2d: ``y = base(x) + up(down(x)) * scale``."""

    def __init__(self, name: str, base: nn.Module, rank: int, alpha: float):
        super().__init__()
        self.lora_name = name
        self.rank = rank
        if isinstance(base, nn.Conv2d):
            # LoCon: the down conv carries the base conv's kernel/stride/padding, up is 1x1.
            self.lora_down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding,
                                       base.dilation, bias=False)
            self.lora_up = nn.Conv2d(rank, base.out_channels, 1, 1, bias=False)
        else:
            self.lora_down = nn.Linear(base.in_features, rank, bias=False)
            self.lora_up = nn.Linear(rank, base.out_features, bias=False)
        # kohya's init: down like a fresh Linear, up zero, so an untrained network changes nothing.
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.scale = float(alpha) / rank
        self.multiplier = 1.0
        # A plain list keeps the base module out of this module's state_dict and parameters.
        self._base = [base]
        self._base_forward = None
        self._had_own_forward = False  # e.g. accelerate's offload hooks set an instance forward

    @property
    def base(self) -> nn.Module:
        return self._base[0]

    def attach(self) -> None:
        """Route the base module's forward through this adapter."""
        if self._base_forward is None:
            self._had_own_forward = "forward" in vars(self.base)
            self._base_forward = self.base.forward
            self.base.forward = self.forward

    def detach(self) -> None:
        """Give the base module its own forward back."""
        if self._base_forward is not None:
            if self._had_own_forward:
                self.base.forward = self._base_forward
            else:
                del self.base.forward  # the class's forward shows through again
            self._base_forward = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._base_forward(x)
        dtype = self.lora_down.weight.dtype
        delta = self.lora_up(self.lora_down(x if x.dtype == dtype else x.to(dtype)))
        return out + (delta * (self.multiplier * self.scale)).to(out.dtype)

    @torch.no_grad()
    def delta_weight(self) -> torch.Tensor:
        """The full-size weight change this adapter stands for (for merging and tests)."""
        down, up = self.lora_down.weight.float(), self.lora_up.weight.float()
        if down.dim() == 4:  # up is 1x1: W[o, i, h, w] = sum_r up[o, r] * down[r, i, h, w]
            delta = torch.einsum("or,rihw->oihw", up[:, :, 0, 0], down)
        else:
            delta = up @ down
        return delta * self.scale * self.multiplier


def _flat(name: str) -> str:
    return name.replace(".", "_")


def text_encoder_prefix(arch: str, index: int) -> str:
    """kohya's prefix for text encoder ``index`` (0-based): lora_te_ (one encoder) or lora_te1_/lora_te2_ (SDXL)."""
    return "lora_te" if arch != "sdxl" else f"lora_te{index + 1}"


def text_encoder_key(prefix: str, module_name: str) -> str:
    """kohya key of a CLIP module; transformers 5 drops the ``text_model.`` level kohya's names keep."""
    if not module_name.startswith("text_model."):
        module_name = "text_model." + module_name
    return f"{prefix}_{_flat(module_name)}"


def unet_ldm_namer(unet) -> "callable":
    """Map diffusers UNet module paths to LDM names (``input_blocks.4.1.proj_in``), as kohya's SDXL files use."""
    from webui.models import convert

    config = unet.config
    down_offsets, up_offsets = convert._unet_block_offsets(config)
    up_has_attention = [bool(getattr(b, "attentions", None)) for b in unet.up_blocks]

    def name(module_path: str) -> str:
        key = convert._unet_key(module_path + ".weight", config, down_offsets, up_offsets, up_has_attention)
        return key[: -len(".weight")]

    return name


def _targets(root: nn.Module, block_classes: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    found = []
    for name, module in root.named_modules():
        if type(module).__name__ not in block_classes:
            continue
        for child_name, child in module.named_modules():
            if isinstance(child, (nn.Linear, nn.Conv2d)) and child_name:
                found.append((f"{name}.{child_name}", child))
    return found


@dataclass
class NetworkSpec:
    """What to build: type, ranks/alphas and which parts get adapters."""

    network_type: str = "LoRA"
    rank: int = 16
    alpha: float = 8.0
    conv_rank: int = 8
    conv_alpha: float = 4.0
    unet: bool = True
    text_encoder: bool = True


class LoRANetwork(nn.Module):
    """The adapters for one model, keyed by kohya name (``modules`` is an ``nn.ModuleDict``)."""

    def __init__(self, spec: NetworkSpec, arch: str, unet=None, text_encoders: list | tuple = ()):
        super().__init__()
        if spec.network_type not in NETWORK_TYPES:
            raise ValueError(f"network type must be one of {', '.join(NETWORK_TYPES)}, got {spec.network_type!r}")
        if spec.rank < 1 or (spec.network_type == "LoCon" and spec.conv_rank < 1):
            raise ValueError("rank must be at least 1")
        self.spec = spec
        self.arch = arch
        self.unet_modules: list[str] = []
        self.text_modules: list[str] = []
        self.paths: dict[str, str] = {}  # kohya name -> module path in its model (diffusers / transformers)
        modules: dict[str, LoRAModule] = {}
        if spec.unet and unet is not None:
            namer = unet_ldm_namer(unet) if arch == "sdxl" else (lambda path: path)
            blocks = UNET_ATTENTION_BLOCKS + (UNET_CONV_BLOCKS if spec.network_type == "LoCon" else ())
            for path, module in _targets(unet, blocks):
                conv3 = isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1)
                rank, alpha = (spec.conv_rank, spec.conv_alpha) if conv3 else (spec.rank, spec.alpha)
                key = f"lora_unet_{_flat(namer(path))}"
                modules[key] = LoRAModule(key, module, rank, alpha)
                self.unet_modules.append(key)
                self.paths[key] = path
        if spec.text_encoder:
            for index, encoder in enumerate(text_encoders):
                prefix = text_encoder_prefix(arch, index)
                for path, module in _targets(encoder, TEXT_ENCODER_BLOCKS):
                    key = text_encoder_key(prefix, path)
                    modules[key] = LoRAModule(key, module, spec.rank, spec.alpha)
                    self.text_modules.append(key)
                    self.paths[key] = path
        if not modules:
            raise ValueError("nothing to train: no UNet or text-encoder layers were selected")
        self.adapters = nn.ModuleDict(modules)

    def attach(self) -> "LoRANetwork":
        """Patch every adapter into its base module (idempotent)."""
        for module in self.adapters.values():
            module.attach()
        return self

    def detach(self) -> None:
        """Remove every patch; the base model is back to exactly what it was."""
        for module in self.adapters.values():
            module.detach()

    def set_multiplier(self, value: float) -> None:
        for module in self.adapters.values():
            module.multiplier = value

    def parameter_groups(self, unet_lr: float, text_encoder_lr: float) -> list[dict]:
        """Optimizer groups; a part with learning rate 0 is left out (not trained)."""
        groups = []
        for names, lr in ((self.unet_modules, unet_lr), (self.text_modules, text_encoder_lr)):
            params = [p for n in names for p in self.adapters[n].parameters()]
            if params and lr > 0:
                groups.append({"params": params, "lr": lr})
        return groups

    # -- kohya files --------------------------------------------------------------------------

    def kohya_state_dict(self, dtype: torch.dtype | None = torch.float16) -> dict[str, torch.Tensor]:
        """``<name>.lora_down.weight``, ``<name>.lora_up.weight``, ``<name>.alpha`` for every adapter."""
        out = {}
        for name, module in self.adapters.items():
            for part in ("lora_down", "lora_up"):
                weight = getattr(module, part).weight.detach().to("cpu")
                out[f"{name}.{part}.weight"] = (weight.to(dtype) if dtype else weight).contiguous()
            out[f"{name}.alpha"] = module.alpha.detach().to("cpu", torch.float32 if dtype is None else dtype)
        return out

    @torch.no_grad()
    def load_kohya_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights saved by ``kohya_state_dict`` (names must match exactly)."""
        expected = set(self.kohya_state_dict(None))
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise ValueError(f"LoRA keys do not match this network: {len(missing)} missing "
                             f"(e.g. {sorted(missing)[:1]}), {len(unexpected)} unexpected (e.g. {sorted(unexpected)[:1]})")
        for name, module in self.adapters.items():
            module.lora_down.weight.copy_(state[f"{name}.lora_down.weight"])
            module.lora_up.weight.copy_(state[f"{name}.lora_up.weight"])

    def save(self, path: Path, metadata: dict[str, str], dtype: torch.dtype = torch.float16) -> Path:
        """Write the kohya ``.safetensors`` atomically (a reader never sees half a file)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(self.kohya_state_dict(dtype), str(tmp), metadata={k: str(v) for k, v in metadata.items()})
        os.chmod(tmp, 0o644)  # readable like any model file (the temporary file is created private)
        os.replace(tmp, path)
        return path


def network_from_file(path: Path, arch: str, unet, text_encoders: list | tuple) -> LoRANetwork:
    """Rebuild a network this trainer saved (shape from ``ss_*`` metadata and keys) and load its weights.

    For resuming from a file and for tests; generation loads LoRAs through the Networks code.
    """
    from safetensors.torch import load_file

    meta = read_metadata(path)
    state = load_file(str(path))
    args = json.loads(meta.get("ss_network_args") or "{}")
    spec = NetworkSpec(network_type="LoCon" if "conv_dim" in args else "LoRA",
                       rank=int(meta.get("ss_network_dim", 4)), alpha=float(meta.get("ss_network_alpha", 1)),
                       conv_rank=int(args.get("conv_dim", 1)), conv_alpha=float(args.get("conv_alpha", 1)),
                       unet=any(k.startswith("lora_unet_") for k in state),
                       text_encoder=any(k.startswith("lora_te") for k in state))
    network = LoRANetwork(spec, arch, unet, text_encoders)
    network.load_kohya_state_dict(state)
    return network


def base_model_version(arch: str, prediction_type: str = "epsilon") -> str:
    """kohya's ``ss_base_model_version`` for a model family."""
    if arch == "sdxl":
        return "sdxl_base_v1-0"
    if arch.startswith("sd2"):
        return "sd_v2_768_v" if prediction_type == "v_prediction" else "sd_v2"
    return "sd_v1"


def modelspec_architecture(arch: str, prediction_type: str = "epsilon") -> str:
    """The Stability ``modelspec.architecture`` value kohya also writes."""
    if arch == "sdxl":
        return "stable-diffusion-xl-v1-base/lora"
    if arch.startswith("sd2"):
        return "stable-diffusion-v2-768-v/lora" if prediction_type == "v_prediction" else "stable-diffusion-v2-512/lora"
    return "stable-diffusion-v1/lora"


def network_args(spec: NetworkSpec) -> str:
    """``ss_network_args``: kohya records LoCon's conv rank/alpha here."""
    if spec.network_type == "LoCon":
        return json.dumps({"conv_dim": str(spec.conv_rank), "conv_alpha": str(spec.conv_alpha)})
    return json.dumps({})


def read_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def is_kohya_key(key: str) -> bool:
    """True for a key diffusers' and A1111's kohya loaders expect."""
    return bool(re.match(r"^lora_(unet|te|te1|te2)_\w+\.(lora_down\.weight|lora_up\.weight|alpha)$", key))
