"""Tell what a checkpoint is from tensor names and shapes, without loading its weights.

Rules (docs/model-manager.md has the table):

1. A sidecar `<stem>.config/` diffusers folder next to the file wins; a diffusers folder
   describes itself. Both are read with `arch_from_folder`.
2. Otherwise the file must have the LDM UNet entry `model.diffusion_model.input_blocks.0.0.weight`.
   Its input channels (4, or 9 for inpainting) and the cross-attention width of
   `...transformer_blocks.0.attn2.to_k.weight` (768 SD 1.x, 1024 SD 2.x, 2048 SDXL, 1280 refiner)
   are read from the header. The text-encoder key prefix names the family when present
   (`cond_stage_model.transformer.` SD 1.x, `cond_stage_model.model.` SD 2.x,
   `conditioner.embedders.1.model.` SDXL, only `conditioner.embedders.0.model.` refiner);
   otherwise the width does.
3. v-prediction cannot be read from weights. In order: a `v_pred` marker tensor, safetensors
   metadata (`modelspec.prediction_type` / `modelspec.architecture`), an A1111 `<stem>.yaml`
   (`parameterization: v`), a "512" in an SD 2.x file name (the 512-base models are epsilon);
   else SD 2.x is v-prediction (768-v is the common one) and everything else epsilon.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from webui.models.errors import ModelLoadError

UNET = "model.diffusion_model."
CONV_IN = UNET + "input_blocks.0.0.weight"
LABEL_EMB = UNET + "label_emb.0.0.weight"
_TO_K = re.compile(re.escape(UNET) + r".*transformer_blocks\.0\.attn2\.to_k\.weight$")

# family -> (config folder, cross-attention width, UNet base channels)
FAMILIES = {
    "sd15": ("sd15", 768, 320),
    "sd2": ("sd2-v", 1024, 320),
    "sdxl": ("sdxl", 2048, 320),
    "sdxl-refiner": ("sdxl-refiner", 1280, 384),
}
FAMILY_NAMES = {"sd15": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "sdxl-refiner": "SDXL refiner"}
_TEXT_ENCODER_PREFIXES = (  # most specific first: SDXL also has embedders.0
    ("conditioner.embedders.1.model.", "sdxl"),
    ("conditioner.embedders.0.model.", "sdxl-refiner"),
    ("cond_stage_model.model.", "sd2"),
    ("cond_stage_model.transformer.", "sd15"),
)


@dataclass(frozen=True)
class ProbeResult:
    """What a checkpoint is and which config folder builds it."""

    arch: str  # "sd15" | "sd15-inpaint" | "sd2" | "sdxl" | "sdxl-refiner"
    config_dir: Path
    prediction_type: str  # "epsilon" | "v_prediction"
    source: str  # "sidecar" | "diffusers" | "probe"
    standard: bool  # the shapes are those of the config folder's architecture
    detail: str  # one line: what the decision rested on

    @property
    def pipeline_class(self) -> str:
        """The diffusers pipeline class named by the config folder's model_index.json."""
        return json.loads((self.config_dir / "model_index.json").read_text())["_class_name"]


def sidecar_for(path: Path) -> Path | None:
    """The `<stem>.config/` folder next to a checkpoint file, if it holds a model_index.json."""
    path = Path(path)
    folder = path.with_name(path.stem + ".config")
    return folder if (folder / "model_index.json").is_file() else None


