"""Request errors shown in the page name the field's label and the range its slider offers."""
import gradio as gr

from webui.generation.request import GenerationRequest, RequestError
from webui.ui.field_errors import field_messages, mark_fields, ui_error


def test_slider_fields_in_ui_words_others_by_label():
    with gr.Blocks():
        width = gr.Slider(64, 2048, step=8, label="Width")
        steps = gr.Slider(1, 150, step=1, label="Sampling steps")
        prompt = gr.Textbox(label="Prompt")
    try:
        GenerationRequest(prompt=5, width=100, steps=0).validate()
    except RequestError as exc:
        text = ui_error(exc, {"width": width, "steps": steps, "prompt": prompt}, {"width": 100, "steps": 0})
    assert "Width must be a multiple of 8 from 64 to 2048 (the field shows 100)." in text
    assert "Sampling steps must be from 1 to 150 (the field shows 0)." in text
    assert "Prompt: must be text" in text
    assert "4096" not in text and "width:" not in text


def test_other_errors_pass_through():
    assert ui_error(ValueError("Nothing to do"), {}) == "Nothing to do"


def test_each_refused_field_gets_its_message_beside_it_and_the_others_are_cleared():
    with gr.Blocks():
        width = gr.Slider(64, 2048, step=8, label="Width", elem_classes=["size"])
        height = gr.Slider(64, 2048, step=8, label="Height")
        steps = gr.Slider(1, 150, step=1, label="Sampling steps", info="how many denoising steps")
    fields = {"width": width, "height": height, "steps": steps}
    try:
        GenerationRequest(width=100, steps=0).validate()
    except RequestError as exc:
        errors = field_messages(exc, fields, {"width": 100, "steps": 0})
    assert set(errors) == {"width", "steps"}
    marked = dict(zip(fields, mark_fields(fields, errors)))
    assert marked["width"]["info"] == errors["width"] and marked["width"]["elem_classes"] == ["size", "field-error"]
    assert marked["height"]["info"] == "" and marked["height"]["elem_classes"] == []
    # After a run without errors every field shows its own info line again.
    cleared = dict(zip(fields, mark_fields(fields, {})))
    assert cleared["steps"]["info"] == "how many denoising steps" and cleared["width"]["elem_classes"] == ["size"]
    assert field_messages(ValueError("not a field"), fields) == {}
