"""One Ray Serve replica: its own model manager and generation core on its own device.

A replica keeps no settings of its own (each ticket carries the front's) and never writes
outputs/: it runs the core with saving off and streams `Started`, `Update`s and `Finished` back.
Generation runs on one dedicated thread, so the replica's event loop stays free for Serve's
health checks and the multiplexing bookkeeping.
"""
from __future__ import annotations

import os

# Workers import this module before anything else of ours: no model hub, ever (as app.py).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import socket  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, AsyncIterator  # noqa: E402

from webui.scale.messages import Failed, Finished, Started, StyleMap, Ticket  # noqa: E402
from webui.scale.progress import ControlWatch, ReplicaProgress  # noqa: E402

log = logging.getLogger(__name__)

# The flags that shape a replica: folders and device/precision choices (the front sends its own).
REPLICA_FLAGS = ("data_dir", "ckpt_dir", "vae_dir", "lora_dir", "embeddings_dir", "controlnet_dir", "hypernetwork_dir",
                 "lyco_dir_backcompat", "esrgan_models_path", "realesrgan_models_path", "swinir_models_path",
                 "dat_models_path", "medvram", "lowvram", "no_half", "no_half_vae", "precision", "xformers",
                 "opt_sdp_attention", "use_cpu", "skip_torch_cuda_test", "disable_safe_unpickle")
_DIR_FLAGS = {name for name in REPLICA_FLAGS if name.endswith(("_dir", "_path", "_backcompat"))}


def replica_flags(args, paths) -> dict[str, Any]:
    """The front's flags a replica needs, folders made absolute (a replica's working folder differs)."""
    flags = {name: getattr(args, name, None) for name in REPLICA_FLAGS}
    flags.update({name: str(Path(flags[name]).resolve()) for name in _DIR_FLAGS if flags[name]})
    flags.update(data_dir=str(paths.data_dir), ckpt_dir=str(paths.ckpt_dir), vae_dir=str(paths.vae_dir),
                 lora_dir=str(paths.lora_dir), embeddings_dir=str(paths.embeddings_dir),
                 controlnet_dir=str(paths.controlnet_dir))
    return flags


def known_settings(settings, values: dict[str, Any]) -> dict[str, Any]:
    """The values this replica's Settings knows (an extension's option on the front may not exist here)."""
    return {key: value for key, value in values.items() if key in settings.options}


class ReplicaCore:
    """Model manager + generation core built from the front's flags; no settings file, no saving."""

    def __init__(self, flags: dict[str, Any], settings: dict[str, Any]):
        from webui import cli, devices
        from webui.context import build_core
        from webui.paths import Paths
        from webui.settings import Settings

        import diffusers.utils.logging as diffusers_logging
        import transformers.utils.logging as transformers_logging

        diffusers_logging.disable_progress_bar()  # progress goes to the front, not to the worker's log
        transformers_logging.disable_progress_bar()
        args = cli.parse_args([])
        for name, value in flags.items():
            setattr(args, name, Path(value) if name in _DIR_FLAGS and value else value)
        args.device_id = None  # Ray decides which GPU this replica sees (CUDA_VISIBLE_DEVICES)
        self.paths = Paths.from_args(args)
        self.policy = devices.choose_policy(devices.detect(None), devices.PolicyFlags.from_args(args))
        self.settings = Settings(path=None)  # never written: the front owns config.json
        self.settings.update(known_settings(self.settings, settings), save=False)
        self.core, _, _ = build_core(args, self.paths, self.policy, self.settings)  # the same core as the front's
        self.models = self.core.models

    def select(self, name: str, path: str = "") -> str:
        """Make a checkpoint active by the front's name (rescanning once), else by the front's path."""
        info = self.models.find(name)
        if info is None:
            self.models.refresh()
            info = self.models.find(name)
        if info is None and path and Path(path).exists():
            info = self.models.registry.add_file(Path(path))
        if info is None:
            from webui.models.errors import ModelLoadError

            raise ModelLoadError(f"checkpoint {name!r} is not on this replica's machine "
                                 f"(looked in {self.paths.ckpt_dir}); model folders must exist on every worker")
        current = self.models.current()
        if current is None or current.info.filename != info.filename:
            self.models.select(str(info.filename))
        return info.name

    def generate(self, ticket: Ticket, progress) -> Any:
        """Run the ticket's request (or outpainting job) on the ticket's checkpoint with the front's settings;
        nothing is saved."""
        from webui.generation.core import generate
        from webui.generation.outpaint import OutpaintJob, run_outpaint

        self.settings.update(known_settings(self.settings, ticket.settings), save=False)
        self.select(ticket.checkpoint, ticket.checkpoint_path)
        core = dataclasses.replace(self.core, styles=StyleMap(ticket.styles))
        # save_images=False: the front saves (one writer of outputs/); it puts the caller's value back.
        if isinstance(ticket.request, OutpaintJob):
            unsaved = dataclasses.replace(ticket.request.request, save_images=False)
            return run_outpaint(dataclasses.replace(ticket.request, request=unsaved), core, progress)
        return generate(dataclasses.replace(ticket.request, save_images=False), core, progress)


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class GenerationReplica:
    """The Serve deployment class (see `serve_app.build_deployment`, which adds model multiplexing)."""

    def __init__(self, flags: dict[str, Any], settings: dict[str, Any], warm: str | None = None):
        self._replica = ReplicaCore(flags, settings)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="replica-generation")
        self.name = f"{_replica_id()} pid {os.getpid()} on {socket.gethostname()}"
        if warm:  # the front's checkpoint, so the first job does not wait for a load
            try:
                self._replica.select(warm)
            except Exception as exc:
                log.warning("could not preload %s: %s", warm, exc)

    async def load_checkpoint(self, model_id: str) -> str:
        """Note that this replica now holds `model_id` (the load itself happens on the generation thread).

        `serve_app` wraps this with `serve.multiplexed`, which reports the ids to Serve's router so
        jobs for a checkpoint go to a replica that has it in its RAM cache.
        """
        return model_id

    async def run(self, ticket: Ticket) -> AsyncIterator[Any]:
        """Run one job; yields Started, Update..., then Finished or Failed."""
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue = asyncio.Queue()
        yield Started(replica=self.name, pid=os.getpid())
        try:
            await self.load_checkpoint(ticket.checkpoint)
        except Exception as exc:
            yield Failed(str(exc) or type(exc).__name__)
            return
        watch = ControlWatch(ticket.control, ticket.control_token) if ticket.control is not None else None
        progress = ReplicaProgress(lambda update: loop.call_soon_threadsafe(outbox.put_nowait, update), watch)
        work = loop.run_in_executor(self._thread, self._replica.generate, ticket, progress)
        # The end marker is queued after every update: both go through the loop's FIFO of callbacks.
        work.add_done_callback(lambda _: outbox.put_nowait(None))
        while True:
            update = await outbox.get()
            if update is None:
                break
            yield update
        try:
            result = work.result()
        except Exception as exc:
            out_of_memory = _is_out_of_memory(exc)
            if out_of_memory:
                gc.collect()
                _empty_cuda_cache()
            log.warning("job %s failed: %s", ticket.job_id, exc)
            yield Failed(str(exc) or type(exc).__name__, out_of_memory)
            return
        yield Finished(result)


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _replica_id() -> str:
    try:
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside Serve (unit tests): the process is the replica
        return "replica"
