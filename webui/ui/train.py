"""The Train tab: LoRA, textual inversion and dataset tools, on the checkpoint already loaded.

Training runs as a job on the same queue as generation (``webui/training/service.py``); the tab
submits it and then follows it with a timer, so a page reload re-attaches to a running job.
"""
from __future__ import annotations

import gradio as gr

from webui.ui.train_dataset import build_dataset_tools
from webui.ui.train_embedding import build_embedding
from webui.ui.train_lora import build_lora

def build_train(ctx) -> None:
    """Lay out the Train tab (called inside ``with gr.Tab("Train")``)."""
    gr.Markdown("Train on the checkpoint loaded at the top of the page. Runs wait their turn in the same queue as "
                "generation, and generations wait for a run; the files appear in the extra networks without a "
                "restart.", elem_id="train_intro")
    with gr.Tabs(elem_id="train_tabs"):
        with gr.Tab("LoRA", id="train_lora", elem_id="tab_train_lora"):
            build_lora(ctx)
        with gr.Tab("Textual inversion", id="train_embedding", elem_id="tab_train_embedding"):
            build_embedding(ctx)
        with gr.Tab("Dataset", id="train_dataset", elem_id="tab_train_dataset"):
            build_dataset_tools(ctx)
