"""Textual-inversion training, A1111's way: settings under A1111's API names, prompt templates, saves.

The embedding must exist (Create embedding). Training continues from the file's ``step`` up to
``steps``; every ``save_embedding_every`` steps ``embeddings/<name>.pt`` is rewritten (with a copy
``<name>-<step>.pt`` in the run folder) and every ``create_image_every`` steps a sample image is
made through the generation core with the vectors as trained so far.
"""
from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from webui.paths import REPO_ROOT
from webui.training import dataset as ds
from webui.training.diffusion import Objective, TextEncoding, choose_precision, encode_latents, noise_scheduler_for
from webui.training.embedding import (EmbeddingError, EmbeddingFile, VectorHook, load_embedding, save_embedding,
                                      with_placeholders)
from webui.training.lora_run import TrainingError, run_dir_for, set_preview, text_encoders
from webui.training.loop import LoopConfig, TrainLoop
from webui.training.runs import RunState, SampleImage
from webui.training.schedules import a1111_multiplier, parse_a1111_rate
from webui.training.settings import SettingsError, _to_number, check_name

TEMPLATES_DIR = REPO_ROOT / "textual_inversion_templates"
CLIP_GRAD_MODES = ("disabled", "value", "norm")
LATENT_SAMPLING = ("once", "deterministic", "random")
# A1111 sends these; they change nothing here (we always sample from the template text or preview_prompt).
_ACCEPTED_EXTRAS = {"id_task", "log_directory", "save_image_with_stored_embedding", "preview_from_txt2img",
                    "preview_steps", "preview_sampler_name", "preview_sampler_index", "preview_scheduler",
                    "preview_cfg_scale", "preview_seed", "preview_width", "preview_height", "use_weight"}


def template_names(folder: Path = TEMPLATES_DIR) -> list[str]:
    return sorted(p.name for p in folder.glob("*.txt"))


@dataclass
class EmbeddingSettings:
    """A1111's ``/sdapi/v1/train/embedding`` fields (and the Train tab's)."""

    embedding_name: str = ""
    learn_rate: str = "0.005"
    batch_size: int = 1
    gradient_step: int = 1
    data_root: str = ""
    training_width: int = 0  # 0: the checkpoint's native size
    training_height: int = 0
    varsize: bool = False
    steps: int = 1000
    clip_grad_mode: str = "disabled"
    clip_grad_value: str = "0.1"
    shuffle_tags: bool = False
    tag_drop_out: float = 0.0
    latent_sampling_method: str = "once"
    create_image_every: int = 500
    save_embedding_every: int = 500
    template_filename: str = "style_filewords.txt"
    preview_prompt: str = ""
    preview_negative_prompt: str = ""
    seed: int = 1234

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EmbeddingSettings":
        if not isinstance(data, dict):
            raise SettingsError([("body", "must be a JSON object")])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - _ACCEPTED_EXTRAS)
        if unknown:
            raise SettingsError([(k, "unknown setting") for k in unknown])
        return cls(**{k: v for k, v in data.items() if k in names}).validate()

    def validate(self) -> "EmbeddingSettings":
        errors: list[tuple[str, str]] = []
        out: dict[str, Any] = {}
        try:
            out["embedding_name"] = check_name(self.embedding_name, "embedding name")
        except ValueError as exc:
            errors.append(("embedding_name", str(exc)))
        steps = _to_number(self.steps, int)
        if steps is None or steps < 1:
            errors.append(("steps", f"must be a whole number of at least 1, got {self.steps!r}"))
            steps = 1
        out["steps"] = steps
        try:
            parse_a1111_rate(self.learn_rate, steps)
            out["learn_rate"] = str(self.learn_rate)
        except ValueError as exc:
            errors.append(("learn_rate", str(exc)))
        for name, low, high in (("batch_size", 1, 256), ("gradient_step", 1, 1024), ("training_width", 0, 4096),
                                ("training_height", 0, 4096), ("create_image_every", 0, None),
                                ("save_embedding_every", 0, None), ("seed", 0, 2**32 - 1)):
            value = _to_number(getattr(self, name), int)
            if value is None or value < low or (high is not None and value > high):
                errors.append((name, f"must be a whole number {f'from {low} to {high}' if high else f'>= {low}'}, "
                                     f"got {getattr(self, name)!r}"))
                value = low
            out[name] = value
        drop = _to_number(self.tag_drop_out, float)
        if drop is None or not 0 <= drop <= 1:
            errors.append(("tag_drop_out", f"must be a number from 0 to 1, got {self.tag_drop_out!r}"))
        out["tag_drop_out"] = drop or 0.0
        for name, choices in (("clip_grad_mode", CLIP_GRAD_MODES), ("latent_sampling_method", LATENT_SAMPLING)):
            if getattr(self, name) not in choices:
                errors.append((name, f"must be one of {', '.join(choices)}, got {getattr(self, name)!r}"))
        if self.clip_grad_mode != "disabled" and _to_number(self.clip_grad_value, float) is None:
            errors.append(("clip_grad_value", f"must be a number, got {self.clip_grad_value!r}"))
        if self.template_filename not in template_names():
            errors.append(("template_filename", f"no template {self.template_filename!r} in {TEMPLATES_DIR.name}/ "
                                                f"(have: {', '.join(template_names())})"))
        if not isinstance(self.data_root, str) or not self.data_root.strip():
            errors.append(("data_root", "give the folder of training images"))
        for name in ("varsize", "shuffle_tags"):
            if not isinstance(getattr(self, name), bool):
                errors.append((name, f"must be true or false, got {getattr(self, name)!r}"))
        if errors:
            raise SettingsError(errors)
        return dataclasses.replace(self, **out)


