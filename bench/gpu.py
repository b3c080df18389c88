"""Speed on a GPU: SD 1.5 and SDXL with random weights of the real architectures, ours beside bare diffusers.

One prepared run (about 6-8 minutes on one recent NVIDIA GPU, nothing downloaded):

    .venv/bin/python bench/gpu.py                  # SD 1.5 512x512 and SDXL 1024x1024, fp16, 20 steps
    .venv/bin/python bench/gpu.py --smoke          # CPU check of the whole script: tiny models, 64x64, 2 steps

For each model, batch size and variant it measures the bare diffusers pipeline call and the same
request through our queue and core (same pipeline object, Euler, CFG 7), and prints one table:
it/s (sampling steps per second of the batch), seconds per image, peak VRAM, VAE decode time.
Variants: ``default`` (our device policy for the card), ``channels_last`` (UNet in channels-last
memory format), ``compile`` (``torch.compile`` of the UNet), ``medvram`` / ``lowvram`` (our
``--medvram`` model offload / ``--lowvram`` sequential offload, which also tile the VAE).
The two paths alternate and the median of ``--repeats`` runs is kept, so load hits both alike.
Pipelines are built in memory from configs/ (no checkpoint file is written); our model manager
receives them through its loader seam, so placement and offload are the app's own code.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

PROMPT, NEGATIVE, SEED, CFG = "a red circle on a blue background, detailed photo", "blurry", 1234, 7.0
# Compile last: its warm-up is the longest and the --deadline may cut it.
VARIANTS = ("default", "channels_last", "medvram", "lowvram", "compile")
# Which batch sizes each variant runs at (offload and compile at batch 1 keep the GPU run short).
VARIANT_BATCHES = {"default": (1, 4), "channels_last": (1, 4), "compile": (1,), "medvram": (1,), "lowvram": (1,)}


def build_random_pipeline(arch: str, device: str, dtype: torch.dtype):
    """A diffusers pipeline of configs/<arch> with random weights (built on ``device``, then cast)."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer)

    folder = ROOT / "configs" / arch
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU takes seconds, on the CPU minutes for SDXL
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))
        parts = dict(unet=unet.to(dtype).eval(), vae=vae.to(dtype).eval(), text_encoder=text.to(dtype).eval(),
                     tokenizer=CLIPTokenizer.from_pretrained(str(folder / "tokenizer")))
        if arch == "sdxl":
            text_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(folder / "text_encoder_2")))
            parts.update(text_encoder_2=text_2.to(dtype).eval(),
                         tokenizer_2=CLIPTokenizer.from_pretrained(str(folder / "tokenizer_2")))
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_pretrained(str(folder / "scheduler"))
    if arch == "sdxl":
        return StableDiffusionXLPipeline(scheduler=scheduler, **parts)
    return StableDiffusionPipeline(scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False, **parts)


def tiny_pipeline(arch: str):
    from tests.kit import build_tiny, kit_root

    return build_tiny(arch, kit_root(ROOT / "tests" / ".cache" / "kit")).load_pretrained()


@dataclass
class Row:
    model: str
    size: int
    batch: int
    variant: str
    bare_its: float = float("nan")
    ours_its: float = float("nan")
    bare_s_img: float = float("nan")
    ours_s_img: float = float("nan")
    bare_vram: float = float("nan")
    ours_vram: float = float("nan")
    bare_decode: float = float("nan")
    ours_decode: float = float("nan")
    note: str = ""


