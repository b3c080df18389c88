"""Write the offline ControlNet architecture configs in configs/controlnet-<family>/config.json.

A ControlNet copies its base UNet's encoder, so each config is derived from the project's own
UNet config for that family with ``ControlNetModel.from_unet`` on empty (meta) weights; nothing
is fetched. Standard 8x hint encoder (16, 32, 96, 256 channels), RGB conditioning, as in the
published SD 1.5 (lllyasviel), SD 2.1 (thibaud) and SDXL (diffusers) ControlNets. The output is
committed; rerun after editing.

    .venv/bin/python tools/build_controlnet_configs.py
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# ControlNet family -> the UNet config folder it is derived from.
FAMILIES = {"sd15": "sd15", "sd2": "sd2-v", "sdxl": "sdxl"}


def controlnet_config(unet_folder: str) -> dict:
    """The ControlNetModel config for a UNet config folder under configs/."""
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet_config = UNet2DConditionModel.load_config(str(CONFIGS / unet_folder / "unet"))
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(unet_config)
        controlnet = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
    config = {k: v for k, v in dict(controlnet.config).items() if not k.startswith("_") or k == "_class_name"}
    config["_class_name"] = "ControlNetModel"
    return config


def main() -> None:
    for family, unet_folder in FAMILIES.items():
        out = CONFIGS / f"controlnet-{family}"
        out.mkdir(parents=True, exist_ok=True)
        config = controlnet_config(unet_folder)
        (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        print(f"wrote {out / 'config.json'}")


if __name__ == "__main__":
    main()
