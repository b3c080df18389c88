"""Textual-inversion embeddings: load every A1111 layout, decide which fit the model, splice them in.

Files (name = file stem, used by writing it in the prompt or negative prompt):
- A1111 `.pt` / `.bin`: `{"string_to_param": {"*": [n, dim]}, "step", "sd_checkpoint", "sd_checkpoint_name", ...}`;
- `.safetensors` `{"emb_params": [n, dim]}`, diffusers `learned_embeds.bin` `{"<token>": [dim]}`;
- SDXL: `{"clip_l": [n, 768], "clip_g": [n, 1280]}` (one set of vectors per text encoder).

An embedding fits a model when it is of the model's kind (SDXL pair vs single) and has vectors
of each text encoder's width (768 SD 1.x, 1024 SD 2.x, ...); the rest are listed as skipped.

In a prompt, an embedding's name is found by its token ids (no tokenizer change, as A1111) and
replaced by placeholder ids, one per vector (`EmbeddingLookup.expander`); when the prompt is
encoded those positions get the embedding's vectors in place of token embeddings
(`EmbeddingLookup.splice`). Placeholders carry which embedding and vector they are, so
chunking and comma backtracking can move them like words.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch

from webui.models.errors import ModelLoadError
from webui.models.networks.files import NetworkFile, load_tensors

log = logging.getLogger(__name__)

PLACEHOLDER_BASE = 1 << 30  # far above any vocabulary
_VECTOR_BITS = 10  # up to 1024 vectors per embedding
FILLER_TOKEN = 0  # A1111 puts token 0 where an embedding's vectors go


@dataclass
class Embedding:
    """One embedding file: vectors per text-encoder width, and A1111's descriptive fields."""

    name: str
    vectors: dict[int, torch.Tensor]  # hidden width -> [n, width]
    sdxl: bool = False
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    file: NetworkFile | None = None

    @property
    def count(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])

    @property
    def shape(self) -> int:
        """A1111's `shape`: the vector width (both widths added for SDXL)."""
        return int(sum(v.shape[-1] for v in self.vectors.values()))

    def api_dict(self) -> dict:
        return {"step": self.step, "sd_checkpoint": self.sd_checkpoint, "sd_checkpoint_name": self.sd_checkpoint_name,
                "shape": self.shape, "vectors": self.count}


def _as_matrix(value) -> torch.Tensor:
    tensor = value.detach().to("cpu", torch.float32)
    return tensor.unsqueeze(0) if tensor.ndim == 1 else tensor.reshape(-1, tensor.shape[-1])


def embedding_from_data(data: dict, name: str, file: NetworkFile | None = None) -> Embedding:
    """Read any of the supported layouts; ModelLoadError saying what the file holds otherwise."""
    if not isinstance(data, dict):
        raise ModelLoadError(f"{name}: not an embedding (holds a {type(data).__name__})")
    fields = {k: data.get(k) for k in ("step", "sd_checkpoint", "sd_checkpoint_name")}
    fields = {k: v if isinstance(v, (int, str)) else None for k, v in fields.items()}
    if "string_to_param" in data:
        params = data["string_to_param"]
        tensors = [v for v in (params.values() if hasattr(params, "values") else []) if isinstance(v, torch.Tensor)]
        if len(tensors) != 1:
            raise ModelLoadError(f"{name}: string_to_param should hold one tensor, found {len(tensors)}")
        vec = _as_matrix(tensors[0])
        return Embedding(name, {vec.shape[-1]: vec}, False, file=file, **fields)
    if isinstance(data.get("clip_l"), torch.Tensor) and isinstance(data.get("clip_g"), torch.Tensor):
        clip_l, clip_g = _as_matrix(data["clip_l"]), _as_matrix(data["clip_g"])
        if clip_l.shape[0] != clip_g.shape[0]:
            raise ModelLoadError(f"{name}: clip_l has {clip_l.shape[0]} vectors but clip_g {clip_g.shape[0]}")
        return Embedding(name, {clip_l.shape[-1]: clip_l, clip_g.shape[-1]: clip_g}, True, file=file, **fields)
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if len(tensors) == 1:  # diffusers learned_embeds.bin / {"emb_params": ...}
        vec = _as_matrix(next(iter(tensors.values())))
        return Embedding(name, {vec.shape[-1]: vec}, False, file=file, **fields)
    raise ModelLoadError(f"{name}: not a textual-inversion embedding (keys: {', '.join(sorted(map(str, data))[:5])})")


