"""The active checkpoint, a RAM cache of recent ones, and safe hot-swapping between them.

Cache policy: up to `sd_checkpoints_limit` pipelines (the active one included) stay loaded;
the ones not active are parked in RAM on the CPU (`policy.release`) and evicted least recently
used first, also while the parked ones together exceed `sd_checkpoint_cache_ram_fraction` of
total RAM. Swapping to a parked pipeline moves weights; it never re-reads the file.

Concurrency: one lock serialises loads and swaps. A generation holds `with manager.active()`
for its whole job; a swap loads the new pipeline first (while generations continue on the old
one), then waits for active users to finish, blocks new ones, and switches placement.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from webui.models.errors import ModelLoadError
from webui.models.loader import load_pipeline
from webui.models.registry import CheckpointInfo, Hasher, Registry, sha256_of

log = logging.getLogger(__name__)
__all__ = ["LoadedModel", "ManagerStats", "ModelLoadError", "ModelManager", "pipe_bytes"]


@dataclass
class LoadedModel:
    """A loaded checkpoint: its registry entry, the pipeline, and what the probe found."""

    info: CheckpointInfo
    pipe: Any
    arch: str
    native_size: int  # default width/height: unet sample_size x VAE scale factor
    prediction_type: str = "epsilon"
    ram_bytes: int = 0
    # The checkpoint's own scheduler config, kept because the generation core replaces pipe.scheduler.
    scheduler_config: dict = field(default_factory=dict)


@dataclass
class ManagerStats:
    """Counters for tests and the bench: loads from disk vs swaps served from the cache."""

    file_reads: int = 0  # checkpoint weights read from disk (one per load)
    cache_hits: int = 0  # swaps served from the RAM cache
    loads: int = 0  # successful loads from disk
    failures: int = 0
    evictions: int = 0


def pipe_bytes(pipe) -> int:
    """Bytes held by a pipeline's parameters and buffers."""
    total = 0
    for module in getattr(pipe, "components", {}).values():
        if isinstance(module, torch.nn.Module):
            for tensor in list(module.parameters()) + list(module.buffers()):
                total += tensor.numel() * tensor.element_size()
    return total


