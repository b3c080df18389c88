"""Train -> LoRA: kohya's settings with good defaults, Start / Interrupt, and the live monitor."""
from __future__ import annotations

import html

import gradio as gr

from webui.generation import samplers
from webui.training import dataset as ds
from webui.training.diffusion import MIXED_PRECISION
from webui.training.lora import NETWORK_TYPES
from webui.training.schedules import LR_SCHEDULERS
from webui.training.settings import OPTIMIZERS, SAVE_PRECISIONS, LoraSettings, SettingsError
from webui.ui.train_monitor import build_monitor, error_html, latest, view

D = LoraSettings()  # the defaults shown in the form


def folder_summary(ctx, folder: str, caption_extension: str, resolution) -> str:
    """What a dataset folder holds, as the trainer will see it."""
    try:
        data = ds.scan_folder(folder, caption_extension or ".txt")
    except ds.DatasetError as exc:
        return f"**Cannot use this folder:** {html.escape(str(exc))}"
    model = ctx.models.current()
    lines = [f"**{len(data.images)} images**, {data.num_with_repeats} per epoch with repeats, in "
             + ", ".join(f"`{html.escape(k)}` (x{v['n_repeats']}, {v['img_count']} images)"
                         for k, v in data.subsets().items())]
    if model is not None:
        size = int(resolution or 0) or model.native_size
        pipe = model.pipe
        multiple = ds.size_multiple(pipe.vae_scale_factor, len(pipe.unet.config.down_block_types))
        plan = ds.BatchPlan(data, ds.make_buckets(size, multiple), 1, 0)
        lines.append("Buckets at " + str(size) + ": " + ", ".join(
            f"{w}x{h} ({len(v)})" for (w, h), v in sorted(plan.by_bucket.items())))
    lines += [f"- {html.escape(n)}" for n in data.notes]
    return "\n\n".join(lines)


