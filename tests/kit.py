"""Offline test kit: tiny random-weight SD 1.x and SDXL models built on disk.

Nothing here touches the network. Each tiny model exists in three forms that the
product code loads in different ways:

- a diffusers folder (``save_pretrained`` layout) under ``<root>/diffusers/tiny-<arch>/``;
- an A1111 single file ``<root>/Stable-diffusion/tiny-<arch>.safetensors`` written by
  ``webui.models.convert``;
- its sidecar config folder ``<root>/Stable-diffusion/tiny-<arch>.config/`` (the
  diffusers folder without weights), passed as ``config=`` to ``from_single_file``.

The models keep the real CLIP tokenizer (vocab 49408, 77 positions) so prompt
handling is exercised for real, while every network is a few MB.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = REPO_ROOT / "configs"
ARCHES = ("sd15", "sdxl", "sd15-inpaint", "sdxl-inpaint")  # the -inpaint ones have 9-channel UNets

# Old cache folders are pruned only when clearly abandoned, so a concurrent test
# run that still uses an older kit version keeps its files.
_PRUNE_AFTER_S = 3600


@dataclass
class TinyModel:
    """One tiny model in its three on-disk forms (see module docstring)."""

    arch: str  # "sd15" | "sdxl" | "sd15-inpaint" | "sdxl-inpaint"
    diffusers_dir: Path
    single_file: Path
    config_dir: Path

    @property
    def pipeline_class(self):
        """The diffusers text-to-image pipeline class for this architecture."""
        import diffusers

        return getattr(diffusers, _PIPELINE_CLASSES[self.arch])

    def load_pretrained(self, **kwargs):
        """Load the diffusers folder (offline)."""
        return self.pipeline_class.from_pretrained(self.diffusers_dir, local_files_only=True, **kwargs)

    def load_single_file(self, **kwargs):
        """Load the single file with its sidecar config, the way the model manager does."""
        return self.pipeline_class.from_single_file(
            str(self.single_file), config=str(self.config_dir), local_files_only=True, **kwargs
        )


def kit_version() -> str:
    """Hash of everything that shapes the kit's files: this module, the converter, library versions."""
    import diffusers
    import transformers

    digest = hashlib.sha256()
    for path in (Path(__file__), REPO_ROOT / "webui" / "models" / "convert.py"):
        digest.update(path.read_bytes())
    for version in (torch.__version__, diffusers.__version__, transformers.__version__):
        digest.update(version.encode())
    return digest.hexdigest()[:12]


def kit_root(base: Path) -> Path:
    """The versioned folder under ``base`` that holds the current kit's files."""
    return Path(base) / f"v-{kit_version()}"


def tiny_model_paths(arch: str, root: Path) -> TinyModel:
    """Where ``build_tiny`` puts (or has put) the files for ``arch`` under ``root``."""
    if arch not in ARCHES:
        raise ValueError(f"unknown tiny arch {arch!r}; expected one of {ARCHES}")
    root = Path(root)
    checkpoints = root / "Stable-diffusion"
    return TinyModel(
        arch=arch,
        diffusers_dir=root / "diffusers" / f"tiny-{arch}",
        single_file=checkpoints / f"tiny-{arch}.safetensors",
        config_dir=checkpoints / f"tiny-{arch}.config",
    )


_PIPELINE_CLASSES = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
                     "sd15-inpaint": "StableDiffusionInpaintPipeline", "sdxl-inpaint": "StableDiffusionXLInpaintPipeline"}


def _scheduler(config_name: str):
    import diffusers

    folder = CONFIGS / config_name / "scheduler"
    cls = getattr(diffusers, json.loads((folder / "scheduler_config.json").read_text())["_class_name"])
    return cls.from_config(cls.load_config(str(folder)))


def _tokenizer(name: str):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(CONFIGS / "tokenizers" / name), model_max_length=77)


