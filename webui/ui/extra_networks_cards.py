"""The extra-network cards as data and HTML (no Gradio here, so it is tested directly).

One `Card` per file: what a click inserts into the prompt (A1111: `<lora:alias:preferred weight>`
plus the activation text, the embedding's name, `<hypernet:name:1>`), what it adds to the
negative prompt, preview thumbnail, description and the keys search and sort use. Everything
shown is HTML-escaped: names, metadata and user text come from files anyone can share.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from webui.models.networks.files import find_preview, read_user_metadata

TABS = (("textual_inversion", "Textual Inversion"), ("hypernetworks", "Hypernetworks"),
        ("checkpoints", "Checkpoints"), ("lora", "Lora"))
SORTS = ("Default", "Date Created", "Date Modified", "Name")
THUMB = 256
# kohya header fields worth showing first, in A1111's order of interest.
KOHYA_FIELDS = (("ss_output_name", "Output name"), ("ss_sd_model_name", "Trained on"),
                ("ss_base_model_version", "Base model"), ("ss_network_module", "Network module"),
                ("ss_network_dim", "Dim (rank)"), ("ss_network_alpha", "Alpha"), ("ss_resolution", "Resolution"),
                ("ss_clip_skip", "Clip skip"), ("ss_num_train_images", "Training images"),
                ("ss_num_epochs", "Epochs"), ("ss_learning_rate", "Learning rate"),
                ("modelspec.architecture", "Architecture"))


@dataclass
class Card:
    """One card in the extra-networks panel."""

    kind: str  # a TABS key
    name: str  # how the UI and the metadata editor name it
    path: Path
    insert: str = ""  # text for the prompt
    negative: str = ""  # text for the negative prompt
    select: str = ""  # checkpoints: the title a click loads
    description: str = ""
    subfolder: str = ""
    search: str = ""
    note: str = ""  # e.g. "does not fit the loaded model"
    mtime: float = 0.0
    ctime: float = 0.0
    preview: Path | None = None
    extra: dict = field(default_factory=dict)


def _times(path: Path) -> tuple[float, float]:
    try:
        st = os.stat(path)
        return st.st_mtime, st.st_ctime
    except OSError:
        return 0.0, 0.0


def _weight_text(value, default: float) -> str:
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = default
    return f"{weight:g}"


def _card(kind: str, name: str, path: Path, subfolder: str, **kw) -> Card:
    user = read_user_metadata(path)
    mtime, ctime = _times(path)
    description = str(user.get("description") or "")
    card = Card(kind, name, Path(path), description=description, subfolder=subfolder, mtime=mtime, ctime=ctime,
                preview=find_preview(path), **kw)
    card.search = " ".join([name, subfolder, description, card.insert, card.extra.get("alias", "")]).lower()
    return card


def lora_cards(networks, default_weight: float = 1.0) -> list[Card]:
    cards = []
    for f in networks.loras.files():
        user = read_user_metadata(f.filename)
        alias = str(f.metadata().get("ss_output_name") or f.name) if f.is_safetensors else f.name
        if networks.find_lora(alias) is not f:
            alias = f.name  # an alias two files share (or none) would pick the wrong one
        insert = f"<lora:{alias}:{_weight_text(user.get('preferred weight') or None, default_weight)}>"
        activation = str(user.get("activation text") or "").strip()
        if activation:
            insert += " " + activation
        cards.append(_card("lora", f.name, f.filename, f.subfolder, insert=insert,
                           negative=str(user.get("negative text") or "").strip(), extra={"alias": alias}))
    return cards


def embedding_cards(networks, pipe) -> list[Card]:
    loaded, skipped = networks.embeddings.split(pipe) if pipe is not None else ({}, {})
    cards = []
    for emb in list(loaded.values()) + list(skipped.values()):
        file = emb.file
        note = "" if emb.name in loaded else "does not fit the loaded model"
        cards.append(_card("textual_inversion", emb.name, file.filename, file.subfolder, insert=emb.name, note=note))
    return cards


def hypernetwork_cards(networks, default_weight: float = 1.0) -> list[Card]:
    return [_card("hypernetworks", f.name, f.filename, f.subfolder,
                  insert=f"<hypernet:{f.name}:{_weight_text(read_user_metadata(f.filename).get('preferred weight') or None, default_weight)}>")
            for f in networks.hypernetworks.files()]


def checkpoint_cards(models) -> list[Card]:
    cards = []
    for info in models.checkpoints():
        folder = str(Path(info.name).parent)
        cards.append(_card("checkpoints", info.name, info.filename, "" if folder == "." else folder, select=info.title))
    return cards


def sort_cards(cards: list[Card], sort: str, descending: bool) -> list[Card]:
    keys = {"Name": lambda c: c.name.lower(), "Date Created": lambda c: c.ctime, "Date Modified": lambda c: c.mtime}
    key = keys.get(sort)
    if key is None:  # Default: the folder listing's order (subfolder, then name)
        return list(reversed(cards)) if descending else list(cards)
    return sorted(cards, key=key, reverse=descending)


def filter_cards(cards: list[Card], search: str) -> list[Card]:
    words = (search or "").lower().split()
    return [c for c in cards if all(w in c.search for w in words)]


def thumbnail(path: Path | None, cache: dict) -> str | None:
    """A small JPEG data URL of a preview image (cached while the file is unchanged)."""
    if path is None:
        return None
    try:
        stamp = (str(path), os.stat(path).st_mtime)
    except OSError:
        return None
    if stamp not in cache:
        from PIL import Image

        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                image.thumbnail((THUMB, THUMB))
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=85)
        except (OSError, ValueError):
            return None
        cache[stamp] = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return cache[stamp]


def render_cards(cards: list[Card], thumbs: dict, empty: str = "Nothing here yet.") -> str:
    """The cards as HTML; data-* attributes carry what the page script inserts or selects."""
    if not cards:
        return f'<div class="extra-network-empty">{html.escape(empty)}</div>'
    out = ['<div class="extra-network-cards">']
    for c in cards:
        url = thumbnail(c.preview, thumbs)
        image = (f'<img class="card-preview" src="{url}" alt="">' if url
                 else '<div class="card-preview card-no-preview">no preview</div>')
        attrs = {"data-kind": c.kind, "data-name": c.name, "data-insert": c.insert, "data-negative": c.negative,
                 "data-select": c.select, "title": c.insert or c.select or c.name}
        attr_text = " ".join(f'{k}="{html.escape(v, quote=True)}"' for k, v in attrs.items())
        note = f'<div class="card-note">{html.escape(c.note)}</div>' if c.note else ""
        desc = f'<div class="card-description">{html.escape(c.description)}</div>' if c.description else ""
        folder = f'<div class="card-folder">{html.escape(c.subfolder)}</div>' if c.subfolder else ""
        out.append(f'<div class="extra-network-card{" card-dimmed" if c.note else ""}" {attr_text}>{image}'
                   f'<div class="card-buttons"><span class="card-button card-edit" title="Metadata and notes">🛠</span></div>'
                   f'<div class="card-text">{folder}<div class="card-name">{html.escape(c.name)}</div>{desc}{note}</div></div>')
    out.append("</div>")
    return "".join(out)


def _format(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)[:500]
    return str(value)


def tag_frequency(metadata: dict, limit: int = 20) -> list[tuple[str, int]]:
    """kohya's ss_tag_frequency summed over its dataset folders, most frequent first."""
    raw = metadata.get("ss_tag_frequency")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return []
    totals: dict[str, int] = {}
    for tags in (raw or {}).values() if isinstance(raw, dict) else []:
        if isinstance(tags, dict):
            for tag, count in tags.items():
                if isinstance(count, (int, float)):
                    totals[tag.strip()] = totals.get(tag.strip(), 0) + int(count)
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def metadata_html(card: Card, file_info: dict, metadata: dict) -> str:
    """A1111's metadata view: file facts, the kohya training fields, the most frequent training tags."""
    rows = [(k, v) for k, v in file_info.items() if v not in (None, "")]
    rows += [(label, metadata[key]) for key, label in KOHYA_FIELDS if key in metadata]
    table = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_format(v))}</td></tr>" for k, v in rows)
    tags = tag_frequency(metadata)
    tag_html = ""
    if tags:
        items = "".join(f'<span class="tag-count">{html.escape(t)} <b>{n}</b></span>' for t, n in tags)
        tag_html = f'<div class="card-tags"><div>Training tags (most frequent)</div>{items}</div>'
    others = [k for k in metadata if k not in dict(KOHYA_FIELDS) and k != "ss_tag_frequency"]
    more = ""
    if others:
        more_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_format(metadata[k]))}</td></tr>"
                            for k in sorted(others))
        more = f"<details><summary>All metadata ({len(others)} more)</summary><table>{more_rows}</table></details>"
    return (f'<div class="extra-network-metadata" data-name="{html.escape(card.name, quote=True)}">'
            f"<table>{table}</table>{tag_html}{more}</div>")
