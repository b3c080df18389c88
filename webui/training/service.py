"""Training as jobs on the one queue: check settings at submit, run in the worker, keep live state.

The UI and the API call ``submit_lora`` / ``submit_embedding``: everything that can be checked
without the model (settings, dataset folder, name clashes) fails there with a message, so bad
input never reaches the queue. The queue's runner calls ``run(job)`` for the ``train-lora`` and
``train-embedding`` kinds; the run holds the active model for its whole length, so generations
and checkpoint swaps submitted meanwhile wait their turn (and the queue says what is running).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webui.generation.progress import Progress
from webui.training import dataset as ds
from webui.training.lora_run import LoraTrainer, TrainingError, run_dir_for
from webui.training.runs import RunState
from webui.training.settings import LoraSettings, SettingsError

KINDS = ("train-lora", "train-embedding")


@dataclass
class Submitted:
    """What a submit returns: the job and what the scan found (notes to show at once)."""

    job: Any
    state: RunState
    notes: list[str]

SDXL_EMBEDDING = ("textual inversion trains SD 1.x and 2.x checkpoints here, as in A1111; load one of those to "
                  "train an embedding")


class TrainingService:
    """Owns the live ``RunState`` of every training job of one app (no module state)."""

    def __init__(self, paths, core, networks=None, loading=None):
        self.paths = paths
        self.core = core
        self.networks = networks  # NetworkManager: LoRAs patched in by earlier jobs, and the file lists
        self.loading = loading or (lambda: False)  # True while the startup checkpoint loads as a queued job
        self._runs: dict[str, RunState] = {}
        self._lock = threading.Lock()

    # -- submit (UI / API threads) -------------------------------------------------------------

    def submit_lora(self, raw: dict[str, Any] | LoraSettings, queue, source: str = "ui") -> Submitted:
        """Check settings and dataset, then queue a ``train-lora`` job. Raises SettingsError."""
        settings = raw.validate() if isinstance(raw, LoraSettings) else LoraSettings.from_dict(raw)
        try:
            data = ds.scan_folder(settings.data_dir, settings.caption_extension)
        except ds.DatasetError as exc:
            raise SettingsError([("data_dir", str(exc))]) from None
        output = self.paths.lora_dir / f"{settings.name}.safetensors"
        run_dir = run_dir_for(self.paths.data_dir, "lora", settings.name)
        self._check_target(settings.name, output, run_dir, settings.resume, settings.overwrite, "LoRA")
        if settings.optimizer == "AdamW8bit":
            problem = _adamw8bit_problem()
            if problem:
                raise SettingsError([("optimizer", problem)])
        self._loaded_model()
        state = RunState("lora", settings.name, run_dir, output)
        for note in data.notes:
            state.note(note)
        job = queue.submit((settings, state), kind="train-lora", source=source)
        with self._lock:
            self._runs[job.id] = state
        return Submitted(job, state, list(data.notes))

    def create_embedding(self, name: str, init_text: str, n_vectors: int, overwrite: bool = False) -> Path:
        """A1111's Create embedding, on the loaded model (no queue: it only reads the token table)."""
        from webui.training.embedding import EmbeddingError, create_embedding

        model = self.core.models.current()
        if model is None:
            raise EmbeddingError("no checkpoint is loaded: select one at the top of the page first")
        return create_embedding(self.paths.embeddings_dir, name, init_text, n_vectors, model, overwrite)

    def submit_embedding(self, raw: dict[str, Any], queue, source: str = "ui") -> Submitted:
        """Check A1111-style embedding settings and the dataset, then queue a ``train-embedding`` job."""
        from webui.training.embedding_run import EmbeddingSettings

        settings = raw.validate() if isinstance(raw, EmbeddingSettings) else EmbeddingSettings.from_dict(raw)
        output = self.paths.embeddings_dir / f"{settings.embedding_name}.pt"
        if not output.exists():
            raise SettingsError([("embedding_name", f"no embedding {output.name} in {self.paths.embeddings_dir}: "
                                                    "create it first (Create embedding)")])
        try:
            data = ds.scan_folder(settings.data_root, missing_caption="filename")
        except ds.DatasetError as exc:
            raise SettingsError([("data_root", str(exc))]) from None
        model = self._loaded_model()
        if model is not None and model.arch == "sdxl":  # None: the startup load is queued ahead; run() checks
            raise SettingsError([("checkpoint", SDXL_EMBEDDING)])
        name = settings.embedding_name
        if any(r.name == name and r.kind == "embedding" and r.state in ("queued", "preparing", "training")
               for r in self.runs()):
            raise SettingsError([("embedding_name", f"embedding {name!r} is already queued or training")])
        notes = data.notes
        state = RunState("embedding", name, run_dir_for(self.paths.data_dir, "embedding", name), output)
        for note in notes:
            state.note(note)
        job = queue.submit((settings, state), kind="train-embedding", source=source)
        with self._lock:
            self._runs[job.id] = state
        return Submitted(job, state, notes)

    def _loaded_model(self):
        """The loaded model; None while the startup checkpoint is still loading (the run queues behind
        that load). Refuses when nothing is loaded or on its way."""
        model = self.core.models.current()
        if model is None and not self.loading():
            raise SettingsError([("checkpoint", "no checkpoint is loaded: select one at the top of the page first")])
        return model

    def _check_target(self, name: str, output: Path, run_dir: Path, resume: bool, overwrite: bool, what: str) -> None:
        if any(r.name == name and r.kind == ("lora" if what == "LoRA" else "embedding")
               and r.state in ("queued", "preparing", "training") for r in self.runs()):
            raise SettingsError([("name", f"a {what} run named {name!r} is already queued or training")])
        if resume:
            if not (run_dir / "state.pt").exists():
                raise SettingsError([("resume", f"nothing to resume: no saved state for {name!r} in {run_dir}")])
            return
        if output.exists() and not overwrite:
            raise SettingsError([("name", f"{output} already exists: tick Overwrite to replace it, Resume to "
                                          f"continue its run, or choose another name")])

    def runs(self) -> list[RunState]:
        with self._lock:
            return list(self._runs.values())

    def items(self) -> list[tuple[str, RunState]]:
        """(job id, state) of every run, oldest first."""
        with self._lock:
            return list(self._runs.items())

    def state_of(self, job_id: str) -> RunState | None:
        with self._lock:
            return self._runs.get(job_id)

    # -- run (the queue's worker thread) -------------------------------------------------------

    def run(self, job) -> RunState:
        """The queue runner for training kinds."""
        settings, state = job.payload
        try:
            if job.progress.interrupted:  # interrupted while still queued: nothing ran, nothing saved
                state.state = "interrupted"
                return state
            with self.core.models.active() as model:
                if self.networks is not None:
                    # A1111's design keeps a job's LoRAs patched into the weights afterwards; training
                    # on those would bake them into the base the new file is made against.
                    self.networks.restore(model.pipe)
                if job.kind == "train-lora":
                    LoraTrainer(settings, model, self.paths.lora_dir, self.paths.data_dir, state, job.progress,
                                self.sample_maker()).run()
                else:
                    from webui.training.embedding_run import EmbeddingTrainer

                    if model.arch == "sdxl":
                        raise SettingsError([("checkpoint", SDXL_EMBEDDING)])

                    EmbeddingTrainer(settings, model, self.paths, state, job.progress, self.sample_maker()).run()
            return state
        except (TrainingError, ds.DatasetError, SettingsError, ValueError) as exc:
            state.state, state.error = "failed", str(exc)
            raise
        except Exception as exc:
            state.state, state.error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if self.networks is not None:
                self.networks.refresh()  # the new file shows up in the extra-networks cards and <lora:> tags

    def sample_maker(self):
        """Sample images through the generation core (the one pipeline call), with whatever is patched in."""
        from webui.generation.core import generate
        from webui.generation.request import GenerationRequest

        def make(wanted: list[dict]):
            out = []
            for item in wanted:
                request = GenerationRequest(prompt=item["prompt"], negative_prompt=item["negative_prompt"],
                                            seed=item["seed"], steps=item["steps"], cfg_scale=item["cfg_scale"],
                                            width=item["width"], height=item["height"],
                                            sampler_name=item["sampler_name"], save_images=False).validate()
                result = generate(request, self.core, Progress())
                out.append((result.images[0], result.infotexts[0]))
            return out

        return make


def _adamw8bit_problem() -> str | None:
    import importlib.util

    import torch

    if importlib.util.find_spec("bitsandbytes") is None:
        return "AdamW8bit needs the bitsandbytes package (pip install bitsandbytes); choose AdamW"
    if not torch.cuda.is_available():
        return "AdamW8bit runs on CUDA GPUs only; choose AdamW"
    return None


def wait_text(queue, job) -> str:
    """Why a queued job has not started: how many jobs are ahead and what is running now
    (a training run says which, at what step and how long it has left)."""
    position = queue.position(job)
    if not position:
        return ""
    current = queue.current()
    text = f"In queue: {position} job(s) ahead"
    if current is not None and current is not job:
        text += f". Running now: {current.kind} ({current.progress.snapshot().textinfo})"
    return text
