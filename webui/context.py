"""AppContext: the explicit objects one running app shares between UI, API and extensions."""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from webui.console import ConsoleProgress
from webui.devices import DevicePolicy
from webui.extensions.feature import ExtensionsFeature
from webui.extensions.host import ExtensionHost
from webui.extensions.scripts import run_job
from webui.generation.core import CoreContext, generate
from webui.generation.outpaint import OutpaintJob, run_outpaint
from webui.generation.progress import Progress
from webui.generation.postprocess import run_extras
from webui.generation.refiner import RefinerFeature
from webui.generation.request import GenerationRequest
from webui.generation.styles import StyleStore
from webui.images import ImageSaver
from webui.jobs import Job, JobQueue
from webui.models.manager import ModelManager
from webui.models.networks.feature import NetworksFeature
from webui.models.networks.manager import NetworkManager
from webui.models.upscalers import UpscalerManager
from webui.paths import Paths
from webui.scale.options import scale_requested
from webui.security.policy import SecurityPolicy
from webui.settings import Settings
from webui.training.service import KINDS as TRAINING_KINDS, TrainingService

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
    startup_job: Job | None = None  # the startup checkpoint's load, when it runs behind the page
    security: SecurityPolicy = field(default_factory=SecurityPolicy)  # hosts, accounts, limits (webui/security)
    controlnets: Any = None  # webui.models.controlnet.ControlNetManager
    networks: NetworkManager | None = None  # VAE, LoRA, embeddings, hypernetworks (webui/models/networks)
    startup_size: int | None = None  # that checkpoint's native size, read from its header while it loads
    training: TrainingService | None = None  # LoRA / embedding training jobs (webui/training/service.py)

    @property
    def loading(self) -> bool:
        """True while the startup checkpoint is still loading (the header says so)."""
        return self.startup_job is not None and not self.startup_job.done

    def wait_for_startup(self, timeout: float = 600.0) -> None:
        """Block until the startup checkpoint's load has ended, for answers that depend on the loaded
        model (A1111 serves its API only after the load); returns at once otherwise, even if it failed."""
        job = self.startup_job
        if job is None or job.done:
            return
        try:
            job.wait(timeout)
        except Exception:  # noqa: BLE001 - a failed load is reported in the header; the caller answers without a model
            pass

    def submit_txt2img(self, request: GenerationRequest, source: str = "ui") -> Job:
        """Queue a generation request (any mode); every entry point goes through here."""
        return self.submit_generation(request, source)

    def submit_generation(self, request: GenerationRequest | OutpaintJob, source: str = "ui") -> Job:
        """Queue a txt2img / img2img / inpaint request (or an outpainting job); kind "txt2img" or "img2img".

        Raises RequestError when the request is over budget (webui/security/budget.py).
        """
        self.security.budget.check(request.request if isinstance(request, OutpaintJob) else request)
        kind = "img2img" if isinstance(request, OutpaintJob) or request.mode != "txt2img" else "txt2img"
        return self.queue.submit(request, kind=kind, source=source)

    def submit_extras(self, request, source: str = "ui") -> Job:
        """Queue an Extras (postprocessing) request: upscaling uses the device, so it waits its turn."""
        return self.queue.submit(request, kind="extras", source=source)

    def submit_checkpoint(self, name: str, source: str = "ui") -> Job:
        """Queue a checkpoint swap, so it lands between generations in FIFO order (UI and API alike)."""
        return self.queue.submit(name, kind="checkpoint", source=source)

    def submit_vae(self, choice: str, source: str = "ui") -> Job:
        """Queue an sd_vae change (quicksettings, /options), so it lands between generations."""
        return self.queue.submit(choice, kind="vae", source=source)


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


def _startup_guess(models: ModelManager, ckpt) -> tuple[str, int | None]:
    """What ``ModelManager.startup`` will most likely load: its name for the "Loading ..." line and
    its native image size (from the file's header and config folder, no weights read) for the UI."""
    path: Path | None = None
    if ckpt:
        found = models.find(str(ckpt))
        path = found.filename if found is not None else Path(str(ckpt)).expanduser()
        label = Path(str(ckpt)).name
    else:
        last = models.find(models.settings.get("sd_model_checkpoint"))
        found = last if last is not None else next(iter(models.checkpoints()), None)
        if found is None:
            return "the startup checkpoint", None
        path, label = found.filename, found.title
    try:
        from webui.models.probe import probe_checkpoint

        if path.suffix.lower() not in (".safetensors", "") and not path.is_dir():
            return label, None  # a pickled .ckpt would have to be read whole: wait for the load
        config = probe_checkpoint(path, configs_dir=models.paths.configs_dir).config_dir
        unet = json.loads((config / "unet" / "config.json").read_text())
        vae = json.loads((config / "vae" / "config.json").read_text())
        return label, int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except Exception:  # a guess only: the load itself reports what is wrong with the file
        return label, None


