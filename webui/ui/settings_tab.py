"""The Settings tab: every option of webui.settings, grouped by section, applied and persisted.

Above the sections: a search box (filters the options by label, key or section in the page itself,
static/settings.js: instant, no round trip per key, nothing to keep in step on the server) and
Reload UI (webui/ui/reload_ui.py). Below them: Defaults (webui/ui/defaults.py). Options that
are quicksettings are drawn in the header instead (as in A1111).
"""
from __future__ import annotations

import html
import json
import re
from itertools import groupby

import gradio as gr

from webui.settings import SettingsError
from webui.ui.page_load import on_page_load
from webui.ui.quicksettings import quick_candidates
from webui.ui.reload_ui import reload_note

# sd_model_checkpoint: the header's dropdown; the extension switches: the Extensions tab.
HIDDEN = {"sd_model_checkpoint", "disabled_extensions", "disable_all_extensions"}


def setting_component(option, value, items: list[str] | None = None, **layout):
    """The control for one option (Settings tab and quicksettings); ``items``: a list option's offered names."""
    kw = {"label": option.label, "elem_id": f"setting_{option.key}", **layout}
    if option.choices:
        return gr.Dropdown(choices=list(option.choices), value=value, **kw)
    if isinstance(option.default, (list, tuple)):  # e.g. an A1111 extension's multi-choice option
        chosen = list(value or [])
        offered = list(items or []) + [v for v in chosen if v not in (items or [])]
        return gr.Dropdown(choices=offered, value=chosen, multiselect=True, allow_custom_value=True, **kw)
    if isinstance(option.default, bool):
        return gr.Checkbox(value=value, **kw)
    if isinstance(option.default, (int, float)):
        if option.minimum is not None and option.maximum is not None:
            step = 1 if isinstance(option.default, int) else 0.01
            return gr.Slider(option.minimum, option.maximum, value=value, step=step, **kw)
        return gr.Number(value=value, **kw)
    return gr.Textbox(value=value, **kw)


def _search_index(sections: dict[str, list]) -> str:
    """What the search box matches besides the visible text: each option's key and section."""
    index = {"options": {f"setting_{o.key}": f"{o.key} {o.label} {section}".lower()
                         for section, options in sections.items() for o in options},
             "sections": {f"settings_section_{_slug(s)}": s for s in [*sections, "Defaults"]}}
    return f'<div id="settings_search_index" hidden data-index="{html.escape(json.dumps(index))}"></div>'


def _plain(value):
    """A list option's default is a tuple; the page sends lists: compare like with like."""
    return list(value) if isinstance(value, tuple) else value


def _slug(section: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", section.lower()).strip("_")


def build_settings(ctx, quick_keys=(), defaults=None, reload_ui=None, build_id: str = ""):
    """Lay out the options; Apply validates all, saves all or none, and says what happened.

    The fields are filled at page load, and Apply writes only the options the user changed since
    (compared with what this page was shown, not with the server's values): a page open while
    another tab or an API client changed a setting must not write its old value back.
    ``quick_keys``: drawn in the header instead; ``defaults``: the page's UiDefaults (the Defaults
    section); ``reload_ui``: called by Reload UI, returns (started, message).
    Returns the Apply event so the page can refresh controls that mirror a setting.
    """
    settings = ctx.settings
    shown = [o for o in settings.options.values() if o.key not in HIDDEN and o.key not in quick_keys]
    sections = {section: list(group) for section, group in
                groupby(sorted(shown, key=lambda o: o.section), key=lambda o: o.section)}
    components = []
    with gr.Row(elem_id="settings_top"):
        apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
        reload = gr.Button("Reload UI", elem_id="settings_restart_gradio")
    result = gr.HTML("", elem_id="settings_result")
    gr.HTML(reload_note(build_id), elem_id="settings_reload_note")
    gr.Textbox(placeholder="Search settings (label, name or section)", show_label=False, lines=1, max_lines=1,
               elem_id="settings_search", container=False)
    gr.HTML(_search_index(sections), elem_id="settings_search_data")
    for section, group in sections.items():
        with gr.Accordion(section, open=True, elem_id=f"settings_section_{_slug(section)}",
                          elem_classes=["settings-section"]):
            for option in group:
                items = quick_candidates(settings) if option.key == "quicksettings_list" else None
                components.append((option, setting_component(option, settings.get(option.key), items)))
    if defaults is not None:
        with gr.Accordion("Defaults", open=False, elem_id="settings_section_defaults",
                          elem_classes=["settings-section"]):
            defaults.build_page()

    shown_values = gr.State({})  # option key -> the value this page was last shown

    def current():
        values = {option.key: _plain(settings.get(option.key)) for option, _ in components}
        return [*values.values(), values]

    def save(shown, *values):
        if not shown:  # Apply before the page-load read finished: judge against the server's values
            shown = {option.key: _plain(settings.get(option.key)) for option, _ in components}
        changes = {}
        for (option, _), value in zip(components, values):
            if isinstance(option.default, int) and not isinstance(option.default, bool) and isinstance(value, float) \
                    and value.is_integer():
                value = int(value)
            if value != shown.get(option.key):
                changes[option.key] = value
        keep = [gr.update()] * (len(components) + 1)
        try:
            settings.save_changes(changes)  # refuses, with the reason, when config.json was unreadable
        except SettingsError as exc:
            return f'<div class="error-box">Not saved: {html.escape(str(exc))}</div>', *keep
        # Show what is saved now, other clients' changes included.
        message = (f"Saved {len(changes)} setting(s): {html.escape(', '.join(changes))}." if changes
                   else "Nothing changed.")
        if "quicksettings_list" in changes:
            message += " The quicksettings list is used after Reload UI."
        return message, *current()

    fields = [c for _, c in components]
    on_page_load(current, None, [*fields, shown_values])

    def press_reload():
        if reload_ui is None:
            return '<div class="error-box">Reload UI is not available here.</div>'
        started, message = reload_ui()
        css, marker = ("note-box", " data-reloading") if started else ("error-box", "")
        return f'<div class="{css}" id="settings_reload_status"{marker}>{html.escape(message)}</div>'

    # The page waits for the new build to answer, then reloads itself (static/settings.js).
    reload.click(press_reload, None, result, show_progress="hidden", api_visibility="private").then(
        None, result, None, js="(answer) => { sdStudioAfterReloadUi(answer); return []; }",
        api_visibility="private")
    return apply.click(save, [shown_values, *fields], [result, *fields, shown_values], show_progress="hidden",
                       api_visibility="private")
