"""A1111's ↙ button, "Read generation parameters from prompt": infotext pasted into the prompt box
(the text under a shared image, a PNG Info dump) fills the tab's fields, the prompt box keeps only
the prompt. Text that is not infotext changes nothing."""
from __future__ import annotations

import gradio as gr


def looks_like_infotext(text: str | None) -> bool:
    """A1111's test: the last line carries the "Steps: " parameter list."""
    if not text or not text.strip():
        return False
    return "Steps: " in text.strip().splitlines()[-1]


def read_updates(text: str | None, targets: dict) -> list:
    """One update per target (same order): the infotext's values, or no change at all."""
    if not looks_like_infotext(text):
        return [gr.update() for _ in targets]
    from webui.ui.send_to import paste_updates  # send_to imports the img2img tab, which imports this module

    return paste_updates(targets, text)


def wire_read_params(button: gr.Button, prompt: gr.Textbox, targets: dict) -> None:
    """``targets``: GenerationRequest field -> component of one tab (its paste map)."""
    button.click(lambda text: read_updates(text, targets), prompt, list(targets.values()), show_progress="hidden",
                 api_visibility="private")
