"""The OpenPose Editor tab: the canvas editor (static/pose_editor.js) and "send to a ControlNet unit".

The browser keeps the pose as sd-webui-openpose-editor's JSON in a hidden textbox; Python
renders it (webui.generation.openpose, the annotator's colours and strokes) and puts the map
into the chosen unit with preprocessor none and the unit enabled, then switches to that tab.
"""
from __future__ import annotations

import html

import gradio as gr

from webui.generation.openpose import PoseError, render_pose_json

ROOT_HTML = '<div id="pose_editor_root" class="pose-editor"><p>Loading the pose editor…</p></div>'


def build_pose_editor(targets: dict, tabs: gr.Tabs) -> None:
    """``targets``: tab id -> (ControlNetPanel, tab label) the pose can be sent to."""
    with gr.Row():
        with gr.Column(scale=3):
            gr.HTML(ROOT_HTML, elem_id="pose_editor_html")
            pose_json = gr.Textbox(label="Pose JSON", lines=3, elem_id="pose_editor_json",
                                   elem_classes=["pose-editor-json"])
        with gr.Column(scale=2):
            rendered = gr.Image(format="png", label="Pose map (what the unit gets)", type="numpy", interactive=False,
                                elem_id="pose_editor_rendered", height=360)
            render = gr.Button("Render", elem_id="pose_editor_render")
            choices = [(f"{label}, ControlNet Unit {i}", f"{tab_id}:{i}") for tab_id, (panel, label) in targets.items()
                       for i in range(len(panel.units))]
            target = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Send to",
                                 elem_id="pose_editor_target")
            send = gr.Button("Send to ControlNet", variant="primary", elem_id="pose_editor_send")
            error = gr.HTML("", elem_id="pose_editor_error")
    private = {"show_progress": "hidden", "api_visibility": "private"}

    def draw(text):
        try:
            return render_pose_json(text or "{}"), ""
        except PoseError as exc:
            return None, f'<div class="error-box">Pose JSON: {html.escape(str(exc))}</div>'

    render.click(draw, pose_json, [rendered, error], **private)

    # One output list covering every target unit's image/enable/module; only the chosen unit changes.
    slots = [(tab_id, i, panel.units[i]) for tab_id, (panel, _) in targets.items() for i in range(len(panel.units))]
    panels = list(targets.items())
    outputs = [c for _, _, w in slots for c in (w.image, w.enabled, w.module)]
    outputs += [c for _, (panel, _) in panels for c in (panel.accordion, panel.unit_tabs)] + [tabs, rendered, error]

    def send_to(text, chosen):
        try:
            image = render_pose_json(text or "{}")
        except PoseError as exc:
            keep = [gr.update()] * (3 * len(slots) + 2 * len(panels))
            return keep + [gr.Tabs(), gr.update(), f'<div class="error-box">Pose JSON: {html.escape(str(exc))}</div>']
        updates = []
        for tab_id, i, _ in slots:
            if chosen == f"{tab_id}:{i}":
                updates += [image, True, "none"]
            else:
                updates += [gr.update()] * 3
        tab_id, _, index = (chosen or ":").partition(":")
        for panel_id, _ in panels:  # open the accordion on the unit that got the pose
            shown = panel_id == tab_id
            updates += [gr.Accordion(open=True) if shown else gr.update(),
                        gr.Tabs(selected=int(index)) if shown and index.isdigit() else gr.update()]
        return updates + [gr.Tabs(selected=tab_id), image, ""]

    send.click(send_to, [pose_json, target], outputs, **private)
