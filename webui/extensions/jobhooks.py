"""JobHooks: the extensions' hooks for one generation job, each call isolated.

The core creates one per job (``host.job(request, ...)``) and calls, in order:
``plan`` (per-image prompts and seeds), ``patches`` (context managers for its ExitStack around
the one pipeline call), ``step`` (in its per-step callback chain), ``image`` (per finished
image), ``before_save`` / ``after_save`` (around each PNG), ``after_job``. A hook that raises
adds a line to ``warnings`` and the job goes on; a plan edit is committed only if the hook
returns normally and the plan still checks; a patch whose exit raises sets ``dirty`` so the
model is reloaded before the next job.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any, Callable

from webui.extensions.api import ExtensionError, ImageInfo, JobContext, ModelView, SaveParams, StepState
from webui.generation.plan import GenerationPlan, PlanError

log = logging.getLogger(__name__)


def _request_copy(request):
    """A copy an extension may not change the job through: small containers copied, images shared."""
    if not dataclasses.is_dataclass(request):
        return copy.deepcopy(request)
    changes = {f.name: copy.deepcopy(getattr(request, f.name)) for f in dataclasses.fields(request)
               if isinstance(getattr(request, f.name), (dict, list, tuple))
               and not any(hasattr(v, "save") for v in getattr(request, f.name))}
    return dataclasses.replace(request, **changes)


class _SafePatch:
    """Wraps one extension's patch so entering or exiting it can never break the job."""

    def __init__(self, hooks: "JobHooks", ext: str, fn: Callable, pipe):
        self.hooks, self.ext, self.fn, self.pipe = hooks, ext, fn, pipe
        self.cm = None

    def __enter__(self):
        try:
            cm = self.fn(self.hooks.context(self.ext), self.pipe)
            if cm is not None:
                cm.__enter__()
                self.cm = cm
        except Exception as exc:
            self.hooks.warn_failure(self.ext, "patch (skipped for this job)", exc)
            # An enter that raised half-way may have changed the pipeline: reload before the next job.
            self.hooks.mark_dirty()
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.cm is None:
            return False
        try:
            self.cm.__exit__(exc_type, exc, tb)  # its return value is ignored: a patch may not swallow errors
        except Exception as undo:
            self.hooks.warn_failure(self.ext, "patch exit (the model is reloaded before the next job)", undo)
            self.hooks.mark_dirty()
        return False


