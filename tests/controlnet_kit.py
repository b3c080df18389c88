"""Tiny seeded ControlNets for the tiny kit models, written in every on-disk form the loader reads.

For each kit arch: a diffusers folder, an A1111 single file (``control_model.*`` keys) and a
``.pth`` without the prefix (both with a ``<stem>.config/`` sidecar), and a diffusers-keyed
``.safetensors``. The kit's VAE downsamples 2x, so the hint encoder has one stride-2 stage.
"""
from __future__ import annotations

import fcntl
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class TinyControlNet:
    arch: str
    folder: Path  # holds every form; also a models/ControlNet folder for the manager
    diffusers_dir: Path
    ldm_file: Path
    pth_file: Path
    diffusers_file: Path

    def load_reference(self):
        from diffusers import ControlNetModel

        return ControlNetModel.from_pretrained(self.diffusers_dir, local_files_only=True)


def _version() -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in (Path(__file__), Path(__file__).parents[1] / "webui" / "models" / "controlnet_convert.py"):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def build_controlnet(pipe, seed: int = 5):
    """A ControlNet copied from the tiny UNet, every weight nudged (zero convs included) so it acts."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    model = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


def build_tiny_controlnet(arch: str, pipe, root: Path) -> TinyControlNet:
    """Write (once per kit version) the tiny ControlNet for ``arch`` under ``root``."""
    from safetensors.torch import save_file

    from webui.models.controlnet_convert import controlnet_to_ldm

    folder = Path(root) / f"controlnet-{arch}-{_version()}"
    stem = f"tiny-{arch}-canny"
    cn = TinyControlNet(arch, folder, folder / f"{stem}-diffusers", folder / f"{stem}.safetensors",
                        folder / f"{stem}-ldm.pth", folder / f"{stem}-keys.safetensors")
    stamp = folder / ".done"
    if stamp.is_file():
        return cn
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not stamp.is_file():
                model = build_controlnet(pipe)
                shutil.rmtree(cn.diffusers_dir, ignore_errors=True)
                model.save_pretrained(cn.diffusers_dir, safe_serialization=True)
                ldm = {k: v.contiguous() for k, v in controlnet_to_ldm(model).items()}
                save_file(ldm, str(cn.ldm_file))
                torch.save({"state_dict": {k[len("control_model."):]: v for k, v in ldm.items()}}, cn.pth_file)
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(cn.diffusers_file))
                for file in (cn.ldm_file, cn.pth_file, cn.diffusers_file):
                    sidecar = file.with_name(file.stem + ".config")
                    sidecar.mkdir(exist_ok=True)
                    shutil.copy(cn.diffusers_dir / "config.json", sidecar / "config.json")
                stamp.write_text("ok")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return cn
