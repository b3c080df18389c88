"""Request and response bodies of the /sdapi/v1 routes, with A1111's field names and defaults.

Defaults are those of A1111's API models (not its UI): an A1111 client that leaves a
field out gets what it would get from A1111, e.g. 50 steps and the "Euler" sampler
through the legacy `sampler_index`. Fields A1111 has that we do not implement yet are
declared too, so /docs shows them and `webui.api.txt2img` can decide per field whether
its value may be ignored (the default, or a value with no effect) or must be refused.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _GenerationBody(BaseModel):
    """Fields A1111's txt2img and img2img bodies share (its StableDiffusionProcessing API fields)."""

    # Unknown keys are kept (and logged), never refused: clients of newer A1111 versions send more.
    model_config = ConfigDict(extra="allow")

    prompt: str | None = ""
    negative_prompt: str | None = ""
    styles: list[str] | None = None
    seed: int | None = -1
    subseed: int | None = -1
    subseed_strength: float | None = 0.0
    seed_resize_from_h: int | None = -1
    seed_resize_from_w: int | None = -1
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    comments: dict[str, Any] | None = None
    force_task_id: str | None = None
    sampler_index: str = "Euler"
    script_name: str | None = None
    script_args: list[Any] | dict[str, Any] = Field(default_factory=list, description="positional (A1111) or named args")
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: str | None = Field(None, description="A1111 infotext; fills every field the request does not set")


class Txt2ImgRequest(_GenerationBody):
    """POST /sdapi/v1/txt2img (A1111's StableDiffusionTxt2ImgProcessingAPI)."""

    firstpass_image: str | None = None
    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""


class Img2ImgRequest(_GenerationBody):
    """POST /sdapi/v1/img2img (A1111's StableDiffusionImg2ImgProcessingAPI)."""

    init_images: list[str] | None = Field(None, description="base64 images (or data: URLs)")
    denoising_strength: float | None = 0.75
    resize_mode: int = Field(0, description="0 Just resize, 1 Crop and resize, 2 Resize and fill, "
                                            "3 Just resize (latent upscale)")
    image_cfg_scale: float | None = None
    mask: str | None = Field(None, description="base64 mask: white (or opaque, for RGBA) = repaint")
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = Field(0, description="0 fill, 1 original, 2 latent noise, 3 latent nothing")
    inpaint_full_res: bool = Field(True, description="true: Only masked, false: Whole picture")
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = Field(0, description="1: inpaint what is not masked")
    initial_noise_multiplier: float | None = None
    include_init_images: bool = Field(False, description="echo init_images and mask in `parameters`")


class Txt2ImgResponse(BaseModel):
    images: list[str] = Field(description="base64 PNGs, each with its A1111 'parameters' text chunk")
    parameters: dict[str, Any]
    info: str = Field(description="JSON text with A1111's Processed fields (prompt, all_seeds, infotexts, ...)")


Img2ImgResponse = Txt2ImgResponse  # A1111's ImageToImageResponse has the same three fields


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    job_id: str | None = Field(None, description="our job id (not in A1111)")
    job_source: str | None = Field(None, description="who submitted the running job: ui, api, ... (not in A1111)")
    queue_pending: int = Field(0, description="jobs queued or running (not in A1111)")


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: ProgressState
    current_image: str | None = None
    textinfo: str | None = None


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float = -1
    need_inner_model: bool = False


class PromptStyleItem(BaseModel):
    name: str
    prompt: str | None = None
    negative_prompt: str | None = None


class PNGInfoRequest(BaseModel):
    image: str = Field(description="base64 image, or a data: URL")


class PNGInfoResponse(BaseModel):
    info: str
    items: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)


class QueueJob(BaseModel):
    id: str
    seq: int
    kind: str
    source: str
    state: str
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None


class QueueResponse(BaseModel):
    """GET /sdapi/v1/queue (ours, not A1111's): what runs, what waits, what finished in which order."""

    running: QueueJob | None = None
    pending: int
    completed: list[str] = Field(description="ids of finished jobs, oldest first (the order the worker ran them)")
    jobs: list[QueueJob] = Field(default_factory=list, description="details of the jobs named in the `ids` query parameter")


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    error: str
    detail: list[ErrorDetail] = Field(default_factory=list)