class EmbeddingTrainer:
    """Trains the vectors of ``embeddings/<name>.pt`` on the loaded model."""

    def __init__(self, settings: EmbeddingSettings, model, paths, state: RunState, progress, make_samples=None):
        self.s, self.model, self.paths, self.state = settings, model, paths, state
        self.progress, self.make_samples = progress, make_samples
        self.path = Path(paths.embeddings_dir) / f"{settings.embedding_name}.pt"
        self.run_dir = run_dir_for(paths.data_dir, "embedding", settings.embedding_name)

    def run(self) -> RunState:
        s, st, pipe = self.s, self.state, self.model.pipe
        if self.model.arch == "sdxl":
            raise TrainingError("textual inversion trains SD 1.x and 2.x checkpoints here, as in A1111")
        try:
            emb = load_embedding(self.path)
        except EmbeddingError as exc:
            raise TrainingError(str(exc)) from None
        width_dim = pipe.text_encoder.get_input_embeddings().weight.shape[1]
        if emb.vectors.shape[1] != width_dim:
            raise TrainingError(f"{self.path.name} has {emb.vectors.shape[1]}-wide vectors; this checkpoint's text "
                                f"encoder takes {width_dim}: it was made for another model family")
        if emb.step >= s.steps:
            raise TrainingError(f"{self.path.name} is already at step {emb.step}; set Max steps above that to train on")
        st.state = "preparing"
        data = ds.scan_folder(s.data_root, missing_caption="filename")
        captions = [img.caption for img in data.images]
        lines = [ln.strip() for ln in (TEMPLATES_DIR / s.template_filename).read_text().splitlines() if ln.strip()]
        unet, device = pipe.unet, pipe.unet.device
        multiple = ds.size_multiple(pipe.vae_scale_factor, len(unet.config.down_block_types))
        width = (s.training_width or self.model.native_size) // multiple * multiple
        height = (s.training_height or self.model.native_size) // multiple * multiple
        buckets = ds.make_buckets(max(width, height), multiple) if s.varsize else [(width, height)]
        plan = ds.BatchPlan(data, buckets, s.batch_size, s.seed)
        n = emb.vectors.shape[0]
        holder = torch.nn.Module()
        holder.vec = torch.nn.Parameter(emb.vectors.to(device, torch.float32))
        hook = VectorHook(pipe.text_encoder, holder.vec, pipe.tokenizer.bos_token_id)
        text = TextEncoding(pipe, self.model.arch)
        objective = Objective(unet, noise_scheduler_for(self.model.scheduler_config), self.model.prediction_type,
                              precision=choose_precision("auto", device))
        cache: dict[int, torch.Tensor] = {}
        last_prompt = [""]

        def latent(index: int, bucket, gen_seed: int) -> torch.Tensor:
            if s.latent_sampling_method != "random" and index in cache:
                return cache[index]
            arr, _ = ds.fit_to_bucket(ds.load_rgb(data.images[index].path), bucket)
            gen = None if s.latent_sampling_method == "deterministic" else torch.Generator().manual_seed(gen_seed)
            z = encode_latents(pipe.vae, torch.from_numpy(ds.to_tensor_array(arr))[None], gen)[0]
            if s.latent_sampling_method != "random":
                cache[index] = z
            return z

        def prompt_for(index: int, rng: random.Random) -> str:
            # A1111's create_text: a random template line, caption tags dropped/shuffled into [filewords].
            tags = [t.strip() for t in captions[index].split(",")]
            if s.tag_drop_out:
                tags = [t for t in tags if rng.random() > s.tag_drop_out]
            if s.shuffle_tags:
                rng.shuffle(tags)
            line = rng.choice(lines).replace("[filewords]", ", ".join(tags)).replace("[name]", s.embedding_name)
            return line

        def step_fn(step: int, micro: int = 0) -> torch.Tensor:
            batch_index = step * s.gradient_step + micro
            _, samples = plan.batch(batch_index)
            rng = random.Random(s.seed * 1_000_003 + batch_index)
            zs = [latent(x.index, x.bucket, s.seed * 7_919 + x.index * 104_729 + batch_index) for x in samples]
            prompts = [prompt_for(x.index, rng) for x in samples]
            last_prompt[0] = prompts[0]
            marked = [with_placeholders(p, s.embedding_name, n) for p in prompts]
            gen = torch.Generator().manual_seed(s.seed * 104_729 + batch_index)
            return objective.loss(torch.stack(zs), lambda: text(marked), gen)

        pairs = parse_a1111_rate(s.learn_rate, s.steps)
        clip = 0.0 if s.clip_grad_mode == "disabled" else float(s.clip_grad_value)
        cfg = LoopConfig(out_dir=self.run_dir, max_steps=s.steps, lr=pairs[0][0], weight_decay=0.0, betas=(0.9, 0.999),
                         grad_clip=clip, grad_clip_mode=s.clip_grad_mode if clip else "norm",
                         save_every=s.save_embedding_every or s.steps + 1, log_every=1, grad_accum=s.gradient_step,
                         lr_lambda=a1111_multiplier(pairs), extra={"kind": "embedding", "name": s.embedding_name})
        info = self.model.info

        def export(loop: TrainLoop, step: int) -> None:
            saved = EmbeddingFile(s.embedding_name, holder.vec.detach(), step, info.shorthash, info.model_name)
            save_embedding(self.path, saved)
            save_embedding(self.run_dir / "embeddings" / f"{s.embedding_name}-{step}.pt", saved)
            st.saves.append((step, self.path))

        def on_step(loop: TrainLoop, step: int, loss: float) -> None:
            st.record_loss(step, loss)
            self.progress.step(step)
            self.progress.set_text(f"Training embedding {s.embedding_name}: step {step}/{s.steps}, loss {loss:.4f}")
            if s.create_image_every and step % s.create_image_every == 0:
                self.sample(step, hook, n, last_prompt[0], width, height)

        loop = TrainLoop(cfg, {"embedding": holder}, [holder.vec], step_fn, export, on_step=on_step,
                         should_stop=lambda: self.progress.interrupted)
        state_file = self.run_dir / "state.pt"
        resumed = False
        if state_file.exists() and int(torch.load(state_file, map_location="cpu", weights_only=True)["step"]) == emb.step:
            resumed = loop.try_resume()  # same step as the file: continue with the optimizer's moments too
        loop.step = emb.step
        st.max_steps, st.start_step, st.step = s.steps, emb.step, emb.step
        if emb.step:
            st.note(f"continuing {self.path.name} from step {emb.step}" + ("" if resumed else " (fresh optimizer)"))
        frozen = [(p, p.requires_grad) for m in (unet, pipe.vae, *text_encoders(pipe)) for p in m.parameters()]
        for p, _ in frozen:
            p.requires_grad_(False)
        self.progress.begin_batch(0, 1, s.steps)
        self.progress.step(emb.step)
        st.state, st.started_at = "training", time.time()
        try:
            with hook.installed():
                loop.run(resume=resumed)
        finally:
            for p, flag in frozen:
                p.requires_grad_(flag)
        st.state = "interrupted" if loop.stopped else "done"
        st.finished_at = time.time()
        return st

    def sample(self, step: int, hook: VectorHook, n: int, prompt: str, width: int, height: int) -> None:
        """One image through the generation core; the hook puts the current vectors into the prompt."""
        if self.make_samples is None:
            return
        text = self.s.preview_prompt or prompt
        want = {"prompt": with_placeholders(text, self.s.embedding_name, n),
                "negative_prompt": self.s.preview_negative_prompt, "steps": 20, "cfg_scale": 7.0, "seed": self.s.seed,
                "width": width, "height": height, "sampler_name": "Euler a"}
        image, info = self.make_samples([want])[0]
        folder = self.run_dir / "images"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.s.embedding_name}-{step}.png"
        image.save(path)
        self.state.samples.append(SampleImage(step, path, text))
        set_preview(self.progress, image, step)
