"""The page: the header (quicksettings.py), then the tabs. Gradio lives only in webui/ui/."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from webui.ui import img2img_inputs
from webui.ui.defaults import UiDefaults
from webui.ui.extension_tabs import build_extension_tabs
from webui.ui.extensions_tab import build_extensions_tab
from webui.ui.extras import build_extras, wire_send_to_extras
from webui.ui.img2img import build_img2img
from webui.ui.mcp_tools import add_mcp_tools
from webui.ui.pnginfo import build_pnginfo
from webui.ui.pose_editor import build_pose_editor
from webui.ui.quicksettings import build_header, model_line, wire_header  # noqa: F401 - model_line: old import path
from webui.ui.reload_ui import UiReloader, new_build_id
from webui.ui.send_to import wire_gallery_send, wire_image_send
from webui.ui.settings_tab import build_settings
from webui.ui.train import build_train
from webui.ui.txt2img import build_txt2img
from webui.uiconfig import FILE_NAME as UI_CONFIG_FILE, UiConfig

STATIC = Path(__file__).with_name("static")


def launch_kwargs() -> dict:
    """Page-level CSS and JS (Gradio 6 takes them at launch)."""
    return {"css": (STATIC / "style.css").read_text(encoding="utf-8")
                   + (STATIC / "extensions.css").read_text(encoding="utf-8"),
            # extensions.js first: A1111's JS helpers and the localization must exist before extension JS.
            "head": "".join(f"<script>{(STATIC / name).read_text(encoding='utf-8')}</script>"
                            for name in ("extensions.js", "shortcuts.js", "pose_editor.js", "settings.js",
                                         "prompt_tools.js"))
                    + f"<style>{(STATIC / 'page.css').read_text(encoding='utf-8')}</style>",
            "footer_links": ["api", "gradio"]}


def _style_editor_fields(row) -> list:
    editor = row.tools.editor if row.tools is not None else None
    return [editor.name, editor.prompt, editor.negative_prompt] if editor is not None else []


def build_ui(ctx, reloader: UiReloader | None = None) -> gr.Blocks:
    """Build the whole page for one AppContext (again at each Reload UI, with the same ``reloader``)."""
    reloader = reloader or UiReloader(ctx, lambda again: build_ui(ctx, again))
    # Read per build: Defaults applied and "Reload UI" pressed show up in the next build.
    defaults = UiDefaults(UiConfig.load(ctx.paths.data_dir / UI_CONFIG_FILE))
    build_id = new_build_id()
    with gr.Blocks(title="SD Studio", analytics_enabled=False) as demo:
        header = build_header(ctx)
        add_mcp_tools(ctx)
        # Extensions' infotext_pasted hooks run on every paste of an infotext into a tab.
        on_paste = ctx.extensions.infotext_pasted if ctx.extensions is not None else None
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img") as txt2img_tab:
                txt2img = build_txt2img(ctx)
            # The Clip skip sliders show the setting of now (page load), not a default of their own; the
            # style editor edits styles.csv, not the tab's generation defaults.
            defaults.track("txt2img", txt2img_tab, exclude=[txt2img.clip_skip, *_style_editor_fields(txt2img.row)])
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img") as img2img_tab:
                img2img = build_img2img(ctx)
            defaults.track("img2img", img2img_tab,
                           exclude=[img2img.controls.clip_skip, *_style_editor_fields(img2img.row)])
            with gr.Tab("Extras", id="extras", elem_id="tab_extras"):
                extras = build_extras(ctx)
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                pnginfo = build_pnginfo(txt2img, tabs, "txt2img", on_paste)
            with gr.Tab("Train", id="train", elem_id="tab_train"):
                build_train(ctx)
            with gr.Tab("OpenPose Editor", id="openpose_editor", elem_id="tab_openpose_editor"):
                build_pose_editor({"txt2img": (txt2img.controlnet, "txt2img"),
                                   "img2img": (img2img.controlnet, "img2img")}, tabs)
            build_extension_tabs(ctx, txt2img, tabs, img2img)
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                applied = build_settings(ctx, header.keys, defaults, lambda: reloader.reload(demo), build_id)
            if ctx.extensions is not None:
                with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions"):
                    build_extensions_tab(ctx)
        wire_gallery_send(txt2img.send_to_img2img, txt2img.output, img2img, tabs, img2img_inputs.IMG2IMG, on_paste)
        wire_gallery_send(txt2img.send_to_inpaint, txt2img.output, img2img, tabs, img2img_inputs.INPAINT, on_paste)
        wire_image_send(pnginfo.send_to_img2img, pnginfo.image, pnginfo.parameters, img2img, tabs,
                        img2img_inputs.IMG2IMG, on_paste)
        wire_image_send(pnginfo.send_to_inpaint, pnginfo.image, pnginfo.parameters, img2img, tabs,
                        img2img_inputs.INPAINT, on_paste)
        # ControlNet N infotext restores img2img's units too, as PNG Info does for txt2img's.
        for button in (pnginfo.send_to_img2img, pnginfo.send_to_inpaint):
            img2img.controlnet.wire_paste(button, [pnginfo.parameters], lambda text: text)
        for button in (txt2img.send_to_img2img, txt2img.send_to_inpaint):
            img2img.controlnet.wire_paste(button, [txt2img.output.last_infotexts, txt2img.output.selected],
                                          lambda texts, i: texts[i] if texts and i is not None and i < len(texts)
                                          else (texts[0] if texts else None))
        for gallery_tab in (txt2img, img2img):
            wire_send_to_extras(gallery_tab.send_to_extras, gallery_tab.output, extras, tabs)
        pnginfo.send_to_extras.click(lambda image: (image, gr.Tabs(selected="extras")), pnginfo.image,
                                     [extras.image, tabs], show_progress="hidden", api_visibility="private")
        # The Clip skip sliders mirror the setting (A1111 keeps it in quicksettings).
        applied.then(lambda: [ctx.settings.get("CLIP_stop_at_last_layers")] * 2, None,
                     [txt2img.clip_skip, img2img.controls.clip_skip], show_progress="hidden",
                     api_visibility="private")

        keep_size = defaults.from_config(txt2img.width) or defaults.from_config(txt2img.height)
        wire_header(demo, ctx, header, txt2img, img2img, keep_size=keep_size)
    return demo