def build_lora(ctx) -> None:
    """Lay out the LoRA sub-tab."""
    f: dict[str, gr.components.Component] = {}
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                f["name"] = gr.Textbox(label="LoRA name", placeholder="my-character", elem_id="train_lora_name",
                                       info="saved as models/Lora/<name>.safetensors")
                f["network_type"] = gr.Radio(list(NETWORK_TYPES), value=D.network_type, label="Network type",
                                             info="LoCon also trains the ResNet convolutions",
                                             elem_id="train_lora_network_type")
            with gr.Row():
                f["data_dir"] = gr.Textbox(label="Dataset folder", scale=4, elem_id="train_lora_data_dir",
                                           placeholder="/path/to/images (kohya '<repeats>_<name>' subfolders work)")
                check = gr.Button("Check folder", elem_id="train_lora_check", scale=1, min_width=100)
            folder_info = gr.Markdown("", elem_id="train_lora_folder_info")
            with gr.Row():
                f["rank"] = gr.Number(D.rank, label="Rank (dim)", precision=0, elem_id="train_lora_rank")
                f["alpha"] = gr.Number(D.alpha, label="Alpha", elem_id="train_lora_alpha",
                                       info="scale = alpha / rank; 0 = rank")
            with gr.Row(visible=D.network_type == "LoCon") as conv_row:
                f["conv_rank"] = gr.Number(D.conv_rank, label="Conv rank", precision=0, elem_id="train_lora_conv_rank")
                f["conv_alpha"] = gr.Number(D.conv_alpha, label="Conv alpha")
            with gr.Row():
                f["unet_lr"] = gr.Textbox(str(D.unet_lr), label="UNet learning rate", elem_id="train_lora_unet_lr",
                                          info="0 = do not train the UNet")
                f["text_encoder_lr"] = gr.Textbox(str(D.text_encoder_lr), label="Text encoder learning rate",
                                                  elem_id="train_lora_te_lr", info="0 = do not train it")
                f["optimizer"] = gr.Dropdown(list(OPTIMIZERS), value=D.optimizer, label="Optimizer",
                                             info="8bit: bitsandbytes + CUDA")
            with gr.Row():
                f["lr_scheduler"] = gr.Dropdown(list(LR_SCHEDULERS), value=D.lr_scheduler, label="LR scheduler")
                f["lr_warmup_steps"] = gr.Number(D.lr_warmup_steps, label="Warmup steps", precision=0)
            with gr.Row():
                f["max_train_steps"] = gr.Number(D.max_train_steps, label="Max steps", precision=0,
                                                 elem_id="train_lora_steps", info="0 = use epochs")
                f["max_train_epochs"] = gr.Number(D.max_train_epochs, label="Epochs", precision=0)
                f["batch_size"] = gr.Number(D.batch_size, label="Batch size", precision=0, elem_id="train_lora_batch")
            with gr.Row():
                f["gradient_accumulation_steps"] = gr.Number(D.gradient_accumulation_steps,
                                                             label="Gradient accumulation", precision=0)
                f["resolution"] = gr.Number(D.resolution, label="Resolution", precision=0,
                                            elem_id="train_lora_resolution", info="0 = the checkpoint's size")
                f["enable_bucket"] = gr.Checkbox(D.enable_bucket, label="Aspect-ratio buckets")
            with gr.Accordion("Captions and augmentation", open=False):
                with gr.Row():
                    f["caption_extension"] = gr.Textbox(D.caption_extension, label="Caption extension")
                    f["caption_dropout_rate"] = gr.Number(D.caption_dropout_rate, label="Caption dropout")
                    f["shuffle_caption"] = gr.Checkbox(D.shuffle_caption, label="Shuffle tags")
                    f["keep_tokens"] = gr.Number(D.keep_tokens, label="Keep first N tags", precision=0)
                with gr.Row():
                    f["flip_aug"] = gr.Checkbox(D.flip_aug, label="Random flip")
                    f["random_crop"] = gr.Checkbox(D.random_crop, label="Random crop")
                    f["cache_latents"] = gr.Checkbox(D.cache_latents, label="Cache latents",
                                                     info="encode each image once (not with random crop)")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    f["noise_offset"] = gr.Number(D.noise_offset, label="Noise offset")
                    f["min_snr_gamma"] = gr.Number(D.min_snr_gamma, label="Min-SNR gamma", info="0 = off")
                    f["max_grad_norm"] = gr.Number(D.max_grad_norm, label="Max grad norm")
                    f["weight_decay"] = gr.Number(D.weight_decay, label="Weight decay")
                with gr.Row():
                    f["mixed_precision"] = gr.Dropdown(list(MIXED_PRECISION), value=D.mixed_precision,
                                                       label="Mixed precision", info="GPU only; bf16 falls back to fp16")
                    f["gradient_checkpointing"] = gr.Checkbox(D.gradient_checkpointing, label="Gradient checkpointing")
                    f["clip_skip"] = gr.Number(D.clip_skip, label="Clip skip", precision=0)
                    f["seed"] = gr.Number(D.seed, label="Seed", precision=0)
                    f["lr_scheduler_cycles"] = gr.Number(D.lr_scheduler_cycles, label="Restart cycles", precision=0)
            with gr.Accordion("Saving and samples", open=True):
                with gr.Row():
                    f["save_every_n_steps"] = gr.Number(D.save_every_n_steps, label="Save every N steps", precision=0,
                                                        elem_id="train_lora_save_every", info="0 = only at the end")
                    f["save_precision"] = gr.Dropdown(list(SAVE_PRECISIONS), value=D.save_precision,
                                                      label="Save precision")
                    f["sample_every_n_steps"] = gr.Number(D.sample_every_n_steps, label="Sample every N steps",
                                                          precision=0, elem_id="train_lora_sample_every")
                f["sample_prompts"] = gr.Textbox(label="Sample prompts", lines=3, elem_id="train_lora_sample_prompts",
                                                 placeholder="one per line; kohya options work: --n negative "
                                                             "--s steps --l cfg --d seed --w width --h height")
                with gr.Row():
                    f["sample_sampler"] = gr.Dropdown([x.name for x in samplers.SAMPLERS if x.available],
                                                      value=D.sample_sampler, label="Sampler")
                    f["sample_steps"] = gr.Number(D.sample_steps, label="Sample steps", precision=0)
                    f["sample_cfg_scale"] = gr.Number(D.sample_cfg_scale, label="Sample CFG scale")
            with gr.Row():
                f["resume"] = gr.Checkbox(False, label="Resume from the last save", elem_id="train_lora_resume")
                f["overwrite"] = gr.Checkbox(False, label="Overwrite an existing file", elem_id="train_lora_overwrite")
            with gr.Row():
                start = gr.Button("Start training", variant="primary", elem_id="train_lora_start")
                interrupt = gr.Button("Interrupt", elem_id="train_lora_interrupt")
            message = gr.HTML("", elem_id="train_lora_message")
        with gr.Column(scale=1):
            monitor = build_monitor(ctx, "lora", "train_lora")

    names = list(f)
    f["network_type"].change(lambda kind: gr.update(visible=kind == "LoCon"), f["network_type"], conv_row,
                             show_progress="hidden", api_visibility="private")

    def submit(*values):
        raw = dict(zip(names, values))
        raw["sample_prompts"] = (raw.get("sample_prompts") or "").splitlines()
        try:
            submitted = ctx.training.submit_lora(raw, ctx.queue, source="ui")
        except SettingsError as exc:
            return [error_html(str(exc), "train_lora_error")] + [gr.update()] * len(monitor.outputs)
        notes = "".join(f"<br>{html.escape(n)}" for n in submitted.notes)
        text = f'<div id="train_lora_started">Queued {html.escape(submitted.job.id)}: LoRA {html.escape(submitted.state.name)}{notes}</div>'
        return [text] + view(ctx, "lora", "train_lora")

    start.click(submit, list(f.values()), [message] + monitor.outputs, show_progress="hidden",
                api_visibility="private")

    def stop():
        job, _ = latest(ctx, "lora")
        if job is None or job.done:
            return error_html("No LoRA run is going.", "train_lora_error")
        job.progress.interrupt()
        return f'<div id="train_lora_stopping">Interrupting {html.escape(job.id)}: it saves, then stops.</div>'

    interrupt.click(stop, None, message, show_progress="hidden", api_visibility="private")
    check.click(lambda folder, ext, res: folder_summary(ctx, folder, ext, res),
                [f["data_dir"], f["caption_extension"], f["resolution"]], folder_info, show_progress="hidden",
                api_visibility="private")
