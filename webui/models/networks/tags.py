"""A1111's extra-network tags in prompts: `<lora:name:0.8>`, `<lora:name:te:unet>`, `<hypernet:name:w>`.

`extract_networks` removes every `<kind:args>` tag from a prompt (A1111 removes them all, known
kind or not) and returns what they asked for; the prompt text that is encoded is the rest. The
infotext keeps the prompt as written, tags included, so PNG Info restores them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# A1111's re_extra_net: a word, a colon, anything up to '>'.
TAG = re.compile(r"<(\w+):([^>]+)>")
LORA_KINDS = ("lora", "lyco")  # <lyco:...> is the old a1111-sd-webui-lycoris extension's tag
HYPERNET_KIND = "hypernet"
KNOWN_KINDS = (*LORA_KINDS, HYPERNET_KIND)


class TagError(ValueError):
    """A tag whose arguments are not what A1111 accepts (a weight that is not a number)."""


@dataclass(frozen=True)
class LoraUse:
    """One `<lora:...>` tag: name, text-encoder and UNet multipliers, optional dynamic rank."""

    name: str
    te: float = 1.0
    unet: float = 1.0
    dyn: int | None = None

    @property
    def tag(self) -> str:
        weights = f"{self.te:g}" if self.te == self.unet else f"{self.te:g}:{self.unet:g}"
        return f"<lora:{self.name}:{weights}>"


@dataclass(frozen=True)
class HypernetUse:
    """One `<hypernet:name:weight>` tag."""

    name: str
    multiplier: float = 1.0


@dataclass
class NetworkTags:
    """Everything the extra-network tags of one prompt pair asked for, in order of appearance."""

    loras: list[LoraUse] = field(default_factory=list)
    hypernets: list[HypernetUse] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # tags of kinds nobody handles, e.g. "<foo:bar>"

    def __bool__(self) -> bool:
        return bool(self.loras or self.hypernets)


def _number(text: str, what: str, tag: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise TagError(f"{tag}: {what} must be a number, got {text.strip()!r}") from None
    if not math.isfinite(value):
        raise TagError(f"{tag}: {what} must be a finite number, got {text.strip()!r}")
    return value


def _split(args: str) -> tuple[list[str], dict[str, str]]:
    """A1111's ExtraNetworkParams: ':'-separated; 'key=value' items are named, the rest positional."""
    positional, named = [], {}
    for item in args.split(":"):
        key, eq, value = item.partition("=")
        if eq and re.fullmatch(r"\s*\w+\s*", key):
            named[key.strip()] = value
        else:
            positional.append(item)
    return positional, named


def parse_lora(args: str, tag: str) -> LoraUse:
    positional, named = _split(args)
    name = positional[0].strip() if positional else ""
    if not name:
        raise TagError(f"{tag}: no LoRA name")
    te = _number(positional[1], "the weight", tag) if len(positional) > 1 else 1.0
    te = _number(named["te"], "te", tag) if "te" in named else te
    unet = _number(positional[2], "the UNet weight", tag) if len(positional) > 2 else te
    unet = _number(named["unet"], "unet", tag) if "unet" in named else unet
    dyn_text = named.get("dyn", positional[3] if len(positional) > 3 else None)
    dyn = None
    if dyn_text is not None:
        value = _number(dyn_text, "dyn", tag)
        if value != int(value) or value < 1:
            raise TagError(f"{tag}: dyn must be a whole number >= 1, got {dyn_text.strip()!r}")
        dyn = int(value)
    return LoraUse(name, te, unet, dyn)


def parse_hypernet(args: str, tag: str) -> HypernetUse:
    positional, _ = _split(args)
    name = positional[0].strip() if positional else ""
    if not name:
        raise TagError(f"{tag}: no hypernetwork name")
    multiplier = _number(positional[1], "the weight", tag) if len(positional) > 1 else 1.0
    return HypernetUse(name, multiplier)


def extract_networks(*prompts: str) -> tuple[list[str], NetworkTags]:
    """Strip every extra-network tag from each prompt; return the stripped prompts and the tags.

    Raises TagError for a malformed tag (the API turns it into a 4xx). A network named twice
    is used once, with its first weights, as A1111's activation does.
    """
    tags = NetworkTags()
    seen_lora: set[str] = set()
    seen_hyper: set[str] = set()
    out = []
    for prompt in prompts:
        def found(match: re.Match) -> str:
            kind, args, whole = match.group(1).lower(), match.group(2), match.group(0)
            if kind in LORA_KINDS:
                use = parse_lora(args, whole)
                if use.name not in seen_lora:
                    seen_lora.add(use.name)
                    tags.loras.append(use)
            elif kind == HYPERNET_KIND:
                hyper = parse_hypernet(args, whole)
                if hyper.name not in seen_hyper:
                    seen_hyper.add(hyper.name)
                    tags.hypernets.append(hyper)
            else:
                tags.unknown.append(whole)
            return ""

        out.append(TAG.sub(found, prompt or ""))
    return out, tags


def check_prompt_tags(prompt: str) -> str | None:
    """None when every tag in `prompt` parses, else the message (for request validation)."""
    try:
        extract_networks(prompt)
    except TagError as exc:
        return str(exc)
    return None
