"""Running a job with extensions: selectable scripts, job warnings, and the model reload after a bad patch.

A selectable script (X/Y/Z plot, Prompt matrix, ...) runs inside the one queued job: it builds
GenerationRequests and hands each to ``ScriptContext.process``, which runs the same generation
core (checkpoint override, hooks and all) in the same worker thread, so the queue still
serialises everything and Interrupt stops the script too.
"""
from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from webui.extensions.api import ExtensionError

log = logging.getLogger(__name__)


class ScriptContext:
    """What a selectable script's ``run(ctx, request, params)`` may use."""

    def __init__(self, host, generate: Callable, job, script):
        self.host = host
        self._generate = generate
        self.job = job
        self.script = script
        self.progress = job.progress if job is not None else None
        self.warnings: list[str] = []
        self.calls = 0
        self._original_checkpoint = None  # the model active before switch_checkpoint, restored after the job

    @property
    def interrupted(self) -> bool:
        return bool(self.progress and self.progress.interrupted)

    def set_text(self, text: str) -> None:
        if self.progress is not None:
            self.progress.set_text(text)

    def warn(self, message: str) -> None:
        self.warnings.append(f"{self.script.title}: {message}")

    def setting(self, key: str) -> Any:
        return self.host.settings.get(key)

    def process(self, request):
        """Generate one request (no script) through the core; its warnings join the job's."""
        request = dataclasses.replace(request, script_name=None, script_args={})
        security = getattr(self.host.ctx, "security", None)
        if security is not None:  # each generation a script makes stays within the request budget
            security.budget.check(request)
        self.calls += 1
        result = self.host.generate_one(request, self._generate, self.job)
        self.warnings += [w for w in result.comments if w not in self.warnings]
        return result

    def switch_checkpoint(self, name: str | None):
        """Make checkpoint ``name`` active for the following process() calls (restored after the job).

        Scripts that vary the checkpoint switch once per group of cells instead of per image.
        """
        ctx = self.host.ctx
        if not name or ctx is None:
            return None
        current = ctx.models.current()
        if self._original_checkpoint is None and current is not None:
            self._original_checkpoint = current.info.filename
        info = ctx.models.find(name)
        if current is not None and info is not None and info.filename == current.info.filename:
            return current
        self.set_text(f"{self.script.title}: loading {name}")
        model = ctx.models.select(name)  # ModelLoadError for an unknown name: the job fails with its message
        self.host.model_loaded(model)
        return model

    def restore_checkpoint(self) -> None:
        ctx = self.host.ctx
        original, self._original_checkpoint = self._original_checkpoint, None
        if ctx is None or original is None:
            return
        current = ctx.models.current()
        if current is None or current.info.filename != original:
            self.host.model_loaded(ctx.models.select(original))

    def grid_folder(self, request) -> Path:
        overrides = request.override_settings or {}
        base = Path(overrides.get("outdir_txt2img_grids") or self.host.settings.get("outdir_txt2img_grids"))
        folder = base if base.is_absolute() else self.host.data_dir / base
        return folder / datetime.now().strftime("%Y-%m-%d")

    def save_grid(self, image, infotext: str | None, request) -> Path | None:
        """Save a script's grid as A1111 does (grid-NNNN.png with infotext) when saving is on."""
        ctx = self.host.ctx
        if ctx is None or not request.save_images or not self.host.settings.get("grid_save"):
            return None
        write_info = self.host.settings.get("enable_pnginfo")
        return ctx.core.saver.save_grid(image, self.grid_folder(request), infotext if write_info else None)


def run_job(host, request, generate: Callable, job=None):
    """Run one txt2img job: the selected script if any, else a plain generation; then clean up.

    ``generate(request)`` is the app's core call for one request. A model left dirty by a patch
    that failed to undo itself is reloaded here, after the job and before the next one.
    """
    try:
        try:
            script, params = host.script_params(request.script_name, request.script_args)
        except ExtensionError as exc:
            raise ValueError(str(exc)) from None
        if script is None:
            result = host.generate_one(request, generate, job)
        else:
            ctx = ScriptContext(host, generate, job, script)
            ctx.set_text(f"{script.title}")
            try:
                result = script.run(ctx, dataclasses.replace(request, script_name=None, script_args={}), params)
            except ValueError as exc:  # the script refused its input: the user's message, not a crash
                raise ValueError(f"{script.title}: {exc}") from None
            except Exception as exc:
                host.failed(script.extension, f"script {script.title}", exc)
                raise RuntimeError(f"{script.title} failed: {type(exc).__name__}: {exc}") from exc
            finally:
                ctx.restore_checkpoint()
            if result is None:
                raise RuntimeError(f"{script.title} returned no result")
            result.comments = list(dict.fromkeys(list(result.comments) + ctx.warnings))
    finally:
        host.reload_if_dirty()
    return result
