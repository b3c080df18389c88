"""Train the demo LoRA: teach the bundled demo model "pink" and "cyan", with the Train tab's trainer.

    .venv/bin/python tools/train_demo_lora.py [--out work-demo-lora] [--resume]

Stages (each skipped when its output exists, unless --force):
  1. ``encoder``: the demo VAE's *encoder* learned only the nine palette colours and maps a
     pink image to white latents, so no trainer could learn pink from pictures. Its decoder can
     draw pink and cyan (found by optimising latents), so the encoder alone is fine-tuned:
     decoder frozen, new-colour images reconstructed, old images held to their old latents.
     Only ``first_stage_model.encoder.*`` / ``quant_conv.*`` change, and only in a training copy
     (``<out>/demo-shapes-widened.safetensors``): the bundled model is never written (other demo
     assets and evals depend on its bytes). txt2img only uses the decoder, UNet and text encoder,
     which the copy shares byte for byte with the bundled model, so the LoRA trained on the copy
     loads on the bundled model unchanged.
  2. ``dataset``: a kohya folder (``<out>/dataset/<repeats>_<subset>/*.png + .txt``) written by
     the shapes generator: pink and cyan shapes, plus known colours so those stay intact.
     Every (colour, background) pair is drawn; the eval's images are new ones (other seeds).
  3. ``train``: ``TrainingService.submit_lora`` on an ``AppContext`` with the widened copy, i.e.
     the same queue job the Train tab and ``POST /sdapi/v1/train/lora`` start.
  4. ``ship``: copy ``<out>/data/models/Lora/demo-pink-cyan.safetensors`` to ``models/Lora/``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webui.allocator import configure_allocator  # noqa: E402

configure_allocator()  # as app.py: the LoRA run is a job on the queue's worker thread

import numpy as np  # noqa: E402
import torch  # noqa: E402

from webui.training import shapes  # noqa: E402
from webui.training.shapes import NEW_COLOURS, SHAPES, ShapeSpec, random_caption, random_spec, render  # noqa: E402

DEMO = ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
NAME = "demo-pink-cyan"
# (colour, background) pairs left out of the training folder. Empty: a first run that held out
# pink/yellow and cyan/purple drew neither (0 of 12; the tiny model ties colour to background),
# see docs/training.md.
HELD_OUT: set[tuple[str, str]] = set()
ENCODER_PREFIXES = ("first_stage_model.encoder.", "first_stage_model.quant_conv.")


def new_colour_spec(rng: random.Random, colours=tuple(NEW_COLOURS), skip=HELD_OUT,
                    backgrounds=shapes.BACKGROUNDS) -> ShapeSpec:
    """A pink or cyan shape on one of the demo's backgrounds (held-out pairs excluded)."""
    while True:
        colour = rng.choice(colours)
        background = rng.choice(backgrounds)
        if (colour, background) not in skip:
            break
    size = rng.uniform(18, 46)
    half = size / 2
    return ShapeSpec(rng.choice(SHAPES), colour, background, rng.uniform(half + 1, shapes.SIZE - half - 1),
                     rng.uniform(half + 1, shapes.SIZE - half - 1), size)


def _pixels(specs) -> torch.Tensor:
    arr = np.stack([np.asarray(render(s), dtype=np.float32) for s in specs]).transpose(0, 3, 1, 2)
    return torch.from_numpy(arr / 127.5 - 1.0)


# ------------------------------------------------------------------ stage 1

def widened_path(args) -> Path:
    """Where the training copy with the widened encoder lives (never under models/)."""
    path = (Path(args.out) / "demo-shapes-widened.safetensors").resolve()
    if (ROOT / "models").resolve() in path.parents:
        raise SystemExit(f"--out must not be under models/: {path} would sit beside the bundled models")
    return path


