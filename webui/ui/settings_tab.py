"""The Settings tab: every option of webui.settings, grouped by section, applied and persisted."""
from __future__ import annotations

import html
from itertools import groupby

import gradio as gr

from webui.settings import SettingsError
from webui.ui.page_load import on_page_load

# sd_model_checkpoint: the header's dropdown; the extension switches: the Extensions tab.
HIDDEN = {"sd_model_checkpoint", "disabled_extensions", "disable_all_extensions"}


def _component(option, value):
    elem_id = f"setting_{option.key}"
    if option.choices:
        return gr.Dropdown(choices=list(option.choices), value=value, label=option.label, elem_id=elem_id)
    if isinstance(option.default, (list, tuple)):  # e.g. an A1111 extension's multi-choice option
        return gr.Dropdown(choices=list(value or []), value=list(value or []), multiselect=True,
                           allow_custom_value=True, label=option.label, elem_id=elem_id)
    if isinstance(option.default, bool):
        return gr.Checkbox(label=option.label, value=value, elem_id=elem_id)
    if isinstance(option.default, (int, float)):
        if option.minimum is not None and option.maximum is not None:
            step = 1 if isinstance(option.default, int) else 0.01
            return gr.Slider(option.minimum, option.maximum, value=value, step=step, label=option.label,
                             elem_id=elem_id)
        return gr.Number(label=option.label, value=value, elem_id=elem_id)
    return gr.Textbox(label=option.label, value=value, elem_id=elem_id)


def build_settings(ctx):
    """Lay out the options; Apply validates all, saves all or none, and says what happened.

    The fields are filled at page load, and Apply writes only the options the user changed since
    (compared with what this page was shown, not with the server's values): a page open while
    another tab or an API client changed a setting must not write its old value back.
    Returns the Apply event so the page can refresh controls that mirror a setting.
    """
    settings = ctx.settings
    shown = [o for o in settings.options.values() if o.key not in HIDDEN]
    components = []
    with gr.Row():
        apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
        result = gr.HTML("", elem_id="settings_result")
    for section, group in groupby(sorted(shown, key=lambda o: o.section), key=lambda o: o.section):
        with gr.Accordion(section, open=True):
            for option in group:
                components.append((option, _component(option, settings.get(option.key))))

    shown_values = gr.State({})  # option key -> the value this page was last shown

    def current():
        values = {option.key: settings.get(option.key) for option, _ in components}
        return [*values.values(), values]

    def save(shown, *values):
        if not shown:  # Apply before the page-load read finished: judge against the server's values
            shown = {option.key: settings.get(option.key) for option, _ in components}
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
        return message, *current()

    fields = [c for _, c in components]
    on_page_load(current, None, [*fields, shown_values])
    return apply.click(save, [shown_values, *fields], [result, *fields, shown_values], show_progress="hidden",
                       api_visibility="private")
