"""The ControlNet accordion: N units (setting control_net_unit_count), one builder for every tab.

Per unit, as sd-webui-controlnet lays it out: enable, low VRAM, pixel perfect, control image
(empty in img2img: the img2img input), an optional mask, control type (filters preprocessors
and models by name), preprocessor + model, the preprocessor's resolution and thresholds,
control weight, starting/ending control step, control mode, resize mode, and a preview of the
preprocessed map ("Preview" runs the preprocessor at the tab's size).
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
import numpy as np

from webui.generation import controlnet as cn
from webui.generation import preprocessors
from webui.generation.controlnet_run import detect, fit
from webui.generation.request import RequestError


@dataclass
class UnitWidgets:
    """One unit's components, named as ControlNetUnit's fields (plus the UI-only ones)."""

    enabled: gr.Checkbox
    image: gr.Image
    mask: gr.Image
    low_vram: gr.Checkbox
    pixel_perfect: gr.Checkbox
    control_type: gr.Radio
    module: gr.Dropdown
    model: gr.Dropdown
    processor_res: gr.Slider
    threshold_a: gr.Slider
    threshold_b: gr.Slider
    weight: gr.Slider
    guidance_start: gr.Slider
    guidance_end: gr.Slider
    control_mode: gr.Radio
    resize_mode: gr.Radio
    preview: gr.Image

    # Values that travel into the request, in this order.
    VALUES = ("enabled", "image", "mask", "low_vram", "pixel_perfect", "module", "model", "processor_res",
              "threshold_a", "threshold_b", "weight", "guidance_start", "guidance_end", "control_mode", "resize_mode")

    def inputs(self) -> list:
        return [getattr(self, name) for name in self.VALUES]


@dataclass
class ControlNetPanel:
    """Every unit of one tab; ``units_from`` turns their values into ControlNetUnits."""

    tab: str
    units: list[UnitWidgets]
    accordion: gr.Accordion | None = None
    manager: object = None  # webui.models.controlnet.ControlNetManager

    def inputs(self) -> list:
        return [c for unit in self.units for c in unit.inputs()]

    def units_from(self, values) -> list[cn.ControlNetUnit]:
        """Enabled units from the flat input values; raises RequestError for a bad unit."""
        out, errors, width = [], [], len(UnitWidgets.VALUES)
        for i in range(len(self.units)):
            raw = dict(zip(UnitWidgets.VALUES, values[i * width:(i + 1) * width]))
            if not raw["enabled"]:
                continue
            unit = cn.ControlNetUnit(
                enabled=True, module=raw["module"] or "none", model=raw["model"] or "None",
                weight=float(raw["weight"]), image=_rgb(raw["image"]), mask=_gray(raw["mask"]),
                resize_mode=raw["resize_mode"], low_vram=bool(raw["low_vram"]),
                processor_res=int(raw["processor_res"]), threshold_a=float(raw["threshold_a"]),
                threshold_b=float(raw["threshold_b"]), guidance_start=float(raw["guidance_start"]),
                guidance_end=float(raw["guidance_end"]), pixel_perfect=bool(raw["pixel_perfect"]),
                control_mode=raw["control_mode"])
            unit_errors = cn.check_unit(unit, f"ControlNet Unit {i}")
            errors += unit_errors
            out.append(unit)
        if errors:
            raise RequestError(errors)
        return out

    def restore_targets(self) -> list:
        return [getattr(u, name) for u in self.units for name in _RESTORED]

    def restore_updates(self, params: dict) -> list:
        """Updates that put a PNG's ``ControlNet N`` infotext back into the units (images are not stored)."""
        found = cn.units_from_infotext(params)
        updates = []
        for i in range(len(self.units)):
            fields_ = found.get(i)
            for name in _RESTORED:
                if fields_ is None:
                    updates.append(False if name == "enabled" else gr.update())
                elif name == "model":
                    # The PNG may name a model by a title with another hash, or one this install lacks.
                    info = self.manager.find(fields_.get("model")) if self.manager else None
                    choices = ["None"] + (self.manager.titles() if self.manager else [])
                    updates.append(gr.update(choices=choices, value=info.title if info is not None else "None"))
                else:
                    updates.append(fields_.get(name, gr.update()))
        return updates


    def paste_updates(self, text: str | None) -> list:
        """``restore_updates`` from an infotext string; nothing changes without one."""
        if not text:
            return [gr.update() for _ in self.restore_targets()]
        from webui.infotext import parse_infotext

        return self.restore_updates(parse_infotext(text))

    def wire_paste(self, button, inputs: list, text_of) -> None:
        """When ``button`` sends an image's infotext to this tab ("Send to img2img"), restore the units
        from it too; ``text_of(*input values)`` picks the infotext."""
        button.click(lambda *values: self.paste_updates(text_of(*values)), inputs, self.restore_targets(),
                     show_progress="hidden", api_visibility="private")


