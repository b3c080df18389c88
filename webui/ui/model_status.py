"""The header's model line while the startup checkpoint loads behind the page.

The server answers before the startup checkpoint is loaded (``AppContext.loading``); the header
then says "Loading ...". A timer (every second while loading, every few seconds after) and every
page load bring the status line, the checkpoint dropdown and (once, if untouched) the image size up
to date, so a swap made in another tab or through the API shows in every open page.
"""
from __future__ import annotations

import html
from typing import Callable

import gradio as gr


LOADING_TICK = 1.0
IDLE_TICK = 3.0  # a swap from another tab or the API shows within this


def attach_model_status(demo: gr.Blocks, ctx, checkpoint: gr.Dropdown, status: gr.Markdown, width: gr.Slider,
                        height: gr.Slider, model_line: Callable, keep_size: bool = False) -> None:
    """Wire the refresh into ``demo`` while it is being built (call inside its ``gr.Blocks``).

    ``keep_size``: the sliders' build-time size is the user's (ui-config.json), not a placeholder.
    """
    built_while_loading = ctx.loading and not keep_size
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
        # Only the status line (other outputs would flash Gradio's pending marker every tick); when it
        # changes (loaded, or swapped elsewhere), status.change below brings the dropdown along.
        return line(), gr.Timer(LOADING_TICK if ctx.loading else IDLE_TICK)

    timer = gr.Timer(LOADING_TICK if ctx.loading else IDLE_TICK)
    timer.tick(poll, None, [status, timer], show_progress="hidden", api_visibility="private")
    # When the line changes (loaded), bring the dropdown and the size along, once.
    status.change(lambda w, h: (lambda c, _, *size: (c, *size))(*refresh(w, h)), [width, height],
                  [checkpoint, width, height], show_progress="hidden", api_visibility="private")
    demo.load(refresh, [width, height], [checkpoint, status, width, height], show_progress="hidden",
              api_visibility="private")


def size_after_swap(previous_native: int | None, new_native: int, width, height) -> tuple:
    """Width and height for the sliders after a checkpoint swap (A1111 keeps the user's size).

    Only a size that still is the previous model's default (the user never chose it) follows the
    new model's native size; 832x1216 set by the user survives a swap. Returns gr.update() to keep.
    """
    if previous_native is not None and (int(width), int(height)) == (previous_native, previous_native):
        return new_native, new_native
    return gr.update(), gr.update()
