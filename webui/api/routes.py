"""A1111-compatible /sdapi/v1 routes on Gradio's FastAPI app, feeding the one job queue.

Every generation goes GenerationRequest -> AppContext.submit_txt2img -> JobQueue, like the
UI's, so UI and API jobs share one FIFO and /progress shows whichever job is running.
No Gradio import here: `mount_api` receives the FastAPI app Gradio created.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import os
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, FastAPI, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from PIL import Image, UnidentifiedImageError

from webui.api import models as m
from webui.api.auth import basic_auth_guard
from webui.api.controlnet import build_controlnet_router
from webui.api.errors import ApiError, route_class
from webui.api.train import build_train_router
from webui.api.networks import apply_vae_option, build_networks_router
from webui.api.extras import build_extras_router
from webui.api.scripts import build_scripts_router
from webui.api.img2img import add_img2img_route
from webui.api.txt2img import encode_png, plan_txt2img, response_dict
from webui.generation import samplers
from webui.infotext import parse_infotext
from webui.jobs import Job, JobFailed
from webui.generation.request import RequestError
from webui.security.paths import api_output_dir_problems
from webui.settings import SettingsError, SettingsNotSaved

log = logging.getLogger(__name__)
PREFIX = "/sdapi/v1"

# Keys of PIL's image.info that are file-format details, not generation data (A1111 drops the same).
_IGNORED_INFO_KEYS = {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background",
                      "timestamp", "duration", "progressive", "progression", "icc_profile", "chromaticity",
                      "photoshop", "parameters", "aspect", "gamma", "transparency"}

# A1111's schedule-type table (name, label, aliases, default_rho, need_inner_model) for ours.
_SCHEDULE_ROWS = {
    samplers.AUTOMATIC: ("automatic", None, -1, False),
    samplers.UNIFORM: ("uniform", None, -1, True),
    samplers.KARRAS: ("karras", None, 7.0, False),
    samplers.EXPONENTIAL: ("exponential", None, -1, False),
    samplers.POLYEXPONENTIAL: ("polyexponential", None, 1.0, False),
    samplers.SGM_UNIFORM: ("sgm_uniform", ["SGMUniform"], -1, True),
    samplers.KL_OPTIMAL: ("kl_optimal", None, -1, False),
    samplers.ALIGN_YOUR_STEPS: ("align_your_steps", None, -1, False),
    samplers.SIMPLE: ("simple", None, -1, True),
    samplers.NORMAL: ("normal", None, -1, True),
    samplers.DDIM_SCHEDULE: ("ddim", None, -1, True),
    samplers.BETA: ("beta", None, -1, True),
}
_SECRET_FLAGS = ("api_auth", "gradio_auth")


async def wait_for(job: Job) -> Any:
    """Wait for a job without holding a worker thread: 40 queued API calls must not starve the threadpool."""
    delay = 0.01
    while not job.done:
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.1)
    return job.wait(0)


def decode_image(text: str, field: str = "image") -> Image.Image:
    """A base64 image or data: URL -> PIL image; ApiError(400) naming the field otherwise."""
    text = text.strip()
    if text.startswith(("http://", "https://")):
        raise ApiError.field(400, field, "URLs are not fetched; send the image as base64 or a data: URL")
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or ";base64" not in header:
            raise ApiError.field(400, field, "a data: URL must be base64 encoded (data:image/png;base64,...)")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError.field(400, field, f"not valid base64: {exc}") from None
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except Image.DecompressionBombError as exc:
        raise ApiError.field(400, field, str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ApiError.field(400, field, f"base64 decodes to {len(raw)} bytes that are not an image: {exc}") from None
    return image


def _json_safe(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def png_info_of(image: Image.Image) -> dict[str, Any]:
    """A1111's /png-info answer for an image: raw infotext, other text items, parsed parameters."""
    geninfo = image.info.get("parameters") or ""
    items = {k: _json_safe(v) for k, v in image.info.items() if k not in _IGNORED_INFO_KEYS}
    return {"info": geninfo, "items": items, "parameters": parse_infotext(geninfo) if geninfo else {}}


