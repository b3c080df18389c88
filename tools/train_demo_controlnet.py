"""Train the bundled demo ControlNet for the demo model (coloured shapes), from its shipped file.

One command, seeded and resumable:

    .venv/bin/python tools/train_demo_controlnet.py [--out work-demo-controlnet] [--resume]

Stages, each checkpointed under ``--out`` by ``webui.training.loop``:
  1. latent pool: seeded shape specs encoded once with the demo model's frozen VAE;
  2. ``controlnet/``: a ``ControlNetModel.from_unet`` copy of the demo UNet's encoder, trained
     with the UNet and text encoder frozen, on canny and scribble maps of each spec
     (``webui.training.shapes_control``), so the map decides where the shape goes and which
     shape it is, and the prompt its colour;
  3. export: the EMA weights as an A1111 single file (``control_model.*`` keys, fp16) plus a
     weightless sidecar config in ``models/ControlNet``.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusers import ControlNetModel, DDPMScheduler  # noqa: E402

from webui.training.loop import LoopConfig, TrainLoop  # noqa: E402
from webui.training.shapes import random_caption, random_spec, render  # noqa: E402
from webui.training.shapes_control import control_map  # noqa: E402

DEMO_MODEL = ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
SHIP_DIR = ROOT / "models" / "ControlNet"
SHIP_STEM = "demo-shapes-canny-scribble"
# Two stride-2 stages: the demo VAE downsamples 4x (64 px -> 16x16 latents), not SD's 8x.
HINT_CHANNELS = (16, 32, 96)


def load_demo(model: Path):
    """The shipped demo model as a float32 pipeline (frozen)."""
    from webui.models.loader import load_pipeline

    pipe, _ = load_pipeline(model, torch_dtype=torch.float32)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.requires_grad_(False).eval()
    return pipe


def build_controlnet(unet) -> ControlNetModel:
    """The UNet's encoder copied into a ControlNet (zero convs start at zero, as in the paper)."""
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS)


@torch.no_grad()
def latent_pool(args, vae) -> tuple[torch.Tensor, list]:
    """Encode a fixed, seeded pool of shape images once (cached on disk for resume)."""
    path = Path(args.out) / f"pool-{args.pool}-{args.seed}.pt"
    rng = random.Random(args.seed * 31 + 7)
    specs = [random_spec(rng) for _ in range(args.pool)]
    if path.exists():
        return torch.load(path, weights_only=True), specs
    chunks = []
    for i in range(0, args.pool, 256):
        imgs = np.stack([np.asarray(render(sp), dtype=np.float32) for sp in specs[i:i + 256]])
        x = torch.from_numpy(imgs.transpose(0, 3, 1, 2) / 127.5 - 1.0)
        chunks.append(vae.encode(x).latent_dist.mean.to(torch.float16))
        print(f"[pool] {i + len(chunks[-1])}/{args.pool}", flush=True)
    pool = torch.cat(chunks)
    tmp = path.with_suffix(".tmp")
    torch.save(pool, tmp)
    tmp.replace(path)
    return pool, specs


def maps_tensor(specs, rng: random.Random) -> torch.Tensor:
    """Control maps as the pipeline feeds them: RGB float in [0, 1], NCHW."""
    maps = np.stack([control_map(sp, rng) for sp in specs]).astype(np.float32) / 255.0
    return torch.from_numpy(maps)[:, None].expand(-1, 3, -1, -1).contiguous()


