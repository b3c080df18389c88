"""Textual-inversion embeddings: A1111's file format, creating one, and putting vectors into a prompt.

File (A1111's ``.pt``): ``{"string_to_token": {"*": 265}, "string_to_param": {"*": [n, dim]},
"name", "step", "sd_checkpoint", "sd_checkpoint_name"}``. A1111, Forge and ComfyUI read it; its
name in a prompt is the file name.

While an embedding trains, its vectors reach the text encoder through a forward hook on the
token-embedding layer: the prompt's ``[name]`` becomes ``n`` copies of CLIP's start token (which
never appears inside a tokenised prompt), and the hook replaces those rows with the vectors. The
same trick serves the sample images, which go through the generation core unchanged.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from webui.training.settings import check_name

PLACEHOLDER_TEXT = "<|startoftext|>"


class EmbeddingError(ValueError):
    """Bad input for creating or training an embedding; the message is for the user."""


@dataclass
class EmbeddingFile:
    name: str
    vectors: torch.Tensor  # [n_vectors, dim]
    step: int = 0
    checkpoint_hash: str | None = None
    checkpoint_name: str | None = None


def save_embedding(path: Path, emb: EmbeddingFile) -> Path:
    """Write A1111's ``.pt`` layout atomically."""
    data = {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": emb.vectors.detach().to("cpu", torch.float32).clone()},
        "name": emb.name,
        "step": int(emb.step),
        "sd_checkpoint": emb.checkpoint_hash,
        "sd_checkpoint_name": emb.checkpoint_name,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)
    return path


def load_embedding(path: Path) -> EmbeddingFile:
    """Read an A1111 ``.pt`` (no pickled code runs) or a single-tensor ``.safetensors``/``.bin``."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EmbeddingError(f"cannot read embedding {path.name}: {exc}") from None
    if "string_to_param" in data:
        params = data["string_to_param"]
        vec = next(iter(params.values()))
        return EmbeddingFile(str(data.get("name") or path.stem), vec.detach().float(), int(data.get("step") or 0),
                             data.get("sd_checkpoint"), data.get("sd_checkpoint_name"))
    tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
    if len(tensors) == 1:
        vec = tensors[0].detach().float()
        return EmbeddingFile(path.stem, vec if vec.dim() == 2 else vec.unsqueeze(0))
    raise EmbeddingError(f"{path.name} is not a textual-inversion embedding A1111 can read "
                         f"(keys: {', '.join(map(str, list(data)[:6]))})")


def token_embedding_layer(text_encoder) -> torch.nn.Embedding:
    model = getattr(text_encoder, "text_model", text_encoder)
    return model.embeddings.token_embedding


def initial_vectors(tokenizer, text_encoder, init_text: str, n_vectors: int) -> torch.Tensor:
    """A1111's init: the init text's token vectors, spread over ``n_vectors``; zeros without init text."""
    layer = token_embedding_layer(text_encoder)
    dim = layer.weight.shape[1]
    vec = torch.zeros(n_vectors, dim)
    if not init_text:
        return vec
    ids = tokenizer(init_text, add_special_tokens=False, truncation=True, max_length=n_vectors).input_ids
    if not ids:
        return vec
    with torch.no_grad():
        embedded = layer.weight[torch.tensor(ids, device=layer.weight.device)].float().cpu()
    for i in range(n_vectors):
        vec[i] = embedded[i * embedded.shape[0] // n_vectors]
    return vec


def create_embedding(folder: Path, name: str, init_text: str, n_vectors: int, model, overwrite: bool = False) -> Path:
    """``embeddings/<name>.pt`` for the loaded model (A1111's Create embedding)."""
    try:
        name = check_name(name, "embedding name")
    except ValueError as exc:
        raise EmbeddingError(str(exc)) from None
    if isinstance(n_vectors, bool) or not isinstance(n_vectors, int) or not 1 <= n_vectors <= 75:
        raise EmbeddingError(f"number of vectors per token must be a whole number from 1 to 75, got {n_vectors!r}")
    if model.arch == "sdxl":
        raise EmbeddingError("textual inversion here trains SD 1.x and 2.x checkpoints (as A1111's does); "
                             "SDXL embeddings can be used, not created")
    path = Path(folder) / f"{name}.pt"
    if path.exists() and not overwrite:
        raise EmbeddingError(f"{path} already exists: tick Overwrite to replace it, or choose another name")
    pipe = model.pipe
    vec = initial_vectors(pipe.tokenizer, pipe.text_encoder, init_text or "", n_vectors)
    info = model.info
    return save_embedding(path, EmbeddingFile(name, vec, 0, info.shorthash, info.model_name))


class VectorHook:
    """Put trainable vectors where CLIP's start token appears after position 0 (see the module docstring)."""

    def __init__(self, text_encoder, vectors: torch.Tensor, start_token_id: int):
        self.layer = token_embedding_layer(text_encoder)
        self.vectors = vectors
        self.start = start_token_id
        self._handle = None

    def _hook(self, module, args, output):
        ids = args[0]
        mask = ids == self.start
        mask[:, 0] = False
        if not bool(mask.any()):
            return output
        n = self.vectors.shape[0]
        out = output.clone()
        for row in range(ids.shape[0]):
            positions = mask[row].nonzero().flatten()
            if len(positions):
                # Each run of n placeholders is one use of the embedding; positions cycle through its vectors.
                index = torch.arange(len(positions), device=ids.device) % n
                out[row, positions] = self.vectors[index].to(out.dtype)
        return out

    @contextmanager
    def installed(self) -> Iterator[None]:
        handle = self.layer.register_forward_hook(self._hook)
        try:
            yield
        finally:
            handle.remove()


def with_placeholders(text: str, name: str, n_vectors: int) -> str:
    """Replace the embedding's name (a whole word) with ``n`` start tokens for the VectorHook."""
    marks = " ".join([PLACEHOLDER_TEXT] * n_vectors)
    return re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", f" {marks} ", text)
