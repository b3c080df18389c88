"""``modules.ui_components`` for A1111 extensions: A1111's small layout helpers on our Gradio.

The A1111 compat layer maps ``modules.ui_components`` here because these are Gradio widgets
(Gradio stays in webui/ui). ``InputAccordion`` is a checkbox whose value is the script's
"enabled" flag, followed by an accordion holding the script's controls.
"""
from __future__ import annotations

import gradio as gr


class FormComponent:
    def get_expected_parent(self):
        return FormRow


class ToolButton(gr.Button):
    """A small square button (A1111 puts emoji on these)."""

    def __init__(self, value="", *args, **kwargs):
        kwargs.setdefault("min_width", 40)
        kwargs.setdefault("scale", 0)
        kwargs.setdefault("elem_classes", ["tool"])
        kwargs.pop("tooltip", None)
        super().__init__(value, *args, **kwargs)


class FormRow(gr.Row):
    """A row of form fields."""


class FormColumn(gr.Column):
    """A column of form fields."""


class FormGroup(gr.Group):
    """A group of form fields."""


class ResizeHandleRow(gr.Row):
    """A row (A1111 adds a drag handle; ours is a plain row)."""


class FormHTML(gr.HTML):
    """HTML inside a form."""


class DropdownMulti(gr.Dropdown):
    def __init__(self, **kwargs):
        super().__init__(multiselect=True, **kwargs)


class DropdownEditable(gr.Dropdown):
    def __init__(self, **kwargs):
        super().__init__(allow_custom_value=True, **kwargs)


class InputAccordion(gr.Checkbox):
    """Use as ``with InputAccordion(False, label="My script") as enabled:``; its value is the checkbox's."""

    def __init__(self, value=False, **kwargs):
        label = kwargs.get("label", "")
        elem_id = kwargs.get("elem_id")
        kwargs.pop("open", None)
        kwargs.setdefault("label", f"Enable {label}" if label else "Enable")
        super().__init__(value=bool(value), **kwargs)
        self.accordion_label = label
        self.accordion_elem_id = f"{elem_id}-accordion" if elem_id else None
        self.accordion = None

    def __enter__(self):
        self.accordion = gr.Accordion(self.accordion_label, open=bool(self.value), elem_id=self.accordion_elem_id)
        self.accordion.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.accordion.__exit__(exc_type, exc, tb)
        return False
