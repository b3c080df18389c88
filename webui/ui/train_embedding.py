"""Train -> Textual inversion: A1111's Create embedding and Train embedding, on the live monitor."""
from __future__ import annotations

import html

import gradio as gr

from webui.training.embedding import EmbeddingError
from webui.training.embedding_run import CLIP_GRAD_MODES, LATENT_SAMPLING, EmbeddingSettings, template_names
from webui.training.settings import SettingsError
from webui.ui.train_monitor import build_monitor, error_html, latest, view

D = EmbeddingSettings()


def embedding_names(ctx) -> list[str]:
    folder = ctx.paths.embeddings_dir
    return sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []


def build_embedding(ctx) -> None:
    """Lay out the textual-inversion sub-tab."""
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Accordion("Create embedding", open=True):
                with gr.Row():
                    name = gr.Textbox(label="Name", elem_id="train_embedding_new_name",
                                      info="the word you will write in prompts")
                    init_text = gr.Textbox("*", label="Initialization text", elem_id="train_embedding_init_text",
                                           info="its token vectors are the start; empty: zeros")
                    vectors = gr.Number(1, label="Number of vectors per token", precision=0,
                                        elem_id="train_embedding_vectors")
                overwrite = gr.Checkbox(False, label="Overwrite old embedding")
                create = gr.Button("Create embedding", elem_id="train_embedding_create")
                created = gr.HTML("", elem_id="train_embedding_created")
            f: dict[str, gr.components.Component] = {}
            with gr.Row():
                f["embedding_name"] = gr.Dropdown(embedding_names(ctx), label="Embedding", scale=4,
                                                  elem_id="train_embedding_name", allow_custom_value=True)
                refresh = gr.Button("🔄", min_width=40, scale=0, elem_id="train_embedding_refresh")
            with gr.Row():
                f["learn_rate"] = gr.Textbox(D.learn_rate, label="Embedding learning rate",
                                             info="A1111 syntax: 0.005 or 0.005:100, 1e-3:1000, 1e-5")
                f["batch_size"] = gr.Number(D.batch_size, label="Batch size", precision=0)
                f["gradient_step"] = gr.Number(D.gradient_step, label="Gradient accumulation steps", precision=0)
            f["data_root"] = gr.Textbox(label="Dataset directory", elem_id="train_embedding_data_root")
            with gr.Row():
                f["template_filename"] = gr.Dropdown(template_names(), value=D.template_filename,
                                                     label="Prompt template", elem_id="train_embedding_template")
                f["training_width"] = gr.Number(D.training_width, label="Width", precision=0, info="0 = model size")
                f["training_height"] = gr.Number(D.training_height, label="Height", precision=0)
                f["varsize"] = gr.Checkbox(D.varsize, label="Do not resize images (aspect buckets)")
            with gr.Row():
                f["steps"] = gr.Number(D.steps, label="Max steps", precision=0, elem_id="train_embedding_steps")
                f["save_embedding_every"] = gr.Number(D.save_embedding_every, precision=0,
                                                      label="Save an embedding every N steps, 0 to disable")
                f["create_image_every"] = gr.Number(D.create_image_every, precision=0,
                                                    label="Save an image every N steps, 0 to disable")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    f["clip_grad_mode"] = gr.Dropdown(list(CLIP_GRAD_MODES), value=D.clip_grad_mode,
                                                      label="Gradient clipping")
                    f["clip_grad_value"] = gr.Textbox(D.clip_grad_value, label="Clip value")
                    f["shuffle_tags"] = gr.Checkbox(D.shuffle_tags, label="Shuffle tags by ',' when creating prompts")
                    f["tag_drop_out"] = gr.Number(D.tag_drop_out, label="Drop out tags when creating prompts")
                with gr.Row():
                    f["latent_sampling_method"] = gr.Radio(list(LATENT_SAMPLING), value=D.latent_sampling_method,
                                                           label="Choose latent sampling method")
                    f["seed"] = gr.Number(D.seed, label="Seed", precision=0)
                f["preview_prompt"] = gr.Textbox(label="Preview prompt", info="empty: the last training prompt")
                f["preview_negative_prompt"] = gr.Textbox(label="Preview negative prompt")
            with gr.Row():
                start = gr.Button("Train Embedding", variant="primary", elem_id="train_embedding_start")
                interrupt = gr.Button("Interrupt", elem_id="train_embedding_interrupt")
            message = gr.HTML("", elem_id="train_embedding_message")
        with gr.Column(scale=1):
            monitor = build_monitor(ctx, "embedding", "train_embedding")

    def make(name_, init_, n_, overwrite_):
        try:
            path = ctx.training.create_embedding(name_, init_, int(n_ or 0), bool(overwrite_))
        except (EmbeddingError, ValueError) as exc:
            return error_html(str(exc), "train_embedding_error"), gr.update()
        return (f"<div>Created {html.escape(str(path))}</div>",
                gr.update(choices=embedding_names(ctx), value=path.stem))

    create.click(make, [name, init_text, vectors, overwrite], [created, f["embedding_name"]],
                 show_progress="hidden", api_visibility="private")
    refresh.click(lambda: gr.update(choices=embedding_names(ctx)), None, f["embedding_name"],
                  show_progress="hidden", api_visibility="private")
    names = list(f)

    def submit(*values):
        raw = dict(zip(names, values))
        try:
            submitted = ctx.training.submit_embedding(raw, ctx.queue, source="ui")
        except SettingsError as exc:
            return [error_html(str(exc), "train_embedding_error")] + [gr.update()] * len(monitor.outputs)
        notes = "".join(f"<br>{html.escape(n)}" for n in submitted.notes)
        return [f"<div>Queued {html.escape(submitted.job.id)}: embedding {html.escape(submitted.state.name)}"
                f"{notes}</div>"] + view(ctx, "embedding", "train_embedding")

    start.click(submit, list(f.values()), [message] + monitor.outputs, show_progress="hidden",
                api_visibility="private")

    def stop():
        job, _ = latest(ctx, "embedding")
        if job is None or job.done:
            return error_html("No embedding run is going.", "train_embedding_error")
        job.progress.interrupt()
        return f"<div>Interrupting {html.escape(job.id)}: it saves, then stops.</div>"

    interrupt.click(stop, None, message, show_progress="hidden", api_visibility="private")
