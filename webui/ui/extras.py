"""The Extras tab (A1111's postprocessing): upscale a single image, several uploads, or a folder.

Runs `ExtrasRequest` jobs on the shared queue and shows the results with their postprocessing
text. "Send to extras" buttons elsewhere put an image into the Single Image input.
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image, UnidentifiedImageError

from webui.generation.postprocess import FACE_RESTORE_REASON, ExtrasRequest
from webui.generation.request import RequestError
from webui.jobs import JobFailed
from webui.ui.shared_controls import POLL_SECONDS, error_html, progress_html

TAB = "extras"
SINGLE, BATCH, FOLDER = 0, 1, 2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class ExtrasTab:
    image: gr.Image
    mode: gr.State


def _open(path) -> tuple[Image.Image, str]:
    name = Path(getattr(path, "name", path)).name
    try:
        with Image.open(getattr(path, "name", path)) as image:
            image.load()
            return image.copy(), name
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{name} is not an image ({exc})") from None


def collect_inputs(ctx, mode: int, image, files, input_dir: str, output_dir: str):
    """(images, names, output folder or None) for the chosen input tab; ValueError says what is missing."""
    if mode == SINGLE:
        if image is None:
            raise ValueError("Upload an image first.")
        return [image], [], None
    if mode == BATCH:
        if not files:
            raise ValueError("Add one or more images to the batch first.")
        opened = [_open(f) for f in files]
        return [i for i, _ in opened], [n for _, n in opened], None
    if getattr(ctx.args, "hide_ui_dir_config", False):
        raise ValueError("Batch from a folder is disabled on this server (--hide-ui-dir-config).")
    folder = Path((input_dir or "").strip()).expanduser()
    if not input_dir or not folder.is_dir():
        raise ValueError(f"Input directory {input_dir!r} is not a folder on this server.")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in {folder}.")
    opened = [_open(p) for p in paths]
    out = Path(output_dir.strip()).expanduser() if output_dir and output_dir.strip() else None
    return [i for i, _ in opened], [n for _, n in opened], out


def build_extras(ctx) -> ExtrasTab:
    mode = gr.State(SINGLE)
    names = ctx.upscalers.names()
    with gr.Row():
        with gr.Column():
            with gr.Tabs(elem_id="mode_extras"):
                with gr.Tab("Single Image", id="extras_single_tab", elem_id="extras_single_tab") as single_tab:
                    image = gr.Image(label="Source", type="pil", sources=["upload", "clipboard"], format="png",
                                     elem_id="extras_image", height=320)
                with gr.Tab("Batch Process", id="extras_batch_process_tab",
                            elem_id="extras_batch_process_tab") as batch_tab:
                    files = gr.File(label="Batch Process", file_count="multiple", file_types=["image"],
                                    elem_id="extras_image_batch")
                with gr.Tab("Batch from Directory", id="extras_batch_directory_tab",
                            elem_id="extras_batch_directory_tab") as folder_tab:
                    input_dir = gr.Textbox(label="Input directory", elem_id="extras_batch_input_dir",
                                           placeholder="A folder on this server")
                    output_dir = gr.Textbox(label="Output directory", elem_id="extras_batch_output_dir",
                                            placeholder="Leave blank to save to the default folder")
            submit = gr.Button("Generate", variant="primary", elem_id="extras_generate")
            with gr.Tabs(elem_id="extras_resize_mode"):
                with gr.Tab("Scale by", id="extras_scale_by_tab", elem_id="extras_scale_by_tab") as by_tab:
                    upscaling_resize = gr.Slider(1, 8, value=4, step=0.05, label="Resize", elem_id="extras_upscaling_resize")
                with gr.Tab("Scale to", id="extras_scale_to_tab", elem_id="extras_scale_to_tab") as to_tab:
                    with gr.Row():
                        resize_w = gr.Slider(64, 8192, value=512, step=8, label="Width", elem_id="extras_upscaling_resize_w")
                        resize_h = gr.Slider(64, 8192, value=512, step=8, label="Height",
                                             elem_id="extras_upscaling_resize_h")
                        crop = gr.Checkbox(label="Crop to fit", value=True, elem_id="extras_upscaling_crop")
            resize_mode = gr.State(0)
            with gr.Row():
                upscaler_1 = gr.Dropdown(names, value="None", label="Upscaler 1", elem_id="extras_upscaler_1")
                upscaler_2 = gr.Dropdown(names, value="None", label="Upscaler 2", elem_id="extras_upscaler_2")
                visibility = gr.Slider(0, 1, value=0, step=0.001, label="Upscaler 2 visibility",
                                       elem_id="extras_upscaler_2_visibility")
            refresh = gr.Button("Refresh upscalers", size="sm", elem_id="extras_refresh_upscalers")
            gr.Checkbox(label="Restore faces (GFPGAN / CodeFormer)", value=False, interactive=False,
                        elem_id="extras_restore_faces", info=f"Not available: {FACE_RESTORE_REASON}.")
        with gr.Column():
            progress = gr.HTML("", elem_id="extras_progress_html")
            gallery = gr.Gallery(label="Result", columns=2, elem_id="extras_gallery", interactive=False,
                                 object_fit="contain", height=420)
            info = gr.HTML("", elem_id="extras_generation_info")
    private = {"show_progress": "hidden", "api_visibility": "private"}
    for tab_, value in ((single_tab, SINGLE), (batch_tab, BATCH), (folder_tab, FOLDER)):
        tab_.select(lambda v=value: v, None, mode, **private)
    by_tab.select(lambda: 0, None, resize_mode, **private)
    to_tab.select(lambda: 1, None, resize_mode, **private)

    def run(mode_, image_, files_, input_dir_, output_dir_, resize_mode_, by, w, h, crop_, up1, up2, vis):
        try:
            images, names_, out_dir = collect_inputs(ctx, mode_, image_, files_, input_dir_, output_dir_)
            request = ExtrasRequest(images=images, names=names_, resize_mode=int(resize_mode_),
                                    upscaling_resize=float(by), upscaling_resize_w=int(w), upscaling_resize_h=int(h),
                                    upscaling_crop=bool(crop_), upscaler_1=up1 or "None", upscaler_2=up2 or "None",
                                    extras_upscaler_2_visibility=float(vis), output_dir=out_dir)
            job = ctx.submit_extras(request.validate(ctx.upscalers), source="ui")
        except (RequestError, ValueError) as exc:
            yield "", gr.update(), error_html(str(exc), TAB)
            return
        while not job.done:
            position = ctx.queue.position(job)
            text = (f'<div class="progress-wrap">In queue: {position} job(s) ahead</div>' if position
                    else progress_html(job.progress.snapshot(), TAB))
            yield text, gr.update(), ""
            time.sleep(POLL_SECONDS)
        try:
            result = job.wait(0)
        except JobFailed as exc:
            yield "", gr.update(), error_html(str(exc), TAB)
            return
        saved = f"<p>Saved {len(result.paths)} image(s) to {html.escape(str(result.paths[0].parent))}</p>" \
            if result.paths else ""
        notes = "".join(f"<p>{html.escape(text)}</p>" for text in dict.fromkeys(result.infotexts))
        if result.interrupted:
            notes += "<p>Interrupted: showing what was finished.</p>"
        yield "", list(result.images), notes + saved

    submit.click(run, [mode, image, files, input_dir, output_dir, resize_mode, upscaling_resize, resize_w, resize_h,
                       crop, upscaler_1, upscaler_2, visibility], [progress, gallery, info],
                 concurrency_limit=None, show_progress="hidden", api_visibility="private")

    def rescan():
        ctx.upscalers.refresh()
        choices = ctx.upscalers.names()
        return gr.update(choices=choices), gr.update(choices=choices)

    refresh.click(rescan, None, [upscaler_1, upscaler_2], **private)
    return ExtrasTab(image, mode)


def wire_send_to_extras(button: gr.Button, output, target: ExtrasTab, main_tabs: gr.Tabs) -> None:
    """A gallery's "Send to extras": the clicked (or first) image, with its infotext, into Single Image."""
    def go(images, infotexts, index):
        if not images:
            return gr.update(), gr.Tabs()
        index = index if index is not None and index < len(images) else 0
        image = images[index].copy()
        if index < len(infotexts or []):
            image.info["parameters"] = infotexts[index]  # Extras keeps the original's parameters
        return image, gr.Tabs(selected=TAB)

    button.click(go, [output.last_images, output.last_infotexts, output.selected], [target.image, main_tabs],
                 show_progress="hidden", api_visibility="private")
