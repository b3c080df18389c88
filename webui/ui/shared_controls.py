"""Widgets the txt2img and img2img tabs share, built by one set of functions (A1111's layout and names).

Each builder takes the tab name ("txt2img" / "img2img") and gives every component A1111's
elem_id for that tab (``txt2img_seed``, ``img2img_seed``, ...). ``run_jobs`` is the one
generate loop: submit to the shared queue, poll progress and the live preview, show results.
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import gradio as gr

from webui.generation import samplers
from webui.generation.conditioning import count_tokens
from webui.generation.request import GenerationRequest, RequestError
from webui.images import image_grid
from webui.jobs import JobFailed
from webui.training.service import wait_text
from webui.ui.field_errors import field_messages, mark_fields, ui_error
from webui.ui.page_load import mirror_setting
from webui.ui.prompt_tools import (PromptTools, build_edit_button, build_style_editor, build_tool_buttons, placeholder,
                                   wire_prompt_tools)

POLL_SECONDS = 0.25


def sampler_choices() -> list[tuple[str, str]]:
    """Every A1111 sampler name; those diffusers cannot do are listed with the reason, not faked."""
    choices = []
    for spec in samplers.SAMPLERS:
        label = spec.name if spec.available else f"{spec.name} (unavailable: {spec.reason})"
        choices.append((label, spec.name))
    return choices


def progress_html(snapshot, tab: str = "txt2img", prefix: str = "") -> str:
    """A1111-like progress bar with ETA."""
    pct = int(snapshot.fraction * 100)
    eta = f", ETA {snapshot.eta_seconds:.0f}s" if snapshot.eta_seconds is not None else ""
    text = html.escape(f"{prefix}{snapshot.textinfo}: step {snapshot.sampling_step}/{snapshot.sampling_steps}{eta}")
    return (f'<div class="progress-wrap" id="{tab}_progress"><div class="progress-bar" style="width:{pct}%"></div>'
            f'<span>{pct}% — {text}</span></div>')


def error_html(message: str, tab: str = "txt2img") -> str:
    return f'<div class="error-box" id="{tab}_error">{html.escape(message)}</div>'


def note_html(message: str, tab: str = "txt2img") -> str:
    return f'<div class="note-box" id="{tab}_note">{html.escape(message)}</div>'


def comments_html(comments: list[str], tab: str = "txt2img") -> str:
    """The job's comments under the image (A1111 shows them there too); empty when there are none."""
    if not comments:
        return ""
    return f'<div class="note-box comments" id="{tab}_comments">{html.escape(" ".join(comments))}</div>'


@dataclass
class PromptRow:
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    styles: gr.Dropdown
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    prompt_tokens: gr.HTML
    negative_tokens: gr.HTML
    read_params: gr.Button | None = None  # ↙, wired by the tab with its paste map (webui/ui/read_params.py)
    tools: PromptTools | None = None  # clear, apply / edit styles and the style editor (webui/ui/prompt_tools.py)


def build_prompt_row(ctx, tab: str) -> PromptRow:
    """Prompt, negative prompt with token counters; Generate / Interrupt / Skip; ↙ and the prompt tools; styles."""
    with gr.Row(elem_id=f"{tab}_toprow"):
        with gr.Column(scale=6):
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id=f"{tab}_prompt",
                                placeholder=placeholder(None))  # the loaded model's, from page load on
            prompt_tokens = gr.HTML("0/75", elem_id=f"{tab}_token_counter", elem_classes=["token-counter"])
            negative_prompt = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{tab}_neg_prompt")
            negative_tokens = gr.HTML("0/75", elem_id=f"{tab}_negative_token_counter", elem_classes=["token-counter"])
        with gr.Column(scale=1, min_width=180):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{tab}_generate", elem_classes=["generate"])
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id=f"{tab}_interrupt", size="sm")
                skip = gr.Button("Skip", elem_id=f"{tab}_skip", size="sm")
            with gr.Row(elem_id=f"{tab}_tools"):
                read_params = gr.Button("↙", elem_id=f"{tab}_paste", size="sm", min_width=40,
                                        elem_classes=["tool"])
                tools = build_tool_buttons(tab)
            with gr.Row(elem_id=f"{tab}_styles_row"):  # as A1111: the edit button beside the list
                styles = gr.Dropdown(label="Styles", choices=ctx.styles.names(), multiselect=True, value=[],
                                     elem_id=f"{tab}_styles", scale=4, min_width=100)
                tools.edit_styles = build_edit_button(tab)
    tools.editor = build_style_editor(ctx, tab)  # under the row, at its full width
    wire_prompt_tools(ctx, tab, tools, prompt, negative_prompt, styles)
    return PromptRow(prompt, negative_prompt, styles, generate, interrupt, skip, prompt_tokens, negative_tokens,
                     read_params, tools)


