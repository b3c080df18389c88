"""LoRA training step time: our trainer against a bare diffusers + peft loop, same model, batch and size.

Both sides do the same work per step: load and VAE-encode the batch (no latent cache), encode the
captions with the frozen text encoder, noise, UNet forward + backward through LoRA layers on the
same modules with the same rank, clip, AdamW step. Ours goes through ``LoraTrainer`` (dataset,
buckets, caption handling, the shared loop); the baseline is the loop of diffusers'
``train_text_to_image_lora.py`` written out. Blocks of steps alternate (ours, bare, ours, ...) on
one loaded model so machine load hits both alike; the first step of each block is dropped and the
medians compared.

    .venv/bin/python tools/make_random_sd15.py          # once: real-size SD 1.5, random weights (2 GB)
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/train_speed.py [--ckpt FILE] [--size 256]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webui.allocator import configure_allocator  # noqa: E402

configure_allocator()  # as app.py does, before torch and before any thread: training runs on the job worker

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from webui.context import context_from_flags  # noqa: E402
from webui.training.diffusion import noise_scheduler_for  # noqa: E402
from webui.training.lora import LoRANetwork, NetworkSpec  # noqa: E402
from webui.training.settings import LoraSettings  # noqa: E402
from webui.training.shapes import random_spec, render  # noqa: E402

DEFAULT_CKPT = ROOT / "tmp" / "random-sd15" / "random-sd15.safetensors"


def make_dataset(folder: Path, size: int, count: int = 8) -> Path:
    rng = random.Random(0)
    for i in range(count):
        render(random_spec(rng)).resize((size, size)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"a shape number {i}, flat colours")
    return folder


def ours(ctx, data: Path, args, block: int) -> list[float]:
    """Per-step seconds of one block as the app runs it: a train-lora job on the queue's worker thread
    (loss.csv's sec_per_step, log_every=1)."""
    s = LoraSettings(name=f"bench-{block}", data_dir=str(data), rank=args.rank, alpha=args.rank, unet_lr=1e-4,
                     text_encoder_lr=0, max_train_steps=args.steps, batch_size=args.batch, resolution=args.size,
                     cache_latents=False, min_snr_gamma=0, save_every_n_steps=0, sample_every_n_steps=0,
                     overwrite=True, seed=block).validate()
    state = ctx.training.submit_lora(s, ctx.queue, source="bench").job.wait()
    rows = (state.run_dir / "loss.csv").read_text().splitlines()[1:]
    return [float(r.split(",")[3]) for r in rows]


def bare(model, data: Path, args, targets: list[str], block: int) -> list[float]:
    """Per-step seconds of the diffusers + peft loop (train_text_to_image_lora.py's step, written out)."""
    from peft import LoraConfig
    from PIL import Image

    pipe = model.pipe
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                target_modules=targets), adapter_name="bench")
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    noise_scheduler = noise_scheduler_for(model.scheduler_config)
    files = sorted(data.glob("*.png"))
    gen = torch.Generator().manual_seed(block)
    unet.train()
    times = []
    try:
        for step in range(args.steps):
            t0 = time.perf_counter()
            batch = [files[(step * args.batch + i) % len(files)] for i in range(args.batch)]
            pixels = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB").resize(
                (args.size, args.size)), dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1 for f in batch])
            captions = [f.with_suffix(".txt").read_text() for f in batch]
            with torch.no_grad():
                latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.sample(gen) * vae.config.scaling_factor
                ids = tokenizer(captions, padding="max_length", max_length=77, truncation=True,
                                return_tensors="pt").input_ids
                cond = text_encoder(ids.to(text_encoder.device))[0]
            noise = torch.randn(latents.shape, generator=gen)
            timesteps = torch.randint(0, 1000, (latents.shape[0],), generator=gen)
            noisy = noise_scheduler.add_noise(latents, noise, timesteps)
            pred = unet(noisy, timesteps, cond).sample
            loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            lr_sched.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
    finally:
        unet.unload_lora()
        unet.eval()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="steps per block (the first is dropped)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not args.ckpt.exists():
        sys.exit(f"{args.ckpt} is missing: run tools/make_random_sd15.py first (or pass --ckpt)")
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    data = make_dataset(Path(tempfile.mkdtemp(prefix="bench-data-")), args.size)
    ctx = context_from_flags(["--data-dir", str(work), "--ckpt-dir", str(args.ckpt.parent), "--ckpt", str(args.ckpt)])
    load = os.getloadavg()
    model = ctx.models.current()
    # One loaded model for both sides: ours runs as a queue job (the worker thread), bare in this thread.
    pipe = model.pipe
    targets = list(LoRANetwork(NetworkSpec(rank=args.rank, text_encoder=False), model.arch, pipe.unet).paths.values())
    results: dict[str, list[float]] = {"ours": [], "bare": []}
    peaks: dict[str, list[float]] = {"ours": [], "bare": []}
    for block in range(args.rounds):
        for name in ("ours", "bare"):
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            times = ours(ctx, data, args, block) if name == "ours" else bare(model, data, args, targets, block)
            results[name] += times[1:]
            if torch.cuda.is_available():
                peaks[name].append(torch.cuda.max_memory_allocated() / 2**30)
            print(f"[{name} block {block}] " + " ".join(f"{t:.2f}" for t in times), flush=True)
    ctx.queue.stop()
    o, b = statistics.median(results["ours"]), statistics.median(results["bare"])
    print(f"model: {model.info.title} ({model.arch}), {args.size}x{args.size}, batch {args.batch}, rank {args.rank}, "
          f"{len(targets)} LoRA layers, device {ctx.policy.device}, threads {args.threads}, "
          f"load average at start {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, end {os.getloadavg()[0]:.1f}")
    print(f"bare diffusers + peft:  median {b:.3f} s/step over {len(results['bare'])} steps")
    print(f"ours (train-lora job): median {o:.3f} s/step over {len(results['ours'])} steps")
    if peaks["ours"]:
        print(f"peak CUDA memory: ours {max(peaks['ours']):.2f} GiB, bare {max(peaks['bare']):.2f} GiB")
    print(f"ratio ours/bare: {o / b:.3f}x")


if __name__ == "__main__":
    main()