def widen_encoder(args) -> dict:
    """Fine-tune the demo VAE encoder for pink/cyan; write a copy of the checkpoint with only the
    encoder tensors replaced (the source checkpoint is read, never written)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from webui.models.convert import vae_to_ldm
    from webui.models.loader import load_pipeline
    from webui.training.loop import LoopConfig, TrainLoop

    ckpt = Path(args.checkpoint)
    pipe, _ = load_pipeline(ckpt, configs_dir=ROOT / "configs")
    vae = pipe.vae.float()
    frozen = copy.deepcopy(vae).requires_grad_(False).eval()
    vae.requires_grad_(False)
    params = list(vae.encoder.parameters()) + list(vae.quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)

    # Pairs the encoder still gets wrong are drawn more often (measured once, when the stage (re)starts).
    pairs: list[tuple[str, str]] = []
    weights: list[float] = []

    def step_fn(step: int) -> torch.Tensor:
        rng = random.Random(args.seed * 31 + step)
        chosen = rng.choices(pairs, weights, k=args.encoder_batch)
        specs = [new_colour_spec(rng, colours=(c,), skip=set(), backgrounds=(b,)) for c, b in chosen]
        new = _pixels(specs)
        old = _pixels([random_spec(rng) for _ in range(args.encoder_batch)])
        recon = vae.decode(vae.encode(new).latent_dist.mean).sample
        # The shape is a small part of the picture: weight its pixels so its colour, not the
        # background, dominates the reconstruction error.
        background = torch.stack([torch.tensor(shapes.ALL_COLOURS[sp.background], dtype=torch.float32)
                                  for sp in specs]).view(-1, 3, 1, 1) / 127.5 - 1
        weight = 1.0 + 4.0 * ((new - background).abs().amax(dim=1, keepdim=True) > 0.1).float()
        with torch.no_grad():
            target = frozen.encode(old).latent_dist.mean
        keep = (vae.encode(old).latent_dist.mean - target).pow(2).mean()
        diff = recon - new
        return (diff.abs() * weight).mean() + (diff.pow(2) * weight).mean() + keep

    cfg = LoopConfig(out_dir=Path(args.out) / "encoder", max_steps=args.encoder_steps, lr=5e-4, warmup_steps=50,
                     save_every=250, log_every=25)
    loop = TrainLoop(cfg, {"vae": vae}, params, step_fn)
    loop.try_resume()
    errors = pair_errors(vae)
    pairs += sorted(errors)
    weights += [0.15 + errors[pair] for pair in pairs]
    print(f"[encoder] at step {loop.step}, pairs still read wrong: {sorted(p for p, e in errors.items() if e > 0.3)}",
          flush=True)
    loop.run(resume=True, desc="encoder")
    report = encoder_report(vae, frozen)
    print(f"[encoder] read back after encode/decode: {report}", flush=True)

    new_tensors = {k: v for k, v in vae_to_ldm(vae).items() if k.startswith(ENCODER_PREFIXES)}
    with safe_open(str(ckpt), framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    changed = 0
    for key, value in new_tensors.items():
        if key not in tensors:
            raise KeyError(f"{key} is not in {ckpt.name}; the converter and the shipped file disagree")
        tensors[key] = value.to(tensors[key].dtype).contiguous()
        changed += 1
    metadata["encoder_widened_for"] = "pink,cyan (tools/train_demo_lora.py)"
    target = widened_path(args)
    tmp = target.with_name(f".{target.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, target)
    print(f"[encoder] {changed} encoder tensors replaced in the training copy {target} ({ckpt} untouched)", flush=True)
    return report


@torch.no_grad()
def pair_errors(vae, per_pair: int = 6) -> dict[tuple[str, str], float]:
    """Share of encode->decode images whose shape colour reads wrong, per (new colour, background)."""
    from PIL import Image

    rng = random.Random(99)
    out = {}
    for colour in NEW_COLOURS:
        for background in shapes.BACKGROUNDS:
            specs = [new_colour_spec(rng, (colour,), set(), (background,)) for _ in range(per_pair)]
            y = vae.decode(vae.encode(_pixels(specs)).latent_dist.mean).sample
            arr = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            wrong = sum(shapes.classify(Image.fromarray(a), shapes.ALL_COLOURS).colour != colour for a in arr)
            out[(colour, background)] = wrong / per_pair
    return out


@torch.no_grad()
def encoder_report(vae, frozen, n: int = 96) -> dict:
    """Classifier accuracy of encode->decode for new and old colours, and the old latents' drift."""
    from PIL import Image

    rng = random.Random(424242)
    out = {}
    for label, specs in (("new", [new_colour_spec(rng, skip=set()) for _ in range(n)]),
                         ("old", [random_spec(rng) for _ in range(n)])):
        x = _pixels(specs)
        y = vae.decode(vae.encode(x).latent_dist.mean).sample
        arr = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        readings = [shapes.classify(Image.fromarray(a), shapes.ALL_COLOURS) for a in arr]
        out[f"{label}_colour"] = sum(r.colour == s.colour for r, s in zip(readings, specs)) / n
        if label == "old":
            drift = (vae.encode(x).latent_dist.mean - frozen.encode(x).latent_dist.mean).abs().mean()
            out["old_latent_mean_abs_drift"] = round(float(drift), 4)
    return out


