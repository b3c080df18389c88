"""Write an A1111-style SD 1.5 checkpoint with the real architecture and random weights (about 2 GB).

It exercises the model manager at full size without downloading anything: the probe must pick
configs/sd15 from the tensor shapes alone (no sidecar is written), and load time and peak RAM
are those of a real SD 1.5 file. The images it makes are noise.

    .venv/bin/python tools/make_random_sd15.py [--out tmp/random-sd15/random-sd15.safetensors]

The default output lies under tmp/, which git ignores; never commit the file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

DEFAULT_OUT = REPO / "tmp" / "random-sd15" / "random-sd15.safetensors"


def build(config_dir: Path, seed: int = 0) -> SimpleNamespace:
    """The SD 1.5 UNet, VAE and CLIP text encoder from their configs, random, in float16.

    Each part is cast to half as soon as it is built, so peak RAM stays near one float32 UNet.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(config_dir / "unet"))).half()
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(config_dir / "vae"))).half()
    text_config = CLIPTextConfig(**json.loads((config_dir / "text_encoder" / "config.json").read_text()))
    text_encoder = CLIPTextModel(text_config).half()
    # pipeline_to_ldm only reads these attributes; no tokenizer or scheduler is needed to export.
    return SimpleNamespace(unet=unet.eval(), vae=vae.eval(), text_encoder=text_encoder.eval(), text_encoder_2=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the .safetensors file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even if the file exists")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"{args.out} exists ({args.out.stat().st_size / 1e9:.2f} GB); --force rebuilds it")
        return 0
    from webui.models.convert import save_a1111_checkpoint

    started = time.perf_counter()
    parts = build(REPO / "configs" / "sd15", args.seed)
    built = time.perf_counter()
    save_a1111_checkpoint(parts, args.out, dtype=torch.float16, metadata={"source": "tools/make_random_sd15.py",
                                                                          "seed": args.seed})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e9:.2f} GB): built in {built - started:.0f}s, "
          f"saved in {time.perf_counter() - built:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