def memory() -> dict[str, Any]:
    """A1111's /memory: system RAM and, when CUDA is there, the torch allocator's counters."""
    import psutil

    vm = psutil.virtual_memory()
    process = psutil.Process(os.getpid()).memory_info()
    ram = {"free": vm.available, "used": vm.total - vm.available, "total": vm.total, "process": process.rss}
    try:
        import torch

        if not torch.cuda.is_available():
            return {"ram": ram, "cuda": {"error": "CUDA is not available on this machine"}}
        free, total = torch.cuda.mem_get_info()
        stats = torch.cuda.memory_stats()

        def pair(name: str) -> dict[str, int]:
            return {"current": stats.get(f"{name}.all.current", 0), "peak": stats.get(f"{name}.all.peak", 0)}

        cuda = {"system": {"free": free, "used": total - free, "total": total},
                "active": pair("active_bytes"), "allocated": pair("allocated_bytes"),
                "reserved": pair("reserved_bytes"), "inactive": pair("inactive_split_bytes"),
                "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)}}
    except Exception as exc:  # a driver problem must not break a monitoring call
        cuda = {"error": f"{type(exc).__name__}: {exc}"}
    return {"ram": ram, "cuda": cuda}


def cmd_flags(args) -> dict[str, Any]:
    """The parsed flags as JSON; credentials are masked (A1111 shows them, which leaks passwords)."""
    out = {}
    for key, value in vars(args).items():
        if key in _SECRET_FLAGS and value:
            value = [f"{user}:***" for user, _ in value]
        elif isinstance(value, Path):
            value = str(value)
        out[key] = _json_safe(value)
    return out


def _job_row(job: Job) -> m.QueueJob:
    return m.QueueJob(id=job.id, seq=job.seq, kind=job.kind, source=job.source, state=job.state,
                      submitted_at=job.submitted_at, started_at=job.started_at, finished_at=job.finished_at)


def _sidecar(filename: Path) -> str | None:
    folder = filename.parent / f"{filename.stem}.config"
    return str(folder) if folder.is_dir() else None


def api_accounts(ctx) -> list[tuple[str, str]] | None:
    """Who may call the API: --api-auth, or the --gradio-auth users when only that is given."""
    security = getattr(ctx, "security", None)
    accounts = list(security.api_accounts) if security is not None and security.api_accounts else None
    return accounts or getattr(ctx.args, "api_auth", None)


def api_router(ctx, prefix: str = PREFIX, **kwargs) -> APIRouter:
    """An APIRouter for one room's routes: Basic auth, strict JSON bodies and the JSON error shape.

    Rooms with their own route file build their router with this and register it in `api_routers`.
    """
    kwargs.setdefault("responses", {400: {"model": m.ErrorResponse}, 401: {"model": m.ErrorResponse},
                                    413: {"model": m.ErrorResponse}, 422: {"model": m.ErrorResponse}})
    return APIRouter(prefix=prefix, route_class=route_class(basic_auth_guard(api_accounts(ctx))), **kwargs)


def _request_error(exc: RequestError) -> ApiError:
    detail = exc.as_dicts()
    return ApiError(422, "; ".join(f"{d['field']}: {d['message']}" for d in detail), detail)


def build_router(ctx) -> APIRouter:
    """All /sdapi/v1 routes for one AppContext (closures over ctx: no module state)."""
    router = api_router(ctx, tags=["sdapi"])

    async def swap_checkpoint(name: str) -> None:
        # Queued, so the swap lands between the jobs submitted before and after it.
        job = ctx.submit_checkpoint(name, source="api")
        try:
            await wait_for(job)
        except JobFailed as exc:
            raise ApiError.field(422, "sd_model_checkpoint", f"could not load {name}: {exc}") from None

    async def run_generation(plan, response: Response, parameters: dict) -> dict:
        """Queue a planned txt2img / img2img request and answer in A1111's shape (both routes share it)."""
        if plan.persist_settings and ctx.settings.unsaved_reason:
            raise ApiError(409, f"override_settings_restore_afterwards is false, but settings cannot be saved: "
                                f"{ctx.settings.unsaved_reason}")
        if plan.checkpoint_first:
            await swap_checkpoint(plan.checkpoint_first)
        try:
            job = ctx.submit_generation(plan.request, source="api")  # refuses requests over budget
        except RequestError as exc:
            raise _request_error(exc) from None
        response.headers["X-Job-Id"] = job.id
        response.headers["X-Job-Seq"] = str(job.seq)
        try:
            result = await wait_for(job)
        except JobFailed as exc:
            raise ApiError(500, f"generation failed: {exc}", [], headers={"X-Job-Id": job.id}) from None
        if plan.persist_settings:
            ctx.settings.update(plan.persist_settings)  # override_settings_restore_afterwards: false
        # PNG encoding of big images takes a while: off the event loop.
        return await run_in_threadpool(response_dict, plan, result, job, ctx, parameters)

    @router.post("/txt2img", response_model=m.Txt2ImgResponse)
    async def txt2img(body: m.Txt2ImgRequest, response: Response):
        """Generate images from a prompt (A1111's txt2img); queued FIFO with the UI's jobs."""
        plan = plan_txt2img(body, ctx)  # 422 for bad fields and requests over budget (webui/security/budget.py)
        # Echo only what the request type knows: unknown keys (of any size) are not sent back.
        return await run_generation(plan, response, body.model_dump(mode="json", exclude=set(body.model_extra or {})))

    add_img2img_route(router, ctx, decode_image=decode_image, run_generation=run_generation)

    @router.get("/progress", response_model=m.ProgressResponse)
    def progress(skip_current_image: bool = Query(False),
                 job_id: str | None = Query(None, description="a job id (X-Job-Id); default: the current job")):
        """The running job's progress, whoever submitted it (or the job asked for); zeros when idle."""
        job = ctx.queue.get(job_id) if job_id else ctx.queue.current()
        if job_id and job is None:
            raise ApiError.field(404, "job_id", f"no job {job_id!r} (finished jobs are kept for a while only)")
        pending = ctx.queue.pending()
        if job is None:
            return m.ProgressResponse(progress=0, eta_relative=0, state=m.ProgressState(queue_pending=pending))
        snap = job.progress.snapshot()
        started = job.started_at or job.submitted_at
        state = m.ProgressState(skipped=snap.skipped, interrupted=snap.interrupted, job=job.kind,
                                job_count=snap.job_count, job_no=snap.job_no,
                                job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(started)),
                                sampling_step=snap.sampling_step, sampling_steps=snap.sampling_steps,
                                job_id=job.id, job_source=job.source, queue_pending=pending)
        image = None
        if snap.preview is not None and not skip_current_image:
            image = encode_png(snap.preview, None)
        return m.ProgressResponse(progress=snap.fraction, eta_relative=snap.eta_seconds or 0.0, state=state,
                                  current_image=image, textinfo=snap.textinfo)

    @router.post("/interrupt")
    def interrupt(job_id: str | None = Query(None, description="a job id; default: the current job")):
        """Stop the running job after its current step; it returns the images made so far."""
        ctx.queue.interrupt(job_id)
        return {}

    @router.post("/skip")
    def skip(job_id: str | None = Query(None, description="a job id; default: the current job")):
        """Drop the running job's current batch and go on with the next."""
        ctx.queue.skip(job_id)
        return {}

    @router.get("/queue", response_model=m.QueueResponse)
    def queue_state(ids: str = Query("", description="comma-separated job ids to describe")):
        """Ours, not A1111's: the running job, the queue length, the order jobs finished in."""
        running = ctx.queue.current()
        jobs = [job for job in (ctx.queue.get(i.strip()) for i in ids.split(",") if i.strip()) if job]
        return m.QueueResponse(running=_job_row(running) if running else None, pending=ctx.queue.pending(),
                               completed=list(ctx.queue.completed_order), jobs=[_job_row(j) for j in jobs])

    @router.get("/sd-models", response_model=list[m.SDModelItem])
    def sd_models():
        """Checkpoints found in the checkpoint folders (hash is null until a checkpoint is hashed)."""
        return [m.SDModelItem(title=i.title, model_name=i.model_name, hash=i.shorthash, sha256=i.sha256,
                              filename=str(i.filename), config=_sidecar(i.filename))
                for i in ctx.models.checkpoints()]

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints():
        """Rescan the checkpoint folders."""
        ctx.models.refresh()

    @router.get("/samplers", response_model=list[m.SamplerItem])
    def sampler_list():
        """Samplers available here; options.scheduler is what schedule type Automatic means for it."""
        out = []
        for spec in samplers.SAMPLERS:
            if not spec.available:
                continue
            options: dict[str, Any] = {}
            if spec.default_schedule:
                options["scheduler"] = _SCHEDULE_ROWS[spec.default_schedule][0]
            if spec.stochastic:
                options["uses_ensd"] = True
            if spec.second_order:
                options["second_order"] = True
            out.append(m.SamplerItem(name=spec.name, aliases=list(spec.aliases), options=options))
        return out

    @router.get("/schedulers", response_model=list[m.SchedulerItem])
    def scheduler_list():
        """Schedule types, in A1111's shape."""
        return [m.SchedulerItem(name=row[0], label=label, aliases=row[1], default_rho=row[2], need_inner_model=row[3])
                for label, row in _SCHEDULE_ROWS.items() if label in samplers.SCHEDULES]

    @router.get("/prompt-styles", response_model=list[m.PromptStyleItem])
    def prompt_styles():
        """Styles from styles.csv."""
        return [m.PromptStyleItem(name=s.name, prompt=s.prompt, negative_prompt=s.negative_prompt)
                for s in ctx.styles.all()]

    @router.get("/cmd-flags")
    def flags() -> dict[str, Any]:
        """The command-line flags this server runs with (credentials masked)."""
        return cmd_flags(ctx.args)

    @router.get("/options")
    def get_options() -> dict[str, Any]:
        """Every setting and its value, A1111 keys."""
        options = ctx.settings.as_dict()
        model = ctx.models.current()
        if model is not None:
            options["sd_model_checkpoint"] = model.info.title
        return options

    @router.post("/options")
    async def set_options(changes: dict[str, Any] = Body(..., examples=[{"CLIP_stop_at_last_layers": 2}])):
        """Change settings; sd_model_checkpoint swaps the model in queue order with generations."""
        unknown = [k for k in changes if k not in ctx.settings.options]
        if unknown:
            raise ApiError(400, f"unknown setting(s): {', '.join(unknown)}",
                           [{"field": k, "message": "unknown setting"} for k in unknown])
        errors = []
        checked = {}
        for key, value in changes.items():
            try:
                checked[key] = ctx.settings.options[key].check(value)
            except SettingsError as exc:
                errors.append({"field": key, "message": str(exc)})
        errors += api_output_dir_problems(ctx, checked)  # folders set through the API stay in the data dir
        checkpoint = checked.pop("sd_model_checkpoint", None)
        vae = checked.pop("sd_vae", None)  # applied through the queue, like a checkpoint (webui/api/networks.py)
        if checkpoint and ctx.models.find(checkpoint) is None:
            errors.append({"field": "sd_model_checkpoint",
                           "message": f"no checkpoint matches {checkpoint!r}; GET {PREFIX}/sd-models lists them"})
        if errors:
            raise ApiError(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
        if checked and ctx.settings.unsaved_reason:  # say so before a checkpoint swap, not after
            raise ApiError(409, f"settings not saved: {ctx.settings.unsaved_reason}; fix or move the file and restart")
        if checkpoint:
            await swap_checkpoint(checkpoint)  # first: if it fails, nothing else has changed
        if vae is not None:
            await apply_vae_option(ctx, vae)
        if checked:
            try:
                ctx.settings.save_changes(checked)
            except SettingsNotSaved as exc:
                raise ApiError(409, f"settings not saved: {exc}") from None
            except SettingsError as exc:
                raise ApiError(422, str(exc)) from None
        return None

    @router.post("/png-info", response_model=m.PNGInfoResponse)
    def png_info(body: m.PNGInfoRequest):
        """Read the A1111 parameters from a PNG (base64 or data: URL)."""
        if not body.image.strip():
            return m.PNGInfoResponse(info="")
        return png_info_of(decode_image(body.image))

    @router.get("/memory")
    def memory_route() -> dict[str, Any]:
        """RAM and CUDA memory, A1111's shape ({"error": ...} for cuda when there is none)."""
        return memory()

    build_extras_router(ctx, router, decode_image, wait_for, encode_png)
    return router


def api_routers(ctx) -> list[APIRouter]:
    """Every API router. A room with its own route file adds one line here: `its_module.build_router(ctx)`
    (built with `api_router(ctx, ...)` so auth, strict JSON and the error shape come with it)."""
    return [
        build_router(ctx),
        build_networks_router(ctx),
        build_train_router(ctx),
        build_controlnet_router(ctx),  # sd-webui-controlnet's /controlnet/* routes
        build_scripts_router(ctx),  # /scripts, /script-info, /extensions (webui/api/scripts.py)
    ]


def mount_api(app: FastAPI, ctx) -> None:
    """Add the /sdapi/v1 routes (and /docs when the app has none) to Gradio's FastAPI app."""
    for router in api_routers(ctx):
        app.include_router(router)
    if not any(getattr(r, "path", None) == "/docs" for r in app.routes) and app.openapi_url:
        docs = APIRouter(route_class=route_class(basic_auth_guard(api_accounts(ctx))))

        @docs.get("/docs", include_in_schema=False)
        def swagger():
            return get_swagger_ui_html(openapi_url=app.openapi_url, title="SD Studio API")

        app.include_router(docs)
    app.openapi_schema = None  # regenerate: the schema may have been built before our routes existed

