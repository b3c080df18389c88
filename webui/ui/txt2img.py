"""The txt2img tab: A1111's layout and names, built from the shared controls, wired to the job queue."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from webui.generation.request import GenerationRequest
from webui.ui.controlnet import ControlNetPanel, build_controlnet_panel
from webui.ui.extension_panels import ExtensionControls, build_extension_controls
from webui.ui.extra_networks import build_extra_networks
from webui.ui.hires_controls import HiresControls, build_hires, wire_hires
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

TAB = "txt2img"


@dataclass
class Txt2ImgTab:
    """The components other tabs (PNG Info's "Send to txt2img") and the header need."""

    row: PromptRow
    controls: SamplingControls
    output: OutputPanel
    send_to_img2img: gr.Button
    send_to_inpaint: gr.Button
    hires: HiresControls
    send_to_extras: gr.Button | None = None
    controlnet: ControlNetPanel | None = None  # its units (PNG Info restores them, the pose editor fills them)
    scripts: ExtensionControls | None = None  # extensions' always-on panels and the Script dropdown

    @property
    def width(self):
        return self.controls.width

    @property
    def height(self):
        return self.controls.height

    @property
    def clip_skip(self):
        return self.controls.clip_skip

    def field_map(self) -> dict[str, gr.components.Component]:
        """GenerationRequest field name -> component."""
        return {"prompt": self.row.prompt, "negative_prompt": self.row.negative_prompt, "styles": self.row.styles,
                **self.controls.field_map(), **self.hires.field_map()}


def build_txt2img(ctx) -> Txt2ImgTab:
    """Lay out the tab and wire Generate / Interrupt / Skip, counters, seeds, swap and gallery."""
    model = ctx.models.current()
    default_size = model.native_size if model else (getattr(ctx, "startup_size", None) or 512)
    row = build_prompt_row(ctx, TAB)
    build_extra_networks(ctx, TAB, row.prompt, row.negative_prompt)
    with gr.Row():
        with gr.Column(scale=1):
            sampler_name, scheduler, steps = build_sampler(TAB)
            with gr.Row():
                with gr.Column(scale=4):
                    width, height, swap = build_size(TAB, default_size)
                with gr.Column(scale=2):
                    batch_count, batch_size = build_batch(TAB)
            cfg_scale = build_cfg(TAB)
            seed, random_seed, reuse_seed, subseed, subseed_strength, clip_skip = build_seed(ctx, TAB)
            hires = build_hires(ctx, TAB)
            controlnet = build_controlnet_panel(ctx, TAB, width, height)
            scripts = build_extension_controls(ctx, TAB)
        with gr.Column(scale=1):
            output = build_output(TAB)
            with gr.Row(elem_id=f"{TAB}_send_row"):
                send_to_img2img = gr.Button("Send to img2img", elem_id=f"{TAB}_send_to_img2img", size="sm")
                send_to_inpaint = gr.Button("Send to inpaint", elem_id=f"{TAB}_send_to_inpaint", size="sm")
                send_to_extras = gr.Button("Send to extras", elem_id=f"{TAB}_send_to_extras", size="sm")
    controls = SamplingControls(sampler_name, scheduler, steps, width, height, batch_count, batch_size, cfg_scale,
                                seed, subseed, subseed_strength, clip_skip,
                                buttons={"swap": swap, "random_seed": random_seed, "reuse_seed": reuse_seed})
    tab = Txt2ImgTab(row, controls, output, send_to_img2img, send_to_inpaint, hires, send_to_extras, controlnet,
                     scripts)
    wire_hires(hires, width, height)
    names = list(tab.field_map())

    def make_requests(*values):
        values, script_fields = scripts.split(values)  # raises ExtensionError (a ValueError) naming the control
        fields = {**dict(zip(names, values)), **script_fields}
        fields["controlnet_units"] = controlnet.units_from(values[len(names):])  # RequestError: shown as an error
        return [GenerationRequest.from_dict(fields)[0].validate()]

    wire_common(ctx, TAB, row, controls, output, make_requests,
                list(tab.field_map().values()) + controlnet.inputs() + scripts.inputs)
    wire_read_params(row.read_params, row.prompt, tab.field_map())
    return tab
