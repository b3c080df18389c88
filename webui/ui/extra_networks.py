"""Extra networks panel (A1111's cards under the prompt) and the SD VAE quicksetting.

`build_extra_networks(ctx, "txt2img", prompt, negative)` lays out tabs Textual Inversion /
Hypernetworks / Checkpoints / Lora with search, sort and refresh; clicking a card inserts its
text into the focused prompt box (static/extra_networks.js), clicking a checkpoint card loads it,
🛠 opens the card's metadata (kohya `ss_*` fields, training tags) and the user-metadata editor
(description, activation text, negative text, preferred weight, notes -> `<stem>.json`).

`build_vae_quicksetting(ctx)` is the `SD VAE` dropdown beside the checkpoint picker.
"""
from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from webui.jobs import JobFailed
from webui.models.networks.files import read_user_metadata, save_user_metadata
from webui.ui import extra_networks_cards as cards_
from webui.ui.page_load import on_page_load

STATIC = Path(__file__).with_name("static")
CSS = """
.extra-network-cards { display: flex; flex-wrap: wrap; gap: 10px; }
.extra-network-card { position: relative; width: 150px; cursor: pointer; border-radius: 8px; overflow: hidden;
  border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary); }
.extra-network-card:hover { outline: 2px solid var(--color-accent); }
.card-preview { width: 150px; height: 150px; object-fit: cover; display: block; }
.card-no-preview { display: flex; align-items: center; justify-content: center; color: var(--body-text-color-subdued);
  font-size: 12px; }
.card-text { padding: 4px 6px 6px; font-size: 13px; }
.card-name { font-weight: 600; word-break: break-all; }
.card-folder, .card-note, .card-description { font-size: 11px; color: var(--body-text-color-subdued); }
.card-dimmed { opacity: 0.55; }
.card-buttons { position: absolute; top: 4px; right: 4px; }
.card-button { background: rgba(0,0,0,0.55); color: white; border-radius: 4px; padding: 1px 4px; font-size: 14px; }
.extra-network-empty { padding: 12px; color: var(--body-text-color-subdued); }
"""
METADATA_CSS = """
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th { text-align: left; padding: 2px 10px 2px 0; white-space: nowrap; }
td { padding: 2px 0; word-break: break-all; }
.tag-count { display: inline-block; margin: 2px 6px 2px 0; padding: 1px 6px; border-radius: 4px;
  background: var(--background-fill-secondary); font-size: 12px; }
"""


@dataclass
class Tab:
    """One kind's cards and its search / sort controls."""

    kind: str
    search: gr.Textbox
    sort: gr.Dropdown
    descending: gr.Checkbox
    refresh: gr.Button
    cards: gr.HTML


def _default_weight(ctx) -> float:
    try:
        return float(ctx.settings.get("extra_networks_default_multiplier"))
    except (KeyError, TypeError, ValueError):
        return 1.0


def collect(ctx, kind: str) -> list[cards_.Card]:
    """The cards of one tab, as the files are now."""
    networks = ctx.networks
    if kind == "lora":
        return cards_.lora_cards(networks, _default_weight(ctx))
    if kind == "textual_inversion":
        model = ctx.models.current()
        return cards_.embedding_cards(networks, model.pipe if model else None)
    if kind == "hypernetworks":
        return cards_.hypernetwork_cards(networks, _default_weight(ctx))
    return cards_.checkpoint_cards(ctx.models)


def rescan(ctx, kind: str) -> None:
    networks = ctx.networks
    if kind == "lora":
        networks.loras.refresh()
    elif kind == "textual_inversion":
        networks.embeddings.refresh()
    elif kind == "hypernetworks":
        networks.hypernetworks.refresh()
    else:
        ctx.models.refresh()


def render(ctx, tabname: str, kind: str, search: str, sort: str, descending: bool, thumbs: dict) -> str:
    """One tab's cards, filtered and sorted, inside the element the page script listens on."""
    shown = cards_.sort_cards(cards_.filter_cards(collect(ctx, kind), search), sort, descending)
    folders = {"lora": "models/Lora", "textual_inversion": "embeddings", "hypernetworks": "models/hypernetworks",
               "checkpoints": "models/Stable-diffusion"}
    empty = "No match." if search else f"Nothing found. Put files in {folders[kind]} and press Refresh."
    return f'<div data-tabname="{html.escape(tabname)}" data-kind="{kind}">{cards_.render_cards(shown, thumbs, empty)}</div>'


def _find_card(ctx, kind: str, name: str) -> cards_.Card | None:
    return next((c for c in collect(ctx, kind) if c.name == name), None)