@dataclass
class SamplingControls:
    """Sampler, size, batch, CFG, seed and the Extra accordion of one tab."""

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
    buttons: dict[str, gr.Button] = field(default_factory=dict)

    def field_map(self) -> dict[str, gr.components.Component]:
        """GenerationRequest field name -> component ("n_iter" is A1111's batch count)."""
        return {"sampler_name": self.sampler_name, "scheduler": self.scheduler, "steps": self.steps,
                "width": self.width, "height": self.height, "n_iter": self.batch_count,
                "batch_size": self.batch_size, "cfg_scale": self.cfg_scale, "seed": self.seed,
                "subseed": self.subseed, "subseed_strength": self.subseed_strength, "clip_skip": self.clip_skip}


def build_sampler(tab: str) -> tuple[gr.Dropdown, gr.Dropdown, gr.Slider]:
    with gr.Row():
        sampler_name = gr.Dropdown(label="Sampling method", elem_id=f"{tab}_sampling", choices=sampler_choices(),
                                   value="DPM++ 2M")
        scheduler = gr.Dropdown(label="Schedule type", choices=list(samplers.schedule_names()),
                                value=samplers.AUTOMATIC, elem_id=f"{tab}_scheduler")
    steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{tab}_steps")
    return sampler_name, scheduler, steps


def build_size(tab: str, default_size: int) -> tuple[gr.Slider, gr.Slider, gr.Button]:
    with gr.Row():
        with gr.Column(scale=4):
            width = gr.Slider(64, 2048, value=default_size, step=8, label="Width", elem_id=f"{tab}_width")
            height = gr.Slider(64, 2048, value=default_size, step=8, label="Height", elem_id=f"{tab}_height")
        swap = gr.Button("⇅", elem_id=f"{tab}_res_switch_btn", min_width=40, scale=0)
    return width, height, swap


def build_batch(tab: str) -> tuple[gr.Slider, gr.Slider]:
    batch_count = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id=f"{tab}_batch_count")
    batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{tab}_batch_size")
    return batch_count, batch_size


def build_cfg(tab: str) -> gr.Slider:
    return gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id=f"{tab}_cfg_scale")


def build_seed(ctx, tab: str) -> tuple:
    with gr.Row():
        seed = gr.Number(label="Seed", value=-1, precision=0, elem_id=f"{tab}_seed", scale=4)
        random_seed = gr.Button("⚄", elem_id=f"{tab}_random_seed", min_width=40, scale=0)
        reuse_seed = gr.Button("♻", elem_id=f"{tab}_reuse_seed", min_width=40, scale=0)
    with gr.Accordion("Extra", open=False, elem_id=f"{tab}_extra"):
        with gr.Row():
            subseed = gr.Number(label="Variation seed", value=-1, precision=0, elem_id=f"{tab}_subseed")
            subseed_strength = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength",
                                         elem_id=f"{tab}_subseed_strength")
        clip_skip = gr.Slider(1, 12, value=ctx.settings.get("CLIP_stop_at_last_layers"), step=1, label="Clip skip",
                              elem_id=f"{tab}_clip_skip")
        mirror_setting(ctx, clip_skip, "CLIP_stop_at_last_layers")  # the saved value, not the build-time one
    return seed, random_seed, reuse_seed, subseed, subseed_strength, clip_skip


