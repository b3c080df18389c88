"""Request errors in the UI's words: the field's label and the range its control offers.

GenerationRequest speaks API (``width: must be a multiple of 8 from 64 to 4096``); a user of the
page sees a "Width" slider that stops at 2048. The page names the label and the slider's own range
and the value the field shows, and runs nothing until the fields hold what would run.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from webui.generation.request import RequestError


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def field_message(name: str, message: str, component=None, value: Any = None) -> str:
    """One error line for the field ``name`` shown by ``component`` (None: an API-only field)."""
    label = getattr(component, "label", None) or name
    if isinstance(component, gr.Slider):
        step = component.step or 1
        grid = f"a multiple of {_number(step)} " if step > 1 and component.minimum % step == 0 else ""
        shows = f" (the field shows {_number(value)})" if value is not None else ""
        return f"{label} must be {grid}from {_number(component.minimum)} to {_number(component.maximum)}{shows}."
    return f"{label}: {message}"


def ui_error(exc: Exception, components: dict[str, Any], values: dict[str, Any] | None = None) -> str:
    """The text of ``exc`` for the page: RequestError field by field in UI words, others as they are."""
    if not isinstance(exc, RequestError):
        return str(exc)
    values = values or {}
    return " ".join(field_message(e.field, e.message, components.get(e.field), values.get(e.field))
                    for e in exc.errors)
