"""txt2img's "Hires. fix" and "Refiner" controls (A1111's names, defaults and elem_ids).

The widgets map one to one onto GenerationRequest fields (``field_map``), so Generate, PNG Info's
"Send to txt2img" and the API read the same names. The hires size line under the accordion says
what the second pass will draw, as A1111's does.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from webui.generation import samplers
from webui.generation.hires_fields import NO_REFINER as _NO_REFINER, SAME_CHECKPOINT, SAME_SAMPLER, SAME_SCHEDULER, target_size
from webui.models.upscalers import LATENT_MODES

NO_REFINER = _NO_REFINER[1]


@dataclass
class HiresControls:
    enable_hr: gr.Checkbox
    hr_upscaler: gr.Dropdown
    hr_second_pass_steps: gr.Slider
    denoising_strength: gr.Slider
    hr_scale: gr.Slider
    hr_resize_x: gr.Slider
    hr_resize_y: gr.Slider
    hr_checkpoint_name: gr.Dropdown
    hr_sampler_name: gr.Dropdown
    hr_scheduler: gr.Dropdown
    hr_prompt: gr.Textbox
    hr_negative_prompt: gr.Textbox
    refiner_checkpoint: gr.Dropdown
    refiner_switch_at: gr.Slider
    size_info: gr.HTML

    def field_map(self) -> dict[str, gr.components.Component]:
        names = ("enable_hr", "hr_upscaler", "hr_second_pass_steps", "denoising_strength", "hr_scale", "hr_resize_x",
                 "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt",
                 "hr_negative_prompt", "refiner_checkpoint", "refiner_switch_at")
        return {name: getattr(self, name) for name in names}


def upscaler_choices(ctx) -> list[str]:
    upscalers = getattr(ctx, "upscalers", None)
    return upscalers.names(latent=True) if upscalers is not None else list(LATENT_MODES)


def checkpoint_titles(ctx) -> list[str]:
    return [info.title for info in ctx.models.checkpoints()]


def size_line(enabled, width, height, scale, resize_x, resize_y) -> str:
    """"from 512x512 to 1024x1024", or why not."""
    try:
        w, h, excess_x, excess_y = target_size(int(width), int(height), float(scale), int(resize_x), int(resize_y))
    except (TypeError, ValueError, ZeroDivisionError):
        return ""
    w, h = w - excess_x, h - excess_y
    text = f"from <b>{int(width)}x{int(height)}</b> to <b>{w}x{h}</b>"
    return f'<span class="hires-size" id="txt2img_hires_size">{text if enabled else "Hires. fix is off"}</span>'


def build_hires(ctx, tab: str = "txt2img") -> HiresControls:
    """The Hires. fix checkbox and its settings, then the Refiner accordion."""
    face_note = ("Face restoration (GFPGAN / CodeFormer) is not available: it needs face-detection weights that "
                 "cannot be shipped or downloaded here.")
    with gr.Row(elem_id=f"{tab}_hires_row"):
        enable_hr = gr.Checkbox(label="Hires. fix", value=False, elem_id=f"{tab}_enable_hr",
                                info="Draw small, upscale, then redraw at the larger size (A1111's Hires. fix)")
        gr.Checkbox(label="Restore faces", value=False, interactive=False, elem_id=f"{tab}_restore_faces",
                    info=face_note)
    with gr.Accordion("Hires. fix settings", open=False, elem_id=f"{tab}_hires_fix"):
        with gr.Row():
            hr_upscaler = gr.Dropdown(upscaler_choices(ctx), value="Latent", label="Upscaler",
                                      elem_id=f"{tab}_hr_upscaler")
            hr_second_pass_steps = gr.Slider(0, 150, value=0, step=1, label="Hires steps",
                                             elem_id=f"{tab}_hires_steps", info="0: as many as the first pass")
            denoising_strength = gr.Slider(0, 1, value=0.7, step=0.01, label="Denoising strength",
                                           elem_id=f"{tab}_denoising_strength")
        with gr.Row():
            hr_scale = gr.Slider(1, 4, value=2, step=0.05, label="Upscale by", elem_id=f"{tab}_hr_scale")
            hr_resize_x = gr.Slider(0, 2048, value=0, step=8, label="Resize width to", elem_id=f"{tab}_hr_resize_x")
            hr_resize_y = gr.Slider(0, 2048, value=0, step=8, label="Resize height to", elem_id=f"{tab}_hr_resize_y")
        size_info = gr.HTML(size_line(False, 512, 512, 2, 0, 0), elem_id=f"{tab}_hires_size_info")
        with gr.Row():
            hr_checkpoint_name = gr.Dropdown([SAME_CHECKPOINT[1], *checkpoint_titles(ctx)], value=SAME_CHECKPOINT[1],
                                             label="Hires checkpoint", elem_id=f"{tab}_hr_checkpoint")
            hr_sampler_name = gr.Dropdown([SAME_SAMPLER[1], *samplers.sampler_names()], value=SAME_SAMPLER[1],
                                          label="Hires sampling method", elem_id=f"{tab}_hr_sampler")
            hr_scheduler = gr.Dropdown([SAME_SCHEDULER[1], *samplers.schedule_names()], value=SAME_SCHEDULER[1],
                                       label="Hires schedule type", elem_id=f"{tab}_hr_scheduler")
        with gr.Row():
            hr_prompt = gr.Textbox(label="Hires prompt", lines=2, elem_id=f"{tab}_hr_prompt",
                                   placeholder="Prompt for the hires pass (empty: the same prompt)")
            hr_negative_prompt = gr.Textbox(label="Hires negative prompt", lines=2, elem_id=f"{tab}_hr_neg_prompt",
                                            placeholder="Negative prompt for the hires pass (empty: the same)")
    with gr.Accordion("Refiner", open=False, elem_id=f"{tab}_refiner"):
        with gr.Row():
            refiner_checkpoint = gr.Dropdown([NO_REFINER, *checkpoint_titles(ctx)], value=NO_REFINER,
                                             label="Checkpoint", elem_id=f"{tab}_refiner_checkpoint",
                                             info="Switch to this model for the end of sampling")
            refiner_switch_at = gr.Slider(0.01, 1, value=0.8, step=0.01, label="Switch at",
                                          elem_id=f"{tab}_refiner_switch_at")
    return HiresControls(enable_hr, hr_upscaler, hr_second_pass_steps, denoising_strength, hr_scale, hr_resize_x,
                         hr_resize_y, hr_checkpoint_name, hr_sampler_name, hr_scheduler, hr_prompt, hr_negative_prompt,
                         refiner_checkpoint, refiner_switch_at, size_info)


def wire_hires(hires: HiresControls, width: gr.Slider, height: gr.Slider) -> None:
    """Keep the "from AxB to CxD" line current."""
    inputs = [hires.enable_hr, width, height, hires.hr_scale, hires.hr_resize_x, hires.hr_resize_y]
    for component in inputs:
        component.change(size_line, inputs, hires.size_info, show_progress="hidden", api_visibility="private")


def refresh_choices(ctx, hires: HiresControls) -> list:
    """Updates after a checkpoint or upscaler rescan: the dropdowns list what is there now."""
    titles = checkpoint_titles(ctx)
    return [gr.update(choices=upscaler_choices(ctx)), gr.update(choices=[SAME_CHECKPOINT[1], *titles]),
            gr.update(choices=[NO_REFINER, *titles])]