# ------------------------------------------------------------------ stage 2

def write_dataset(args) -> Path:
    """The kohya folder the trainer reads (same layout a user would give the Train tab)."""
    root = Path(args.out) / "dataset"
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(args.seed)
    new = [new_colour_spec(rng) for _ in range(args.new_images)]
    old = [random_spec(rng) for _ in range(args.known_images)]
    count = shapes.write_kohya_folder(root, {
        "pink-cyan": [(sp, random_caption(sp, rng)) for sp in new],
        "known-colours": [(sp, random_caption(sp, rng)) for sp in old],
    })
    print(f"[dataset] {count} images in {root} (held out: {sorted(HELD_OUT)})", flush=True)
    return root


# ------------------------------------------------------------------ stage 3

def train(args, dataset: Path, checkpoint: Path) -> Path:
    """Run the LoRA job exactly as the Train tab does: through the service and the queue."""
    from webui.context import context_from_flags
    from webui.training.settings import LoraSettings

    data_dir = Path(args.out) / "data"
    ctx = context_from_flags(["--data-dir", str(data_dir), "--ckpt", str(checkpoint)])
    settings = LoraSettings(
        name=NAME, data_dir=str(dataset), network_type="LoCon", rank=args.rank, alpha=args.rank,
        conv_rank=args.conv_rank, conv_alpha=args.conv_rank, unet_lr=args.unet_lr, text_encoder_lr=args.te_lr,
        lr_scheduler="cosine", lr_warmup_steps=50, max_train_steps=args.steps, batch_size=args.batch,
        resolution=64, caption_dropout_rate=0.05, min_snr_gamma=5.0, seed=args.seed, save_every_n_steps=250,
        sample_every_n_steps=250, sample_prompts=["a pink circle on a blue background",
                                                  "a cyan square on a black background",
                                                  "a red triangle on a white background"],
        resume=args.resume and (data_dir / "train" / "lora" / NAME / "state.pt").exists(), overwrite=True)
    submitted = ctx.training.submit_lora(settings, ctx.queue, source="tool")
    job = submitted.job
    last = 0
    while not job.done:
        time.sleep(10)
        snap = submitted.state.snapshot()
        if snap["step"] != last:
            last = snap["step"]
            print(f"[train] step {snap['step']}/{snap['max_steps']} loss {snap['loss']}", flush=True)
    job.wait(0)
    ctx.queue.stop()
    out = ctx.paths.lora_dir / f"{NAME}.safetensors"
    print(f"[train] {out} ({out.stat().st_size / 1e6:.2f} MB)", flush=True)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="work-demo-lora")
    p.add_argument("--checkpoint", default=str(DEMO), help="the demo checkpoint (read only; the widened encoder goes into a copy under --out)")
    p.add_argument("--ship-dir", default=str(ROOT / "models" / "Lora"))
    p.add_argument("--resume", action="store_true", help="continue the LoRA run from its last save")
    p.add_argument("--force", action="store_true", help="redo the encoder stage even if done")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--encoder-steps", type=int, default=1500)
    p.add_argument("--encoder-batch", type=int, default=12)
    p.add_argument("--new-images", type=int, default=480)
    p.add_argument("--known-images", type=int, default=240)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--conv-rank", type=int, default=8)
    p.add_argument("--unet-lr", type=float, default=1e-3)
    p.add_argument("--te-lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-train", action="store_true", help="stop after the encoder and dataset stages")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.json").write_text(json.dumps(vars(args), indent=2))
    started = time.time()
    from safetensors import safe_open

    copy_path = widened_path(args)
    widened = False
    if copy_path.exists():
        with safe_open(str(copy_path), framework="pt") as f:
            widened = "encoder_widened_for" in (f.metadata() or {})
    if not widened or args.force:
        widen_encoder(args)
    else:
        print(f"[encoder] {copy_path} already carries the widened encoder", flush=True)
    # The copy's architecture comes from the demo's weightless config folder (no hub), like the original's.
    config = Path(args.checkpoint).with_suffix(".config")
    copy_config = copy_path.with_suffix(".config")
    if config.is_dir() and not copy_config.exists():
        shutil.copytree(config, copy_config)
    dataset = write_dataset(args)
    if args.skip_train:
        return
    trained = train(args, dataset, copy_path)
    ship = Path(args.ship_dir) / f"{NAME}.safetensors"
    ship.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(trained, ship)
    print(f"[ship] {ship} ({ship.stat().st_size / 1e6:.2f} MB); all done in {time.time() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
