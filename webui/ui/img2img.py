"""The img2img tab: A1111's sub-tabs (img2img / Sketch / Inpaint / Inpaint sketch / Inpaint upload / Batch),
resize mode, inpaint options, outpainting, and the same shared controls as txt2img."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from webui.generation import image_fields
from webui.generation.img2img_batch import batch_requests
from webui.generation.outpaint import DIRECTIONS, METHODS, OutpaintJob
from webui.generation.request import GenerationRequest
from webui.ui.controlnet import ControlNetPanel, build_controlnet_panel
from webui.ui.extra_networks import build_extra_networks
from webui.generation.soft_inpaint import LIMITS, SoftInpainting
from webui.ui import img2img_inputs as inputs
from webui.ui.extension_panels import build_extension_controls
from webui.ui.read_params import wire_read_params
from webui.ui.shared_controls import (
    OutputPanel,
    PromptRow,
    SamplingControls,
    build_batch,
    build_cfg,
    build_output,
    build_prompt_row,
    build_sampler,
    build_seed,
    build_size,
    wire_common,
)

TAB = "img2img"
NO_OUTPAINT = "None"
SOFT_SLIDERS = [(name, label, LIMITS[name], step) for name, label, step in (
    ("mask_blend_power", "Schedule bias", 0.1), ("mask_blend_scale", "Preservation strength", 0.05),
    ("inpaint_detail_preservation", "Transition contrast boost", 0.5),
    ("composite_mask_influence", "Mask influence", 0.05),
    ("composite_difference_threshold", "Difference threshold", 0.25),
    ("composite_difference_contrast", "Difference contrast", 0.25))]
EDITOR = {"type": "pil", "image_mode": "RGBA", "format": "png", "height": 480, "sources": ["upload", "clipboard"]}


@dataclass
class Img2ImgTab:
    """Components that "Send to" buttons and PNG Info fill."""

    row: PromptRow
    controls: SamplingControls
    output: OutputPanel
    subtabs: gr.Tabs
    mode: gr.State
    image: gr.Image
    sketch: gr.ImageEditor
    inpaint: gr.ImageEditor
    denoising_strength: gr.Slider
    resize_mode: gr.Radio
    mask_blur: gr.Slider
    inpainting_mask_invert: gr.Radio
    inpainting_fill: gr.Radio
    inpaint_full_res: gr.Radio
    inpaint_full_res_padding: gr.Slider
    inpaint_controls: gr.Group
    soft_enabled: gr.Checkbox
    soft_sliders: list
    send_to_extras: gr.Button | None = None
    controlnet: ControlNetPanel | None = None  # units without an image use the img2img input (A1111)
    scripts: Any = None  # webui.ui.extension_panels.ExtensionControls (Script dropdown, always-on panels)

    def paste_targets(self) -> dict[str, gr.components.Component]:
        """GenerationRequest field -> component, for infotext pastes (choice fields take their labels)."""
        return {"prompt": self.row.prompt, "negative_prompt": self.row.negative_prompt, "styles": self.row.styles,
                **self.controls.field_map(), "denoising_strength": self.denoising_strength,
                "mask_blur_x": self.mask_blur, "inpainting_mask_invert": self.inpainting_mask_invert,
                "inpainting_fill": self.inpainting_fill, "inpaint_full_res": self.inpaint_full_res,
                "inpaint_full_res_padding": self.inpaint_full_res_padding, "soft_inpainting": self.soft_enabled,
                **{f"soft:{name}": slider for (name, *_), slider in zip(SOFT_SLIDERS, self.soft_sliders)},
                **{name: component for name, (component, _) in self.extension_fills().items()}}

    def extension_fills(self) -> dict[str, tuple]:
        """"ext:N" -> (component, fn(params)): extension panel controls filled from infotext keys."""
        fills = self.scripts.paste_targets() if self.scripts is not None else {}
        return {f"ext:{i}": (component, fn) for i, (component, fn) in enumerate(fills.items())}


def paste_value(name: str, value):
    """A request-field value as the img2img widget shows it (labels for A1111's choice fields)."""
    labels = {"inpainting_fill": image_fields.MASKED_CONTENT, "inpainting_mask_invert": image_fields.MASK_MODES,
              "resize_mode": image_fields.RESIZE_MODES}
    if name in labels and isinstance(value, int) and 0 <= value < len(labels[name]):
        return labels[name][value]
    if name == "inpaint_full_res" and isinstance(value, bool):
        return image_fields.INPAINT_AREAS[int(value)]
    if name == "styles":
        return list(value)
    if name == "soft_inpainting":
        return bool(value)
    return value


def _choice_index(value, labels) -> int:
    return labels.index(value) if value in labels else int(value)


def build_img2img(ctx) -> Img2ImgTab:
    model = ctx.models.current()
    default_size = model.native_size if model else 512
    row = build_prompt_row(ctx, TAB)
    build_extra_networks(ctx, TAB, row.prompt, row.negative_prompt)
    mode = gr.State(inputs.IMG2IMG)
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Tabs(elem_id="mode_img2img") as subtabs:
                with gr.Tab("img2img", id=inputs.SUBTAB_IDS[0], elem_id=inputs.SUBTAB_IDS[0]) as t0:
                    image = gr.Image(label="Image for img2img", type="pil", image_mode="RGBA", height=480,
                                     sources=["upload", "clipboard"], elem_id="img2img_image")
                with gr.Tab("Sketch", id=inputs.SUBTAB_IDS[1], elem_id=inputs.SUBTAB_IDS[1]) as t1:
                    sketch = gr.ImageEditor(label="Image for img2img", elem_id="img2img_sketch",
                                            brush=gr.Brush(color_mode="defaults"), **EDITOR)
                with gr.Tab("Inpaint", id=inputs.SUBTAB_IDS[2], elem_id=inputs.SUBTAB_IDS[2]) as t2:
                    inpaint = gr.ImageMask(label="Image for inpainting with mask", elem_id="img2maskimg",
                                           brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24),
                                           layers=False, **EDITOR)
                with gr.Tab("Inpaint sketch", id=inputs.SUBTAB_IDS[3], elem_id=inputs.SUBTAB_IDS[3]) as t3:
                    inpaint_sketch = gr.ImageEditor(label="Color sketch inpainting", elem_id="inpaint_sketch",
                                                    brush=gr.Brush(color_mode="defaults"), layers=False, **EDITOR)
                with gr.Tab("Inpaint upload", id=inputs.SUBTAB_IDS[4], elem_id=inputs.SUBTAB_IDS[4]) as t4:
                    upload_image = gr.Image(label="Image for img2img", type="pil", image_mode="RGBA",
                                            sources=["upload"], elem_id="img_inpaint_base")
                    upload_mask = gr.Image(label="Mask", type="pil", image_mode="RGBA", sources=["upload"],
                                           elem_id="img_inpaint_mask")
                with gr.Tab("Batch", id=inputs.SUBTAB_IDS[5], elem_id=inputs.SUBTAB_IDS[5]) as t5:
                    gr.Markdown("Process every image in a folder on the server. With an output folder, results go "
                                "straight into it, named after their input; a mask folder holds masks with the "
                                "same names.")
                    input_dir = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir")
                    output_dir = gr.Textbox(label="Output directory", elem_id="img2img_batch_output_dir")
                    mask_dir = gr.Textbox(label="Inpaint batch mask directory (optional)",
                                          elem_id="img2img_batch_inpaint_mask_dir")
            resize_mode = gr.Radio(list(image_fields.RESIZE_MODES), value=image_fields.RESIZE_MODES[0],
                                   label="Resize mode", elem_id="resize_mode")
            with gr.Group(visible=False, elem_id="img2img_inpaint_controls") as inpaint_controls:
                mask_blur = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id="img2img_mask_blur")
                mask_alpha = gr.Slider(0, 100, value=0, step=1, label="Mask transparency", visible=False,
                                       elem_id="img2img_mask_alpha")
                inpainting_mask_invert = gr.Radio(list(image_fields.MASK_MODES), value=image_fields.MASK_MODES[0],
                                                  label="Mask mode", elem_id="img2img_mask_mode")
                inpainting_fill = gr.Radio(list(image_fields.MASKED_CONTENT), value="original",
                                           label="Masked content", elem_id="img2img_inpainting_fill")
                with gr.Row():
                    inpaint_full_res = gr.Radio(list(image_fields.INPAINT_AREAS), value="Whole picture",
                                                label="Inpaint area", elem_id="img2img_inpaint_full_res")
                    padding = gr.Slider(0, 256, value=32, step=4, label="Only masked padding, pixels",
                                        elem_id="img2img_inpaint_full_res_padding")
                with gr.Accordion("Soft inpainting", open=False, elem_id="soft_inpainting_accordion"):
                    soft_enabled = gr.Checkbox(False, label="Soft inpainting", elem_id="soft_inpainting_enabled",
                                               info="Blend original and new content by the mask's opacity; "
                                                    "high Mask blur values are recommended.")
                    soft_sliders = [gr.Slider(low, high, value=getattr(SoftInpainting(), name), step=step, label=label,
                                              elem_id=name)
                                    for name, label, (low, high), step in SOFT_SLIDERS]
                with gr.Accordion("Outpainting", open=False, elem_id="img2img_outpainting"):
                    outpaint_method = gr.Radio([NO_OUTPAINT, *METHODS], value=NO_OUTPAINT, label="Outpainting",
                                               elem_id="img2img_outpaint_method")
                    outpaint_pixels = gr.Slider(8, 256, value=128, step=8, label="Pixels to expand",
                                                elem_id="img2img_outpaint_pixels")
                    outpaint_directions = gr.CheckboxGroup(list(DIRECTIONS), value=list(DIRECTIONS),
                                                           label="Outpainting direction",
                                                           elem_id="img2img_outpaint_directions")
                    with gr.Row():
                        noise_q = gr.Slider(0, 4, value=1, step=0.01, label="Fall-off exponent (mk2)",
                                            elem_id="img2img_outpaint_noise_q")
                        color_variation = gr.Slider(0, 1, value=0.05, step=0.01, label="Color variation (mk2)",
                                                    elem_id="img2img_outpaint_color_variation")
            sampler_name, scheduler, steps = build_sampler(TAB)
            scale_tab = gr.State(0)
            with gr.Tabs(elem_id="img2img_dimensions_row"):
                with gr.Tab("Resize to", elem_id="img2img_tab_resize_to") as resize_to:
                    width, height, swap = build_size(TAB, default_size)
                with gr.Tab("Resize by", elem_id="img2img_tab_resize_by") as resize_by:
                    scale_by = gr.Slider(0.05, 4.0, value=1.0, step=0.05, label="Scale", elem_id="img2img_scale")
            with gr.Row():
                batch_count, batch_size = build_batch(TAB)
            cfg_scale = build_cfg(TAB)
            denoising_strength = gr.Slider(0, 1, value=0.75, step=0.01, label="Denoising strength",
                                           elem_id="img2img_denoising_strength")
            seed, random_seed, reuse_seed, subseed, subseed_strength, clip_skip = build_seed(ctx, TAB)
            controlnet = build_controlnet_panel(ctx, TAB, width, height, img2img=True)
            scripts = build_extension_controls(ctx, TAB)  # extensions' always-on panels and Script dropdown
        with gr.Column(scale=1):
            output = build_output(TAB)
            send_to_extras = gr.Button("Send to extras", elem_id=f"{TAB}_send_to_extras", size="sm")
    controls = SamplingControls(sampler_name, scheduler, steps, width, height, batch_count, batch_size, cfg_scale,
                                seed, subseed, subseed_strength, clip_skip,
                                buttons={"swap": swap, "random_seed": random_seed, "reuse_seed": reuse_seed})
    tab = Img2ImgTab(row, controls, output, subtabs, mode, image, sketch, inpaint, denoising_strength, resize_mode,
                     mask_blur, inpainting_mask_invert, inpainting_fill, inpaint_full_res, padding, inpaint_controls,
                     soft_enabled, soft_sliders, send_to_extras, controlnet, scripts)

    for index, subtab in enumerate((t0, t1, t2, t3, t4, t5)):
        subtab.select(lambda i=index: (i, gr.update(visible=i in inputs.INPAINT_MODES),
                                       gr.update(visible=i == inputs.INPAINT_SKETCH)),
                      None, [mode, inpaint_controls, mask_alpha], show_progress="hidden", api_visibility="private")
    resize_to.select(lambda: 0, None, scale_tab, show_progress="hidden", api_visibility="private")
    resize_by.select(lambda: 1, None, scale_tab, show_progress="hidden", api_visibility="private")

    common = [row.prompt, row.negative_prompt, row.styles, *controls.field_map().values()]
    common_names = ["prompt", "negative_prompt", "styles", *controls.field_map()]
    extra = [mode, image, sketch, inpaint, inpaint_sketch, upload_image, upload_mask, input_dir, output_dir,
             mask_dir, resize_mode, scale_tab, scale_by, denoising_strength, mask_blur, mask_alpha,
             inpainting_mask_invert, inpainting_fill, inpaint_full_res, padding, outpaint_method, outpaint_pixels,
             outpaint_directions, noise_q, color_variation, soft_enabled, *soft_sliders]
    unit_start = len(common) + len(extra)  # the ControlNet units' values come last

    def make_requests(*values):
        values, script_fields = scripts.split(values)
        fields = dict(zip(common_names, values[:len(common_names)]), **script_fields)
        (mode_, image_, sketch_, inpaint_, sketch_inpaint_, upload_image_, upload_mask_, input_dir_, output_dir_,
         mask_dir_, resize_mode_, scale_tab_, scale_by_, denoise_, blur_, alpha_, invert_, fill_, area_, padding_,
         method_, pixels_, directions_, noise_q_, variation_, soft_, *soft_values) = values[len(common_names):unit_start]
        fields.update(resize_mode=_choice_index(resize_mode_, image_fields.RESIZE_MODES),
                      scale_by=scale_by_ if scale_tab_ == 1 and mode_ != inputs.BATCH else None,
                      denoising_strength=denoise_, mask_blur=int(blur_),
                      inpainting_mask_invert=_choice_index(invert_, image_fields.MASK_MODES),
                      inpainting_fill=_choice_index(fill_, image_fields.MASKED_CONTENT),
                      inpaint_full_res=area_ == "Only masked", inpaint_full_res_padding=int(padding_),
                      soft_inpainting={name: float(v) for (name, *_), v in zip(SOFT_SLIDERS, soft_values)}
                      if soft_ else None,
                      controlnet_units=controlnet.units_from(values[unit_start:]))
        template = GenerationRequest.from_dict(fields)[0]
        if mode_ == inputs.BATCH:
            return batch_requests(template, input_dir_, output_dir_, mask_dir_,
                                  allow_dirs=not getattr(ctx.args, "hide_ui_dir_config", False))
        init, mask = inputs.image_and_mask(mode_, image_, sketch_, inpaint_, sketch_inpaint_, upload_image_,
                                           upload_mask_, alpha_, int(blur_))
        request = GenerationRequest.from_dict({**fields, "init_images": [init], "mask": mask,
                                               "mode": "inpaint" if mask is not None else "img2img"})[0]
        if method_ != NO_OUTPAINT and mode_ in inputs.INPAINT_MODES:
            return [OutpaintJob(GenerationRequest.from_dict({**fields, "init_images": [init]})[0], method=method_,
                                pixels=int(pixels_), directions=tuple(directions_ or ()), mask_blur=int(blur_),
                                inpainting_fill=fields["inpainting_fill"], noise_q=float(noise_q_),
                                color_variation=float(variation_)).validate()]
        return [request.validate()]

    wire_common(ctx, TAB, row, controls, output, make_requests, common + extra + controlnet.inputs() + scripts.inputs)
    wire_read_params(row.read_params, row.prompt, tab.paste_targets())
    return tab