class App:
    """Our queue + core over one in-memory pipeline, placed by the device policy of ``flags``."""

    def __init__(self, pipe, arch: str, flags, device_id=None):
        from webui import cli, devices
        from webui.generation.core import CoreContext, generate
        from webui.images import ImageSaver
        from webui.jobs import JobQueue
        from webui.models.manager import ModelManager
        from webui.paths import Paths
        from webui.settings import Settings

        data = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
        paths = Paths.from_args(cli.parse_args(["--data-dir", str(data)]))
        paths.ensure()
        placeholder = paths.ckpt_dir / f"random-{arch}.safetensors"
        placeholder.write_bytes(b"random weights, built in memory by bench/gpu.py")
        self.policy = devices.choose_policy(devices.detect(device_id), flags)
        settings = Settings.load(paths.config_file)
        settings.update({"live_previews_enable": False}, save=False)
        probe = SimpleNamespace(arch=arch, prediction_type="epsilon")
        self.models = ModelManager(paths, settings, self.policy, loader=lambda *a, **k: (pipe, probe))
        self.models.select(placeholder.name)
        core = CoreContext(models=self.models, settings=settings, saver=ImageSaver(), data_dir=data)
        self.queue = JobQueue(lambda job: generate(job.payload, core, job.progress)).start()

    def close(self, pipe) -> None:
        self.queue.stop()
        self.policy.release(pipe)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 1024 ** 3 if device.startswith("cuda") else float("nan")


def bare_run(pipe, size: int, steps: int, batch: int, device: str) -> tuple[float, float, float, float]:
    """(sampling seconds, decode seconds, total seconds, peak GB) of a plain diffusers call."""
    from diffusers import EulerDiscreteScheduler

    # diffusers' own Euler on the model's scheduler config (ours replaces pipe.scheduler in between).
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe._bench_scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    _peak_reset(device)
    start = time.perf_counter()
    latents = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=CFG,
                   width=size, height=size, num_images_per_prompt=batch, output_type="latent",
                   generator=torch.Generator("cpu").manual_seed(SEED)).images
    _sync(device)
    sampled = time.perf_counter()
    vae = pipe.vae
    with torch.no_grad():
        vae.decode((latents / vae.config.scaling_factor).to(vae.dtype)).sample.float().cpu()
    _sync(device)
    end = time.perf_counter()
    return sampled - start, end - sampled, end - start, _peak_gb(device)


def ours_run(app: App, size: int, steps: int, batch: int, device: str) -> tuple[float, float, float, float]:
    from webui.generation.request import GenerationRequest

    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=SEED, steps=steps, width=size,
                                height=size, batch_size=batch, sampler_name="Euler", scheduler="Automatic",
                                cfg_scale=CFG, save_images=False, clip_skip=1)
    _peak_reset(device)
    start = time.perf_counter()
    result = app.queue.run(request)
    _sync(device)
    total = time.perf_counter() - start
    return result.timings["sampling"], result.timings["decode"], total, _peak_gb(device)


def _apply_variant(pipe, variant: str) -> None:
    if variant == "channels_last":
        pipe.unet.to(memory_format=torch.channels_last)
    elif variant == "compile":
        pipe.unet.compile()  # nn.Module.compile: the module stays in place, its __call__ is compiled


def _undo_variant(pipe, variant: str) -> None:
    if variant == "channels_last":
        pipe.unet.to(memory_format=torch.contiguous_format)
    elif variant == "compile":
        pipe.unet._compiled_call_impl = None


def measure(pipe, arch: str, variant: str, size: int, steps: int, batches, repeats: int, device: str) -> list[Row]:
    from webui.devices import PolicyFlags

    rows = [Row(arch, size, b, variant) for b in batches]
    if variant in ("medvram", "lowvram") and not device.startswith("cuda"):
        for row in rows:
            row.note = "needs CUDA (offload to the CPU from the CPU means nothing)"
        return rows
    flags = PolicyFlags(medvram=variant == "medvram", lowvram=variant == "lowvram",
                        use_cpu=not device.startswith("cuda"))
    app = App(pipe, arch, flags)
    try:
        _apply_variant(pipe, variant)
        for row in rows:
            # Warm-up of both paths (compile and cuDNN autotuning happen here), then alternate.
            bare_run(pipe, size, steps, row.batch, device)
            ours_run(app, size, steps, row.batch, device)
            bare, ours = [], []
            for _ in range(repeats):
                bare.append(bare_run(pipe, size, steps, row.batch, device))
                ours.append(ours_run(app, size, steps, row.batch, device))
            med = lambda runs, i: statistics.median(r[i] for r in runs)  # noqa: E731
            row.bare_its, row.ours_its = steps / med(bare, 0), steps / med(ours, 0)
            row.bare_s_img, row.ours_s_img = med(bare, 2) / row.batch, med(ours, 2) / row.batch
            row.bare_decode, row.ours_decode = med(bare, 1), med(ours, 1)
            row.bare_vram, row.ours_vram = max(r[3] for r in bare), max(r[3] for r in ours)
    except Exception as exc:  # one variant failing (e.g. compile without a compiler) must not lose the table
        for row in rows:
            if row.note == "" and row.bare_its != row.bare_its:
                row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}"
    finally:
        _undo_variant(pipe, variant)
        app.close(pipe)
    return rows


