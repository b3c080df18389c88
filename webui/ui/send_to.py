"""A1111's "Send to img2img" / "Send to inpaint": an image and its infotext go into the img2img tab."""
from __future__ import annotations

import gradio as gr

from webui.infotext import infotext_to_request_fields, parse_infotext
from webui.ui import img2img_inputs as inputs
from webui.ui.img2img import Img2ImgTab, paste_value

TARGET_TAB = "img2img"


def paste_updates(targets: dict, text: str | None, on_paste=None, fills: dict | None = None) -> list:
    """One update per target component: the infotext's value where it has one, unchanged otherwise.

    ``on_paste(text, params)`` may rewrite the parsed params first (extensions' infotext_pasted hooks);
    ``fills`` maps "ext:N" targets to fn(params) (extension panels, Img2ImgTab.extension_fills).
    """
    params = parse_infotext(text) if text else {}
    if text and on_paste is not None:
        on_paste(text, params)
    found = infotext_to_request_fields(params) if text else {}
    soft = found.get("soft_inpainting") or {}
    if text:
        found.setdefault("soft_inpainting", False)  # an infotext without it had soft inpainting off
    updates = []
    for name in targets:
        if name.startswith("ext:"):
            updates.append(fills[name](params) if text and fills and name in fills else gr.update())
        elif name.startswith("soft:"):
            updates.append(soft[name[5:]] if name[5:] in soft else gr.update())
        else:
            updates.append(paste_value(name, found[name]) if name in found else gr.update())
    return updates


def send_outputs(tab: Img2ImgTab, main_tabs: gr.Tabs) -> tuple[list, dict]:
    targets = tab.paste_targets()
    return [tab.image, tab.inpaint, *targets.values(), main_tabs, tab.subtabs, tab.mode, tab.inpaint_controls], targets


def send(image, text: str | None, subtab: int, targets: dict, on_paste=None, fills=None) -> list:
    """Updates for send_outputs(): the image into the chosen sub-tab, fields from the infotext, tabs switched."""
    if image is None:
        return [gr.update(), gr.update(), *[gr.update() for _ in targets], gr.Tabs(), gr.Tabs(), gr.update(),
                gr.update()]
    image_update = image if subtab == inputs.IMG2IMG else gr.update()
    editor_update = {"background": image, "layers": [], "composite": image} if subtab == inputs.INPAINT \
        else gr.update()
    return [image_update, editor_update, *paste_updates(targets, text, on_paste, fills), gr.Tabs(selected=TARGET_TAB),
            gr.Tabs(selected=inputs.SUBTAB_IDS[subtab]), subtab, gr.update(visible=subtab in inputs.INPAINT_MODES)]


def wire_gallery_send(button: gr.Button, output, tab: Img2ImgTab, main_tabs: gr.Tabs, subtab: int,
                      on_paste=None) -> None:
    """A txt2img gallery button: sends the clicked (or first) image and its infotext."""
    outputs, targets = send_outputs(tab, main_tabs)
    fills = {name: fn for name, (_, fn) in tab.extension_fills().items()}

    def go(images, infotexts, selected):
        if not images:
            return send(None, None, subtab, targets)
        index = selected if selected is not None and selected < len(images) else 0
        text = infotexts[index] if index < len(infotexts) else None
        return send(images[index], text, subtab, targets, on_paste, fills)

    button.click(go, [output.last_images, output.last_infotexts, output.selected], outputs, show_progress="hidden",
                 api_visibility="private")


def wire_image_send(button: gr.Button, image: gr.Image, text: gr.Textbox, tab: Img2ImgTab, main_tabs: gr.Tabs,
                    subtab: int, on_paste=None) -> None:
    """A button next to an image with its infotext (PNG Info, the image browser)."""
    outputs, targets = send_outputs(tab, main_tabs)
    fills = {name: fn for name, (_, fn) in tab.extension_fills().items()}
    button.click(lambda img, info: send(img, info, subtab, targets, on_paste, fills), [image, text], outputs,
                 show_progress="hidden", api_visibility="private")
