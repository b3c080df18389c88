"""The PNG Info tab: read A1111 infotext from a PNG and send it to txt2img, img2img or inpaint."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from webui.images import read_infotext
from webui.infotext import infotext_to_request_fields, parse_infotext


def shown_params(params: dict) -> dict:
    """The parsed infotext as the user wrote it: parse_infotext splits "Size: 64x96" into the internal
    keys Size-1 / Size-2 (A1111's), which mean nothing to a reader; join them back."""
    shown = {}
    for key, value in params.items():
        base, _, part = key.rpartition("-")
        if part == "1" and f"{base}-2" in params:
            shown[base] = f"{value}x{params[f'{base}-2']}"
        elif not (part == "2" and f"{base}-1" in params):
            shown[key] = value
    return shown


def params_html(params: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in shown_params(params).items())
    return f'<table class="pnginfo-table" id="pnginfo_table">{rows}</table>'


@dataclass
class PngInfoTab:
    image: gr.Image
    parameters: gr.Textbox
    send_to_img2img: gr.Button
    send_to_inpaint: gr.Button
    send_to_extras: gr.Button | None = None


def build_pnginfo(txt2img, tabs: gr.Tabs, txt2img_tab_id: str, on_paste=None) -> PngInfoTab:
    """Image in, parameters out; "Send to txt2img" fills every field the infotext names.

    ``on_paste(text, params)`` may rewrite the parsed params first (extensions' infotext_pasted hooks).
    """
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Source", type="pil", sources=["upload"], elem_id="pnginfo_image", height=360)
        with gr.Column():
            raw = gr.Textbox(label="Parameters", lines=6, interactive=False, elem_id="pnginfo_parameters")
            table = gr.HTML("", elem_id="pnginfo_html")
            with gr.Row():
                send = gr.Button("Send to txt2img", elem_id="pnginfo_send_to_txt2img")
                send_img2img = gr.Button("Send to img2img", elem_id="pnginfo_send_to_img2img")
                send_inpaint = gr.Button("Send to inpaint", elem_id="pnginfo_send_to_inpaint")
                send_extras = gr.Button("Send to extras", elem_id="pnginfo_send_to_extras")

    def read(img):
        if img is None:
            return "", ""
        text = read_infotext(img)
        if not text:
            return "", '<div class="error-box">This image carries no generation parameters.</div>'
        return text, params_html(parse_infotext(text))

    image.change(read, image, [raw, table], show_progress="hidden", api_visibility="private")

    targets = txt2img.field_map()
    order = list(targets)
    # Extension panels whose params have infotext keys are filled from the pasted text too.
    scripts = getattr(txt2img, "scripts", None)
    fills = scripts.paste_targets() if scripts is not None else {}
    filled = list(fills)

    def send_to(text):
        if not text:
            return ([gr.update() for _ in order + filled] + [gr.update() for _ in controlnet.restore_targets()]
                    + [gr.Tabs()])
        params = parse_infotext(text)
        if on_paste is not None:
            on_paste(text, params)
        found = infotext_to_request_fields(params)
        updates = []
        for name in order:
            if name in found:
                value = found[name]
                updates.append(list(value) if name == "styles" else value)
            else:
                updates.append(gr.update())
        return (updates + [fills[c](params) for c in filled] + controlnet.restore_updates(params)
                + [gr.Tabs(selected=txt2img_tab_id)])

    controlnet = txt2img.controlnet  # ControlNet N infotext restores the units (not their images)
    send.click(send_to, raw, [targets[n] for n in order] + filled + controlnet.restore_targets() + [tabs],
               show_progress="hidden", api_visibility="private")
    return PngInfoTab(image, raw, send_img2img, send_inpaint, send_extras)