def table(rows: list[Row]) -> str:
    head = ("| model | size | batch | variant | it/s bare | it/s ours | s/img bare | s/img ours | ours/bare "
            "| peak VRAM GB bare | peak VRAM GB ours | VAE decode s bare | VAE decode s ours | note |")
    lines = [head, "|" + "---|" * 14]
    fmt = lambda v, p=2: "-" if v != v else f"{v:.{p}f}"  # noqa: E731
    for r in rows:
        ratio = r.ours_s_img / r.bare_s_img if r.bare_s_img == r.bare_s_img else float("nan")
        lines.append(f"| {r.model} | {r.size} | {r.batch} | {r.variant} | {fmt(r.bare_its)} | {fmt(r.ours_its)} | "
                     f"{fmt(r.bare_s_img, 3)} | {fmt(r.ours_s_img, 3)} | {fmt(ratio, 3)} | {fmt(r.bare_vram)} | "
                     f"{fmt(r.ours_vram)} | {fmt(r.bare_decode, 3)} | {fmt(r.ours_decode, 3)} | {r.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="CPU check: tiny models of both architectures, 64x64, 2 steps, batches 1 and 2")
    parser.add_argument("--models", default="sd15,sdxl", help="comma list of sd15, sdxl")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list of " + ", ".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sd15-size", type=int, default=512)
    parser.add_argument("--sdxl-size", type=int, default=1024)
    parser.add_argument("--batches", default="", help="override every variant's batch sizes, e.g. 1,4")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    parser.add_argument("--deadline", type=float, default=540.0,
                        help="seconds after which the remaining variants are skipped (their rows say so)")
    opts = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() and not opts.smoke else "cpu"
    if opts.smoke:
        opts.steps, opts.sd15_size, opts.sdxl_size, opts.repeats = min(opts.steps, 2), 64, 64, 1
        opts.batches = opts.batches or "1,2"
    variants = [v.strip() for v in opts.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    started = time.perf_counter()
    where = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {where}; torch {torch.__version__}; steps {opts.steps}; repeats {opts.repeats}", flush=True)
    rows: list[Row] = []
    for arch in [m.strip() for m in opts.models.split(",") if m.strip()]:
        size = opts.sd15_size if arch == "sd15" else opts.sdxl_size
        t0 = time.perf_counter()
        pipe = tiny_pipeline(arch) if opts.smoke else build_random_pipeline(arch, device, torch.float16)
        pipe._bench_scheduler_config = dict(pipe.scheduler.config)
        print(f"{arch}: pipeline built in {time.perf_counter() - t0:.1f}s", flush=True)
        for variant in variants:
            batches = tuple(int(b) for b in opts.batches.split(",")) if opts.batches else VARIANT_BATCHES[variant]
            t0 = time.perf_counter()
            if t0 - started > opts.deadline:
                new = [Row(arch, size, b, variant, note=f"skipped: past --deadline {opts.deadline:.0f}s")
                       for b in batches]
            else:
                new = measure(pipe, arch, variant, size, opts.steps, batches, opts.repeats, device)
            rows.extend(new)
            print(f"  {variant}: {time.perf_counter() - t0:.1f}s", flush=True)
            print(table(new).split("\n", 2)[2], flush=True)
        del pipe
        if device == "cuda":
            torch.cuda.empty_cache()
    text = table(rows)
    print("\n" + text)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