def _details(ctx, card: cards_.Card) -> tuple[dict, dict]:
    """(file facts, safetensors metadata) for the metadata view."""
    facts: dict = {"File": str(card.path), "Modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(card.mtime))}
    try:
        facts["Size"] = f"{card.path.stat().st_size / 2**20:.1f} MB"
    except OSError:
        pass
    metadata: dict = {}
    if card.kind == "lora":
        file = ctx.networks.loras.find(card.name)
        if file is not None:
            facts["Hash (A1111 short)"] = file.shorthash or "computed when first used"
            facts["Alias"] = card.extra.get("alias")
            metadata = file.metadata() if file.is_safetensors else {}
    elif card.kind == "textual_inversion":
        emb = next((e for e in ctx.networks.embeddings.all() if e.name == card.name), None)
        if emb is not None:
            facts.update({"Vectors": emb.count, "Width": emb.shape, "Trained steps": emb.step,
                          "Trained on": emb.sd_checkpoint_name})
    return facts, metadata


def build_extra_networks(ctx, tabname: str, prompt: gr.Textbox, negative: gr.Textbox) -> list[Tab]:
    """The panel under the prompt of one generation tab; returns its tabs (tests use the ids)."""
    thumbs: dict = {}
    script = (STATIC / "extra_networks.js").read_text(encoding="utf-8")
    tabs: list[Tab] = []
    with gr.Accordion("Extra networks", open=False, elem_id=f"{tabname}_extra_networks"):
        with gr.Tabs(elem_id=f"{tabname}_extra_tabs"):
            for kind, title in cards_.TABS:
                with gr.Tab(title, id=f"{tabname}_{kind}", elem_id=f"{tabname}_{kind}_tab"):
                    with gr.Row():
                        search = gr.Textbox(show_label=False, placeholder="Search...", scale=4,
                                            elem_id=f"{tabname}_{kind}_search", container=False)
                        sort = gr.Dropdown(list(cards_.SORTS), value="Default", show_label=False, scale=2,
                                           elem_id=f"{tabname}_{kind}_sort", container=False)
                        descending = gr.Checkbox(label="Descending", value=False, scale=1,
                                                 elem_id=f"{tabname}_{kind}_descending", container=False)
                        refresh = gr.Button("↻ Refresh", scale=1, size="sm", elem_id=f"{tabname}_{kind}_refresh")
                    cards = gr.HTML(render(ctx, tabname, kind, "", "Default", False, thumbs), js_on_load=script,
                                    css_template=CSS, elem_id=f"{tabname}_{kind}_cards", max_height=520)
                    tabs.append(Tab(kind, search, sort, descending, refresh, cards))
        request = gr.Textbox(visible="hidden", elem_id=f"{tabname}_extra_networks_request")
        request_button = gr.Button(visible="hidden", elem_id=f"{tabname}_extra_networks_request_button")
        message = gr.HTML("", elem_id=f"{tabname}_extra_networks_message")
        with gr.Group(visible=False, elem_id=f"{tabname}_extra_networks_editor") as editor:
            title = gr.Markdown(elem_id=f"{tabname}_extra_networks_editor_title")
            details = gr.HTML(elem_id=f"{tabname}_extra_networks_metadata", css_template=METADATA_CSS)
            description = gr.Textbox(label="Description", lines=2, elem_id=f"{tabname}_en_description")
            activation = gr.Textbox(label="Activation text (added after the tag on click)",
                                    elem_id=f"{tabname}_en_activation")
            negative_text = gr.Textbox(label="Negative prompt (added to the negative prompt on click)",
                                       elem_id=f"{tabname}_en_negative")
            weight = gr.Slider(0, 2, value=0, step=0.05, label="Preferred weight (0: the default)",
                               elem_id=f"{tabname}_en_weight")
            notes = gr.Textbox(label="Notes", lines=3, elem_id=f"{tabname}_en_notes")
            with gr.Row():
                save = gr.Button("Save", variant="primary", elem_id=f"{tabname}_en_save")
                close = gr.Button("Close", elem_id=f"{tabname}_en_close")
        selected = gr.State(None)

    for tab in tabs:
        inputs = [tab.search, tab.sort, tab.descending]

        def rerender(search, sort, descending, kind=tab.kind):
            return render(ctx, tabname, kind, search, sort, descending, thumbs)

        def refreshed(search, sort, descending, kind=tab.kind):
            rescan(ctx, kind)
            return render(ctx, tabname, kind, search, sort, descending, thumbs)

        for event in (tab.search.change, tab.sort.change, tab.descending.change):
            event(rerender, inputs, tab.cards, show_progress="hidden", api_visibility="private")
        tab.refresh.click(refreshed, inputs, tab.cards, show_progress="hidden", api_visibility="private")
        on_page_load(rerender, inputs, tab.cards)  # what fits the model loaded now, not at server start

    editor_fields = [editor, title, details, description, activation, negative_text, weight, notes, selected]

    def on_request(payload):
        keep = [gr.update()] * len(editor_fields)
        try:
            data = json.loads(payload or "{}")
        except ValueError:
            return ["", *keep]
        card = _find_card(ctx, str(data.get("kind")), str(data.get("name")))
        if card is None:
            return [f'<div class="error-box">{html.escape(str(data.get("name")))} is gone; press Refresh.</div>', *keep]
        if data.get("action") == "select":
            try:
                model = ctx.submit_checkpoint(card.select, source="ui").wait()
            except JobFailed as exc:
                return [f'<div class="error-box">Could not load {html.escape(card.name)}: {html.escape(str(exc))}</div>',
                        *keep]
            return [f"Loaded {html.escape(model.info.title)}.", *keep]
        facts, metadata = _details(ctx, card)
        user = read_user_metadata(card.path)
        try:
            preferred = float(user.get("preferred weight") or 0)
        except (TypeError, ValueError):
            preferred = 0.0
        return ["", gr.update(visible=True), f"### {card.name}", cards_.metadata_html(card, facts, metadata),
                str(user.get("description") or ""), str(user.get("activation text") or ""),
                str(user.get("negative text") or ""), preferred, str(user.get("notes") or ""),
                {"kind": card.kind, "name": card.name, "path": str(card.path)}]

    done = request_button.click(on_request, request, [message, *editor_fields], show_progress="hidden",
                                api_visibility="private")
    # After a checkpoint card loads a model, let the header's picker show it.
    done.then(None, None, None, js="() => { const b = document.querySelector('#refresh_sd_model_checkpoint');"
                                   " if (b) b.click(); }")

    def on_save(current, desc, act, neg, preferred, note, *controls):
        if not current:
            return ("", *[gr.update()] * len(tabs))
        save_user_metadata(Path(current["path"]), {"description": desc, "activation text": act,
                                                          "negative text": neg, "preferred weight": preferred,
                                                          "notes": note})
        rendered = [render(ctx, tabname, t.kind, *controls[3 * i:3 * i + 3], thumbs) for i, t in enumerate(tabs)]
        return (f"Saved {html.escape(Path(current['path']).stem)}.json", *rendered)

    controls = [c for t in tabs for c in (t.search, t.sort, t.descending)]
    save.click(on_save, [selected, description, activation, negative_text, weight, notes, *controls],
               [message, *[t.cards for t in tabs]], show_progress="hidden", api_visibility="private")
    close.click(lambda: gr.update(visible=False), None, editor, show_progress="hidden", api_visibility="private")
    return tabs


def build_vae_quicksetting(ctx) -> gr.Dropdown:
    """The `SD VAE` dropdown (+ refresh) for the quicksettings row; changes go through the queue."""
    vaes = ctx.networks.vaes
    dropdown = gr.Dropdown(label="SD VAE", choices=vaes.choices(), value=ctx.settings.get("sd_vae"),
                           elem_id="setting_sd_vae", scale=2)
    refresh = gr.Button("↻", elem_id="refresh_sd_vae", min_width=40, scale=0)

    def change(choice):
        if not choice or choice == ctx.settings.get("sd_vae"):
            return gr.update()
        try:
            ctx.submit_vae(choice, source="ui").wait()
        except JobFailed as exc:
            gr.Warning(f"VAE not changed: {exc}")
            return gr.update(value=ctx.settings.get("sd_vae"))
        return gr.update()

    def rescan():
        vaes.refresh()
        return gr.update(choices=vaes.choices(), value=ctx.settings.get("sd_vae"))

    # A VAE chosen in another tab or through the API since start: show it (and the folder's files) on open.
    on_page_load(lambda: gr.update(choices=vaes.choices(), value=ctx.settings.get("sd_vae")), None, dropdown)
    # .select: only the user's pick swaps (once); the page-load refresh above must not re-select a stale VAE.
    dropdown.select(change, dropdown, dropdown, show_progress="full", api_visibility="private")
    refresh.click(rescan, None, dropdown, show_progress="hidden", api_visibility="private")
    return dropdown
