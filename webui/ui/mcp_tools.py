"""txt2img as a Gradio API endpoint, which Gradio's MCP server (`--mcp`) offers to agents as a tool.

Call `add_mcp_tools(ctx)` inside the `gr.Blocks` of `build_ui`. The tool goes through the
same GenerationRequest -> job queue path as the UI and the REST API. Gradio builds the tool's
schema from the type hints and the "Args:" section of the docstring, so keep both exact.

The image comes back as a Gradio file (a PNG with the A1111 infotext, in this app's private
Gradio temp folder): MCP turns it into image content, `/gradio_api/call/txt2img` into a file
URL. The endpoint runs outside Gradio's queue (our JobQueue queues it), so MCP calls it in
process instead of looping back over HTTP without the caller's credentials.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable

import gradio as gr
from gradio.data_classes import FileData
from gradio.utils import get_upload_folder

from webui.generation.request import GenerationRequest, RequestError
from webui.images import png_info
from webui.jobs import JobFailed


def save_for_gradio(image, infotext: str | None, name: str) -> dict:
    """Write a PNG into Gradio's upload folder and describe it as Gradio's FileData."""
    folder = Path(get_upload_folder()) / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    image.save(path, format="PNG", pnginfo=png_info(infotext))
    return FileData(path=str(path), orig_name=name, mime_type="image/png", size=path.stat().st_size).model_dump()


def make_txt2img_tool(ctx) -> Callable[..., dict]:
    """The tool function for one AppContext (a closure: no module state)."""

    def txt2img_tool(prompt: str, negative_prompt: str = "", steps: int = 20, seed: int = -1, width: int = 0,
                     height: int = 0) -> dict:
        """Generate one image from a text prompt with the loaded Stable Diffusion checkpoint.

        Args:
            prompt: what the image should show; A1111 prompt syntax such as (word:1.2) works.
            negative_prompt: what the image should not show.
            steps: sampling steps, 1 to 150; more is slower and usually finer.
            seed: the random seed; -1 picks a random one. The same seed and settings give the same image.
            width: image width in pixels, a multiple of 8; 0 means the checkpoint's native size.
            height: image height in pixels, a multiple of 8; 0 means the checkpoint's native size.
        Returns:
            The generated image (PNG, with the generation parameters in its "parameters" text chunk).
        """
        model = ctx.models.current()
        native = model.native_size if model else 512
        fields = {"prompt": prompt, "negative_prompt": negative_prompt, "steps": steps, "seed": seed,
                  "width": width or native, "height": height or native}
        try:
            request = GenerationRequest.from_dict(fields)[0].validate()
            result = ctx.submit_txt2img(request, source="mcp").wait()
        except (RequestError, JobFailed) as exc:
            raise gr.Error(str(exc)) from None
        if not result.images:
            raise gr.Error("the generation was interrupted before an image was finished")
        return save_for_gradio(result.images[0], result.infotexts[0], f"txt2img-{result.seeds[0]}.png")

    return txt2img_tool


def add_mcp_tools(ctx) -> None:
    """Register the tools on the Blocks being built (call inside `with gr.Blocks()`)."""
    gr.api(make_txt2img_tool(ctx), api_name="txt2img", concurrency_limit=None, queue=False)
