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


def field_messages(exc: Exception, components: dict[str, Any], values: dict[str, Any] | None = None) -> dict[str, str]:
    """Field name -> its error in UI words ({} for an error that is not about fields)."""
    if not isinstance(exc, RequestError):
        return {}
    values = values or {}
    messages: dict[str, str] = {}
    for e in exc.errors:
        text = field_message(e.field, e.message, components.get(e.field), values.get(e.field))
        messages[e.field] = f"{messages[e.field]} {text}" if e.field in messages else text
    return messages


def ui_error(exc: Exception, components: dict[str, Any], values: dict[str, Any] | None = None) -> str:
    """The text of ``exc`` for the page: RequestError field by field in UI words, others as they are."""
    if not isinstance(exc, RequestError):
        return str(exc)
    return " ".join(field_messages(exc, components, values).values())


def mark_fields(components: dict[str, Any], errors: dict[str, str]) -> list:
    """Updates that put each field's error beside it (the field's info line, in red) and clear the rest.

    The error box above the gallery says it too, but on a long form the user looks at the field.
    """
    updates = []
    for name, component in components.items():
        base_classes = list(getattr(component, "elem_classes", None) or [])
        if name in errors:
            updates.append(gr.update(info=errors[name], elem_classes=[*base_classes, "field-error"]))
        else:
            # "" not None: Gradio drops None from an update, which would leave the old message up.
            updates.append(gr.update(info=getattr(component, "info", None) or "", elem_classes=base_classes))
    return updates
