"""NetworkManager: every network kind of one app (LoRA family, embeddings, hypernetworks, VAE) and
what they do to one job.

The generation core uses one call around a job:

    with networks.activate(model, prompt, negative, request.override_settings) as job:
        cond = encode_prompts(pipe, job.prompt, job.negative, ..., embeddings=job.embeddings)
        ... the pipeline call ...
        build_infotext(..., vae_name=job.vae_name, vae_hash=job.vae_hash, extra=job.infotext())

`activate` puts the chosen VAE in place, patches the LoRA set the prompt asks for (a no-op
when the weights already hold it; weights stay patched after the job, as in A1111, so the next
job with the same set costs nothing), attaches hypernetworks for the job, strips the tags from
the prompt and collects `comments` (networks not found, refused, of another base) for the user.
"""
from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from webui.models.errors import ModelLoadError
from webui.models.networks.embeddings import EmbeddingDatabase, EmbeddingLookup
from webui.models.networks.files import NetworkFile, NetworkFolder, SectionedHashCache
from webui.models.networks.hypernetworks import Hypernetwork, attach, load_hypernetwork
from webui.models.networks.keys import ModuleIndex
from webui.models.networks.network import BoundNetwork, Network, bind, load_network
from webui.models.networks.patcher import Activation, PatchStats, WeightPatcher
from webui.models.networks.tags import extract_networks
from webui.models.networks.vae import VaeError, VaeLibrary

log = logging.getLogger(__name__)

LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")
EMBEDDING_SUFFIXES = (".pt", ".bin", ".safetensors")
HYPERNET_SUFFIXES = (".pt",)
NETWORKS_KEPT = 4  # LoRA files kept parsed in RAM besides the ones in use


@dataclass
class NetworkDirs:
    """Folders of each kind (A1111: models/Lora + models/LyCORIS, embeddings/, models/hypernetworks, models/VAE)."""

    lora: list[Path]
    embeddings: Path
    hypernetworks: Path
    vae: Path
    checkpoints: Path | None = None

    @classmethod
    def from_paths(cls, paths, args=None) -> "NetworkDirs":
        models = paths.data_dir / "models"
        lyco = getattr(args, "lyco_dir_backcompat", None) or models / "LyCORIS"
        hyper = getattr(args, "hypernetwork_dir", None) or models / "hypernetworks"
        return cls([paths.lora_dir, Path(lyco).resolve()], paths.embeddings_dir, Path(hyper).resolve(),
                   paths.vae_dir, paths.ckpt_dir)


@dataclass
class JobNetworks:
    """What networks did for one job: the prompt to encode, embeddings, VAE, infotext and comments."""

    prompt: str
    negative: str
    embeddings: EmbeddingLookup
    vae_name: str | None = None
    vae_hash: str | None = None
    loras: list[tuple[str, NetworkFile]] = field(default_factory=list)  # (name as written, file) applied
    hypernets: list[Hypernetwork] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    patch: PatchStats | None = None
    _manager: "NetworkManager | None" = field(default=None, repr=False)

    def infotext(self) -> dict[str, str]:
        """A1111's extra infotext keys: `Lora hashes`, `TI hashes` (hashing files on first use)."""
        out = {}
        manager = self._manager
        parts = []
        for name, file in self.loras:
            digest = manager.loras.ensure_hash(file) if manager else file.sha256
            if digest:
                parts.append(f"{name.replace(':', '').replace(',', '')}: {digest[:12]}")
        if parts:
            out["Lora hashes"] = ", ".join(parts)
        if manager is not None:
            for emb in self.embeddings.used.values():
                if emb.file is not None:
                    manager.embedding_folder.ensure_hash(emb.file)
        ti = self.embeddings.hashes()
        if ti:
            out["TI hashes"] = ti
        return out


