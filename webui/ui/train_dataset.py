"""Train -> Dataset: see a folder with its captions, edit one, edit tags everywhere, prepare buckets."""
from __future__ import annotations

import html

import gradio as gr
from PIL import Image

from webui.training import dataset as ds
from webui.training import dataset_tools as tools

NO_AUTOCAPTION = ("Automatic captioning (BLIP, DeepBooru, WD14) is not included: each needs a model of "
                  "hundreds of MB downloaded from the internet, and this app ships and downloads no weights. "
                  "Write captions here, or make them with another tool and drop the .txt files beside the images.")
PREVIEW_LIMIT = 200


def load(folder: str, extension: str):
    """Gallery items (image, caption), the list of paths, a summary and the tag counts."""
    try:
        data = ds.scan_folder(folder, extension or ".txt")
    except ds.DatasetError as exc:
        return [], [], f"**Cannot use this folder:** {html.escape(str(exc))}", ""
    shown = data.images[:PREVIEW_LIMIT]
    items = []
    for image in shown:
        with Image.open(image.path) as im:
            thumb = im.convert("RGB")
            thumb.thumbnail((256, 256))
        label = image.caption if image.captioned else f"(no caption; trains as '{image.caption}')"
        items.append((thumb, label))
    summary = f"**{len(data.images)} images** in {html.escape(str(data.root))}"
    if len(data.images) > PREVIEW_LIMIT:
        summary += f" (showing the first {PREVIEW_LIMIT})"
    summary += "".join(f"\n\n- {html.escape(n)}" for n in data.notes)
    counts = tools.tag_counts(data)
    tag_text = ", ".join(f"{html.escape(t)} ({n})" for t, n in counts[:60]) or "(no tags)"
    return items, [str(i.path) for i in shown], summary, f"**Tags:** {tag_text}"


def build_dataset_tools(ctx) -> None:
    """Lay out the Dataset sub-tab."""
    gr.Markdown(NO_AUTOCAPTION, elem_id="train_dataset_no_autocaption")
    with gr.Row():
        folder = gr.Textbox(label="Dataset folder", scale=4, elem_id="train_dataset_folder")
        extension = gr.Textbox(".txt", label="Caption extension", scale=1)
        open_ = gr.Button("Load", elem_id="train_dataset_load", scale=1, min_width=80)
    summary = gr.Markdown("", elem_id="train_dataset_summary")
    paths = gr.State([])
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Images and captions", columns=6, height=460, object_fit="contain",
                                 elem_id="train_dataset_gallery", interactive=False, allow_preview=False)
        with gr.Column(scale=2):
            selected = gr.Textbox(label="Selected image", interactive=False, elem_id="train_dataset_selected")
            caption = gr.Textbox(label="Caption", lines=3, elem_id="train_dataset_caption")
            save = gr.Button("Save caption", elem_id="train_dataset_save_caption")
            tags = gr.Markdown("", elem_id="train_dataset_tags")
            with gr.Accordion("Edit a tag in every caption", open=True):
                with gr.Row():
                    action = gr.Radio(["add", "append", "remove", "replace"], value="add", label="Action",
                                      info="add = at the front, append = at the end")
                with gr.Row():
                    tag = gr.Textbox(label="Tag", elem_id="train_dataset_tag")
                    new_tag = gr.Textbox(label="Replace with", elem_id="train_dataset_new_tag")
                apply = gr.Button("Apply to all captions", elem_id="train_dataset_apply")
    result = gr.Markdown("", elem_id="train_dataset_result")
    with gr.Accordion("Flip / crop / resize into buckets", open=False):
        with gr.Row():
            target = gr.Textbox(label="Output folder", scale=3, elem_id="train_dataset_target",
                                info="the originals stay as they are")
            resolution = gr.Number(512, label="Resolution", precision=0)
            buckets = gr.Checkbox(True, label="Aspect-ratio buckets")
            flip = gr.Checkbox(False, label="Add flipped copies")
        prepare = gr.Button("Prepare", elem_id="train_dataset_prepare")

    load_outputs = [gallery, paths, summary, tags]
    open_.click(load, [folder, extension], load_outputs, show_progress="hidden", api_visibility="private")

    def pick(evt: gr.SelectData, paths_, extension_):
        if evt.index is None or evt.index >= len(paths_):
            return gr.update(), gr.update()
        path = paths_[evt.index]
        from pathlib import Path

        text = ds.read_caption(Path(path), extension_ or ".txt")
        return path, text or ""

    gallery.select(pick, [paths, extension], [selected, caption], show_progress="hidden", api_visibility="private")

    def save_caption(folder_, path, text, extension_):
        if not path:
            return "Select an image first.", *[gr.update()] * 4
        try:
            written = tools.write_caption(folder_, path, text, extension_ or ".txt")
        except (tools.ToolError, OSError) as exc:
            return f"**Not saved:** {html.escape(str(exc))}", *[gr.update()] * 4
        return (f"Saved {html.escape(written.name)}", *load(folder_, extension_))

    save.click(save_caption, [folder, selected, caption, extension], [result] + load_outputs,
               show_progress="hidden", api_visibility="private")

    def edit(folder_, action_, tag_, new_, extension_):
        try:
            done = tools.edit_tags(folder_, action_, tag_, new_, extension_ or ".txt")
        except (tools.ToolError, ds.DatasetError, OSError) as exc:
            return f"**Nothing changed:** {html.escape(str(exc))}", *[gr.update()] * 4
        return (html.escape(done.message(f"{action_} '{tag_.strip()}'")), *load(folder_, extension_))

    apply.click(edit, [folder, action, tag, new_tag, extension], [result] + load_outputs, show_progress="hidden",
                api_visibility="private")

    def run_prepare(folder_, target_, resolution_, buckets_, flip_, extension_):
        model = ctx.models.current()
        multiple = 64
        if model is not None:
            pipe = model.pipe
            multiple = ds.size_multiple(pipe.vae_scale_factor, len(pipe.unet.config.down_block_types))
        try:
            written = tools.prepare_buckets(folder_, target_, int(resolution_ or 0), multiple, bool(buckets_),
                                            bool(flip_), extension_ or ".txt")
        except (tools.ToolError, ds.DatasetError, OSError) as exc:
            return f"**Not prepared:** {html.escape(str(exc))}"
        sizes = ", ".join(f"{k}: {v}" for k, v in sorted(written.items()))
        return f"Wrote {sum(written.values())} images to {html.escape(str(target_))} ({sizes}); train on that folder."

    prepare.click(run_prepare, [folder, target, resolution, buckets, flip, extension], result,
                  show_progress="hidden", api_visibility="private")
