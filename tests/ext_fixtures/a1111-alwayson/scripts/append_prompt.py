"""A1111-style AlwaysOn script (test fixture): appends text to every prompt when enabled."""
import gradio as gr

from modules import script_callbacks, scripts, shared


class AppendPrompt(scripts.Script):
    def title(self):
        return "Append prompt"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        with gr.Accordion("Append prompt", open=False):
            enabled = gr.Checkbox(False, label="Enable append", elem_id=self.elem_id("enabled"))
            text = gr.Textbox("", label="Text to append", elem_id=self.elem_id("text"))
        return [enabled, text]

    def process(self, p, enabled, text):
        if not enabled or not text:
            return
        sep = shared.opts.append_prompt_separator
        p.all_prompts = [prompt + sep + text for prompt in p.all_prompts]
        p.extra_generation_params["Appended"] = text


def on_ui_settings():
    section = ("append_prompt", "Append prompt")
    shared.opts.add_option("append_prompt_separator", shared.OptionInfo(
        ", ", "Separator put before appended text", section=section).info("A1111 style option"))


def on_app_started(demo, app):
    @app.get("/append-prompt/ping")
    def ping():
        return {"ok": True, "basedir": BASEDIR}


def on_ui_tabs():
    with gr.Blocks(analytics_enabled=False) as tab:
        gr.Markdown("Tab of an A1111 extension", elem_id="append_prompt_tab_text")
    return [(tab, "Append tab", "append_prompt_tab")]


BASEDIR = scripts.basedir()
script_callbacks.on_ui_tabs(on_ui_tabs)
script_callbacks.on_ui_settings(on_ui_settings)
script_callbacks.on_app_started(on_app_started)
