"""A1111-style prompt encoding for diffusers SD 1.x/2.x and SDXL pipelines.

A prompt becomes chunks of 75 tokens (77 with BOS/EOS), each encoded on its
own and concatenated along the sequence axis, so prompts have no length limit.
Attention weights scale each token's output vector and the chunk's mean is then
restored (A1111's "Original" emphasis).

Why not compel (installed): compel weights by blending/masking and never
restores the mean, so its embeddings differ from A1111's for the same prompt;
A1111's rule is a few lines of tensor code, and doing it by hand keeps images
reproducible from A1111 infotext.

Shapes: every tensor returned has batch size 1 (``[1, seq, dim]`` and
``[1, pooled_dim]``); the caller repeats for its batch (diffusers does it with
``num_images_per_prompt``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from webui.generation.prompt_parser import BREAK, PromptRun, get_prompt_schedule, parse_prompt_attention

CHUNK_LENGTH = 75
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")

TokenExpander = Callable[[list[int]], list[int]]
"""Seam for textual-inversion embeddings: given the token ids of one weighted run,
return the ids to encode instead (an embedding's name replaced by one placeholder
id per vector). The run's weight applies to all of them. An expander with a
``span_length(token)`` method keeps an embedding's placeholders in one chunk, as
A1111 does (the embeddings room, ``webui.models.networks.embeddings``, has one)."""


@dataclass
class PromptChunk:
    """One encoder call's worth of prompt: 77 token ids and their weights."""

    tokens: list[int]
    weights: list[float]


@dataclass
class Conditioning:
    """Encoded prompt and negative prompt, ready for a diffusers pipeline call.

    ``prompt_embeds`` and ``negative_prompt_embeds`` are ``[1, seq, dim]`` with
    the same ``seq`` (a multiple of 77); the pooled tensors are ``[1, dim]`` for
    SDXL and ``None`` otherwise.
    """

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None

    def as_pipeline_kwargs(self) -> dict:
        """Keyword arguments for a StableDiffusion(XL)Pipeline call, replacing prompt/negative_prompt."""
        kwargs = {"prompt_embeds": self.prompt_embeds, "negative_prompt_embeds": self.negative_prompt_embeds}
        if self.pooled_prompt_embeds is not None:
            kwargs["pooled_prompt_embeds"] = self.pooled_prompt_embeds
            kwargs["negative_pooled_prompt_embeds"] = self.negative_pooled_prompt_embeds
        return kwargs


def _comma_id(tokenizer) -> int | None:
    # A single-token lookup: get_vocab() would rebuild the 49k-entry dict (~15 ms) on every prompt.
    token_id = tokenizer.convert_tokens_to_ids(",</w>")
    return None if token_id is None or token_id == tokenizer.unk_token_id else token_id


def _weighted_runs(prompt: str, emphasis: str) -> list:
    if emphasis not in EMPHASIS_MODES:
        raise ValueError(f"unknown emphasis mode {emphasis!r}; expected one of {', '.join(EMPHASIS_MODES)}")
    if emphasis == "None":
        return [PromptRun(prompt, 1.0)]  # brackets stay literal text, as in A1111
    runs = parse_prompt_attention(prompt)
    if emphasis == "Ignore":
        return [run if run is BREAK else PromptRun(run.text, 1.0) for run in runs]
    return runs


def tokenize_prompt(
    tokenizer,
    prompt: str,
    comma_backtrack: int = 20,
    emphasis: str = "Original",
    expand_tokens: TokenExpander | None = None,
) -> tuple[list[PromptChunk], int]:
    """Split ``prompt`` into 77-token chunks with per-token weights, A1111's way.

    Returns ``(chunks, token_count)``. A chunk that fills up is cut after its
    last comma when that comma is within ``comma_backtrack`` tokens of the end
    (0 disables), and the words after it move to the next chunk; ``BREAK``
    pads the current chunk and starts a new one; an empty prompt gives one
    chunk. ``token_count`` is what A1111's counter shows: 75 per finished chunk
    plus the tokens of the last one.
    """
    if comma_backtrack < 0:
        raise ValueError(f"comma_backtrack must be >= 0, got {comma_backtrack}")
    runs = _weighted_runs(prompt, emphasis)
    texts = [run.text for run in runs if run is not BREAK]
    # verbose=False: long prompts are expected here, no "sequence too long" warning
    # (a prompt of only BREAKs has no text, and tokenizers reject an empty batch)
    encoded = iter(tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
                   if texts else [])
    comma = _comma_id(tokenizer)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id

    chunks: list[PromptChunk] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1
    token_count = 0

    def close_chunk(is_last: bool = False) -> None:
        nonlocal tokens, weights, last_comma, token_count
        token_count += len(tokens) if is_last else CHUNK_LENGTH
        padding = CHUNK_LENGTH - len(tokens)
        chunks.append(PromptChunk([bos] + tokens + [eos] * (padding + 1), [1.0] + weights + [1.0] * (padding + 1)))
        tokens, weights, last_comma = [], [], -1

    span_length = getattr(expand_tokens, "span_length", None)
    for run in runs:
        if run is BREAK:
            close_chunk()
            continue
        ids = next(encoded)
        if expand_tokens is not None:
            ids = expand_tokens(ids)
        for token in ids:
            span = span_length(token) if span_length is not None else None
            if span is not None and tokens and len(tokens) + span > CHUNK_LENGTH:
                close_chunk()  # an embedding's vectors are never split across chunks
            if token == comma:
                last_comma = len(tokens)
            elif (
                comma_backtrack
                and len(tokens) == CHUNK_LENGTH
                and last_comma != -1
                and len(tokens) - last_comma <= comma_backtrack
            ):
                # Move the words after the last comma into the next chunk so a
                # phrase is not cut in two.
                moved_tokens, moved_weights = tokens[last_comma + 1 :], weights[last_comma + 1 :]
                tokens, weights = tokens[: last_comma + 1], weights[: last_comma + 1]
                close_chunk()
                tokens, weights = moved_tokens, moved_weights
            if len(tokens) == CHUNK_LENGTH:
                close_chunk()
            tokens.append(token)
            weights.append(run.weight)

    if tokens or not chunks:
        close_chunk(is_last=True)
    return chunks, token_count


