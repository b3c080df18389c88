"""One LoRA training run on the loaded checkpoint: dataset -> network -> loop -> kohya file.

The run borrows the model the UI generates with (it holds ``ModelManager.active()`` through
its job): adapters are patched in, base weights are frozen and never written, and every
change (patches, requires_grad, gradient checkpointing, train mode) is undone in ``finally``.

Files: ``<lora_dir>/<name>.safetensors`` (rewritten atomically at each save, so it is always a
loadable LoRA), and ``<data_dir>/train/lora/<name>/`` with ``state.pt`` (resume), ``loss.csv``,
``settings.json`` and ``samples/``.
"""
from __future__ import annotations

import json
import random
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from webui.training import dataset as ds
from webui.training.diffusion import (Objective, TextEncoding, choose_precision, encode_latents,
                                      noise_scheduler_for, sdxl_time_ids)
from webui.training.lora import (LoRANetwork, NetworkSpec, base_model_version, modelspec_architecture,
                                 network_args)
from webui.training.loop import LoopConfig, TrainLoop
from webui.training.runs import RunState, SampleImage
from webui.training.schedules import lr_multiplier
from webui.training.settings import LoraSettings, parse_sample_prompt

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "float": torch.float32}
# make_samples(list of generation dicts) -> [(image, infotext)]; provided by the service (the core's call).
SampleMaker = Callable[[list[dict]], list[tuple[Image.Image, str]]]


class TrainingError(RuntimeError):
    """The run cannot start or continue; the message is for the user."""


def run_dir_for(data_dir: Path, kind: str, name: str) -> Path:
    return Path(data_dir) / "train" / kind / name


def text_encoders(pipe) -> list:
    return [m for m in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)) if m is not None]


def _frozen(stack: ExitStack, modules: list[torch.nn.Module]) -> None:
    """Freeze base weights for the run and give each parameter its old flag back afterwards."""
    flags = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    stack.callback(lambda: [p.requires_grad_(f) for p, f in flags])


def _training_mode(stack: ExitStack, modules: list[torch.nn.Module], checkpointing: bool) -> None:
    for m in modules:
        was = m.training
        stack.callback(m.train, was)
        if checkpointing:
            if hasattr(m, "enable_gradient_checkpointing"):  # diffusers
                m.enable_gradient_checkpointing()
                stack.callback(m.disable_gradient_checkpointing)
            elif hasattr(m, "gradient_checkpointing_enable"):  # transformers
                m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
                stack.callback(m.gradient_checkpointing_disable)


def make_optimizer(name: str, weight_decay: float, device: torch.device):
    """AdamW, or bitsandbytes' 8-bit AdamW (CUDA only)."""
    def build(groups):
        if name == "AdamW8bit":
            try:
                import bitsandbytes as bnb
            except ImportError:
                raise TrainingError("AdamW8bit needs the bitsandbytes package; choose AdamW") from None
            if device.type != "cuda":
                raise TrainingError("AdamW8bit runs on CUDA GPUs only; choose AdamW")
            return bnb.optim.AdamW8bit(groups, weight_decay=weight_decay)
        return torch.optim.AdamW(groups, weight_decay=weight_decay)
    return build