class ModelManager:
    """Find, load, cache and hot-swap checkpoints for one device policy."""

    def __init__(self, paths, settings, policy, allow_unsafe_pickle: bool = False, *,
                 hasher: Hasher = sha256_of, ram_bytes: int | None = None,
                 loader: Callable[..., tuple[Any, Any]] = load_pipeline):
        self.paths = paths
        self.settings = settings
        self.policy = policy
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.registry = Registry.from_paths(paths, hasher)
        self.stats = ManagerStats()
        self._loader = loader
        self._ram_bytes = ram_bytes
        self._load_lock = threading.Lock()
        self._cond = threading.Condition()
        self._cache: OrderedDict[Path, LoadedModel] = OrderedDict()  # LRU first; includes the active one
        self._active: LoadedModel | None = None
        self._companion: Path | None = None  # the last second model a job used: kept cached with the active one
        self._companion_lock = threading.Lock()
        self._users = 0
        self._swapping = False
        self._local = threading.local()
        self.registry.refresh()

    # -- registry ------------------------------------------------------------------------------

    def checkpoints(self) -> list[CheckpointInfo]:
        """Every checkpoint found at the last refresh (user ones first)."""
        return self.registry.checkpoints()

    def refresh(self) -> list[CheckpointInfo]:
        """Rescan the checkpoint folders (no file contents are read)."""
        return self.registry.refresh()

    def find(self, name: str | Path | None) -> CheckpointInfo | None:
        """Look a checkpoint up by title, name (with or without hash), short hash or path."""
        return self.registry.find(name)

    def ensure_hash(self, info: CheckpointInfo) -> CheckpointInfo:
        """Compute (or take from cache.json) the checkpoint's SHA-256."""
        return self.registry.ensure_hash(info)

    # -- the active model ----------------------------------------------------------------------

    def current(self) -> LoadedModel | None:
        """The active model, or None when nothing is loaded."""
        with self._cond:
            return self._active

    def cached(self) -> list[LoadedModel]:
        """Loaded models, least recently used first (the active one included)."""
        with self._cond:
            return list(self._cache.values())

    @contextmanager
    def active(self) -> Iterator[LoadedModel]:
        """Hold the active model for a whole job; a swap waits until every holder has left."""
        with self._cond:
            while self._swapping:
                self._cond.wait()
            if self._active is None:
                raise ModelLoadError(f"No checkpoint is loaded. Put a .safetensors checkpoint in "
                                     f"{self.paths.ckpt_dir} and select it.")
            self._users += 1
            model = self._active
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield model
        finally:
            self._local.depth -= 1
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    @contextmanager
    def companion(self, name: str | Path) -> Iterator[LoadedModel]:
        """A second checkpoint for the running job (hires checkpoint, refiner), beside the active one.

        It comes from the RAM cache or is loaded into it (the active model stays active), is
        placed on the device for the job and parked again after. The last companion is kept in
        the cache with the active model, whatever sd_checkpoints_limit says, so the next job does
        not read it from disk again.
        """
        info = self.find(name)
        if info is None:
            raise ModelLoadError(f"no checkpoint matches {str(name)!r}; {len(self.checkpoints())} known in "
                                 f"{self.paths.ckpt_dir} (refresh after adding files)")
        current = self.current()
        if current is not None and current.info.filename == info.filename:
            yield current
            return
        with self._companion_lock:  # not _load_lock: a swap holding it waits for this job to end
            with self._cond:
                model = self._cache.get(info.filename)
                if model is not None and (model.info.size, model.info.mtime) != (info.size, info.mtime):
                    self._cache.pop(info.filename, None)
                    model = None
            if model is not None:
                self.stats.cache_hits += 1
            else:
                model = self._load(info)
            with self._cond:
                self._cache[info.filename] = model
                self._cache.move_to_end(info.filename)
                self._companion = info.filename
        self._evict()
        try:
            self.policy.apply(model.pipe)
        except Exception as exc:
            self.policy.release(model.pipe)
            raise ModelLoadError(f"{model.info.name}: could not be placed on {self.policy.device}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        try:
            yield model
        finally:
            if model is not self.current():
                self.policy.release(model.pipe)

    def select(self, name: str | Path) -> LoadedModel:
        """Make a checkpoint active (from the cache or from disk) and remember it in settings.

        On failure the previous model stays active and ModelLoadError is raised.
        """
        info = self.find(name)
        if info is None:
            raise ModelLoadError(f"no checkpoint matches {str(name)!r}; {len(self.checkpoints())} known in "
                                 f"{self.paths.ckpt_dir} (refresh after adding files)")
        model = self._switch(info)
        try:
            self.settings.set("sd_model_checkpoint", model.info.title)
        except Exception as exc:  # a read-only config.json must not undo a working swap
            log.warning("could not save sd_model_checkpoint: %s", exc)
        return model

    def _switch(self, info: CheckpointInfo) -> LoadedModel:
        if getattr(self._local, "depth", 0):
            raise RuntimeError("select() called while this thread holds manager.active(): it would wait forever")
        with self._load_lock:
            current = self.current()
            model = self._cache.get(info.filename)
            if model is not None and (model.info.size, model.info.mtime) != (info.size, info.mtime):
                # The file was replaced since it was loaded: the cached weights are stale.
                with self._cond:
                    self._cache.pop(info.filename, None)
                model = None
            elif current is not None and current is model:
                return current
            if model is not None:
                self.stats.cache_hits += 1
            else:
                model = self._load(info)
            self._install(model, current)
            return model

    def _load(self, info: CheckpointInfo) -> LoadedModel:
        # Make room first: parked models beyond the limit would otherwise coexist with the new one.
        self._evict(extra=1)
        self.registry.ensure_hash(info)  # A1111 hashes on first load; the title then carries it
        started = time.perf_counter()
        self.stats.file_reads += 1
        try:
            pipe, probe = self._loader(info.filename, configs_dir=self.paths.configs_dir,
                                       torch_dtype=self.policy.unet_dtype,
                                       allow_unsafe_pickle=self.allow_unsafe_pickle, vae=None)
        except ModelLoadError:
            self.stats.failures += 1
            raise
        except (torch.OutOfMemoryError, MemoryError) as exc:
            self.stats.failures += 1
            raise ModelLoadError(f"{info.name}: out of memory while loading") from exc
        self.stats.loads += 1
        native = int(pipe.unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))
        model = LoadedModel(info=info, pipe=pipe, arch=probe.arch, native_size=native,
                            prediction_type=probe.prediction_type, ram_bytes=pipe_bytes(pipe),
                            scheduler_config=dict(pipe.scheduler.config))
        log.info("loaded %s (%s, %dpx, %.1f GB) in %.1fs", info.title, probe.arch, native,
                 model.ram_bytes / 1024**3, time.perf_counter() - started)
        return model

    def _install(self, model: LoadedModel, previous: LoadedModel | None) -> None:
        """Wait for generations on the previous model to end, then swap device placement."""
        with self._cond:
            self._swapping = True
            while self._users:
                self._cond.wait()
        try:
            if previous is not None:
                self.policy.release(previous.pipe)
            try:
                self.policy.apply(model.pipe)
            except Exception as exc:  # e.g. CUDA out of memory: put the previous model back
                self.policy.release(model.pipe)
                if previous is not None:
                    self.policy.apply(previous.pipe)
                self.stats.failures += 1
                raise ModelLoadError(f"{model.info.name}: could not be placed on {self.policy.device}: "
                                     f"{type(exc).__name__}: {exc}") from exc
            with self._cond:
                self._cache[model.info.filename] = model
                self._cache.move_to_end(model.info.filename)
                self._active = model
        finally:
            with self._cond:
                self._swapping = False
                self._cond.notify_all()
        self._evict()

    def _budget_bytes(self) -> int:
        total = self._ram_bytes
        if total is None:
            import psutil

            total = psutil.virtual_memory().total
        return int(total * float(self.settings.get("sd_checkpoint_cache_ram_fraction")))

    def _evict(self, extra: int = 0) -> None:
        """Drop parked models, least recently used first, while over the count or RAM budget."""
        limit = int(self.settings.get("sd_checkpoints_limit"))
        budget = self._budget_bytes()
        dropped = []
        with self._cond:
            for key in list(self._cache):
                parked = [m for m in self._cache.values() if m is not self._active]
                over_count = len(self._cache) + extra > limit
                over_ram = sum(m.ram_bytes for m in parked) > budget
                if not (over_count or over_ram):
                    break
                if self._cache[key] is self._active or key == self._companion:
                    continue
                dropped.append(self._cache.pop(key))
        for model in dropped:
            log.info("unloaded %s from the RAM cache", model.info.title)
            self.stats.evictions += 1
        if dropped:
            dropped.clear()
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def reload_active(self) -> LoadedModel | None:
        """Load the active checkpoint again from disk (an extension left its weights changed).

        Runs between jobs (it waits for holders of active() like a swap); None when nothing is loaded.
        """
        with self._load_lock:
            current = self.current()
            if current is None:
                return None
            with self._cond:
                self._cache.pop(current.info.filename, None)
            model = self._load(current.info)
            self._install(model, current)
            return model

    def unload(self) -> None:
        """Drop every loaded model (e.g. before training needs the memory)."""
        with self._load_lock:
            with self._cond:
                self._swapping = True
                while self._users:
                    self._cond.wait()
                self._cache.clear()
                self._active = None
                self._swapping = False
                self._cond.notify_all()
            gc.collect()

    # -- startup -------------------------------------------------------------------------------

    def startup(self, ckpt_flag: Path | str | None = None) -> str:
        """Load the startup checkpoint and return one line for the log and UI.

        Order: `--ckpt` (a path or a title); else the last one used (settings); else the first
        found, user checkpoints before the bundled demo. With none, say where to put one.
        """
        notes: list[str] = []
        candidates: list[CheckpointInfo] = []
        if ckpt_flag:
            info = self._flag_checkpoint(ckpt_flag)
            if info is None:
                notes.append(f"--ckpt {ckpt_flag}: no such file or checkpoint")
            else:
                candidates.append(info)
        if not candidates:
            last = self.find(self.settings.get("sd_model_checkpoint"))
            if last is not None:
                candidates.append(last)
            candidates += [i for i in self.checkpoints()[:1] if i not in candidates]
        if not candidates:
            return "; ".join(notes + [f"No checkpoint found: put a .safetensors checkpoint in {self.paths.ckpt_dir} "
                                      "and refresh the list; the UI starts without a model"])
        for info in candidates:
            started = time.perf_counter()
            try:
                model = self._switch(info)
            except ModelLoadError as exc:
                notes.append(f"could not load {info.name}: {exc}")
                continue
            notes.append(f"Loaded checkpoint {model.info.title} ({model.arch}, {model.native_size}x"
                         f"{model.native_size}) in {time.perf_counter() - started:.1f}s")
            return "; ".join(notes)
        return "; ".join(notes + ["no checkpoint loaded; choose one in the UI"])

    def _flag_checkpoint(self, flag: Path | str) -> CheckpointInfo | None:
        text = str(flag)
        path = Path(text).expanduser()
        if path.exists():
            found = self.registry.find(str(path))
            return found if found is not None else self.registry.add_file(path)
        return self.find(text)