class JobHooks:
    """Per-job dispatcher; ``warnings`` end up in the UI and in the API's info."""

    def __init__(self, host, request, *, job_id: str = "", progress=None, model: ModelView | None = None,
                 panel_values: dict[str, dict[str, Any]] | None = None):
        self.host = host
        self.request = request
        self.job_id = job_id
        self.progress = progress
        self.model = model
        self.warnings: list[str] = []
        self.dirty = False
        if panel_values is None:
            try:
                panel_values = host.panel_values(getattr(request, "alwayson_scripts", None))
            except ExtensionError as exc:  # checked when the job was submitted; only a race gets here
                self.warnings.append(str(exc))
                panel_values = {}
        given = panel_values
        self.panel_values = {}
        for panel in host.panels:
            values = {p.name: p.default for p in panel.params}
            values.update(given.get(panel.title, {}))
            self.panel_values[panel.title] = values
        self._contexts: dict[str, JobContext] = {}

    # -- plumbing -------------------------------------------------------------------------------
    def attach_model(self, model) -> None:
        """The core leased the model: hooks created before the lease learn which one it is."""
        from webui.extensions.host import model_view

        self.model = model_view(model)
        for ctx in self._contexts.values():
            ctx.model = self.model

    def panel_infotext(self) -> dict[str, Any]:
        """Infotext keys of the native panels used in this job (params declared with ``infotext=``)."""
        out: dict[str, Any] = {}
        for panel in self.host.panels:
            values = self.panel_values.get(panel.title, {})
            if panel.build is not None or not panel.active(values):
                continue
            for param in panel.params:
                value = values.get(param.name, param.default)
                if param.infotext and (panel.enabled_param is not None or value != param.default):
                    out[param.infotext] = value
        return out

    def context(self, ext: str) -> JobContext:
        """The JobContext an extension's hooks get (one per extension per job)."""
        if ext not in self._contexts:
            params: dict[str, Any] = {}
            panels: dict[str, dict[str, Any]] = {}
            for panel in self.host.panels:
                if panel.extension == ext:
                    panels[panel.title] = self.panel_values.get(panel.title, {})
                    params.update(panels[panel.title])
            overrides = dict(getattr(self.request, "override_settings", None) or {})

            def setting(key: str, _o=overrides):
                return _o[key] if key in _o else self.host.settings.get(key)

            progress = self.progress
            self._contexts[ext] = JobContext(
                job_id=self.job_id, extension=ext, request=_request_copy(self.request), params=params,
                model=self.model, settings=setting, log=logging.getLogger(f"ext.{ext}"), warnings=self.warnings,
                is_interrupted=(lambda: bool(progress and progress.interrupted)), panels=panels)
        return self._contexts[ext]

    def mark_dirty(self) -> None:
        """The pipeline may carry an extension's change: the host reloads the model after this job."""
        self.dirty = True
        self.host.model_dirty = True

    def warn_failure(self, ext: str, where: str, exc: BaseException) -> None:
        self.warnings.append(self.host.failed(ext, where, exc))

    def _each(self, hook: str):
        for ext, fn in self.host.hooks(hook):
            yield ext, fn, self.context(ext)

    def _call(self, ext: str, where: str, fn: Callable, *args) -> tuple[bool, Any]:
        try:
            result = fn(*args)
        except Exception as exc:
            self.warn_failure(ext, where, exc)
            return False, None
        self.host.succeeded(ext)
        return True, result

    # -- the hooks, in the order the core calls them ------------------------------------------------
    def plan(self, plan: GenerationPlan) -> GenerationPlan:
        """Let extensions edit the per-image prompts and seeds; each edit is all or nothing."""
        for ext, fn, ctx in self._each("plan"):
            draft = plan.copy()
            ok, _ = self._call(ext, "plan hook", fn, ctx, draft)
            if not ok:
                continue
            try:
                if draft.batch_size != plan.batch_size:
                    raise PlanError(f"batch_size may not change ({plan.batch_size} -> {draft.batch_size}); "
                                    "change n_iter and the lists instead")
                plan = draft.check()
            except PlanError as exc:
                self.warn_failure(ext, "plan hook (its change was not applied)", exc)
        return plan

    def patches(self, pipe) -> list[_SafePatch]:
        """Context managers for the core's ExitStack around the pipeline call."""
        return [_SafePatch(self, ext, fn, pipe) for ext, fn in self.host.hooks("patch")]

    def step(self, step: int, total: int, timestep: Any, latents: Any) -> Any:
        """Per-step hooks; returns the latents to continue with (replaced when a hook returns new ones)."""
        for ext, fn, ctx in self._each("step"):
            state = StepState(step, total, timestep, latents)
            ok, result = self._call(ext, "step hook", fn, ctx, state)
            if ok and result is not None:
                if getattr(result, "shape", None) != getattr(latents, "shape", None):
                    self.warn_failure(ext, "step hook", ValueError(
                        f"returned latents of shape {getattr(result, 'shape', None)}, expected "
                        f"{getattr(latents, 'shape', None)}; ignored"))
                    continue
                latents = result
        return latents

    def image(self, image, info: ImageInfo):
        """Per finished image; a hook may return a replacement image."""
        for ext, fn, ctx in self._each("image"):
            ok, result = self._call(ext, "image hook", fn, ctx, image, info)
            if ok and result is not None:
                if not hasattr(result, "save") or not hasattr(result, "size"):
                    self.warn_failure(ext, "image hook", TypeError(f"returned {type(result).__name__}, "
                                                                   "not an image; ignored"))
                    continue
                image = result
        return image

    def before_save(self, params: SaveParams) -> SaveParams:
        for ext, fn, ctx in self._each("before_save"):
            self._call(ext, "before_save hook", fn, ctx, params)
        return params

    def after_save(self, path) -> None:
        for ext, fn, ctx in self._each("after_save"):
            self._call(ext, "after_save hook", fn, ctx, path)

    def after_job(self, result) -> None:
        for ext, fn, ctx in self._each("after_job"):
            self._call(ext, "after_job hook", fn, ctx, result)
