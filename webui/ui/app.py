"""The page: header with the checkpoint picker, then the tabs. Gradio lives only in webui/ui/."""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from webui.jobs import JobFailed
from webui.ui import img2img_inputs
from webui.ui.extension_tabs import build_extension_tabs
from webui.ui.extensions_tab import build_extensions_tab
from webui.ui.extras import build_extras, wire_send_to_extras
from webui.ui.img2img import build_img2img
from webui.ui.extra_networks import build_vae_quicksetting
from webui.ui.mcp_tools import add_mcp_tools
from webui.ui.model_status import attach_model_status, size_after_swap
from webui.ui.pnginfo import build_pnginfo
from webui.ui.pose_editor import build_pose_editor
from webui.ui.send_to import wire_gallery_send, wire_image_send
from webui.ui.settings_tab import build_settings
from webui.ui.train import build_train
from webui.ui.txt2img import build_txt2img

STATIC = Path(__file__).with_name("static")


def launch_kwargs() -> dict:
    """Page-level CSS and JS (Gradio 6 takes them at launch)."""
    return {"css": (STATIC / "style.css").read_text(encoding="utf-8")
                   + (STATIC / "extensions.css").read_text(encoding="utf-8"),
            # extensions.js first: A1111's JS helpers and the localization must exist before extension JS.
            "head": "".join(f"<script>{(STATIC / name).read_text(encoding='utf-8')}</script>"
                            for name in ("extensions.js", "shortcuts.js", "pose_editor.js", "prompt_tools.js"))
                    + f"<style>{(STATIC / 'page.css').read_text(encoding='utf-8')}</style>",
            "footer_links": ["api", "gradio"]}


def _titles(ctx) -> list[str]:
    return [info.title for info in ctx.models.checkpoints()]


def _current_title(ctx) -> str | None:
    model = ctx.models.current()
    return model.info.title if model else None


def model_line(ctx, model) -> str:
    """One line about the loaded model; for the bundled demo, what it is and where real ones go."""
    if model.info.bundled and model.info.model_name.startswith("demo-shapes"):
        folder = ctx.paths.ckpt_dir
        if folder.is_relative_to(ctx.paths.data_dir):  # the usual models/Stable-diffusion, not a long absolute path
            folder = folder.relative_to(ctx.paths.data_dir)
        return (f"Demo model: draws coloured shapes at {model.native_size}x{model.native_size}, trained by this "
                f"project. Put real checkpoints in {folder} and press ↻ (refresh).")
    return f"Loaded {model.info.title} ({model.arch})."


def build_ui(ctx) -> gr.Blocks:
    """Build the whole page for one AppContext."""
    with gr.Blocks(title="SD Studio", analytics_enabled=False) as demo:
        with gr.Row(elem_id="quicksettings"):
            checkpoint = gr.Dropdown(label="Stable Diffusion checkpoint", choices=_titles(ctx),
                                     value=_current_title(ctx), elem_id="setting_sd_model_checkpoint", scale=4)
            refresh = gr.Button("↻", elem_id="refresh_sd_model_checkpoint", min_width=40, scale=0)
            build_vae_quicksetting(ctx)
            current = ctx.models.current()
            status = gr.Markdown(html.escape(model_line(ctx, current) if current else ctx.status),
                                 elem_id="model_status")
        add_mcp_tools(ctx)
        # Extensions' infotext_pasted hooks run on every paste of an infotext into a tab.
        on_paste = ctx.extensions.infotext_pasted if ctx.extensions is not None else None
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                txt2img = build_txt2img(ctx)
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
                img2img = build_img2img(ctx)
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
                applied = build_settings(ctx)
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

        def select(title, *sizes):
            if not title or title == _current_title(ctx):
                return (gr.update(),) * 6
            previous = ctx.models.current()
            try:
                model = ctx.submit_checkpoint(title, source="ui").wait()
            except JobFailed as exc:
                return (gr.update(value=_current_title(ctx)), f"**Could not load {html.escape(title)}:** "
                        f"{html.escape(str(exc))}", *(gr.update(),) * 4)
            old, new = (previous.native_size if previous else None), model.native_size
            return (gr.update(), html.escape(model_line(ctx, model)),
                    *size_after_swap(old, new, *sizes[:2]), *size_after_swap(old, new, *sizes[2:]))

        sizes = [txt2img.width, txt2img.height, img2img.controls.width, img2img.controls.height]
        checkpoint.change(select, [checkpoint, *sizes], [checkpoint, status, *sizes],
                          show_progress="full", api_visibility="private")

        def rescan():
            ctx.models.refresh()
            return gr.update(choices=_titles(ctx), value=_current_title(ctx))

        refresh.click(rescan, None, checkpoint, show_progress="hidden", api_visibility="private")
        # The startup checkpoint may still be loading behind the page: keep the header in step.
        attach_model_status(demo, ctx, checkpoint, status, txt2img.width, txt2img.height, model_line)
    return demo
