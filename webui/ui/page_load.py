"""Read server state when a page opens, not when the UI was built.

Gradio sends every tab the component values of build time. Anything that can change while the
server runs (settings, the loaded checkpoint, the VAE) must therefore be read again at page load,
or a second tab, a reload or a tab opened after an API call shows stale values and writes them back.
"""
from __future__ import annotations

from typing import Callable

import gradio as gr
from gradio.context import Context


def on_page_load(fn: Callable, inputs, outputs) -> None:
    """Run ``fn`` each time a browser opens the page being built (call inside its ``gr.Blocks``)."""
    demo = Context.root_block
    if demo is None:
        raise RuntimeError("on_page_load must be called while a gr.Blocks is being built")
    demo.load(fn, inputs, outputs, show_progress="hidden", api_visibility="private")


def mirror_setting(ctx, component: gr.components.Component, key: str) -> None:
    """Show the current value of setting ``key`` in ``component`` whenever a page opens."""
    on_page_load(lambda: ctx.settings.get(key), None, component)