def load_embedding(file: NetworkFile, allow_unsafe_pickle: bool = False) -> Embedding:
    data, _ = load_tensors(file.filename, allow_unsafe_pickle)
    return embedding_from_data(data, file.name, file)


def encoder_widths(pipe) -> tuple[list[int], bool]:
    """(hidden width of each text encoder in order, whether the model is SDXL-style)."""
    widths = []
    for name in ("text_encoder", "text_encoder_2"):
        encoder = getattr(pipe, name, None)
        if encoder is not None:
            widths.append(int(encoder.config.hidden_size))
    return widths, getattr(pipe, "text_encoder_2", None) is not None


def fits(embedding: Embedding, widths: list[int], sdxl: bool) -> bool:
    return embedding.sdxl == sdxl and all(w in embedding.vectors for w in widths)


@dataclass
class EmbeddingLookup:
    """The embeddings usable with one model, found in prompts by token ids."""

    embeddings: list[Embedding]
    used: dict[str, Embedding] = field(default_factory=dict)  # in order of first use, prompt then negative
    _by_tokenizer: dict[int, dict[int, list[tuple[list[int], int]]]] = field(default_factory=dict)

    def _index(self, tokenizer) -> dict[int, list[tuple[list[int], int]]]:
        """first token id -> [(token ids of the name, embedding index)], longest names first."""
        key = id(tokenizer)
        if key not in self._by_tokenizer:
            table: dict[int, list[tuple[list[int], int]]] = {}
            for i, emb in enumerate(self.embeddings):
                ids = tokenizer(emb.name, add_special_tokens=False, verbose=False)["input_ids"]
                if ids:
                    table.setdefault(ids[0], []).append((ids, i))
            for entries in table.values():
                entries.sort(key=lambda e: -len(e[0]))
            self._by_tokenizer[key] = table
        return self._by_tokenizer[key]

    def scan(self, tokenizer, texts: list[str]) -> dict[str, "Embedding"]:
        """Mark the embeddings named in `texts` as used (before encoding, so infotext knows them early)."""
        expand = self.expander(tokenizer)
        for text in texts:
            if text:
                expand(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        return self.used

    def expander(self, tokenizer):
        """A TokenExpander for `tokenizer`: embedding names -> one placeholder per vector."""
        table = self._index(tokenizer)
        lookup = self

        class Expand:
            def __call__(self, ids: list[int]) -> list[int]:
                out, pos = [], 0
                while pos < len(ids):
                    hit = next(((name, i) for name, i in table.get(ids[pos], ())
                                if ids[pos:pos + len(name)] == name), None)
                    if hit is None:
                        out.append(ids[pos])
                        pos += 1
                        continue
                    name_ids, index = hit
                    emb = lookup.embeddings[index]
                    lookup.used.setdefault(emb.name, emb)
                    out += [PLACEHOLDER_BASE + (index << _VECTOR_BITS) + j for j in range(emb.count)]
                    pos += len(name_ids)
                return out

            @staticmethod
            def span_length(token: int) -> int | None:
                """For the first placeholder of an embedding: its vector count (kept in one chunk)."""
                if token < PLACEHOLDER_BASE or (token - PLACEHOLDER_BASE) & ((1 << _VECTOR_BITS) - 1):
                    return None
                return lookup.embeddings[(token - PLACEHOLDER_BASE) >> _VECTOR_BITS].count

        return Expand()

    @contextmanager
    def splice(self, encoder, ids: torch.Tensor) -> Iterator[torch.Tensor]:
        """Yield `ids` with placeholders replaced by the filler token, while a hook on the encoder's
        token embedding puts the embeddings' vectors at those positions."""
        mask = ids >= PLACEHOLDER_BASE
        if not bool(mask.any()):
            yield ids
            return
        width = int(encoder.config.hidden_size)
        positions = mask.nonzero().tolist()
        vectors = []
        for b, p in positions:
            code = int(ids[b, p]) - PLACEHOLDER_BASE
            emb = self.embeddings[code >> _VECTOR_BITS]
            vectors.append(emb.vectors[width][code & ((1 << _VECTOR_BITS) - 1)])
        stacked = torch.stack(vectors)
        rows = torch.tensor([b for b, _ in positions])
        cols = torch.tensor([p for _, p in positions])

        def replace(_module, _inputs, output):
            output = output.clone()
            output[rows.to(output.device), cols.to(output.device)] = stacked.to(output.device, output.dtype)
            return output

        token_embedding = getattr(encoder, "text_model", encoder).embeddings.token_embedding
        handle = token_embedding.register_forward_hook(replace)
        try:
            yield torch.where(mask, torch.full_like(ids, FILLER_TOKEN), ids)
        finally:
            handle.remove()

    def hashes(self) -> str | None:
        """A1111's `TI hashes` value for the embeddings used, 'name: shorthash, ...'."""
        parts = []
        for name, emb in self.used.items():
            short = emb.file.shorthash if emb.file is not None else None
            if short:
                parts.append(f"{name.replace(':', '').replace(',', '')}: {short}")
        return ", ".join(parts) or None


class EmbeddingDatabase:
    """Every embedding file in the embeddings folders, loaded (they are small) and kept until changed."""

    def __init__(self, folder, allow_unsafe_pickle: bool = False):
        self.folder = folder  # a NetworkFolder of kind "embedding"
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self._loaded: dict[str, tuple[tuple, Embedding]] = {}  # name -> ((path, mtime, size), embedding)
        self.failed: dict[str, str] = {}  # name -> why it could not be read
        self._scanned = False
        self._stamp: tuple = ()

    def refresh(self) -> None:
        """Rescan the folders and (re)load files that are new or changed."""
        files = self.folder.refresh()
        loaded, failed = {}, {}
        for item in files:
            if item.name in loaded or item.name in failed:
                continue  # A1111: the first file of a name wins
            stamp = (item.filename, item.mtime, item.size)
            cached = self._loaded.get(item.name)
            if cached is not None and cached[0] == stamp:
                loaded[item.name] = cached
                continue
            try:
                loaded[item.name] = (stamp, load_embedding(item, self.allow_unsafe_pickle))
            except ModelLoadError as exc:
                failed[item.name] = str(exc)
                log.warning("embedding %s skipped: %s", item.name, exc)
        self._loaded, self.failed, self._scanned = loaded, failed, True

    def _folders_stamp(self) -> tuple:
        """mtimes of every folder under the roots: a new, removed or renamed file changes one."""
        import os

        stamp = []
        for root in self.folder.roots:
            for folder, dirs, _ in os.walk(root):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                try:
                    stamp.append((folder, os.stat(folder).st_mtime))
                except OSError:
                    pass
        return tuple(stamp)

    def refresh_if_changed(self) -> None:
        """Reload when the folders changed since the last scan (A1111 checks before each generation)."""
        stamp = self._folders_stamp()
        if not self._scanned or stamp != self._stamp:
            self.refresh()
            self._stamp = stamp

    def all(self) -> list[Embedding]:
        if not self._scanned:
            self.refresh()
        return [emb for _, emb in self._loaded.values()]

    def split(self, pipe) -> tuple[dict[str, Embedding], dict[str, Embedding]]:
        """(embeddings that fit this model, those that do not), by name."""
        widths, sdxl = encoder_widths(pipe)
        loaded, skipped = {}, {}
        for emb in self.all():
            (loaded if fits(emb, widths, sdxl) else skipped)[emb.name] = emb
        return loaded, skipped

    def lookup(self, pipe) -> EmbeddingLookup:
        """A fresh lookup (nothing used yet) over the embeddings that fit `pipe`."""
        loaded, _ = self.split(pipe)
        return EmbeddingLookup(list(loaded.values()))