_RESTORED = ("enabled", "module", "model", "weight", "resize_mode", "low_vram", "processor_res", "threshold_a",
             "threshold_b", "guidance_start", "guidance_end", "pixel_perfect", "control_mode")


def _rgb(value) -> np.ndarray | None:
    if value is None:
        return None
    array = np.asarray(value)
    return array if array.dtype == np.uint8 else np.clip(array, 0, 255).astype(np.uint8)


def _gray(value) -> np.ndarray | None:
    array = _rgb(value)
    if array is None:
        return None
    return array if array.ndim == 2 else array[:, :, :3].max(axis=2)


def module_choices(control_type: str = "All") -> list[tuple[str, str]]:
    """(label, name) pairs; unavailable preprocessors say so in their label."""
    names = cn.control_type_choices(control_type, [])["module_list"]
    out = []
    for name in names:
        module = preprocessors.PREPROCESSORS[name]
        out.append((module.label if module.available else f"{module.label} (unavailable: needs weights)", name))
    return out


def model_choices(ctx, control_type: str = "All") -> list[str]:
    return cn.control_type_choices(control_type, ctx.controlnets.titles())["model_list"]


def slider_updates(module_name: str) -> list:
    """processor_res / threshold_a / threshold_b as the module defines them (hidden when unused)."""
    module = preprocessors.get(module_name)
    out = []
    for slider in (module.resolution, module.slider_1, module.slider_2):
        if slider is None:
            out.append(gr.update(visible=False, minimum=-1, value=-1))  # -1: the module's default
        else:
            out.append(gr.update(visible=True, label=slider.label, minimum=slider.minimum, maximum=slider.maximum,
                                 step=slider.step, value=slider.value))
    return out


def build_controlnet_panel(ctx, tab: str, width: gr.Slider, height: gr.Slider, img2img: bool = False) -> ControlNetPanel:
    """The ControlNet accordion for ``tab`` (its sizes drive pixel perfect and the preview)."""
    count = int(ctx.settings.get("control_net_unit_count"))
    units = []
    hint = " (empty: the img2img input)" if img2img else ""
    with gr.Accordion("ControlNet", open=False, elem_id=f"{tab}_controlnet") as accordion:
        with gr.Tabs() as unit_tabs:
            for i in range(count):
                with gr.Tab(f"ControlNet Unit {i}", id=i, elem_id=f"{tab}_controlnet_unit{i}_tab"):
                    units.append(_build_unit(ctx, tab, i, width, height, hint))
    panel = ControlNetPanel(tab, units, accordion, ctx.controlnets)
    panel.unit_tabs = unit_tabs
    return panel