def _clip_config(hidden: int, layers: int, act: str, projection: int):
    from transformers import CLIPTextConfig

    # Token ids as in the real SD configs (eos 2 selects transformers' legacy
    # "argmax of input_ids" pooling, which is what SD checkpoints were trained with).
    return CLIPTextConfig(
        vocab_size=49408, max_position_embeddings=77, hidden_size=hidden,
        intermediate_size=hidden * 2, num_hidden_layers=layers, num_attention_heads=4,
        hidden_act=act, projection_dim=projection, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )


def _vae(scaling_factor: float, force_upcast: bool):
    from diffusers import AutoencoderKL

    # Two levels: images are latents x2 (not x8), so 64x64 images run a 32x32 UNet.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=32, sample_size=64,
        scaling_factor=scaling_factor, force_upcast=force_upcast,
    )


def _perturb(module: torch.nn.Module) -> torch.nn.Module:
    """Nudge every weight so no two tensors of one shape are equal.

    Fresh norms are all ones and many biases all zeros; a converter that swapped
    two of them would still round-trip. Noise makes the weight comparison strict.
    """
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return module.eval()


def _build_sd15(inpaint: bool = False):
    import diffusers
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    # Attention only on the 16x16 level: at 32x32 it made a 2-step generation
    # several times slower on a busy CPU. An inpainting UNet takes 9 channels:
    # latents, mask, masked-image latents.
    unet = _perturb(UNet2DConditionModel(
        sample_size=32, in_channels=9 if inpaint else 4, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=32,
    ))
    torch.manual_seed(1)
    vae = _perturb(_vae(0.18215, False))
    torch.manual_seed(2)
    text_encoder = _perturb(CLIPTextModel(_clip_config(32, 4, "quick_gelu", 32)))
    cls = diffusers.StableDiffusionInpaintPipeline if inpaint else diffusers.StableDiffusionPipeline
    return cls(
        vae=vae, text_encoder=text_encoder, tokenizer=_tokenizer("clip"), unet=unet,
        scheduler=_scheduler("sd15"), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl(inpaint: bool = False):
    import diffusers
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    time_dim, pooled_dim = 8, 32
    torch.manual_seed(10)
    # layers_per_block=1 (sd15 uses 2) so the fixtures cover the block arithmetic
    # both ways.
    unet = _perturb(UNet2DConditionModel(
        sample_size=32, in_channels=9 if inpaint else 4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4), use_linear_projection=True, cross_attention_dim=32 + 64,
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + pooled_dim, norm_num_groups=32,
    ))
    torch.manual_seed(11)
    vae = _perturb(_vae(0.13025, True))
    torch.manual_seed(12)
    text_encoder = _perturb(CLIPTextModel(_clip_config(32, 4, "quick_gelu", 32)))
    torch.manual_seed(13)
    # Wider than the first encoder (the single-file loader tells them apart by
    # width) and 10 layers deep so diffusers' own probe (resblocks.9) sees SDXL.
    text_encoder_2 = _perturb(CLIPTextModelWithProjection(_clip_config(64, 10, "gelu", pooled_dim)))
    cls = diffusers.StableDiffusionXLInpaintPipeline if inpaint else diffusers.StableDiffusionXLPipeline
    return cls(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=_tokenizer("clip"), tokenizer_2=_tokenizer("clip-pad-bang"), unet=unet,
        scheduler=_scheduler("sdxl"), force_zeros_for_empty_prompt=True,
    )


def build_pipeline(arch: str):
    """Build the tiny pipeline for ``arch`` in memory (seeded, deterministic)."""
    builders = {"sd15": _build_sd15, "sdxl": _build_sdxl, "sd15-inpaint": lambda: _build_sd15(inpaint=True),
                "sdxl-inpaint": lambda: _build_sdxl(inpaint=True)}
    if arch not in builders:
        raise ValueError(f"unknown tiny arch {arch!r}; expected one of {ARCHES}")
    return builders[arch]()