def make_step_fn(args, pipe, controlnet, pool, specs):
    """Epsilon objective with min-SNR-5 weighting; only the ControlNet gets gradients."""
    schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    alphas = schedule.alphas_cumprod
    snr = alphas / (1 - alphas)
    weight = torch.clamp(snr, max=5.0) / snr
    scaling = pipe.vae.config.scaling_factor
    token_cache: dict[str, list[int]] = {}

    def tokens(captions: list[str]) -> torch.Tensor:
        missing = [c for c in set(captions) if c not in token_cache]
        if missing:
            ids = pipe.tokenizer(missing, padding="max_length", max_length=77, truncation=True).input_ids
            token_cache.update(zip(missing, ids))
        return torch.tensor([token_cache[c] for c in captions])

    def step_fn(step: int) -> torch.Tensor:
        rng = random.Random(args.seed * 1_000_003 + step)
        idx = [rng.randrange(len(specs)) for _ in range(args.batch)]
        batch_specs = [specs[i] for i in idx]
        captions = ["" if rng.random() < args.caption_dropout else random_caption(sp, rng) for sp in batch_specs]
        maps = maps_tensor(batch_specs, rng)
        gen = torch.Generator().manual_seed(args.seed * 7_777_777 + step)
        latents = pool[idx].float() * scaling
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, schedule.config.num_train_timesteps, (args.batch,), generator=gen)
        noisy = schedule.add_noise(latents, noise, t)
        with torch.no_grad():
            cond = pipe.text_encoder(tokens(captions))[0]
        down, mid = controlnet(noisy, t, cond, controlnet_cond=maps, return_dict=False)
        pred = pipe.unet(noisy, t, cond, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample
        per_sample = (pred - noise).pow(2).mean(dim=(1, 2, 3))
        return (per_sample * weight[t]).mean()

    return step_fn


def export(args, controlnet_dir: Path | None = None) -> Path:
    """``<out>/controlnet`` (diffusers, EMA weights) -> A1111 single file (fp16) + sidecar config."""
    from safetensors.torch import save_file

    from webui.models.controlnet_convert import controlnet_to_ldm

    source = controlnet_dir or Path(args.out) / "controlnet"
    model = ControlNetModel.from_pretrained(source, local_files_only=True)
    ship = Path(args.ship_dir)
    ship.mkdir(parents=True, exist_ok=True)
    target = ship / f"{SHIP_STEM}.safetensors"
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in controlnet_to_ldm(model).items()}
    save_file(tensors, str(target), metadata={"trained_by": "tools/train_demo_controlnet.py",
                                               "base_model": "demo-shapes"})
    target.chmod(0o644)  # safetensors writes 0600; the shipped file is read by everyone
    sidecar = ship / f"{SHIP_STEM}.config"
    shutil.rmtree(sidecar, ignore_errors=True)
    sidecar.mkdir()
    shutil.copy(source / "config.json", sidecar / "config.json")
    print(f"[export] {target} ({target.stat().st_size / 1e6:.1f} MB) + {sidecar.name}/config.json", flush=True)
    return target


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line flags; defaults are the shipped recipe."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="work-demo-controlnet", help="working folder for checkpoints and logs")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--model", default=str(DEMO_MODEL), help="the demo checkpoint the ControlNet is for")
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument("--pool", type=int, default=16384, help="number of pre-encoded training images")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--caption-dropout", type=float, default=0.1)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest on a shared machine)")
    p.add_argument("--ship-dir", default=str(SHIP_DIR))
    p.add_argument("--no-export", action="store_true", help="stop after training (diffusers folder only)")
    p.add_argument("--export-only", action="store_true", help="only export <out>/controlnet to --ship-dir")
    return p.parse_args(argv)


def main(argv=None) -> None:
    """Run every stage; with --resume the training continues where it stopped."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.export_only:
        export(args)
        return
    if not args.resume:
        for stage in ["controlnet-train", "controlnet"]:
            shutil.rmtree(out / stage, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.json").write_text(json.dumps(vars(args), indent=2))
    t0 = time.time()
    torch.manual_seed(args.seed)
    pipe = load_demo(Path(args.model))
    controlnet = build_controlnet(pipe.unet)
    print(f"[params] controlnet {sum(p.numel() for p in controlnet.parameters()) / 1e6:.2f}M", flush=True)
    pool, specs = latent_pool(args, pipe.vae)
    print(f"[pool] {len(specs)} latents ready ({time.time() - t0:.0f}s)", flush=True)

    cfg = LoopConfig(out_dir=out / "controlnet-train", max_steps=args.steps, lr=args.lr,
                     warmup_steps=args.warmup, save_every=args.save_every, log_every=25, ema_max_decay=0.998)
    loop = TrainLoop(cfg, {"controlnet": controlnet}, list(controlnet.parameters()),
                     make_step_fn(args, pipe, controlnet, pool, specs))

    def save(lp: TrainLoop, step: int) -> None:
        # EMA weights are what ships; they are swapped in only while saving.
        with lp.export_weights():
            tmp = out / "controlnet.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            controlnet.save_pretrained(tmp, safe_serialization=True)
            shutil.rmtree(out / "controlnet", ignore_errors=True)
            tmp.rename(out / "controlnet")

    loop.on_checkpoint = save
    loop.run(resume=True, desc="controlnet")
    print(f"[train] done in {time.time() - t0:.0f}s", flush=True)
    if not args.no_export:
        export(args)


if __name__ == "__main__":
    main()
