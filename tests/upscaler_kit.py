"""Tiny random upscalers of spandrel's own architectures, written as A1111 would find them."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from webui.models.upscalers import import_spandrel


def tiny_esrgan(scale: int = 4):
    """ESRGAN (RRDBNet) with 8 filters and one block: spandrel detects it from the keys."""
    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    return ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale).eval()


def tiny_compact(scale: int = 2):
    """Real-ESRGAN's compact SRVGG net with 8 features and two convs."""
    import_spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(1)
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=scale).eval()


class _Evil:
    def __reduce__(self):
        return (print, ("this pickle runs code",))


def write_upscalers(models_dir: Path, bad_files: bool = True) -> Path:
    """models/ESRGAN/tiny-esrgan-4x.pth and models/RealESRGAN/tiny-compact-2x.safetensors (+ bad files)."""
    from safetensors.torch import save_file

    (models_dir / "ESRGAN").mkdir(parents=True, exist_ok=True)
    (models_dir / "RealESRGAN").mkdir(parents=True, exist_ok=True)
    torch.save(tiny_esrgan().state_dict(), models_dir / "ESRGAN" / "tiny-esrgan-4x.pth")
    save_file({k: v.contiguous() for k, v in tiny_compact().state_dict().items()},
              str(models_dir / "RealESRGAN" / "tiny-compact-2x.safetensors"))
    if bad_files:
        (models_dir / "ESRGAN" / "corrupt.safetensors").write_bytes(b"\x00" * 100)
        save_file({"not_a_model.weight": torch.zeros(3, 3)}, str(models_dir / "ESRGAN" / "unknown-arch.safetensors"))
        with open(models_dir / "ESRGAN" / "pickled-code.pth", "wb") as handle:
            pickle.dump({"x": _Evil()}, handle)
    return models_dir