def _write(pipe, model: TinyModel) -> None:
    from webui.models.convert import save_a1111_checkpoint

    for stale in (model.diffusers_dir, model.config_dir):
        shutil.rmtree(stale, ignore_errors=True)
    pipe.save_pretrained(model.diffusers_dir, safe_serialization=True)
    # The sidecar is the diffusers folder minus its weights.
    weights = ("*.safetensors", "*.bin", "*.pt", "*.ckpt")
    shutil.copytree(model.diffusers_dir, model.config_dir, ignore=shutil.ignore_patterns(*weights))
    save_a1111_checkpoint(pipe, model.single_file, metadata={"tiny_kit_version": kit_version(),
                                                             "tiny_kit_arch": model.arch})


def _prune_old_versions(root: Path) -> None:
    base, now = root.parent, time.time()
    for sibling in base.glob("v-*"):
        if sibling != root and sibling.is_dir() and now - sibling.stat().st_mtime > _PRUNE_AFTER_S:
            shutil.rmtree(sibling, ignore_errors=True)


def build_tiny(arch: str, root: Path) -> TinyModel:
    """Build (or reuse from ``root``) the tiny ``arch`` model in all three forms.

    A stamp file holding ``kit_version()`` is written last, so an interrupted build
    is redone; a file lock serialises concurrent test processes sharing ``root``.
    """
    model = tiny_model_paths(arch, root)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = root / f".tiny-{arch}.done"
    version = kit_version()

    def ready() -> bool:
        return stamp.is_file() and stamp.read_text() == version and model.single_file.is_file()

    if ready():
        return model
    with open(root / f".tiny-{arch}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not ready():
                stamp.unlink(missing_ok=True)
                _write(build_pipeline(arch), model)
                stamp.write_text(version)
                if root.name == f"v-{version}":
                    _prune_old_versions(root)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return model


def assert_state_dicts_equal(expected: Mapping[str, torch.Tensor], actual: Mapping[str, torch.Tensor],
                             what: str) -> None:
    """Fail naming the first missing, extra, mis-shaped or differing tensor (exact equality)."""
    missing = sorted(set(expected) - set(actual))
    assert not missing, f"{what}: {len(missing)} tensors missing, first {missing[0]!r}"
    extra = sorted(set(actual) - set(expected))
    assert not extra, f"{what}: {len(extra)} unexpected tensors, first {extra[0]!r}"
    for name in expected:
        want, got = expected[name], actual[name]
        assert got.device.type != "meta", f"{what}: {name!r} was never loaded (still on meta device)"
        assert want.shape == got.shape, f"{what}: {name!r} shape {tuple(got.shape)} != {tuple(want.shape)}"
        assert torch.equal(want.to(got.device, got.dtype), got), (
            f"{what}: {name!r} differs (max abs diff "
            f"{(want.to(got.device, got.dtype) - got).abs().max().item():.3g})"
        )


def assert_same_weights(expected: torch.nn.Module, actual: torch.nn.Module, what: str) -> None:
    """Compare two modules' full state dicts tensor by tensor."""
    assert_state_dicts_equal(expected.state_dict(), actual.state_dict(), what)


def pipeline_components(pipe) -> dict[str, torch.nn.Module]:
    """The weight-bearing components of an SD / SDXL pipeline, by name."""
    names = ("unet", "vae", "text_encoder", "text_encoder_2")
    return {name: getattr(pipe, name) for name in names if getattr(pipe, name, None) is not None}


def describe(model: TinyModel) -> str:
    """One line for test logs: arch and file sizes."""
    size = model.single_file.stat().st_size if model.single_file.exists() else 0
    index = json.loads((model.config_dir / "model_index.json").read_text()) if model.config_dir.exists() else {}
    return f"tiny-{model.arch}: {index.get('_class_name', '?')}, single file {size / 1e6:.1f} MB"
