"""Train the bundled demo model (coloured shapes, SD 1.x family) from scratch.

One command, seeded and resumable:

    .venv/bin/python tools/train_demo.py [--out work-demo] [--resume]

Stages, each checkpointed under ``--out`` by ``webui.training.loop``:
  1. ``vae/``   AutoencoderKL on 64x64 shape images (then frozen);
  2. latent pool: a fixed set of shape specs encoded once, because encoding on
     every step would cost about a third of the diffusion step on CPU;
  3. ``unet/``  UNet2DConditionModel + CLIPTextModel trained jointly with
     caption dropout (so CFG and negative prompts work);
  4. export: diffusers pipeline in ``<out>/pipeline`` and the shipped A1111
     single file + sidecar config in ``models/Stable-diffusion``.
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

from diffusers import AutoencoderKL, DDPMScheduler, EulerAncestralDiscreteScheduler, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

from webui.training.loop import LoopConfig, TrainLoop  # noqa: E402
from webui.training.shapes import make_batch, random_caption, random_spec, render  # noqa: E402

TOKENIZER_DIR = ROOT / "configs" / "tokenizers" / "clip"
SHIP_DIR = ROOT / "models" / "Stable-diffusion"
SHIP_STEM = "demo-shapes"

# SD 1.x noise schedule, so the shipped model behaves like any SD 1.5 checkpoint.
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                prediction_type="epsilon", clip_sample=False, steps_offset=1, timestep_spacing="leading")


def build_vae() -> AutoencoderKL:
    """4x-downsampling AE: 64x64 pixels <-> 4x16x16 latents (SD uses 8x; 4x keeps shape edges crisp)."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
        block_out_channels=[16, 32, 64], layers_per_block=1, norm_num_groups=8,
    )


def build_text_encoder() -> CLIPTextModel:
    """A 64-wide, 2-layer causal CLIP text encoder over the real 49408-token vocabulary."""
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=64,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))


def build_unet() -> UNet2DConditionModel:
    """A small SD-1.x-style UNet: cross-attention at the two lower levels and the mid block.

    Standard block types only, so the LDM single-file converters map every weight.
    """
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 128), cross_attention_dim=64, attention_head_dim=4,
        norm_num_groups=16,
    )


def n_params(module: torch.nn.Module) -> float:
    """Parameter count in millions."""
    return sum(p.numel() for p in module.parameters()) / 1e6


# ------------------------------------------------------------------ stage 1

def train_vae(args, vae: AutoencoderKL) -> None:
    """Train the AE on freshly drawn images: L1 + L2 reconstruction, a whisper of KL."""

    def step_fn(step: int) -> torch.Tensor:
        x = torch.from_numpy(make_batch(args.seed * 7_919 + step, args.vae_batch)[0])
        gen = torch.Generator().manual_seed(args.seed * 104_729 + step)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        y = vae.decode(z).sample
        return (y - x).abs().mean() + (y - x).pow(2).mean() + 1e-6 * post.kl().mean()

    cfg = LoopConfig(out_dir=Path(args.out) / "vae", max_steps=args.vae_steps, lr=2e-3, warmup_steps=50,
                     save_every=200, log_every=20)
    TrainLoop(cfg, {"vae": vae}, list(vae.parameters()), step_fn).run(resume=True, desc="vae")


@torch.no_grad()
def vae_report(vae: AutoencoderKL, n: int = 128) -> dict:
    """Classifier accuracy on AE reconstructions: the ceiling for the whole model."""
    from PIL import Image

    from webui.training.shapes import classify

    x, _, specs = make_batch(987_654, n)
    y = vae.decode(vae.encode(torch.from_numpy(x)).latent_dist.mean).sample
    arr = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    readings = [classify(Image.fromarray(a)) for a in arr]
    return {"colour": sum(r.colour == sp.colour for r, sp in zip(readings, specs)) / n,
            "shape": sum(r.shape == sp.shape for r, sp in zip(readings, specs)) / n}


# ------------------------------------------------------------------ stage 2

