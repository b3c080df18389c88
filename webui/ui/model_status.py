"""The header's model line while the startup checkpoint loads behind the page.

The server answers before the startup checkpoint is loaded (``AppContext.loading``); the header
then says "Loading ...". A one-second timer, active only while loading, and every page load bring
the status line, the checkpoint dropdown and (once, if untouched) the image size up to date.
"""
from __future__ import annotations

import html
from typing import Callable

import gradio as gr


def attach_model_status(demo: gr.Blocks, ctx, checkpoint: gr.Dropdown, status: gr.Markdown, width: gr.Slider,
                        height: gr.Slider, model_line: Callable) -> None:
    """Wire the refresh into ``demo`` while it is being built (call inside its ``gr.Blocks``)."""
    built_while_loading = ctx.loading
    built_size = (int(width.value), int(height.value))

    def refresh(w, h):
        model = None if ctx.loading else ctx.models.current()
        line = model_line(ctx, model) if model is not None else ctx.status
        titles = [info.title for info in ctx.models.checkpoints()]
        size = gr.update(), gr.update()
        # The size sliders were built before the model existed: give them its native size, unless changed.
        if model is not None and built_while_loading and (int(w), int(h)) == built_size:
            size = model.native_size, model.native_size
        return gr.update(choices=titles, value=model.info.title if model else None), html.escape(line), *size

    def line() -> str:
        model = None if ctx.loading else ctx.models.current()
        return html.escape(model_line(ctx, model) if model is not None else ctx.status)

    def poll():
        # Only the status line while loading (other outputs would flash Gradio's pending marker every tick).
        return line(), gr.Timer(active=ctx.loading)

    timer = gr.Timer(1.0, active=ctx.loading)
    timer.tick(poll, None, [status, timer], show_progress="hidden", api_visibility="private")
    # When the line changes (loaded), bring the dropdown and the size along, once.
    status.change(lambda w, h: (lambda c, _, *size: (c, *size))(*refresh(w, h)), [width, height],
                  [checkpoint, width, height], show_progress="hidden", api_visibility="private")
    demo.load(refresh, [width, height], [checkpoint, status, width, height], show_progress="hidden",
              api_visibility="private")