def lora_metadata(s: LoraSettings, model, data: ds.Dataset, plan: ds.BatchPlan, resolution: int, step: int,
                  max_steps: int, precision: str, started: float, spec: NetworkSpec) -> dict[str, str]:
    """kohya's ``ss_*`` metadata (what A1111's and Forge's metadata viewers show) plus modelspec keys."""
    info = model.info
    epochs = max(1, -(-step * s.gradient_accumulation_steps // max(1, plan.batches_per_epoch)))
    return {
        "ss_network_module": "networks.lora", "ss_network_dim": str(spec.rank), "ss_network_alpha": str(spec.alpha),
        "ss_network_args": network_args(spec), "ss_base_model_version": base_model_version(model.arch,
                                                                                           model.prediction_type),
        "ss_v2": str(model.arch.startswith("sd2")), "ss_sd_model_name": info.filename.name,
        "ss_sd_model_hash": info.shorthash or "", "ss_new_sd_model_hash": info.sha256 or "",
        "ss_resolution": f"({resolution}, {resolution})", "ss_enable_bucket": str(s.enable_bucket),
        "ss_bucket_info": json.dumps(plan.bucket_info()), "ss_num_train_images": str(data.num_with_repeats),
        "ss_num_batches_per_epoch": str(plan.batches_per_epoch), "ss_num_epochs": str(epochs),
        "ss_epoch": str(epochs), "ss_steps": str(step), "ss_max_train_steps": str(max_steps),
        "ss_batch_size_per_device": str(s.batch_size), "ss_total_batch_size": str(s.batch_size),
        "ss_gradient_accumulation_steps": str(s.gradient_accumulation_steps),
        "ss_learning_rate": str(s.unet_lr), "ss_unet_lr": str(s.unet_lr), "ss_text_encoder_lr": str(s.text_encoder_lr),
        "ss_lr_scheduler": s.lr_scheduler, "ss_lr_warmup_steps": str(s.lr_warmup_steps),
        "ss_optimizer": "torch.optim.AdamW" if s.optimizer == "AdamW" else "bitsandbytes.optim.AdamW8bit",
        "ss_mixed_precision": precision, "ss_full_fp16": "False", "ss_gradient_checkpointing": str(s.gradient_checkpointing),
        "ss_max_grad_norm": str(s.max_grad_norm), "ss_clip_skip": str(s.clip_skip), "ss_seed": str(s.seed),
        "ss_noise_offset": str(s.noise_offset), "ss_min_snr_gamma": str(s.min_snr_gamma),
        "ss_caption_dropout_rate": str(s.caption_dropout_rate), "ss_shuffle_caption": str(s.shuffle_caption),
        "ss_keep_tokens": str(s.keep_tokens), "ss_flip_aug": str(s.flip_aug), "ss_random_crop": str(s.random_crop),
        "ss_cache_latents": str(s.cache_latents), "ss_caption_extension": s.caption_extension,
        "ss_save_precision": s.save_precision,
        "ss_tag_frequency": json.dumps(data.tag_frequency()), "ss_dataset_dirs": json.dumps(data.subsets()),
        "ss_output_name": s.name, "ss_training_started_at": str(started), "ss_training_finished_at": str(time.time()),
        "ss_training_comment": "trained in SD Studio's Train tab",
        "modelspec.sai_model_spec": "1.0.0", "modelspec.architecture": modelspec_architecture(model.arch,
                                                                                           model.prediction_type),
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models" if model.arch == "sdxl"
        else "diffusers", "modelspec.title": s.name, "modelspec.resolution": f"{resolution}x{resolution}",
    }


class LoraTrainer:
    """Runs one LoRA training on a loaded model; ``run()`` returns when done, interrupted or failed."""

    def __init__(self, settings: LoraSettings, model, lora_dir: Path, data_dir: Path, state: RunState,
                 progress, make_samples: SampleMaker | None = None):
        self.s = settings
        self.model = model
        self.pipe = model.pipe
        self.lora_dir = Path(lora_dir)
        self.state = state
        self.progress = progress
        self.make_samples = make_samples
        self.run_dir = run_dir_for(data_dir, "lora", settings.name)
        self.output = self.lora_dir / f"{settings.name}.safetensors"

    # -- setup ---------------------------------------------------------------------------------

    def _resume_settings(self) -> LoraSettings:
        """On resume the saved run decides everything that shapes the data and the network."""
        saved_path = self.run_dir / "settings.json"
        if not (self.run_dir / "state.pt").exists() or not saved_path.exists():
            raise TrainingError(f"nothing to resume: no saved state for {self.s.name!r} in {self.run_dir}")
        saved = json.loads(saved_path.read_text())
        keep = ("max_train_steps", "max_train_epochs", "save_every_n_steps", "sample_every_n_steps",
                "sample_prompts", "sample_sampler", "sample_steps", "sample_cfg_scale", "save_precision", "resume",
                "overwrite")
        merged = {**saved, **{k: getattr(self.s, k) for k in keep}}
        return LoraSettings(**merged).validate()

    def run(self) -> RunState:
        s = self.s = self._resume_settings() if self.s.resume else self.s
        st = self.state
        st.state = "preparing"
        data = ds.scan_folder(s.data_dir, s.caption_extension)
        for n in data.notes:
            st.note(n)
        pipe, unet = self.pipe, self.pipe.unet
        device = unet.device
        precision = choose_precision(s.mixed_precision, device)
        if precision.note:
            st.note(precision.note)
        resolution = s.resolution or self.model.native_size
        multiple = ds.size_multiple(pipe.vae_scale_factor, len(unet.config.down_block_types))
        plan = ds.BatchPlan(data, ds.make_buckets(resolution, multiple, s.enable_bucket), s.batch_size, s.seed)
        max_steps = s.total_steps(plan.batches_per_epoch)
        spec = NetworkSpec(s.network_type, s.rank, s.alpha or s.rank, s.conv_rank, s.conv_alpha or s.conv_rank,
                           unet=s.unet_lr > 0, text_encoder=s.text_encoder_lr > 0)
        encoders = text_encoders(pipe)
        with torch.random.fork_rng(devices=[]):  # seeded init, without moving anyone else's RNG
            torch.manual_seed(s.seed)
            network = LoRANetwork(spec, self.model.arch, unet, encoders).to(device, torch.float32)
        st.max_steps = max_steps
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "settings.json").write_text(json.dumps(s.as_dict(), indent=2))
        started = time.time()
        objective = Objective(unet, noise_scheduler_for(self.model.scheduler_config), self.model.prediction_type,
                              s.noise_offset, s.min_snr_gamma, precision)
        text = TextEncoding(pipe, self.model.arch, s.clip_skip)
        latents_cache: dict[tuple[int, bool], tuple[torch.Tensor, tuple[int, int]]] = {}

        def pixels(index: int, bucket, flip: bool, rng: random.Random | None):
            image = ds.load_rgb(data.images[index].path)
            if flip:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            fitted, crop = ds.fit_to_bucket(image, bucket, rng if s.random_crop else None)
            return ds.to_tensor_array(fitted), crop

        def latent(index: int, bucket, flip: bool, rng: random.Random):
            key = (index, flip)
            if s.cache_latents and not s.random_crop and key in latents_cache:
                return latents_cache[key]
            arr, crop = pixels(index, bucket, flip, rng)
            gen = torch.Generator().manual_seed(s.seed * 7_919 + index * 2 + int(flip))
            z = encode_latents(pipe.vae, torch.from_numpy(arr)[None], gen)[0]
            if s.cache_latents and not s.random_crop:
                latents_cache[key] = (z, crop)
            return z, crop

        def step_fn(step: int, micro: int = 0) -> torch.Tensor:
            batch_index = step * s.gradient_accumulation_steps + micro
            _, samples = plan.batch(batch_index)
            rng = random.Random(s.seed * 1_000_003 + batch_index)
            zs, captions, time_ids = [], [], []
            for sample in samples:
                flip = s.flip_aug and rng.random() < 0.5
                z, crop = latent(sample.index, sample.bucket, flip, rng)
                zs.append(z)
                captions.append(ds.process_caption(data.images[sample.index].caption, rng, s.shuffle_caption,
                                                   s.keep_tokens, s.caption_dropout_rate))
                time_ids.append(sdxl_time_ids(data.images[sample.index].size, crop, sample.bucket))
            gen = torch.Generator().manual_seed(s.seed * 104_729 + batch_index)
            if spec.text_encoder:
                encode = lambda: text(captions)  # noqa: E731
            else:
                def encode():
                    with torch.no_grad():
                        return text(captions)
            ids = torch.tensor(time_ids) if self.model.arch == "sdxl" else None
            return objective.loss(torch.stack(zs), encode, gen, ids)

        groups = network.parameter_groups(s.unet_lr, s.text_encoder_lr)
        cfg = LoopConfig(out_dir=self.run_dir, max_steps=max_steps, lr=s.unet_lr or s.text_encoder_lr,
                         weight_decay=s.weight_decay, betas=(0.9, 0.999), grad_clip=s.max_grad_norm,
                         save_every=s.save_every_n_steps or max_steps + 1, log_every=1,
                         grad_accum=s.gradient_accumulation_steps,
                         lr_lambda=lr_multiplier(s.lr_scheduler, s.lr_warmup_steps, max_steps, s.lr_scheduler_cycles),
                         extra={"kind": "lora", "name": s.name})
        scaler = torch.amp.GradScaler("cuda") if precision.dtype is torch.float16 else None

        def export(loop: TrainLoop, step: int) -> None:
            meta = lora_metadata(s, self.model, data, plan, resolution, step, max_steps, precision.label, started, spec)
            network.save(self.output, meta, SAVE_DTYPES[s.save_precision])
            st.saves.append((step, self.output))

        def on_step(loop: TrainLoop, step: int, loss: float) -> None:
            st.record_loss(step, loss)
            self.progress.step(step)
            eta = st.eta_seconds()
            self.progress.set_text(f"Training LoRA {s.name}: step {step}/{max_steps}, loss {loss:.4f}"
                                   + (f", ETA {eta:.0f}s" if eta is not None else ""))
            if s.sample_every_n_steps and step % s.sample_every_n_steps == 0 and step < max_steps:
                self.samples(step, network, resolution)

        loop = TrainLoop(cfg, {"network": network}, groups, step_fn, export,
                         make_optimizer=make_optimizer(s.optimizer, s.weight_decay, device), scaler=scaler,
                         on_step=on_step, should_stop=lambda: self.progress.interrupted)
        with ExitStack() as stack:
            _frozen(stack, [unet, pipe.vae, *encoders])
            trained = ([unet] if spec.unet else []) + (encoders if spec.text_encoder else [])
            _training_mode(stack, trained, s.gradient_checkpointing)
            network.attach()
            stack.callback(network.detach)
            if s.resume:
                try:
                    loop.try_resume()
                except (RuntimeError, KeyError, ValueError) as exc:
                    raise TrainingError(f"the saved state in {self.run_dir} does not fit these settings: {exc}") from exc
                st.note(f"resumed at step {loop.step} of {max_steps}")
            st.start_step = st.step = loop.step
            st.losses.extend(_logged_losses(loop.log_path, loop.step) if s.resume else [])
            self.progress.begin_batch(0, 1, max_steps)
            self.progress.step(loop.step)
            st.state, st.started_at = "training", time.time()
            # A fresh run starts clean; a resumed one keeps loss.csv up to the saved step (the loop trims it).
            if not s.resume:
                for old in (self.run_dir / "samples").glob("*.png"):
                    old.unlink()
            loop.run(resume=s.resume)
            if s.sample_prompts and s.sample_every_n_steps and not loop.stopped:
                self.samples(loop.step, network, resolution)
        st.state = "interrupted" if loop.stopped else "done"
        st.finished_at = time.time()
        return st

    def samples(self, step: int, network: LoRANetwork, resolution: int) -> None:
        """Images from the sample prompts with the network as trained so far (through the generation core)."""
        if not self.s.sample_prompts or self.make_samples is None:
            return
        defaults = {"negative_prompt": "", "steps": self.s.sample_steps, "cfg_scale": self.s.sample_cfg_scale,
                    "seed": self.s.seed, "width": resolution, "height": resolution,
                    "sampler_name": self.s.sample_sampler}
        try:
            wanted = [parse_sample_prompt(p, defaults) for p in self.s.sample_prompts]
        except ValueError as exc:
            self.state.note(str(exc))
            return
        modules = [self.pipe.unet, *text_encoders(self.pipe)]
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            made = self.make_samples(wanted)
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
        folder = self.run_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        for i, ((image, info), want) in enumerate(zip(made, wanted)):
            path = folder / f"{step:06d}-{i:02d}.png"
            meta = PngInfo()
            meta.add_text("parameters", f"{info}, Training: {self.s.name} step {step}")
            image.save(path, pnginfo=meta)
            self.state.samples.append(SampleImage(step, path, want["prompt"]))
            if i == 0:
                set_preview(self.progress, image, step)


def set_preview(progress, image, step: int) -> None:
    """Show a sample as the job's live preview (what /sdapi/v1/progress returns as current_image)."""
    keep = progress.make_preview, progress.preview_every
    progress.make_preview, progress.preview_every = (lambda img: img), 1
    try:
        progress.step(step, image)
    finally:
        progress.make_preview, progress.preview_every = keep


def _logged_losses(log_path: Path, upto: int) -> list[tuple[int, float]]:
    """(step, loss) rows of loss.csv up to ``upto`` (the resumed part of the curve)."""
    if not log_path.exists():
        return []
    rows = []
    for line in log_path.read_text().splitlines()[1:]:
        parts = line.split(",")
        if len(parts) >= 2 and int(parts[0]) <= upto:
            rows.append((int(parts[0]), float(parts[1])))
    return rows