def count_tokens(tokenizer, prompt: str, steps: int = 20, comma_backtrack: int = 20,
                 expand_tokens: TokenExpander | None = None) -> tuple[int, int]:
    """Token counter for the UI: ``(tokens_used, token_limit)``, e.g. ``(12, 75)`` or ``(80, 150)``.

    Like A1111 it counts the longest text the prompt-editing schedule produces
    for ``steps`` steps, without extra-network tags (``<lora:...>``), and an
    embedding as its number of vectors when ``expand_tokens`` knows it.
    """
    from webui.models.networks.tags import TAG

    prompt = TAG.sub("", prompt)
    schedule = get_prompt_schedule(prompt, max(steps, 1))
    used = max(tokenize_prompt(tokenizer, text, comma_backtrack, expand_tokens=expand_tokens)[1] for _, text in schedule)
    return used, math.ceil(max(used, 1) / CHUNK_LENGTH) * CHUNK_LENGTH


def _empty_chunk(tokenizer) -> PromptChunk:
    """The chunk of an empty prompt; used to pad the shorter of prompt/negative."""
    length = CHUNK_LENGTH + 2
    return PromptChunk([tokenizer.bos_token_id] + [tokenizer.eos_token_id] * (length - 1), [1.0] * length)


def _token_tensor(tokenizer, chunks: list[PromptChunk], device) -> torch.Tensor:
    ids = torch.tensor([chunk.tokens for chunk in chunks], dtype=torch.long)
    pad = tokenizer.pad_token_id
    if pad is not None and pad != tokenizer.eos_token_id:
        # OpenCLIP-style encoders (SD 2.x, SDXL's second) were trained with a
        # distinct pad token after the first EOS; A1111 rewrites it the same way.
        first_eos = (ids == tokenizer.eos_token_id).int().argmax(dim=1)
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        ids[positions > first_eos.unsqueeze(1)] = pad
    return ids.to(device)


def _apply_weights(z: torch.Tensor, chunks: list[PromptChunk], emphasis: str) -> torch.Tensor:
    if emphasis in ("Ignore", "None"):
        return z
    weights = torch.tensor([chunk.weights for chunk in chunks], dtype=z.dtype, device=z.device).unsqueeze(-1)
    if emphasis == "No norm":
        return z * weights
    # A1111: scale each token's vector, then rescale the chunk so its overall
    # mean is what the encoder produced (per chunk, per prompt).
    original_mean = z.mean(dim=(1, 2), keepdim=True)
    weighted = z * weights
    new_mean = weighted.mean(dim=(1, 2), keepdim=True)
    # Unweighted chunks are returned untouched (A1111's x * (m / m) is the same
    # up to rounding, or NaN when m is exactly 0).
    plain = (weights == 1).all(dim=1, keepdim=True)
    return torch.where(plain, z, weighted * (original_mean / new_mean))


def _encode(tokenizer, encoder, chunks: list[PromptChunk], layer: int, final_norm: bool, emphasis: str,
            embeddings=None):
    """Encode chunks in one batch; returns (weighted hidden states [n, 77, dim], text_embeds or None).

    With ``embeddings``, placeholder ids become their vectors (``embeddings.splice``)."""
    ids = _token_tensor(tokenizer, chunks, encoder.device)
    if embeddings is None:
        out = encoder(ids, output_hidden_states=True)
    else:
        with embeddings.splice(encoder, ids) as plain_ids:
            out = encoder(plain_ids, output_hidden_states=True)
    if layer == -1 and final_norm:
        z = out.last_hidden_state
    else:
        z = out.hidden_states[layer]
        if final_norm:
            # transformers 5 flattened CLIPTextModel (no .text_model); older versions nest it
            z = getattr(encoder, "text_model", encoder).final_layer_norm(z)
    return _apply_weights(z, chunks, emphasis), getattr(out, "text_embeds", None)


