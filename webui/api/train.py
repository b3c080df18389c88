"""Training routes: A1111's create/train embedding, and our LoRA training route (A1111 has none).

    POST /sdapi/v1/create/embedding        A1111: {name, num_vectors_per_token, overwrite_old, init_text}
    POST /sdapi/v1/train/embedding         A1111: train_embedding's fields; answers when training ends
    POST /sdapi/v1/train/lora              ours: LoraSettings fields; answers the job id at once
    GET  /sdapi/v1/train/{job_id}          ours: state, step, loss curve, samples, saves, notes
    POST /sdapi/v1/train/{job_id}/interrupt  ours: stop that run (it saves first); a queued run never starts

Training runs as a queue job (kind ``train-lora`` / ``train-embedding``), so
``GET /sdapi/v1/progress`` reports it and generations wait for it. No Gradio import here.
"""
from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field

from webui.api.errors import ApiError
from webui.jobs import JobFailed
from webui.training.embedding import EmbeddingError
from webui.training.settings import LoraSettings, SettingsError



class CreateEmbeddingRequest(BaseModel):
    name: str = Field(..., description="file name in embeddings/ (without .pt)")
    num_vectors_per_token: int = Field(1, description="vectors the name stands for in a prompt")
    overwrite_old: bool = False
    init_text: str = Field("*", description="words whose token vectors start the embedding; empty: zeros")


class InfoResponse(BaseModel):
    info: str


class TrainSubmitted(BaseModel):
    job_id: str
    name: str
    output: str
    run_dir: str
    queue_position: int
    notes: list[str]


async def _wait(job) -> Any:
    delay = 0.05
    while not job.done:
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    return job.wait(0)


def _settings_error(exc: SettingsError) -> ApiError:
    return ApiError(422, str(exc), exc.as_dicts())


def lora_settings_example() -> dict[str, Any]:
    """The documented defaults, as the request body example."""
    example = LoraSettings().as_dict()
    example.update(name="my-lora", data_dir="/path/to/dataset", sample_prompts=["a photo of my-lora"])
    return example


def build_train_router(ctx) -> APIRouter:
    """The training routes for one AppContext."""
    from webui.api.routes import api_router  # routes imports this module

    # Auth from every account flag, strict JSON bodies and the JSON error shape, as the other rooms.
    router = api_router(ctx, tags=["training"])
    service = ctx.training

    @router.post("/create/embedding", response_model=InfoResponse)
    def create_embedding(body: CreateEmbeddingRequest):
        """Create an empty textual-inversion embedding for the loaded checkpoint (A1111)."""
        try:
            path = service.create_embedding(body.name, body.init_text, body.num_vectors_per_token, body.overwrite_old)
        except EmbeddingError as exc:
            raise ApiError(422, f"create embedding error: {exc}", [{"field": "name", "message": str(exc)}]) from None
        return InfoResponse(info=f"create embedding filename: {path}")

    @router.post("/train/embedding", response_model=InfoResponse)
    async def train_embedding(body: dict[str, Any] = Body(..., examples=[{
            "embedding_name": "my-emb", "learn_rate": "0.005", "data_root": "/path/to/images", "steps": 1000,
            "template_filename": "subject_filewords.txt", "create_image_every": 500, "save_embedding_every": 500}])):
        """Train an embedding (A1111): queued like every job; the answer comes when training ends."""
        try:
            submitted = service.submit_embedding(body, ctx.queue, source="api")
        except SettingsError as exc:
            raise _settings_error(exc) from None
        try:
            state = await _wait(submitted.job)
        except JobFailed as exc:
            return InfoResponse(info=f"train embedding error: {exc}")
        return InfoResponse(info=f"train embedding complete: filename: {state.output} error: None")

    @router.post("/train/lora", response_model=TrainSubmitted)
    def train_lora(body: dict[str, Any] = Body(..., examples=[lora_settings_example()])):
        """Start LoRA training on the loaded checkpoint (ours): answers the job id at once."""
        try:
            submitted = service.submit_lora(body, ctx.queue, source="api")
        except SettingsError as exc:
            raise _settings_error(exc) from None
        st = submitted.state
        return TrainSubmitted(job_id=submitted.job.id, name=st.name, output=str(st.output), run_dir=str(st.run_dir),
                              queue_position=ctx.queue.position(submitted.job), notes=submitted.notes)

    def _job(job_id: str):
        job = ctx.queue.get(job_id)
        state = service.state_of(job_id)
        if job is None or state is None:
            raise ApiError(404, f"no training job {job_id!r}", [{"field": "job_id", "message": "unknown"}])
        return job, state

    @router.get("/train/{job_id}")
    def train_status(job_id: str, losses: bool = Query(True, description="include the whole loss curve")):
        """A training job's state: queued / preparing / training / done / interrupted / failed, step, loss, files."""
        job, state = _job(job_id)
        snap = state.snapshot()
        if not losses:
            snap.pop("losses")
        if job.state == "failed" and not snap["error"]:
            snap["error"] = job.error
        if job.state == "failed":
            snap["state"] = "failed"
        return {"job_id": job.id, "job_state": job.state, "queue_position": ctx.queue.position(job), **snap}

    @router.post("/train/{job_id}/interrupt")
    def train_interrupt(job_id: str):
        """Stop this training run after its current step (it saves first); a queued one will not start."""
        job, _ = _job(job_id)
        job.progress.interrupt()
        return {"job_id": job.id, "job_state": job.state}

    return router