@dataclass
class OutputPanel:
    progress: gr.HTML
    preview: gr.Image
    gallery: gr.Gallery
    infotext: gr.Textbox
    error: gr.HTML
    last_infotexts: gr.State
    last_seeds: gr.State
    last_images: gr.State
    selected: gr.State  # index of the gallery image the user clicked (0 until they click)

    def outputs(self) -> list:
        return [self.progress, self.preview, self.gallery, self.infotext, self.error, self.last_infotexts,
                self.last_seeds, self.last_images, self.selected]


def build_output(tab: str) -> OutputPanel:
    progress = gr.HTML("", elem_id=f"{tab}_progress_html")
    preview = gr.Image(label="Live preview", visible=False, elem_id=f"{tab}_preview", interactive=False)
    gallery = gr.Gallery(label="Output", columns=2, elem_id=f"{tab}_gallery", interactive=False,
                         object_fit="contain", height=420)
    infotext = gr.Textbox(label="Generation info", lines=4, interactive=False, elem_id=f"{tab}_info")
    error = gr.HTML("", elem_id=f"{tab}_error_html")
    return OutputPanel(progress, preview, gallery, infotext, error, gr.State([]), gr.State([]), gr.State([]),
                       gr.State(0))


def run_jobs(ctx, tab: str, requests: Iterable[GenerationRequest]):
    """Submit requests one after another to the shared queue; yield OutputPanel updates while they run."""
    images, infotexts, seeds, notes, extra = [], [], [], [], []
    interrupted = skipped = False
    keep = gr.update()
    total = None
    try:
        requests = list(requests)
        total = len(requests)
    except (RequestError, ValueError) as exc:
        yield "", gr.update(visible=False), keep, keep, error_html(str(exc), tab), keep, keep, keep, keep
        return
    if not requests:
        yield "", gr.update(visible=False), keep, keep, error_html("Nothing to do: no input images.", tab), \
            keep, keep, keep, keep
        return
    for number, request in enumerate(requests):
        prefix = f"Image {number + 1} of {total}: " if total > 1 else ""
        try:
            job = ctx.submit_generation(request, source="ui")  # refuses requests over budget (webui/security)
        except (RequestError, ValueError) as exc:
            yield "", gr.update(visible=False), keep, keep, error_html(str(exc), tab), keep, keep, keep, keep
            return
        while not job.done:
            position = ctx.queue.position(job)
            if position:
                text = f'<div class="progress-wrap">{html.escape(wait_text(ctx.queue, job))}</div>'  # says what runs
                yield text, keep, keep, keep, "", keep, keep, keep, keep
            else:
                snap = job.progress.snapshot()
                yield (progress_html(snap, tab, prefix), gr.update(value=snap.preview, visible=snap.preview is not None),
                       keep, keep, "", keep, keep, keep, keep)
            time.sleep(POLL_SECONDS)
        try:
            result = job.wait(0)
        except JobFailed as exc:
            yield "", gr.update(visible=False), keep, keep, error_html(str(exc), tab), keep, keep, keep, keep
            return
        images += result.images
        extra += result.extra_images  # features' images (ControlNet's detected maps), shown after, not sent on
        infotexts += result.infotexts
        seeds += result.seeds
        notes += [c for c in result.comments if c not in notes]
        skipped = skipped or bool(result.incomplete)
        if result.interrupted:
            interrupted = True
            break
    message = comments_html(notes, tab)  # what the core said of the job (networks not found, skipped LoRAs, ...)
    if interrupted:
        message += note_html("Interrupted: showing what was finished.", tab)
    elif skipped:
        message += note_html("Skipped: the skipped batch shows as far as it got (not saved).", tab)
    images, infotexts, seeds = with_grid(ctx, images, infotexts, seeds)
    yield ("", gr.update(visible=False), list(images) + extra, infotexts[0] if infotexts else "", message, infotexts, seeds,
           list(images), 0)


