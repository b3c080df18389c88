"""Tabs added by extensions (native ``api.tab`` and A1111 ``on_ui_tabs``), each built in isolation.

A builder that raises leaves an error box in its tab; the rest of the page builds.
"""
from __future__ import annotations

import contextlib
import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from webui.infotext import infotext_to_request_fields, parse_infotext


@dataclass
class UIContext:
    """What a native tab builder gets: the app view, its extension's name and "send to" wiring."""

    app: Any  # webui.extensions.host.AppView
    extension: str
    host: Any
    txt2img: Any = None  # webui.ui.txt2img.Txt2ImgTab
    tabs: Any = None  # the page's gr.Tabs
    img2img: Any = None  # webui.ui.img2img.Img2ImgTab

    def send_to_txt2img(self, button: gr.Button, infotext: gr.components.Component) -> None:
        """Clicking ``button`` fills txt2img from the infotext in ``infotext`` and switches to it."""
        if self.txt2img is None or self.tabs is None:
            return
        targets = self.txt2img.field_map()
        order = list(targets)
        host = self.host
        scripts = getattr(self.txt2img, "scripts", None)
        fills = scripts.paste_targets() if scripts is not None else {}  # extension panels' infotext keys
        filled = list(fills)

        def send(text):
            if not text:
                return [gr.update() for _ in order + filled] + [gr.Tabs()]
            params = parse_infotext(text)
            host.infotext_pasted(text, params)
            found = infotext_to_request_fields(params)
            updates = [(list(found[n]) if n == "styles" else found[n]) if n in found else gr.update() for n in order]
            return updates + [fills[c](params) for c in filled] + [gr.Tabs(selected="txt2img")]

        button.click(send, infotext, [targets[n] for n in order] + filled + [self.tabs], show_progress="hidden",
                     api_visibility="private")


    def send_to_img2img(self, button: gr.Button, image: gr.components.Component,
                        infotext: gr.components.Component, inpaint: bool = False) -> None:
        """Clicking ``button`` puts the image into img2img (or its Inpaint sub-tab) with its parameters."""
        if self.img2img is None or self.tabs is None:
            return
        from webui.ui import img2img_inputs
        from webui.ui.send_to import wire_image_send

        wire_image_send(button, image, infotext, self.img2img, self.tabs,
                        img2img_inputs.INPAINT if inpaint else img2img_inputs.IMG2IMG, self.host.infotext_pasted)


@contextlib.contextmanager
def _outside_blocks():
    """A1111 builds each on_ui_tabs Blocks on its own and renders it into the page later; so do we."""
    from gradio.context import Context

    saved = Context.block, Context.root_block
    Context.block, Context.root_block = None, None
    try:
        yield
    finally:
        Context.block, Context.root_block = saved


def _error_box(message: str, elem_id: str) -> None:
    gr.HTML(f'<div class="error-box">{html.escape(message)}</div>', elem_id=elem_id)


def build_extension_tabs(ctx, txt2img=None, tabs=None, img2img=None) -> None:
    """Add every extension tab (call inside ``gr.Tabs``)."""
    host = getattr(ctx, "extensions", None)
    if host is None:
        return
    for tab in host.tabs():
        with gr.Tab(tab.title, id=tab.elem_id, elem_id=tab.elem_id):
            ui = UIContext(host.app_view, tab.extension, host, txt2img, tabs, img2img)
            try:
                tab.build(ui)
            except Exception as exc:
                _error_box(host.failed(tab.extension, f"tab {tab.title!r} builder", exc), f"{tab.elem_id}_error")
    bridge = host.compat
    for ext, fn in (bridge.ui_tabs_callbacks if bridge is not None else []):
        try:
            with bridge.running_as(ext), _outside_blocks():
                made = fn() or []
        except Exception as exc:
            with gr.Tab(ext, elem_id=f"tab_{ext}"):
                _error_box(host.failed(ext, "on_ui_tabs callback", exc), f"tab_{ext}_error")
            continue
        for item in made:
            blocks, title, elem_id = (list(item) + [None, None])[:3]
            with gr.Tab(str(title or ext), elem_id=f"tab_{elem_id or ext}"):
                try:
                    blocks.render()
                except Exception as exc:
                    _error_box(host.failed(ext, f"tab {title!r}", exc), f"tab_{elem_id or ext}_error")
