"""The txt2img tab: A1111's layout and names, wired to the shared job queue."""
from __future__ import annotations

import html
import time
from dataclasses import dataclass, fields

import gradio as gr

from webui.generation import samplers
from webui.generation.conditioning import count_tokens
from webui.generation.request import GenerationRequest, RequestError
from webui.extensions.api import ExtensionError
from webui.jobs import JobFailed
from webui.ui.extension_panels import build_extension_controls

POLL_SECONDS = 0.25


@dataclass
class Txt2ImgTab:
    """The components other tabs (PNG Info's "Send to txt2img") and the header need."""

    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    styles: gr.Dropdown
    sampler_name: gr.Dropdown
    scheduler: gr.Dropdown
    steps: gr.Slider
    width: gr.Slider
    height: gr.Slider
    batch_count: gr.Slider
    batch_size: gr.Slider
    cfg_scale: gr.Slider
    seed: gr.Number
    subseed: gr.Number
    subseed_strength: gr.Slider
    clip_skip: gr.Slider

    def field_map(self) -> dict[str, gr.components.Component]:
        """GenerationRequest field name -> component ("n_iter" is A1111's batch count)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["n_iter"] = out.pop("batch_count")
        return out


def progress_html(snapshot) -> str:
    """A1111-like progress bar with ETA."""
    pct = int(snapshot.fraction * 100)
    eta = f", ETA {snapshot.eta_seconds:.0f}s" if snapshot.eta_seconds is not None else ""
    text = html.escape(f"{snapshot.textinfo}: step {snapshot.sampling_step}/{snapshot.sampling_steps}{eta}")
    return (f'<div class="progress-wrap" id="txt2img_progress"><div class="progress-bar" style="width:{pct}%"></div>'
            f'<span>{pct}% — {text}</span></div>')


def error_html(message: str) -> str:
    return f'<div class="error-box" id="txt2img_error">{html.escape(message)}</div>'


def build_txt2img(ctx) -> Txt2ImgTab:
    """Lay out the tab and wire Generate / Interrupt / Skip, counters, seeds, swap and gallery."""
    model = ctx.models.current()
    default_size = model.native_size if model else 512
    with gr.Row(elem_id="txt2img_toprow"):
        with gr.Column(scale=6):
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id="txt2img_prompt",
                                placeholder="Prompt (press Ctrl+Enter to generate)")
            prompt_tokens = gr.HTML("0/75", elem_id="txt2img_token_counter", elem_classes=["token-counter"])
            negative_prompt = gr.Textbox(label="Negative prompt", lines=2, elem_id="txt2img_neg_prompt")
            negative_tokens = gr.HTML("0/75", elem_id="txt2img_negative_token_counter",
                                      elem_classes=["token-counter"])
        with gr.Column(scale=1, min_width=180):
            generate = gr.Button("Generate", variant="primary", elem_id="txt2img_generate")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id="txt2img_interrupt", size="sm")
                skip = gr.Button("Skip", elem_id="txt2img_skip", size="sm")
            styles = gr.Dropdown(label="Styles", choices=ctx.styles.names(), multiselect=True, value=[],
                                 elem_id="txt2img_styles")
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                sampler_name = gr.Dropdown(label="Sampling method", elem_id="txt2img_sampling",
                                           choices=sampler_choices(), value="DPM++ 2M")
                scheduler = gr.Dropdown(label="Schedule type", choices=list(samplers.schedule_names()),
                                        value=samplers.AUTOMATIC, elem_id="txt2img_scheduler")
            steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="txt2img_steps")
            with gr.Row():
                with gr.Column(scale=4):
                    width = gr.Slider(64, 2048, value=default_size, step=8, label="Width", elem_id="txt2img_width")
                    height = gr.Slider(64, 2048, value=default_size, step=8, label="Height",
                                       elem_id="txt2img_height")
                swap = gr.Button("⇅", elem_id="txt2img_res_switch_btn", min_width=40, scale=0)
                with gr.Column(scale=2):
                    batch_count = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id="txt2img_batch_count")
                    batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id="txt2img_batch_size")
            cfg_scale = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id="txt2img_cfg_scale")
            with gr.Row():
                seed = gr.Number(label="Seed", value=-1, precision=0, elem_id="txt2img_seed", scale=4)
                random_seed = gr.Button("🎲", elem_id="txt2img_random_seed", min_width=40, scale=0)
                reuse_seed = gr.Button("♻", elem_id="txt2img_reuse_seed", min_width=40, scale=0)
            with gr.Accordion("Extra", open=False, elem_id="txt2img_extra"):
                with gr.Row():
                    subseed = gr.Number(label="Variation seed", value=-1, precision=0, elem_id="txt2img_subseed")
                    subseed_strength = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength",
                                                 elem_id="txt2img_subseed_strength")
                clip_skip = gr.Slider(1, 12, value=ctx.settings.get("CLIP_stop_at_last_layers"), step=1,
                                      label="Clip skip", elem_id="txt2img_clip_skip")
            extension_controls = build_extension_controls(ctx, "txt2img")
        with gr.Column(scale=1):
            progress = gr.HTML("", elem_id="txt2img_progress_html")
            preview = gr.Image(label="Live preview", visible=False, elem_id="txt2img_preview", interactive=False)
            gallery = gr.Gallery(label="Output", columns=2, elem_id="txt2img_gallery", interactive=False,
                                 object_fit="contain", height=420)
            infotext = gr.Textbox(label="Generation info", lines=4, interactive=False, elem_id="txt2img_info")
            error = gr.HTML("", elem_id="txt2img_error_html")
    tab = Txt2ImgTab(prompt, negative_prompt, styles, sampler_name, scheduler, steps, width, height, batch_count,
                     batch_size, cfg_scale, seed, subseed, subseed_strength, clip_skip)
    last_infotexts = gr.State([])
    last_seeds = gr.State([])
    request_inputs = list(tab.field_map().values()) + extension_controls.inputs
    names = list(tab.field_map().keys())

    def run(*values):
        fields_ = dict(zip(names, values))
        try:
            fields_.update(extension_controls.request_fields(values[len(names):]))
            request = GenerationRequest.from_dict(fields_)[0].validate()
        except (RequestError, ExtensionError, ValueError) as exc:
            yield gr.update(), gr.update(visible=False), gr.update(), gr.update(), error_html(str(exc)), [], []
            return
        job = ctx.submit_txt2img(request, source="ui")
        while not job.done:
            position = ctx.queue.position(job)
            if position:
                yield f'<div class="progress-wrap">In queue: {position} job(s) ahead</div>', gr.update(), \
                    gr.update(), gr.update(), "", gr.update(), gr.update()
            else:
                snap = job.progress.snapshot()
                shown = snap.preview is not None
                yield progress_html(snap), gr.update(value=snap.preview, visible=shown), gr.update(), \
                    gr.update(), "", gr.update(), gr.update()
            time.sleep(POLL_SECONDS)
        try:
            result = job.wait(0)
        except JobFailed as exc:
            yield "", gr.update(visible=False), gr.update(), gr.update(), error_html(str(exc)), [], []
            return
        note = error_html("Interrupted: showing what was finished.") if result.interrupted else ""
        if getattr(result, "comments", None):  # e.g. an extension hook failed; the job went on
            note += '<div class="warning-box" id="txt2img_warnings">' + "<br>".join(
                html.escape(w) for w in result.comments) + "</div>"
        info = result.infotexts[0] if result.infotexts else ""
        yield "", gr.update(visible=False), result.images, info, note, result.infotexts, result.seeds

    generate.click(run, inputs=request_inputs,
                   outputs=[progress, preview, gallery, infotext, error, last_infotexts, last_seeds],
                   concurrency_limit=None, show_progress="hidden", api_visibility="private")
    interrupt.click(lambda: ctx.queue.interrupt() and None, None, None, show_progress="hidden", api_visibility="private")
    skip.click(lambda: ctx.queue.skip() and None, None, None, show_progress="hidden", api_visibility="private")
    swap.click(lambda w, h: (h, w), [width, height], [width, height], show_progress="hidden", api_visibility="private")
    random_seed.click(lambda: -1, None, seed, show_progress="hidden", api_visibility="private")

    def pick(evt: gr.SelectData, infotexts):
        return infotexts[evt.index] if infotexts and evt.index < len(infotexts) else gr.update()

    gallery.select(pick, [last_infotexts], infotext, show_progress="hidden", api_visibility="private")
    reuse_seed.click(lambda seeds_: seeds_[0] if seeds_ else -1, [last_seeds], seed, show_progress="hidden", api_visibility="private")

    def counter(text):
        model = ctx.models.current()
        if model is None:
            return "?/75"
        used, limit = count_tokens(model.pipe.tokenizer, text or "")
        return f"{used}/{limit}"

    prompt.change(counter, prompt, prompt_tokens, show_progress="hidden", api_visibility="private")
    negative_prompt.change(counter, negative_prompt, negative_tokens, show_progress="hidden", api_visibility="private")
    return tab


def sampler_choices() -> list[tuple[str, str]]:
    """Every A1111 sampler name; those diffusers cannot do are listed with the reason, not faked."""
    choices = []
    for spec in samplers.SAMPLERS:
        label = spec.name if spec.available else f"{spec.name} (unavailable: {spec.reason})"
        choices.append((label, spec.name))
    return choices
