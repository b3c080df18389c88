"""Extension controls under the generation settings: always-on panels and the "Script" dropdown.

Native panels and scripts declare Params and get one control per param; A1111 AlwaysOn scripts
build their own controls (``ui()``), from which their params are derived in order, so
``alwayson_scripts`` positional args over the API line up with what the UI shows. The values
become the request's ``alwayson_scripts`` / ``script_name`` / ``script_args`` fields.
"""
from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from webui.extensions.api import ExtensionError, Param, check_params

log = logging.getLogger(__name__)
NO_SCRIPT = "None"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "x"


def component_for(param: Param, elem_id: str):
    """The Gradio control of one native Param."""
    label = param.title
    info = param.info or None
    if param.choices:
        return gr.Dropdown(choices=list(param.choices), value=param.default, label=label, elem_id=elem_id, info=info)
    if param.kind is bool:
        return gr.Checkbox(value=param.default, label=label, elem_id=elem_id, info=info)
    if param.kind in (int, float):
        if param.minimum is not None and param.maximum is not None:
            step = param.step or (1 if param.kind is int else 0.01)
            return gr.Slider(param.minimum, param.maximum, value=param.default, step=step, label=label,
                             elem_id=elem_id, info=info)
        return gr.Number(value=param.default, label=label, elem_id=elem_id, precision=0 if param.kind is int else None,
                         info=info)
    return gr.Textbox(value=param.default, label=label, lines=param.lines, elem_id=elem_id, info=info)


def components_for(params: list[Param], prefix: str) -> list:
    """Controls of native params in order, consecutive params sharing ``row`` side by side."""
    out: list = []
    index = 0
    while index < len(params):
        row = params[index].row
        group = [params[index]]
        while row is not None and index + len(group) < len(params) and params[index + len(group)].row == row:
            group.append(params[index + len(group)])
        if row is None:
            out.append(component_for(group[0], f"{prefix}_{group[0].name}"))
        else:
            with gr.Row():
                out += [component_for(p, f"{prefix}_{p.name}") for p in group]
        index += len(group)
    return out


def params_from_components(components: list, prefix: str = "") -> list[Param]:
    """Params for an A1111 script's ui() components, in order (their values are its positional args)."""
    params: list[Param] = []
    used: set[str] = set()
    for index, comp in enumerate(components):
        elem_id = getattr(comp, "elem_id", None) or ""
        label = str(getattr(comp, "label", "") or "")
        name = elem_id[len(prefix):] if prefix and elem_id.startswith(prefix) else (elem_id or label)
        name = slug(name)
        if not name.isidentifier() or name in used:
            name = f"arg{index}" if f"arg{index}" not in used else f"arg{index}_{len(used)}"
        used.add(name)
        value = getattr(comp, "value", None)
        try:
            if isinstance(comp, gr.Checkbox):
                param = Param(name, bool, bool(value), label=label)
            elif isinstance(comp, (gr.Slider, gr.Number)):
                step = getattr(comp, "step", None)
                whole = isinstance(comp, gr.Number) and getattr(comp, "precision", None) == 0 or \
                    isinstance(comp, gr.Slider) and float(step or 1).is_integer() and float(value or 0).is_integer()
                kind = int if whole else float
                param = Param(name, kind, kind(value or 0), label=label, minimum=getattr(comp, "minimum", None),
                              maximum=getattr(comp, "maximum", None), step=step)
            elif isinstance(comp, (gr.Dropdown, gr.Radio)) and not getattr(comp, "multiselect", False):
                choices = tuple(c[1] if isinstance(c, tuple) else c for c in (comp.choices or []))
                default = value if value in choices else (choices[0] if choices else "")
                param = Param(name, str, default, label=label, choices=choices or None)
            else:
                param = Param(name, str, "" if value is None else str(value), label=label)
        except ExtensionError:  # a default outside its own range: keep it unchecked as text
            param = Param(name, str, "" if value is None else str(value), label=label)
        params.append(param)
    return params


