"""AppContext: the explicit objects one running app shares between UI, API and extensions."""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from webui.devices import DevicePolicy
from webui.extensions.feature import ExtensionsFeature
from webui.extensions.host import ExtensionHost
from webui.extensions.scripts import run_job
from webui.generation.core import CoreContext, generate
from webui.generation.postprocess import run_extras
from webui.generation.request import GenerationRequest
from webui.generation.styles import StyleStore
from webui.images import ImageSaver
from webui.jobs import Job, JobQueue
from webui.models.manager import ModelManager
from webui.models.upscalers import UpscalerManager
from webui.paths import Paths
from webui.settings import Settings

log = logging.getLogger(__name__)
VERSION = "0.1.0"


@dataclass
class AppContext:
    args: argparse.Namespace
    paths: Paths
    policy: DevicePolicy
    settings: Settings
    models: ModelManager
    styles: StyleStore
    core: CoreContext
    queue: JobQueue
    upscalers: UpscalerManager
    status: str = ""  # the one-line model status shown in the UI header
    extensions: ExtensionHost | None = None  # loaded extensions (webui/extensions); None in bare tests

    def submit_txt2img(self, request: GenerationRequest, source: str = "ui") -> Job:
        """Queue a generation request (any mode); every entry point goes through here."""
        return self.submit_generation(request, source)

    def submit_generation(self, request: GenerationRequest, source: str = "ui") -> Job:
        """Queue a txt2img / img2img / inpaint request; the job kind is "txt2img" or "img2img" (A1111's names)."""
        kind = "txt2img" if request.mode == "txt2img" else "img2img"
        return self.queue.submit(request, kind=kind, source=source)

    def submit_extras(self, request, source: str = "ui") -> Job:
        """Queue an Extras (postprocessing) request: upscaling uses the device, so it waits its turn."""
        return self.queue.submit(request, kind="extras", source=source)

    def submit_checkpoint(self, name: str, source: str = "ui") -> Job:
        """Queue a checkpoint swap, so it lands between generations in FIFO order (UI and API alike)."""
        return self.queue.submit(name, kind="checkpoint", source=source)


def generate_with_checkpoint(request: GenerationRequest, core: CoreContext, progress):
    """generate(), but an A1111 override_settings checkpoint is used for this job only (as A1111 does)."""
    wanted = (request.override_settings or {}).get("sd_model_checkpoint")
    previous = core.models.current()
    target = core.models.find(wanted) if wanted else None
    if not wanted or (previous is not None and target is not None and target.filename == previous.info.filename):
        return generate(request, core, progress)
    progress.set_text(f"Loading checkpoint {wanted}")
    core.models.select(wanted)  # raises ModelLoadError for an unknown name; the job fails with its message
    try:
        return generate(request, core, progress)
    finally:
        if previous is not None:
            core.models.select(previous.info.filename)


def context_from_flags(argv: list[str], settings_overrides: dict | None = None) -> AppContext:
    """An AppContext from command-line flags, as app.py builds one (tests and bench/ use this).

    ``settings_overrides`` apply to this instance only; config.json is not written.
    """
    from webui import cli, devices

    args = cli.parse_args(argv)
    paths = Paths.from_args(args)
    paths.ensure()
    policy = devices.choose_policy(devices.detect(args.device_id), devices.PolicyFlags.from_args(args))
    settings = Settings.load(paths.config_file)
    if settings_overrides:
        settings.update(settings_overrides, save=False)
    return build_context(args, paths, policy, settings)


def build_context(args: argparse.Namespace, paths: Paths, policy: DevicePolicy, settings: Settings) -> AppContext:
    """Create the model manager, styles, core and the started job queue; load the startup model."""
    models = ModelManager(paths, settings, policy, allow_unsafe_pickle=args.disable_safe_unpickle)
    # Extensions load before the UI (their settings, panels and tabs must exist when it is built).
    extensions = ExtensionHost(paths.data_dir, settings, args).load()
    styles = StyleStore(paths.styles_file)
    core = CoreContext(models=models, settings=settings, saver=ImageSaver(), data_dir=paths.data_dir,
                       styles=styles, version=VERSION)
    core.features.append(ExtensionsFeature(extensions))  # last: its plan starts from the final prompt

    upscalers = UpscalerManager(paths.models_dir or paths.data_dir / "models", settings, device=policy.device,
                                half=policy.unet_dtype == torch.float16, allow_unsafe_pickle=args.disable_safe_unpickle,
                                extra_dirs=dict(paths.upscaler_dirs))

    def run(job: Job):
        if job.kind in ("txt2img", "img2img"):
            return run_job(extensions, job.payload, lambda req: generate_with_checkpoint(req, core, job.progress), job)
        if job.kind == "extras":
            folder = Path(settings.get("outdir_extras_samples"))
            folder = folder if folder.is_absolute() else paths.data_dir / folder
            return run_extras(job.payload.validate(upscalers), upscalers, core.saver, folder, job.progress)
        if job.kind == "checkpoint":  # a swap queued by the API, so it lands between jobs in FIFO order
            model = models.select(job.payload)
            extensions.model_loaded(model)
            return model
        raise ValueError(f"unknown job kind {job.kind!r}")

    queue = JobQueue(run).start()
    status = models.startup(args.ckpt)
    log.info(status)
    ctx = AppContext(args=args, paths=paths, policy=policy, settings=settings, models=models, styles=styles,
                     core=core, queue=queue, upscalers=upscalers, status=status, extensions=extensions)
    extensions.ctx = ctx
    if models.current() is not None:
        extensions.model_loaded(models.current())
    return ctx