def _text_pairs(pipe) -> tuple[list[tuple[object, object]], bool]:
    """(tokenizer, text encoder) pairs of the pipeline and whether it is SDXL-style."""
    second = getattr(pipe, "text_encoder_2", None)
    if second is None:
        return [(pipe.tokenizer, pipe.text_encoder)], False
    pairs = [(pipe.tokenizer, pipe.text_encoder)] if getattr(pipe, "text_encoder", None) is not None else []
    return pairs + [(pipe.tokenizer_2, second)], True


def encode_prompts(
    pipe,
    prompt: str,
    negative: str,
    clip_skip: int = 1,
    comma_backtrack: int = 20,
    steps: int | None = None,
    emphasis: str = "Original",
    expand_tokens: TokenExpander | None = None,
    embeddings=None,
) -> Conditioning:
    """Encode prompt and negative prompt with A1111 semantics for ``pipe``'s text encoder(s).

    SD 1.x/2.x: ``clip_skip`` is A1111's "Clip skip" (1 = last layer, 2 =
    penultimate + final layer norm; diffusers' own ``clip_skip`` is this minus
    one). SDXL: both encoders' penultimate hidden states without final norm,
    concatenated on the feature axis; pooled from the second encoder's first
    chunk; ``clip_skip`` is ignored, as in A1111 by default; an empty negative
    gives zeros, as A1111 does. A refiner (second encoder only) works too.

    With ``steps``, prompt-editing syntax (``[a:b:when]``, ``[a|b]``) is
    resolved to the text of the final step; without it the text is encoded
    as written. The shorter of prompt/negative is padded with empty chunks so
    both have the same length.

    Extra-network tags (``<lora:name:1>``) are removed from the prompt first.
    ``embeddings`` (an ``EmbeddingLookup``) finds textual-inversion embedding
    names in both prompts and encodes their vectors in place of the names.
    """
    from webui.models.networks.tags import TAG

    prompt = TAG.sub("", prompt)  # <lora:...> tags are instructions, not text (A1111 strips the positive prompt's)
    if steps is not None:
        prompt = get_prompt_schedule(prompt, steps)[-1][1]
        negative = get_prompt_schedule(negative, steps)[-1][1]
    pairs, is_sdxl = _text_pairs(pipe)
    if not is_sdxl and not 1 <= clip_skip <= pipe.text_encoder.config.num_hidden_layers:
        raise ValueError(
            f"clip skip must be between 1 and {pipe.text_encoder.config.num_hidden_layers}, got {clip_skip}"
        )
    zero_negative = is_sdxl and negative == ""

    prompt_parts, negative_parts = [], []
    pooled = negative_pooled = None
    with torch.no_grad():
        for tokenizer, encoder in pairs:
            expand = embeddings.expander(tokenizer) if embeddings is not None else expand_tokens
            kwargs = {"comma_backtrack": comma_backtrack, "emphasis": emphasis, "expand_tokens": expand}
            positive_chunks, _ = tokenize_prompt(tokenizer, prompt, **kwargs)
            negative_chunks, _ = tokenize_prompt(tokenizer, negative, **kwargs)
            length = max(len(positive_chunks), len(negative_chunks))
            positive_chunks += [_empty_chunk(tokenizer)] * (length - len(positive_chunks))
            negative_chunks += [_empty_chunk(tokenizer)] * (length - len(negative_chunks))
            layer, final_norm = (-2, False) if is_sdxl else (-clip_skip, True)
            z, text_embeds = _encode(tokenizer, encoder, positive_chunks + negative_chunks, layer, final_norm, emphasis,
                                     embeddings)
            prompt_parts.append(z[:length].reshape(1, -1, z.shape[-1]))
            negative_parts.append(z[length:].reshape(1, -1, z.shape[-1]))
            if is_sdxl and text_embeds is not None:
                # A1111 pools from the first chunk only.
                pooled, negative_pooled = text_embeds[0:1], text_embeds[length : length + 1]

    prompt_embeds = torch.cat(prompt_parts, dim=-1)
    negative_embeds = torch.cat(negative_parts, dim=-1)
    if zero_negative:
        negative_embeds = torch.zeros_like(negative_embeds)
        negative_pooled = torch.zeros_like(pooled) if pooled is not None else None
    return Conditioning(prompt_embeds, negative_embeds, pooled, negative_pooled)
