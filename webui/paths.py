"""Where things live: A1111's folder layout under one data dir, overridable per flag."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Paths:
    """Every folder and file the app reads or writes, resolved once at start."""

    data_dir: Path
    ckpt_dir: Path
    vae_dir: Path
    lora_dir: Path
    embeddings_dir: Path
    controlnet_dir: Path
    outputs_dir: Path
    config_file: Path
    styles_file: Path
    cache_file: Path
    models_dir: Path | None = None  # DATA/models: upscaler folders (ESRGAN, SwinIR, ...) live under it
    upscaler_dirs: tuple[tuple[str, Path], ...] = ()  # folders moved by --esrgan-models-path & co.
    configs_dir: Path = REPO_ROOT / "configs"
    # The demo model ships with the repo; it stays findable when --data-dir points elsewhere.
    bundled_ckpt_dir: Path = REPO_ROOT / "models" / "Stable-diffusion"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Paths":
        """Resolve folders from flags; a flag wins over the data-dir default."""
        data = (args.data_dir or REPO_ROOT).resolve()

        def pick(flag: Path | None, default: Path) -> Path:
            return (flag or default).resolve()

        return cls(
            data_dir=data,
            ckpt_dir=pick(args.ckpt_dir, data / "models" / "Stable-diffusion"),
            vae_dir=pick(args.vae_dir, data / "models" / "VAE"),
            lora_dir=pick(args.lora_dir, data / "models" / "Lora"),
            embeddings_dir=pick(args.embeddings_dir, data / "embeddings"),
            controlnet_dir=pick(args.controlnet_dir, data / "models" / "ControlNet"),
            outputs_dir=data / "outputs",
            config_file=data / "config.json",
            styles_file=data / "styles.csv",
            cache_file=data / "cache.json",
            models_dir=data / "models",
            upscaler_dirs=tuple((name, Path(getattr(args, f"{name.lower()}_models_path")).resolve())
                                for name in ("ESRGAN", "RealESRGAN", "SwinIR", "DAT")
                                if getattr(args, f"{name.lower()}_models_path", None)),
        )

    def ensure(self) -> None:
        """Create the user folders so a newcomer sees where files go."""
        for folder in (self.ckpt_dir, self.vae_dir, self.lora_dir, self.embeddings_dir,
                       self.controlnet_dir, self.outputs_dir):
            folder.mkdir(parents=True, exist_ok=True)