@dataclass
class ExtensionControls:
    """The extension controls of one tab and how their values become request fields."""

    tab: str
    inputs: list = field(default_factory=list)
    _layout: list[tuple[str, Any, int]] = field(default_factory=list)  # (kind, panel/script, count)

    def split(self, values) -> tuple[tuple, dict[str, Any]]:
        """A tab's Generate values (its own inputs, then ``inputs``) -> (its own values, request fields)."""
        count = len(self.inputs)
        own, ours = (values[:-count], values[-count:]) if count else (values, ())
        return tuple(own), self.request_fields(list(ours))

    def paste_targets(self) -> dict[Any, Any]:
        """Panel controls an infotext fills when pasted: component -> fn(params) -> value or gr.update().

        A native panel's params with an ``infotext`` key take that key's value; its ``enabled_param``
        is switched on when the infotext names any of the panel's keys and off when it names none
        (the image was made without the panel). A value that does not fit its param is left alone.
        """
        out: dict[Any, Any] = {}
        position = 1 if self._layout and self._layout[0][0] == "dropdown" else 0
        for kind, item, count in self._layout:
            if kind == "dropdown":
                continue
            controls = self.inputs[position:position + count]
            position += count
            keys = [p.infotext for p in item.params if p.infotext] if kind == "panel" else []
            if not keys or getattr(item, "build", None) is not None:
                continue  # A1111 scripts restore their fields through their own infotext_pasted callbacks
            for param, component in zip(item.params, controls):
                if param.infotext:
                    out[component] = _paste_param(param)
                elif param.name == item.enabled_param:
                    out[component] = lambda params, keys=keys: any(k in params for k in keys)
        return out

    def request_fields(self, values: list) -> dict[str, Any]:
        """Component values (in ``inputs`` order) -> alwayson_scripts / script_name / script_args.

        Raises ExtensionError with the control's name when a value does not fit.
        """
        out: dict[str, Any] = {"alwayson_scripts": {}, "script_name": None, "script_args": {}}
        values = list(values)
        chosen = values.pop(0) if self._layout and self._layout[0][0] == "dropdown" else NO_SCRIPT
        position = 0
        for kind, item, count in self._layout:
            if kind == "dropdown":
                continue
            part, position = values[position:position + count], position + count
            if kind == "panel":
                checked = check_params(item.params, part, item.title)
                out["alwayson_scripts"][item.title] = {"args": checked}
            elif kind == "script" and chosen == item.title:
                out["script_name"] = item.title
                out["script_args"] = check_params(item.params, part, item.title)
        return out


def _paste_param(param: Param):
    def value(params: dict):
        if param.infotext not in params:
            return gr.update()
        try:
            return param.check(params[param.infotext])
        except ExtensionError:
            return gr.update()
    return value


def build_extension_controls(ctx, tab: str = "txt2img") -> ExtensionControls:
    """Lay out the panels and the Script dropdown (call inside the tab's settings column)."""
    controls = ExtensionControls(tab)
    host = getattr(ctx, "extensions", None)
    if host is None:
        return controls
    is_img2img = tab == "img2img"
    for panel in host.panels_for(tab):
        elem = f"{tab}_ext_{slug(panel.title)}"
        try:
            if panel.build is not None:  # an A1111 script: its own ui()
                with gr.Group(elem_id=elem):
                    components = panel.build(is_img2img)
                if not panel.params:
                    prefix = f"script_{tab}_{slug(panel.title)}_"
                    alt = f"script_{slug(panel.title)}_"
                    first = getattr(components[0], "elem_id", "") if components else ""
                    panel.params = params_from_components(components, prefix if (first or "").startswith(prefix)
                                                          else alt)
            else:
                with gr.Accordion(panel.title, open=False, elem_id=elem):
                    components = components_for(panel.params, elem)
        except Exception as exc:
            message = host.failed(panel.extension, f"panel {panel.title}", exc)
            gr.HTML(f'<div class="error-box">{html.escape(message)}</div>', elem_id=f"{elem}_error")
            continue
        if len(components) != len(panel.params):
            gr.HTML(f'<div class="error-box">{html.escape(panel.title)}: its controls changed between tabs; '
                    'not used here</div>')
            continue
        controls.inputs += components
        controls._layout.append(("panel", panel, len(components)))
    scripts = host.scripts_for(tab)
    if scripts:
        dropdown = gr.Dropdown(label="Script", choices=[NO_SCRIPT] + [s.title for s in scripts], value=NO_SCRIPT,
                               elem_id=f"{tab}_script")
        controls.inputs.insert(0, dropdown)
        controls._layout.insert(0, ("dropdown", None, 1))
        groups = []
        for script in scripts:
            with gr.Group(visible=False, elem_id=f"{tab}_script_{slug(script.title)}") as group:
                components = components_for(script.params, f"{tab}_script_{slug(script.title)}")
            groups.append(group)
            controls.inputs += components
            controls._layout.append(("script", script, len(components)))

        def show(choice):
            return [gr.update(visible=(s.title == choice)) for s in scripts]

        dropdown.change(show, dropdown, groups, show_progress="hidden", api_visibility="private")
    return controls