@torch.no_grad()
def latent_pool(args, vae: AutoencoderKL) -> tuple[torch.Tensor, list]:
    """Encode a fixed, seeded pool of shape images once (cached on disk for resume)."""
    path = Path(args.out) / f"pool-{args.pool}.pt"
    rng = random.Random(args.seed * 31 + 1)
    specs = [random_spec(rng) for _ in range(args.pool)]
    if path.exists():
        return torch.load(path, weights_only=True), specs
    vae.eval()
    chunks = []
    for i in range(0, args.pool, 256):
        imgs = np.stack([np.asarray(render(sp), dtype=np.float32) for sp in specs[i:i + 256]])
        x = torch.from_numpy(imgs.transpose(0, 3, 1, 2) / 127.5 - 1.0)
        chunks.append(vae.encode(x).latent_dist.mean.to(torch.float16))
        print(f"[pool] {i + len(chunks[-1])}/{args.pool}", flush=True)
    pool = torch.cat(chunks)
    torch.save(pool, path)
    return pool, specs


# ------------------------------------------------------------------ stage 3

def train_unet(args, unet, text_encoder, tokenizer, pool, specs, scaling_factor: float) -> TrainLoop:
    """Joint UNet + text encoder training on the latent pool, epsilon objective with min-SNR weighting."""
    noise_sched = DDPMScheduler(**SCHEDULE)
    alphas = noise_sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    # min-SNR-5 weighting (Hang et al. 2023) stops easy low-noise steps dominating; faster convergence.
    weight = torch.clamp(snr, max=5.0) / snr
    token_cache: dict[str, list[int]] = {}

    def tokens(captions: list[str]) -> torch.Tensor:
        missing = [c for c in set(captions) if c not in token_cache]
        if missing:
            # Same padding as the pipeline at inference (77, EOS-padded), so no train/test mismatch.
            ids = tokenizer(missing, padding="max_length", max_length=77, truncation=True).input_ids
            token_cache.update(zip(missing, ids))
        return torch.tensor([token_cache[c] for c in captions])

    def step_fn(step: int) -> torch.Tensor:
        rng = random.Random(args.seed * 1_000_003 + step)
        idx = [rng.randrange(len(specs)) for _ in range(args.batch)]
        captions = ["" if rng.random() < args.caption_dropout else random_caption(specs[i], rng) for i in idx]
        gen = torch.Generator().manual_seed(args.seed * 7_777_777 + step)
        latents = pool[idx].float() * scaling_factor
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        noisy = noise_sched.add_noise(latents, noise, t)
        cond = text_encoder(tokens(captions))[0]
        pred = unet(noisy, t, cond).sample
        per_sample = (pred - noise).pow(2).mean(dim=(1, 2, 3))
        return (per_sample * weight[t]).mean()

    cfg = LoopConfig(out_dir=Path(args.out) / "unet", max_steps=args.steps, lr=args.lr, warmup_steps=200,
                     save_every=250, log_every=25, ema_max_decay=0.998,
                     extra={"scaling_factor": scaling_factor})
    return TrainLoop(cfg, {"unet": unet, "text_encoder": text_encoder},
                     list(unet.parameters()) + list(text_encoder.parameters()), step_fn)


# ------------------------------------------------------------------ stage 4

def scheduler_config() -> dict:
    """Default sampler for the shipped model: Euler a (A1111's default), SD 1.x schedule."""
    return EulerAncestralDiscreteScheduler(**{k: v for k, v in SCHEDULE.items() if k != "clip_sample"}).config