def _build_unit(ctx, tab: str, i: int, width, height, hint: str) -> UnitWidgets:
    prefix = f"{tab}_controlnet_unit{i}"
    with gr.Row():
        image = gr.Image(format="png", label=f"Control image{hint}", type="numpy", image_mode="RGB", sources=["upload", "clipboard"],
                         elem_id=f"{prefix}_image", height=260)
        preview = gr.Image(format="png", label="Preprocessor preview", type="numpy", interactive=False,
                           elem_id=f"{prefix}_preview", height=260)
    with gr.Accordion("Mask (optional): where the unit acts; for inpaint_only, what to redraw", open=False):
        mask = gr.Image(format="png", label="Mask (white = on)", type="numpy", image_mode="L", sources=["upload", "clipboard"],
                        elem_id=f"{prefix}_mask", height=200)
    with gr.Row():
        enabled = gr.Checkbox(label="Enable", value=False, elem_id=f"{prefix}_enable")
        low_vram = gr.Checkbox(label="Low VRAM", value=False, elem_id=f"{prefix}_low_vram")
        pixel_perfect = gr.Checkbox(label="Pixel Perfect", value=False, elem_id=f"{prefix}_pixel_perfect")
        run_preview = gr.Button("💥 Preview", elem_id=f"{prefix}_preview_button", size="sm", scale=0, min_width=110)
    control_type = gr.Radio(list(cn.CONTROL_TYPES), value="All", label="Control Type", elem_id=f"{prefix}_type")
    with gr.Row():
        module = gr.Dropdown(module_choices(), value="none", label="Preprocessor", elem_id=f"{prefix}_module")
        model = gr.Dropdown(model_choices(ctx), value="None", label="Model", elem_id=f"{prefix}_model")
        refresh = gr.Button("🔄", elem_id=f"{prefix}_refresh", min_width=40, scale=0)
    with gr.Row():
        # Hidden at -1 ("the module's default") until a preprocessor with that slider is picked.
        processor_res = gr.Slider(-1, 2048, value=-1, step=8, label="Preprocessor Resolution", visible=False,
                                  elem_id=f"{prefix}_processor_res")
        threshold_a = gr.Slider(-1, 255, value=-1, label="Threshold A", visible=False, elem_id=f"{prefix}_threshold_a")
        threshold_b = gr.Slider(-1, 255, value=-1, label="Threshold B", visible=False, elem_id=f"{prefix}_threshold_b")
    with gr.Row():
        weight = gr.Slider(0, 2, value=1, step=0.05, label="Control Weight", elem_id=f"{prefix}_weight")
        guidance_start = gr.Slider(0, 1, value=0, step=0.01, label="Starting Control Step",
                                   elem_id=f"{prefix}_guidance_start")
        guidance_end = gr.Slider(0, 1, value=1, step=0.01, label="Ending Control Step",
                                 elem_id=f"{prefix}_guidance_end")
    control_mode = gr.Radio(list(cn.CONTROL_MODES), value="Balanced", label="Control Mode",
                            elem_id=f"{prefix}_control_mode")
    resize_mode = gr.Radio(list(cn.RESIZE_MODES), value="Crop and Resize", label="Resize Mode",
                           elem_id=f"{prefix}_resize_mode")
    error = gr.HTML("", elem_id=f"{prefix}_error")
    widgets = UnitWidgets(enabled, image, mask, low_vram, pixel_perfect, control_type, module, model, processor_res,
                          threshold_a, threshold_b, weight, guidance_start, guidance_end, control_mode, resize_mode,
                          preview)
    private = {"show_progress": "hidden", "api_visibility": "private"}

    def pick_type(kind):
        choices = cn.control_type_choices(kind, ctx.controlnets.titles())
        return (gr.update(choices=module_choices(kind), value=choices["default_option"]),
                gr.update(choices=choices["model_list"], value=choices["default_model"]))

    control_type.change(pick_type, control_type, [module, model], **private)
    module.change(slider_updates, module, [processor_res, threshold_a, threshold_b], **private)

    def rescan(kind, current):
        ctx.controlnets.refresh()
        titles = model_choices(ctx, kind)
        return gr.update(choices=titles, value=current if current in titles else "None")

    refresh.click(rescan, [control_type, model], model, **private)

    def show(picture, name, res, a, b, perfect, resize, w, h, unit_mask):
        if picture is None:
            return None, '<div class="error-box">Upload a control image first.</div>'
        unit = cn.ControlNetUnit(module=name or "none", processor_res=int(res), threshold_a=float(a),
                                 threshold_b=float(b), pixel_perfect=bool(perfect), resize_mode=resize)
        try:
            detected = detect(unit, _rgb(picture), int(w), int(h))
        except (preprocessors.PreprocessorError, ValueError) as exc:
            return None, f'<div class="error-box">{html.escape(str(exc))}</div>'
        fitted = fit(detected, int(w), int(h), resize)
        if unit.preprocessor.needs_mask and unit_mask is not None:
            fitted = fitted.copy()
            fitted[fit(_gray(unit_mask), int(w), int(h), resize) > 127] = 0
        return fitted, ""

    run_preview.click(show, [image, module, processor_res, threshold_a, threshold_b, pixel_perfect, resize_mode,
                             width, height, mask], [preview, error], **private)
    return widgets