def with_grid(ctx, images: list, infotexts: list, seeds: list) -> tuple[list, list, list]:
    """A1111's gallery: a batch of same-size images comes with its grid first ("return_grid").

    The grid takes the first image's infotext and seed, so ♻, the info box and Send to stay
    index-aligned with the gallery (the grid itself is what Send to sends when it is selected).
    """
    if len(images) < 2 or not ctx.settings.get("return_grid") or len({im.size for im in images}) != 1:
        return images, infotexts, seeds
    return [image_grid(images), *images], infotexts[:1] + infotexts, seeds[:1] + seeds


def wire_common(ctx, tab: str, row: PromptRow, controls: SamplingControls, output: OutputPanel,
                make_requests: Callable[..., Iterable[GenerationRequest]], inputs: list) -> None:
    """Generate / Interrupt / Skip, seed buttons, size swap, gallery selection and token counters."""
    private = {"show_progress": "hidden", "api_visibility": "private"}

    fields = {"prompt": row.prompt, "negative_prompt": row.negative_prompt, **controls.field_map()}

    marked = {name: c for name, c in fields.items() if c in inputs}  # fields that can show their own error
    field_errors = gr.State({})  # field name -> message of the last Generate, put beside the field after it

    def run(*values):
        shown = {name: values[inputs.index(c)] for name, c in marked.items()}
        try:
            requests = make_requests(*values)
            for update in run_jobs(ctx, tab, requests):
                yield *update, {}
        except (RequestError, ValueError) as exc:
            keep = gr.update()
            yield "", gr.update(visible=False), keep, keep, error_html(ui_error(exc, fields, shown), tab), keep, \
                keep, keep, keep, field_messages(exc, marked, shown)

    # A1111: while a job runs, Interrupt and Skip stand where Generate was. Hidden when idle (set here,
    # before the page config is built, so the prompt row's layout code stays about layout).
    toggles = [row.generate, row.interrupt, row.skip]
    row.interrupt.visible = row.skip.visible = False
    running = (gr.update(visible=False), gr.update(visible=True), gr.update(visible=True))
    idle = (gr.update(visible=True), gr.update(visible=False), gr.update(visible=False))
    row.generate.click(lambda: running, None, toggles, **private).then(
        run, inputs=inputs, outputs=[*output.outputs(), field_errors], concurrency_limit=None, show_progress="hidden",
        api_visibility="private").then(
        lambda errors: (*idle, *mark_fields(marked, errors)), field_errors, [*toggles, *marked.values()], **private)
    row.interrupt.click(lambda: ctx.queue.interrupt() and None, None, None, **private)
    row.skip.click(lambda: ctx.queue.skip() and None, None, None, **private)
    buttons = controls.buttons
    buttons["swap"].click(lambda w, h: (h, w), [controls.width, controls.height], [controls.width, controls.height],
                          **private)
    buttons["random_seed"].click(lambda: -1, None, controls.seed, **private)
    buttons["reuse_seed"].click(lambda seeds_, index: seeds_[index] if seeds_ and index < len(seeds_) else -1,
                                [output.last_seeds, output.selected], controls.seed, **private)

    def pick(evt: gr.SelectData, infotexts):
        info = infotexts[evt.index] if infotexts and evt.index < len(infotexts) else gr.update()
        return info, evt.index

    output.gallery.select(pick, [output.last_infotexts], [output.infotext, output.selected], **private)

    def counter(text):
        model = ctx.models.current()
        if model is None:
            return "?/75"
        networks = getattr(ctx, "networks", None)  # embeddings count as their vectors, as in A1111
        expand = networks.embeddings.lookup(model.pipe).expander(model.pipe.tokenizer) if networks else None
        used, limit = count_tokens(model.pipe.tokenizer, text or "", expand_tokens=expand)
        return f"{used}/{limit}"

    row.prompt.change(counter, row.prompt, row.prompt_tokens, **private)
    row.negative_prompt.change(counter, row.negative_prompt, row.negative_tokens, **private)