def save_pipeline(path: Path, unet, vae, text_encoder, tokenizer) -> None:
    """Write a diffusers-layout StableDiffusionPipeline folder (weights included)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=EulerAncestralDiscreteScheduler.from_config(scheduler_config()),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)


def write_sidecar_config(pipeline_dir: Path, config_dir: Path) -> None:
    """The `<stem>.config/` folder: diffusers-layout configs and tokenizer, no weights."""
    if config_dir.exists():
        shutil.rmtree(config_dir)
    config_dir.mkdir(parents=True)
    index = json.loads((pipeline_dir / "model_index.json").read_text())
    index["safety_checker"] = [None, None]
    index["feature_extractor"] = [None, None]
    index["requires_safety_checker"] = False
    (config_dir / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    for sub, name in [("unet", "config.json"), ("vae", "config.json"), ("text_encoder", "config.json"),
                      ("scheduler", "scheduler_config.json")]:
        (config_dir / sub).mkdir()
        shutil.copy(pipeline_dir / sub / name, config_dir / sub / name)
    # Euler a has no clip_sample/set_alpha_to_one, but a sampler switch builds DDIM/PNDM from
    # this config, whose defaults (clip_sample=True) would wreck SD latents; SD 1.5's own file
    # carries these keys for the same reason.
    sched_path = config_dir / "scheduler" / "scheduler_config.json"
    sched = json.loads(sched_path.read_text())
    sched.update(clip_sample=False, set_alpha_to_one=False, skip_prk_steps=True)
    sched_path.write_text(json.dumps(sched, indent=2, sort_keys=True) + "\n")
    shutil.copytree(TOKENIZER_DIR, config_dir / "tokenizer")


def export(args) -> Path:
    """Diffusers pipeline folder -> A1111 single file (fp16, LDM key names) + sidecar config."""
    from diffusers import StableDiffusionPipeline

    from webui.models.convert import save_a1111_checkpoint  # written by the model-loading issue

    pipeline_dir = Path(args.out) / "pipeline"
    pipe = StableDiffusionPipeline.from_pretrained(pipeline_dir, local_files_only=True)
    out_dir = Path(args.ship_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{SHIP_STEM}.safetensors"
    save_a1111_checkpoint(pipe, target, dtype=torch.float16)
    write_sidecar_config(pipeline_dir, out_dir / f"{SHIP_STEM}.config")
    print(f"[export] {target} ({target.stat().st_size / 1e6:.1f} MB)", flush=True)
    return target


# ------------------------------------------------------------------ main

def parse_args(argv=None) -> argparse.Namespace:
    """Command-line flags; defaults are the shipped recipe."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="work-demo", help="working folder for checkpoints and logs")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoints in --out")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--vae-steps", type=int, default=500)
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--pool", type=int, default=16384, help="number of pre-encoded training images")
    p.add_argument("--steps", type=int, default=7000, help="UNet + text encoder steps")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--caption-dropout", type=float, default=0.1)
    # One thread by default: on a shared 2-core machine two OpenMP threads spin-wait
    # on each other and ran a step 1.5x slower than one (measured).
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ship-dir", default=str(SHIP_DIR))
    p.add_argument("--no-export", action="store_true", help="stop after training (pipeline folder only)")
    p.add_argument("--export-only", action="store_true", help="only export <out>/pipeline to the shipped files")
    return p.parse_args(argv)


def main(argv=None) -> None:
    """Run every stage; with --resume each stage continues where it stopped."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.export_only:
        export(args)
        return
    if not args.resume:
        # A fresh run starts from nothing, for reproducibility; other files in
        # --out (such as a redirected train.log) are left alone.
        for stage in ["vae", "unet", "pipeline"]:
            shutil.rmtree(out / stage, ignore_errors=True)
        for pool_file in out.glob("pool-*.pt"):
            pool_file.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.json").write_text(json.dumps(vars(args), indent=2))
    t0 = time.time()
    torch.manual_seed(args.seed)
    vae, text_encoder, unet = build_vae(), build_text_encoder(), build_unet()
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    print(f"[params] vae {n_params(vae):.2f}M  text_encoder {n_params(text_encoder):.2f}M  "
          f"unet {n_params(unet):.2f}M", flush=True)

    train_vae(args, vae)
    vae.requires_grad_(False).eval()
    print(f"[vae] reconstruction read back by the classifier: {vae_report(vae)}", flush=True)
    pool, specs = latent_pool(args, vae)
    scaling_factor = float(1.0 / pool.float().std())
    vae.register_to_config(scaling_factor=scaling_factor)
    print(f"[pool] latent std -> scaling_factor {scaling_factor:.4f}  ({time.time() - t0:.0f}s)", flush=True)

    loop = train_unet(args, unet, text_encoder, tokenizer, pool, specs, scaling_factor)
    loop.on_checkpoint = lambda lp, step: _save_from_loop(lp, out / "pipeline", unet, vae, text_encoder, tokenizer)
    loop.run(resume=True, desc="unet")
    print(f"[train] done in {time.time() - t0:.0f}s", flush=True)
    if not args.no_export:
        export(args)


def _save_from_loop(loop: TrainLoop, path: Path, unet, vae, text_encoder, tokenizer) -> None:
    # EMA weights are what ships; they are swapped in only while saving.
    with loop.export_weights():
        save_pipeline(path, unet, vae, text_encoder, tokenizer)


if __name__ == "__main__":
    main()
