"""The page: header with the checkpoint picker, then the tabs. Gradio lives only in webui/ui/."""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from webui.jobs import JobFailed
from webui.ui.extension_tabs import build_extension_tabs
from webui.ui.extensions_tab import build_extensions_tab
from webui.ui.mcp_tools import add_mcp_tools
from webui.ui.pnginfo import build_pnginfo
from webui.ui.settings_tab import build_settings
from webui.ui.txt2img import build_txt2img

STATIC = Path(__file__).with_name("static")


def launch_kwargs() -> dict:
    """Page-level CSS and JS (Gradio 6 takes them at launch)."""
    return {"css": (STATIC / "style.css").read_text(encoding="utf-8")
                   + (STATIC / "extensions.css").read_text(encoding="utf-8"),
            # extensions.js first: A1111's JS helpers and the localization must exist before extension JS.
            "head": f"<script>{(STATIC / 'extensions.js').read_text(encoding='utf-8')}</script>"
                    f"<script>{(STATIC / 'shortcuts.js').read_text(encoding='utf-8')}</script>",
            "footer_links": ["api", "gradio"]}


def _titles(ctx) -> list[str]:
    return [info.title for info in ctx.models.checkpoints()]


def _current_title(ctx) -> str | None:
    model = ctx.models.current()
    return model.info.title if model else None


def model_line(ctx, model) -> str:
    """One line about the loaded model; for the bundled demo, what it is and where real ones go."""
    if model.info.bundled and model.info.model_name.startswith("demo-shapes"):
        return (f"Demo model: draws coloured shapes at {model.native_size}x{model.native_size}, trained by this "
                f"project. Put real checkpoints in {ctx.paths.ckpt_dir} and press 🔄.")
    return f"Loaded {model.info.title} ({model.arch})."


def build_ui(ctx) -> gr.Blocks:
    """Build the whole page for one AppContext."""
    with gr.Blocks(title="SD Studio", analytics_enabled=False) as demo:
        with gr.Row(elem_id="quicksettings"):
            checkpoint = gr.Dropdown(label="Stable Diffusion checkpoint", choices=_titles(ctx),
                                     value=_current_title(ctx), elem_id="setting_sd_model_checkpoint", scale=4)
            refresh = gr.Button("🔄", elem_id="refresh_sd_model_checkpoint", min_width=40, scale=0)
            current = ctx.models.current()
            status = gr.Markdown(html.escape(model_line(ctx, current) if current else ctx.status),
                                 elem_id="model_status")
        add_mcp_tools(ctx)
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                txt2img = build_txt2img(ctx)
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                build_pnginfo(txt2img, tabs, "txt2img",
                              ctx.extensions.infotext_pasted if ctx.extensions is not None else None)
            build_extension_tabs(ctx, txt2img, tabs)
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                applied = build_settings(ctx)
            if ctx.extensions is not None:
                with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions"):
                    build_extensions_tab(ctx)
        # txt2img's Clip skip slider mirrors the setting (A1111 keeps it in quicksettings).
        applied.then(lambda: ctx.settings.get("CLIP_stop_at_last_layers"), None, txt2img.clip_skip,
                     show_progress="hidden", api_visibility="private")

        def select(title):
            if not title or title == _current_title(ctx):
                return gr.update(), gr.update(), gr.update(), gr.update()
            try:
                model = ctx.submit_checkpoint(title, source="ui").wait()
            except JobFailed as exc:
                return (gr.update(value=_current_title(ctx)), f"**Could not load {html.escape(title)}:** "
                        f"{html.escape(str(exc))}", gr.update(), gr.update())
            size = model.native_size
            return gr.update(), html.escape(model_line(ctx, model)), size, size

        checkpoint.change(select, checkpoint, [checkpoint, status, txt2img.width, txt2img.height],
                          show_progress="full", api_visibility="private")

        def rescan():
            ctx.models.refresh()
            return gr.update(choices=_titles(ctx), value=_current_title(ctx))

        refresh.click(rescan, None, checkpoint, show_progress="hidden", api_visibility="private")
    return demo