class NetworkManager:
    """Folders, caches and per-model state of every network kind for one app."""

    def __init__(self, dirs: NetworkDirs, settings, cache_file: Path | None, allow_unsafe_pickle: bool = False):
        self.dirs = dirs
        self.settings = settings
        self.allow_unsafe_pickle = allow_unsafe_pickle
        cache = SectionedHashCache(cache_file)
        self.loras = NetworkFolder("lora", dirs.lora, LORA_SUFFIXES, cache, use_addnet_hash=True)
        self.embedding_folder = NetworkFolder("embedding", [dirs.embeddings], EMBEDDING_SUFFIXES, cache)
        self.embeddings = EmbeddingDatabase(self.embedding_folder, allow_unsafe_pickle)
        self.hypernetworks = NetworkFolder("hypernetwork", [dirs.hypernetworks], HYPERNET_SUFFIXES, cache)
        self.vaes = VaeLibrary(dirs.vae, dirs.checkpoints, cache, allow_unsafe_pickle)
        self._patchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._indexes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._bindings: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pipe -> {id(network): bound}
        self._networks: OrderedDict[tuple, Network] = OrderedDict()
        self._hypers: OrderedDict[tuple, Hypernetwork] = OrderedDict()
        self._lock = threading.RLock()
        if hasattr(settings, "add_option") and "extra_networks_default_multiplier" not in settings.options:
            from webui.settings import Option

            settings.add_option(Option("extra_networks_default_multiplier", 1.0,
                                       "Weight a LoRA / hypernetwork card inserts (when it has no preferred weight)",
                                       "Extra Networks", 0.0, 2.0))

    @classmethod
    def from_paths(cls, paths, settings, args=None) -> "NetworkManager":
        return cls(NetworkDirs.from_paths(paths, args), settings, paths.cache_file,
                   bool(getattr(args, "disable_safe_unpickle", False)))

    # -- lookups ----------------------------------------------------------------------------------

    def find_lora(self, name: str) -> NetworkFile | None:
        """By file name (stem), then by kohya's `ss_output_name` alias, as A1111 resolves tags."""
        found = self.loras.find(name)
        if found is not None:
            return found
        for item in self.loras.files():
            if item.is_safetensors and str(item.metadata().get("ss_output_name", "")) == name:
                return item
        return None

    def load_lora(self, file: NetworkFile) -> Network:
        """The parsed network of a file (cached while unchanged on disk)."""
        key = (str(file.filename), file.mtime, file.size)
        with self._lock:
            if key in self._networks:
                self._networks.move_to_end(key)
                return self._networks[key]
        network = load_network(file.filename, file.name, self.allow_unsafe_pickle)
        with self._lock:
            self._networks[key] = network
            while len(self._networks) > NETWORKS_KEPT + 8:
                self._networks.popitem(last=False)
        return network

    def load_hypernet(self, file: NetworkFile) -> Hypernetwork:
        key = (str(file.filename), file.mtime, file.size)
        with self._lock:
            if key not in self._hypers:
                self._hypers[key] = load_hypernetwork(file, self.allow_unsafe_pickle)
                while len(self._hypers) > NETWORKS_KEPT:
                    self._hypers.popitem(last=False)
            return self._hypers[key]

    def patcher(self, pipe) -> WeightPatcher:
        with self._lock:
            if pipe not in self._patchers:
                self._patchers[pipe] = WeightPatcher()
            return self._patchers[pipe]

    def index(self, pipe) -> ModuleIndex:
        with self._lock:
            if pipe not in self._indexes:
                self._indexes[pipe] = ModuleIndex(pipe)
            return self._indexes[pipe]

    def bind(self, network: Network, model) -> BoundNetwork:
        """`bind` once per (network, model): the shape check walks every layer."""
        with self._lock:
            cache = self._bindings.setdefault(model.pipe, {})
            bound = cache.get(id(network))
            if bound is None or bound.network is not network:
                bound = bind(network, self.index(model.pipe), model.arch)
                cache[id(network)] = bound
                alive = {id(n) for n in self._networks.values()} | {id(network)}
                for key in [k for k in cache if k not in alive]:
                    del cache[key]  # networks dropped from the file cache
            return bound

    def restore(self, pipe) -> int:
        """Take every LoRA out of `pipe`'s weights (e.g. before training or exporting it)."""
        return self.patcher(pipe).restore()

    def refresh(self) -> None:
        for folder in (self.loras, self.hypernetworks):
            folder.refresh()
        self.embeddings.refresh()
        self.vaes.refresh()

    # -- one job ----------------------------------------------------------------------------------

    def _setting(self, overrides: dict, key: str, default=None):
        if key in (overrides or {}):
            return overrides[key]
        try:
            return self.settings.get(key)
        except KeyError:
            return default

    def apply_vae(self, model, choice: str, job: JobNetworks | None = None) -> NetworkFile | None:
        """Put the VAE `choice` means into the model; VaeError keeps the previous one."""
        file = self.vaes.apply(model.pipe, model.arch, choice, getattr(model.info, "filename", None))
        if job is not None and file is not None:
            job.vae_name = file.name
            job.vae_hash = self.vaes.folder.ensure_hash(file)[:10]
        return file

    def _loras(self, model, uses, job: JobNetworks) -> list[Activation]:
        activations, missing = [], []
        if any(self.find_lora(use.name) is None for use in uses):
            self.loras.refresh()  # A1111 rescans once when a prompt names a file it has not seen
        for use in uses:
            file = self.find_lora(use.name)
            if file is None:
                missing.append(use.name)
                continue
            try:
                network = self.load_lora(file)
            except ModelLoadError as exc:
                job.comments.append(f"LoRA {use.name} not used: {exc}")
                continue
            bound = self.bind(network, model)
            if bound.problem:
                job.comments.append(f"LoRA {use.name} skipped: {bound.problem}")
                continue
            activations.append(Activation(bound, use.te, use.unet, use.dyn))
            job.loras.append((use.name, file))
        if missing:
            job.comments.append(f"Networks not found: {', '.join(missing)}")  # A1111's words
        return activations

    def _hypernets(self, uses, job: JobNetworks) -> list[Hypernetwork]:
        out, missing = [], []
        if any(self.hypernetworks.find(use.name) is None for use in uses):
            self.hypernetworks.refresh()
        for use in uses:
            file = self.hypernetworks.find(use.name)
            if file is None:
                missing.append(use.name)
                continue
            try:
                hyper = self.load_hypernet(file)
            except ModelLoadError as exc:
                job.comments.append(f"Hypernetwork {use.name} not used: {exc}")
                continue
            hyper.set_multiplier(use.multiplier)
            out.append(hyper)
        if missing:
            job.comments.append(f"Hypernetworks not found: {', '.join(missing)}")
        return out

    @contextmanager
    def activate(self, model, prompt: str, negative: str, overrides: dict | None = None) -> Iterator[JobNetworks]:
        """Networks for one job on `model` (a LoadedModel held by the caller); see the module docstring.

        Raises TagError (a bad request) for a malformed tag; everything else a network file can
        get wrong becomes a comment and the job runs without that network.
        """
        overrides = overrides or {}
        (clean_prompt,), tags = extract_networks(prompt)
        self.embeddings.refresh_if_changed()
        job = JobNetworks(prompt=clean_prompt, negative=negative, embeddings=self.embeddings.lookup(model.pipe),
                          _manager=self)
        if tags.unknown:
            job.comments.append(f"Unknown extra networks ignored: {', '.join(tags.unknown)}")
        try:
            self.apply_vae(model, str(self._setting(overrides, "sd_vae", "Automatic")), job)
        except VaeError as exc:
            job.comments.append(f"VAE not changed: {exc}")
            current = self.vaes.current(model.pipe)
            if current is not None:
                job.vae_name, job.vae_hash = current.name, self.vaes.folder.ensure_hash(current)[:10]
        job.patch = self.patcher(model.pipe).apply(self._loras(model, tags.loras, job))
        if job.patch and not job.patch.skipped:
            log.info("LoRA set %s applied in %.2fs (%d layers restored, %d patched)", job.patch.applied or "[]",
                     job.patch.seconds, job.patch.layers_restored, job.patch.layers_patched)
        job.hypernets = self._hypernets(tags.hypernets, job)
        for comment in job.comments:
            log.warning(comment)
        with attach(model.pipe.unet, job.hypernets):
            yield job

    def select_vae(self, models, choice: str) -> NetworkFile | None:
        """The quicksettings / options change of `sd_vae`: apply to the active model now, then save.

        Run it as a queued job so it lands between generations. VaeError leaves model and setting as they were.
        """
        problem = self.vaes.check_choice(choice)
        if problem:
            raise VaeError(problem)
        file = None
        if models.current() is not None:
            with models.active() as model:
                file = self.apply_vae(model, choice)
        self.settings.set("sd_vae", choice)
        return file