def arch_from_folder(folder: Path, source: str) -> ProbeResult:
    """Classify a diffusers folder (or sidecar) from its model_index.json and unet/scheduler configs."""
    folder = Path(folder)
    try:
        index = json.loads((folder / "model_index.json").read_text())
        unet = json.loads((folder / "unet" / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder}: unreadable diffusers config ({exc})") from exc
    cls = index.get("_class_name", "?")
    width = unet.get("cross_attention_dim")
    inpaint = unet.get("in_channels") == 9
    if cls in ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"):
        refiner = not index.get("text_encoder") or index["text_encoder"][0] is None
        arch = "sdxl-refiner" if refiner else "sdxl"
    elif cls in ("StableDiffusionPipeline", "StableDiffusionInpaintPipeline", "StableDiffusionImg2ImgPipeline"):
        arch = "sd2" if width == 1024 else "sd15"
    else:
        raise ModelLoadError(f"{folder}: pipeline class {cls} is not supported (SD 1.x, SD 2.x, SDXL only)")
    if inpaint:
        if arch != "sd15":
            raise ModelLoadError(f"{folder}: {FAMILY_NAMES[arch]} inpainting models are not supported yet")
        arch = "sd15-inpaint"
    try:
        scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        prediction = scheduler.get("prediction_type", "epsilon")
    except (OSError, ValueError):
        prediction = "epsilon"
    return ProbeResult(arch, folder, prediction, source, True, f"{cls} from {folder.name}/model_index.json")


def describe_unknown(shapes: Mapping[str, tuple]) -> str:
    """Name what a file without an SD UNet looks like, so the user knows where it belongs."""
    keys = sorted(shapes)
    first = ", ".join(keys[:3]) or "none"
    has = lambda *parts: any(p in k for k in keys for p in parts)  # noqa: E731
    if has("lora_down", "lora_up", "lora_A.", "lora_B.", "lora_unet_", "lora_te"):
        what = "a LoRA (put it in models/Lora)"
    elif has("joint_blocks."):
        what = "an SD3-family model (not supported)"
    elif has("double_blocks.", "single_blocks."):
        what = "a Flux-family model (not supported)"
    elif has("control_model.", "input_hint_block"):
        what = "a ControlNet (put it in models/ControlNet)"
    elif has("string_to_param", "emb_params", "clip_l", "clip_g") and len(keys) < 5:
        what = "a textual-inversion embedding (put it in embeddings/)"
    elif keys and all(k.startswith(("encoder.", "decoder.", "quant_conv", "post_quant_conv",
                                     "first_stage_model.")) for k in keys):
        what = "a VAE only (put it in models/VAE)"
    elif has("down_blocks.", "up_blocks."):
        what = "a diffusers-layout component, not an A1111 checkpoint"
    else:
        what = "not a Stable Diffusion checkpoint"
    return f"this looks like {what}: no UNet keys ({CONV_IN}) found; {len(keys)} tensors, first keys: {first}"


def _prediction(family: str, shapes: Mapping[str, tuple], metadata: Mapping[str, str], path: Path | None) -> tuple[str, str]:
    if "v_pred" in shapes:
        return "v_prediction", "v_pred marker tensor"
    spec = (metadata.get("modelspec.prediction_type") or "").lower()
    if spec:
        return ("v_prediction" if spec.startswith("v") else "epsilon"), "modelspec.prediction_type"
    arch_spec = (metadata.get("modelspec.architecture") or "").lower()
    if arch_spec:
        if arch_spec.endswith("-v") or "v-prediction" in arch_spec:
            return "v_prediction", "modelspec.architecture"
        if family == "sd2":
            return "epsilon", "modelspec.architecture"
    if path is not None:
        yaml_file = path.with_suffix(".yaml")
        if yaml_file.is_file():
            try:
                text = yaml_file.read_text(errors="replace")
            except OSError:
                text = ""
            v = re.search(r"^\s*parameterization:\s*['\"]?v['\"]?\s*$", text, re.M)
            return ("v_prediction" if v else "epsilon"), f"{yaml_file.name} parameterization"
    if family == "sd2":
        if path is not None and "512" in path.name:
            return "epsilon", "SD 2.x with '512' in the file name (512-base)"
        return "v_prediction", "SD 2.x default (768-v)"
    return "epsilon", "default"


def classify(shapes: Mapping[str, tuple], metadata: Mapping[str, str] | None = None, path: Path | None = None,
             configs_dir: Path | None = None) -> ProbeResult:
    """Classify an LDM-layout checkpoint from its tensor names and shapes (weights never needed)."""
    from webui.paths import REPO_ROOT

    metadata = metadata or {}
    configs_dir = Path(configs_dir or REPO_ROOT / "configs")
    label = path.name if path is not None else "checkpoint"
    conv_in = shapes.get(CONV_IN)
    if conv_in is None or len(conv_in) != 4:
        raise ModelLoadError(f"{label}: {describe_unknown(shapes)}")
    channels, in_channels = conv_in[0], conv_in[1]
    width = next((shapes[k][1] for k in sorted(shapes) if _TO_K.match(k) and len(shapes[k]) == 2), None)
    family = next((fam for prefix, fam in _TEXT_ENCODER_PREFIXES if any(k.startswith(prefix) for k in shapes)), None)
    how = "text-encoder keys"
    if family is None:
        family = next((fam for fam, (_, w, _) in FAMILIES.items() if w == width), None)
        how = "cross-attention width"
        if family is None:
            raise ModelLoadError(f"{label}: has a UNet but no known text encoder, and cross-attention width "
                                 f"{width} matches no SD family (768, 1024, 2048, 1280)")
    folder, want_width, want_channels = FAMILIES[family]
    known_widths = {w for _, w, _ in FAMILIES.values()}
    if width in known_widths and width != want_width:
        raise ModelLoadError(f"{label}: {how} say {FAMILY_NAMES[family]} but the cross-attention width is {width} "
                             f"(expected {want_width}); the file mixes architectures")
    if family in ("sdxl", "sdxl-refiner") and LABEL_EMB not in shapes:
        raise ModelLoadError(f"{label}: {FAMILY_NAMES[family]} text encoders but no UNet label_emb; unsupported")
    arch = family
    if in_channels == 9:
        if family != "sd15":
            raise ModelLoadError(f"{label}: {FAMILY_NAMES[family]} inpainting (9 input channels) is not supported "
                                 "yet; SD 1.x inpainting is")
        arch, folder = "sd15-inpaint", "sd15-inpaint"
    elif in_channels == 8:
        raise ModelLoadError(f"{label}: 8 UNet input channels (an InstructPix2Pix-style edit model) is not supported")
    elif in_channels != 4:
        raise ModelLoadError(f"{label}: {in_channels} UNet input channels; expected 4 (or 9 for inpainting)")
    prediction, why = _prediction(family, shapes, metadata, path)
    standard = width == want_width and channels == want_channels
    detail = (f"{FAMILY_NAMES[family]}{' inpainting' if in_channels == 9 else ''} by {how}; "
              f"width {width}, {channels} base channels, {in_channels} input channels; {prediction} ({why})")
    return ProbeResult(arch, configs_dir / folder, prediction, "probe", standard, detail)


def read_safetensors_header(path: Path) -> tuple[dict[str, tuple], dict[str, str]]:
    """Tensor shapes and metadata from a .safetensors header; the weights are not read.

    A truncated file or one that is not safetensors at all raises ModelLoadError saying so.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
            metadata = dict(handle.metadata() or {})
    except SafetensorError as exc:
        text = str(exc)
        if "not fully covered" in text or "incomplete" in text:
            reason = "the file is truncated (shorter than its header says; an interrupted download or copy?)"
        elif "header too" in text or "invalid" in text.lower() or "utf" in text.lower():
            reason = "it is not a safetensors file (its header is not valid)"
        else:
            reason = "its safetensors header is unreadable"
        raise ModelLoadError(f"{path.name}: cannot be loaded: {reason} [{text}]") from exc
    except OSError as exc:
        raise ModelLoadError(f"{path.name}: cannot be read: {exc}") from exc
    return shapes, metadata


def probe_checkpoint(path: Path, shapes: Mapping[str, tuple] | None = None, metadata: Mapping[str, str] | None = None,
                     configs_dir: Path | None = None, use_sidecar: bool = True) -> ProbeResult:
    """Classify a checkpoint file or diffusers folder; a sidecar config folder wins over probing.

    `shapes` comes from an already-loaded state dict (.ckpt); for .safetensors the header is read.
    """
    path = Path(path)
    if path.is_dir():
        return arch_from_folder(path, "diffusers")
    if use_sidecar:
        sidecar = sidecar_for(path)
        if sidecar is not None:
            return arch_from_folder(sidecar, "sidecar")
    if shapes is None:
        shapes, metadata = read_safetensors_header(path)
    return classify(shapes, metadata, path, configs_dir)