def build_core(args: argparse.Namespace, paths: Paths, policy: DevicePolicy,
               settings: Settings) -> tuple[CoreContext, NetworkManager, Any]:
    """The model manager, networks, ControlNets, upscalers and generation core for one device: the
    front's, and each scale-out replica's (webui/scale/replica.py), so a feature wired in here runs
    the same on both. Returns (core, networks, controlnets)."""
    from webui.generation.controlnet_feature import ControlNetFeature
    from webui.models.controlnet import ControlNetManager

    models = ModelManager(paths, settings, policy, allow_unsafe_pickle=args.disable_safe_unpickle)
    networks = NetworkManager.from_paths(paths, settings, args)
    controlnets = ControlNetManager.from_paths(paths, settings, allow_unsafe_pickle=args.disable_safe_unpickle)
    upscalers = UpscalerManager(paths.models_dir or paths.data_dir / "models", settings, device=policy.device,
                                half=policy.unet_dtype == torch.float16, allow_unsafe_pickle=args.disable_safe_unpickle,
                                extra_dirs=dict(paths.upscaler_dirs))
    core = CoreContext(models=models, settings=settings, saver=ImageSaver(), data_dir=paths.data_dir,
                       styles=StyleStore(paths.styles_file), version=VERSION, upscalers=upscalers,
                       features=[NetworksFeature(networks), ControlNetFeature(controlnets, settings),
                                 RefinerFeature(models, settings)])
    return core, networks, controlnets


def build_context(args: argparse.Namespace, paths: Paths, policy: DevicePolicy, settings: Settings,
                  load_in_background: bool = False) -> AppContext:
    """Create the model manager, styles, core and the started job queue; load the startup model.

    With ``load_in_background`` the load is the queue's first job (so generations sent meanwhile
    wait for it in order) and this returns at once with ``status`` "Loading ...": the server
    answers while the weights load.
    """
    contexts: list[AppContext] = []
    scaled = scale_requested(args)  # --ray-*: generations run on Ray Serve replicas (webui/scale/)
    if scaled:
        from webui.scale.front import front_policy

        policy = front_policy(args)
    core, networks, controlnets = build_core(args, paths, policy, settings)
    models, styles, upscalers = core.models, core.styles, core.upscalers
    # Extensions load before the UI (their settings, panels and tabs must exist when it is built).
    extensions = ExtensionHost(paths.data_dir, settings, args).load()
    extensions.claim_alwayson("controlnet")  # ControlNet reads its own alwayson_scripts entry (webui/api/controlnet.py)
    core.features.append(ExtensionsFeature(extensions))  # last: a plan starts from the final prompt
    training = TrainingService(paths, core, networks, loading=lambda: bool(contexts) and contexts[0].loading)

    def run(job: Job):
        if isinstance(job.payload, OutpaintJob):  # img2img's outpainting: several generations in one job
            return run_outpaint(job.payload, core, job.progress)
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
        if job.kind == "vae":
            return networks.select_vae(models, job.payload)
        if job.kind == "startup":
            try:
                line = models.startup(job.payload)
            except Exception as exc:  # the header must not say "Loading ..." forever
                contexts[0].status = f"Could not load the startup checkpoint: {type(exc).__name__}: {exc}"
                raise
            log.info(line)
            contexts[0].status = line
            if models.current() is not None:
                extensions.model_loaded(models.current())
            return line
        if job.kind in TRAINING_KINDS:  # holds the active model for the whole run; later jobs wait
            return training.run(job)
        raise ValueError(f"unknown job kind {job.kind!r}")

    # The server prints a progress bar per job in the console (A1111 does); library use stays silent.
    make_progress = ConsoleProgress if load_in_background else Progress
    queue = JobQueue(run, make_progress=make_progress).start() if not scaled else None
    startup_size = None
    if load_in_background:
        label, startup_size = _startup_guess(models, args.ckpt)
        status = f"Loading {label} ..."
    else:
        status = models.startup(args.ckpt)
        log.info(status)
    if scaled:  # after a foreground startup, so replicas preload the front's checkpoint
        from webui.scale.front import scaled_queue

        queue = scaled_queue(args, paths, settings, models, styles, core, run)
    ctx = AppContext(args=args, paths=paths, policy=policy, settings=settings, models=models, styles=styles,
                     core=core, queue=queue, upscalers=upscalers, status=status, startup_size=startup_size,
                     security=SecurityPolicy.from_args(args, paths.data_dir), networks=networks,
                     training=training, controlnets=controlnets, extensions=extensions)
    extensions.ctx = ctx
    contexts.append(ctx)
    if load_in_background:
        ctx.startup_job = queue.submit(args.ckpt, kind="startup", source="startup")
    elif models.current() is not None:
        extensions.model_loaded(models.current())
    return ctx
