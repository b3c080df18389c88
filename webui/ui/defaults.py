"""Settings -> Defaults (A1111's page): the user's own defaults for the txt2img / img2img controls.

At build, every input control of a tracked tab is registered under A1111's key
``<tab>/<label>/value`` (the first control of a label wins, as a label names one control for the
user); a value from ui-config.json that fits the control (type, slider range, choices) becomes its
build-time value, one that does not is ignored with a log line. "View changes" compares what the
page shows with those defaults; "Apply" writes the changed ones to ui-config.json; they are used
by the UI built next (Reload UI, or a restart), as in A1111.
"""
from __future__ import annotations

import html
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Iterable

import gradio as gr

from webui.uiconfig import UiConfig, UiConfigError, value_key
from webui.userfiles import is_valid_text

log = logging.getLogger(__name__)

TRACKED_TYPES = (gr.Slider, gr.Number, gr.Checkbox, gr.Textbox, gr.Dropdown, gr.Radio, gr.CheckboxGroup)


class Unfit(ValueError):
    """A stored value that this control cannot show."""


def _number(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Unfit(f"expected a number, got {value!r}")
    return value


def _choice_values(component) -> list:
    return [c[1] if isinstance(c, (tuple, list)) else c for c in (component.choices or [])]


def fit(component, value: Any) -> Any:
    """``value`` as ``component`` would hold it, or Unfit with the reason."""
    if isinstance(component, gr.Checkbox):
        if not isinstance(value, bool):
            raise Unfit(f"expected true or false, got {value!r}")
        return value
    if isinstance(component, gr.Slider):
        value = _number(value)
        if not component.minimum <= value <= component.maximum:
            raise Unfit(f"{value!r} is outside the slider's {component.minimum:g} to {component.maximum:g}")
        whole = float(component.step).is_integer() and float(component.minimum).is_integer()
        if whole:
            if not float(value).is_integer():
                raise Unfit(f"expected a whole number, got {value!r}")
            return int(value)
        return value
    if isinstance(component, gr.Number):
        value = _number(value)
        if component.minimum is not None and value < component.minimum or \
                component.maximum is not None and value > component.maximum:
            raise Unfit(f"{value!r} is out of the field's range")
        if component.precision == 0:
            if not float(value).is_integer():
                raise Unfit(f"expected a whole number, got {value!r}")
            return int(value)
        return value
    if isinstance(component, gr.Textbox):
        if not isinstance(value, str) or not is_valid_text(value):
            raise Unfit(f"expected text, got {value!r}")
        return value
    if isinstance(component, (gr.Dropdown, gr.Radio, gr.CheckboxGroup)):
        allowed = _choice_values(component)
        custom = getattr(component, "allow_custom_value", False)
        if isinstance(component, gr.CheckboxGroup) or getattr(component, "multiselect", False):
            if not isinstance(value, list):
                raise Unfit(f"expected a list, got {value!r}")
            items = value
        else:
            items = [value]
        for item in items:
            if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                raise Unfit(f"{item!r} is not a choice")
            if item not in allowed and not custom:
                raise Unfit(f"{item!r} is not one of the choices")
        return value
    raise Unfit(f"{type(component).__name__} has no default value to set")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _walk(block) -> Iterable:
    for child in getattr(block, "children", None) or []:
        yield child
        yield from _walk(child)


@dataclass
class Tracked:
    key: str
    component: Any
    default: Any  # the value in effect: ui-config's if it fitted, else the code's
    from_config: bool = False


class UiDefaults:
    """The tracked controls of one UI build and the ui-config.json they were built from."""

    def __init__(self, config: UiConfig):
        self.config = config
        self.items: list[Tracked] = []
        for warning in config.warnings:
            log.warning(warning)

    def track(self, tab: str, root, exclude: Iterable = ()) -> None:
        """Register ``root``'s input controls (call right after the tab is built) and apply the file's values."""
        skip = {id(c) for c in exclude}
        keys = {item.key for item in self.items}
        for component in _walk(root):
            label = getattr(component, "label", None)
            if not isinstance(component, TRACKED_TYPES) or id(component) in skip or not label \
                    or component.interactive is False:
                continue
            key = value_key(tab, label)
            if key in keys:  # a second control with the same label: A1111's key names the first
                continue
            keys.add(key)
            applied = False
            if self.config.has(key):
                try:
                    value = fit(component, self.config.value(key))
                    component.value = component.postprocess(value)
                    applied = True
                except Unfit as exc:
                    log.warning("%s: %s: %s; using the built-in default", self.config.path, key, exc)
            default = component.value
            if default is None and isinstance(component, gr.Textbox):
                default = ""  # what the page sends for an empty box
            self.items.append(Tracked(key, component, default, applied))

    def from_config(self, component) -> bool:
        """Whether ``component``'s build-time value came from ui-config.json."""
        return any(item.component is component and item.from_config for item in self.items)

    def changes(self, values: list) -> list[tuple[str, Any, Any]]:
        """(key, default, shown) for each tracked control whose shown value differs from its default."""
        rows = []
        for item, value in zip(self.items, values):
            try:
                value = fit(item.component, value)
            except Unfit:
                continue  # e.g. a half-typed number: nothing that could be a default
            if not _same(value, item.default):
                rows.append((item.key, item.default, value))
        return rows

    def build_page(self) -> None:
        """The Defaults section of the Settings tab (call inside it, after the tracked tabs are built)."""
        gr.Markdown("Change values in the txt2img and img2img tabs, press **View changes** to review the "
                    "defaults that would change, then **Apply** to write them to `ui-config.json`. "
                    "They are used after **Reload UI** (or a restart).", elem_id="ui_defaults_help")
        with gr.Row():
            view = gr.Button("View changes", elem_id="ui_defaults_view")
            apply = gr.Button("Apply", variant="primary", elem_id="ui_defaults_apply")
        review = gr.HTML("", elem_id="ui_defaults_review")
        inputs = [item.component for item in self.items]

        def view_changes(*values):
            return table_html(self.changes(list(values)))

        def apply_changes(*values):
            rows = self.changes(list(values))
            if not rows:
                return '<div class="note-box">No defaults changed.</div>'
            try:
                self.config.save_values({key: new for key, _, new in rows})
            except (UiConfigError, OSError) as exc:
                return f'<div class="error-box">Not saved: {html.escape(str(exc))}</div>'
            by_key = {key: new for key, _, new in rows}
            for item in self.items:  # what "View changes" compares with from now on
                if item.key in by_key:
                    item.default = by_key[item.key]
            return (f'<div class="note-box" id="ui_defaults_saved">Wrote {len(rows)} default(s) to ui-config.json; '
                    "press Reload UI to use them.</div>" + table_html(rows))

        view.click(view_changes, inputs, review, show_progress="hidden", api_visibility="private")
        apply.click(apply_changes, inputs, review, show_progress="hidden", api_visibility="private")


def table_html(rows: list[tuple[str, Any, Any]]) -> str:
    if not rows:
        return '<div class="note-box">No defaults changed.</div>'
    def show(value):  # as the file will hold it
        return html.escape(json.dumps(value, ensure_ascii=False))

    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{show(old)}</td><td>{show(new)}</td></tr>" for k, old, new in rows)
    return (f'<table class="ui-defaults-table"><thead><tr><th>Path</th><th>Old value</th><th>New value</th></tr>'
            f"</thead><tbody>{body}</tbody></table>")
