"""ExtensionHost: the loaded extensions of one app, what they declared, and isolated calls into them.

One host per AppContext (no module state). It discovers and loads extensions, commits each
one's declarations (settings, panels, scripts, tabs, routes) after refusing clashes, keeps the
load table, and calls hooks so that an exception becomes a warning, never a crash. An
extension whose hooks fail three times in a row is switched off for the rest of the session.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from webui.extensions.api import ExtensionAPI, ExtensionError, ModelView, Panel, Script, check_params
from webui.extensions.assets import Assets
from webui.extensions.discover import BUILTIN_DIR, discover, user_extensions_dir
from webui.extensions.loader import LoadRecord, load_one, short_traceback
from webui.extensions.safemode import StartMarker
from webui.settings import Option, Settings, SettingsError

log = logging.getLogger(__name__)
MAX_CONSECUTIVE_FAILURES = 3


class NameListOption(Option):
    """A setting holding a list of names (A1111's disabled_extensions)."""

    def check(self, value: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{self.key}: expected a list of extension names, got {value!r}")
        return list(value)


def register_options(settings: Settings) -> None:
    """A1111's keys for switching extensions off; the Extensions tab edits them (Settings hides them)."""
    if "disabled_extensions" not in settings.options:
        settings.add_option(NameListOption("disabled_extensions", (), "Disabled extensions", "Extensions"))
    if "disable_all_extensions" not in settings.options:
        settings.add_option(Option("disable_all_extensions", "none", "Disable all extensions", "Extensions",
                                   choices=("none", "extra", "all")))


def model_view(model) -> ModelView | None:
    """The read-only view of a LoadedModel that hooks get."""
    if model is None:
        return None
    info = model.info
    return ModelView(title=info.title, name=info.model_name, arch=model.arch, hash=info.shorthash,
                     filename=str(info.filename))


class AppView:
    """What ``api.app`` offers extensions: settings, folders, models (read) and the job queue."""

    def __init__(self, host: "ExtensionHost"):
        self._host = host

    def setting(self, key: str) -> Any:
        return self._host.settings.get(key)

    @property
    def data_dir(self) -> Path:
        return self._host.data_dir

    @property
    def outputs_dir(self) -> Path:
        return self._host.data_dir / "outputs"

    @property
    def flags(self) -> dict[str, Any]:
        return dict(vars(self._host.args)) if self._host.args is not None else {}

    def checkpoints(self) -> list[str]:
        ctx = self._host.ctx
        return [i.title for i in ctx.models.checkpoints()] if ctx else []

    def current_model(self) -> ModelView | None:
        ctx = self._host.ctx
        return model_view(ctx.models.current()) if ctx else None

    def submit(self, request, source: str = "extension"):
        """Queue a GenerationRequest like the UI does; returns the Job (``job.wait()`` for the result)."""
        if self._host.ctx is None:
            raise RuntimeError("the app is not started yet")
        return self._host.ctx.submit_txt2img(request, source=source)


class ExtensionHost:
    """Discover, load and call the extensions of one app."""

    def __init__(self, data_dir: Path, settings: Settings, args=None, *, builtin_dir: Path = BUILTIN_DIR,
                 user_dir: Path | None = None):
        self.data_dir = Path(data_dir)
        self.settings = settings
        self.args = args
        self.builtin_dir = Path(builtin_dir)
        self.user_dir = Path(user_dir) if user_dir else user_extensions_dir(self.data_dir)
        self.ctx = None  # the AppContext, once built (attach)
        self.app_view = AppView(self)
        self.records: list[LoadRecord] = []
        self.apis: dict[str, ExtensionAPI] = {}
        self.panels: list[Panel] = []
        self.scripts: list[Script] = []
        self.safe_mode = ""
        self.marker = StartMarker(self.data_dir)
        self.assets = Assets(self)
        self.compat = None  # the A1111 bridge, created when an A1111-style extension loads
        self._failures: Counter = Counter()
        self._auto_disabled: set[str] = set()
        self._lock = threading.Lock()
        self._local = threading.local()  # the running generation's JobHooks (the queue has one worker)
        self.model_dirty = False  # a patch failed to undo itself: reload the model before the next job
        self.claimed_alwayson: set[str] = set()  # alwayson_scripts keys a built-in feature reads (e.g. controlnet)
        register_options(settings)

    # -- loading --------------------------------------------------------------------------------
    def _flag(self, name: str) -> bool:
        return bool(getattr(self.args, name, False)) if self.args is not None else False

    def load(self) -> "ExtensionHost":
        """Discover and load every enabled extension; call once, before the UI is built."""
        self.safe_mode = self.marker.previous_crash()
        if self.safe_mode:
            log.warning("Safe mode: %s", self.safe_mode)
        candidates = discover(self.builtin_dir, self.user_dir, self.settings.get("disabled_extensions"),
                              self.settings.get("disable_all_extensions"),
                              flag_all=self._flag("disable_all_extensions"),
                              flag_extra=self._flag("disable_extra_extensions"), safe_mode_reason=self.safe_mode)
        for cand in candidates:
            if cand.will_load:
                self.marker.write("loading extensions", cand.name)
            api = ExtensionAPI(cand.name, cand.manifest.path, self.app_view, logging.getLogger(f"ext.{cand.name}"))
            record = load_one(cand, api, self._compat_loader)
            if record.state == "loaded":
                record.warnings += self._commit(api)
                self.apis[cand.name] = api
            self.records.append(record)
        self.marker.write("building the UI")
        self.assets.register_localization_setting()
        return self

    def _compat_loader(self, manifest, api) -> list[str]:
        from webui.compat.a1111 import bridge_for  # only imported when an A1111-style extension is enabled

        if self.compat is None:
            self.compat = bridge_for(self)
        return self.compat.load_extension(manifest, api)

    def finish_start(self) -> None:
        """The UI and routes are up: a later crash is not a crash while loading extensions."""
        self.marker.clear()

    def _commit(self, api: ExtensionAPI) -> list[str]:
        """Accept an extension's declarations one by one; a clash is refused with a note, not fatal."""
        notes = []
        for spec in api.settings:
            if spec.key in self.settings.options:
                notes.append(f"setting {spec.key!r} not added: the name is taken")
                continue
            try:
                self.settings.add_option(Option(spec.key, spec.default, spec.label, spec.section, spec.minimum,
                                                spec.maximum, spec.choices))
            except Exception as exc:
                notes.append(f"setting {spec.key!r} not added: {exc}")
        taken_tabs = {"tab_txt2img", "tab_img2img", "tab_pnginfo", "tab_settings", "tab_extensions", "tabs"} | \
            {t.elem_id for t in self.tabs()}
        for tab in list(api.tabs):
            if tab.elem_id in taken_tabs:
                api.tabs.remove(tab)
                notes.append(f"tab {tab.title!r} not added: the element id {tab.elem_id!r} is taken")
        for item, pool, what in [(p, self.panels, "panel") for p in api.panels] + \
                                [(s, self.scripts, "script") for s in api.scripts]:
            taken = {x.api_name for x in self.panels + self.scripts}
            if item.api_name in taken or item.api_name == "none":
                notes.append(f"{what} {item.title!r} not added: the title is taken")
                continue
            pool.append(item)
        return notes

    # -- what was loaded ------------------------------------------------------------------------
    def record(self, name: str) -> LoadRecord | None:
        return next((r for r in self.records if r.name == name), None)

    def loaded(self) -> list[ExtensionAPI]:
        return [api for name, api in self.apis.items() if name not in self._auto_disabled]

    def panels_for(self, tab: str) -> list[Panel]:
        return [p for p in self.panels if tab in p.tabs and p.extension not in self._auto_disabled]

    def scripts_for(self, tab: str) -> list[Script]:
        return [s for s in self.scripts if tab in s.tabs and s.extension not in self._auto_disabled]

    def find_panel(self, title: str) -> Panel | None:
        key = title.strip().lower()
        return next((p for p in self.panels if p.api_name == key or p.extension == key), None)

    def find_script(self, title: str) -> Script | None:
        key = title.strip().lower()
        return next((s for s in self.scripts if s.api_name == key), None)

    def tabs(self):
        return [t for api in self.loaded() for t in api.tabs]

    # -- isolated calls -------------------------------------------------------------------------
    def hooks(self, hook: str) -> list[tuple[str, Callable]]:
        """(extension, fn) for one hook, in load order, skipping auto-disabled extensions."""
        return [(api.name, fn) for api in self.loaded() for fn in api.hooks[hook]]

    def failed(self, ext: str, where: str, exc: BaseException) -> str:
        """Record a failing call; returns the warning line to show with the job."""
        record = self.record(ext)
        detail = short_traceback(exc, limit=3, root=record.path if record is not None else None)
        log.error("extension %s: %s raised:\n%s", ext, where, detail)
        message = f"{ext}: {where} failed: {type(exc).__name__}: {exc}"
        with self._lock:
            record = self.record(ext)
            if record is not None and message not in record.warnings:
                record.warnings = (record.warnings + [message])[-5:]  # the load table shows recent failures
            self._failures[ext] += 1
            if self._failures[ext] >= MAX_CONSECUTIVE_FAILURES and ext not in self._auto_disabled:
                self._auto_disabled.add(ext)
                record = self.record(ext)
                if record is not None:
                    record.state = "auto-disabled"
                    record.error = f"switched off for this session after {self._failures[ext]} failures in a " \
                                   f"row; last: {where}: {type(exc).__name__}: {exc}"
                message += " (switched off for this session)"
        return message

    def succeeded(self, ext: str) -> None:
        if self._failures.get(ext):
            with self._lock:
                self._failures[ext] = 0

    def call(self, ext: str, where: str, fn: Callable, *args, warnings: list[str] | None = None,
             default: Any = None) -> Any:
        """fn(*args), or ``default`` with a warning appended when it raises."""
        try:
            result = fn(*args)
        except Exception as exc:
            message = self.failed(ext, where, exc)
            if warnings is not None:
                warnings.append(message)
            return default
        self.succeeded(ext)
        return result

    # -- app-level hooks ------------------------------------------------------------------------
    def model_loaded(self, model) -> list[str]:
        view, warnings = model_view(model), []
        for ext, fn in self.hooks("model_loaded"):
            self.call(ext, "model_loaded hook", fn, view, warnings=warnings)
        return warnings

    def infotext_pasted(self, text: str, params: dict) -> list[str]:
        """Let extensions rewrite parsed infotext params (in place) before they fill the UI."""
        warnings: list[str] = []
        for ext, fn in self.hooks("infotext_pasted"):
            self.call(ext, "infotext_pasted hook", fn, text, params, warnings=warnings)
        return warnings

    def app_started(self, app=None, demo=None) -> list[str]:
        """Mount extension routes and assets on the FastAPI app, then run app_started hooks once."""
        warnings: list[str] = []
        if app is not None:
            self.assets.mount(app)
            for api in self.loaded():
                if api._router is not None:
                    try:
                        app.include_router(api._router, prefix=f"/ext/{api.name}")
                    except Exception as exc:
                        warnings.append(self.failed(api.name, "routes", exc))
        if self.compat is not None:
            warnings += self.compat.app_started(app, demo)
        for ext, fn in self.hooks("app_started"):
            self.call(ext, "app_started hook", fn, self.app_view, warnings=warnings)
        self.finish_start()
        return warnings

    def reload_if_dirty(self) -> None:
        """Called by the job runner after each job: reload the model an extension left patched."""
        if not self.model_dirty or self.ctx is None:
            return
        self.model_dirty = False
        try:
            model = self.ctx.models.reload_active()
        except Exception as exc:  # the next job then fails with the manager's own message
            log.error("could not reload the model after a failed extension patch: %s", exc)
            return
        if model is not None:
            log.warning("reloaded %s from disk: an extension patch did not undo itself", model.info.title)

    # -- requests -------------------------------------------------------------------------------
    def claim_alwayson(self, name: str) -> None:
        """A built-in feature (e.g. ControlNet) reads ``alwayson_scripts[name]`` itself; panels skip it."""
        self.claimed_alwayson.add(name.lower())

    def panel_values(self, alwayson: dict | None, tab: str = "txt2img") -> dict[str, dict[str, Any]]:
        """A1111's ``alwayson_scripts`` ({title: {"args": [...] | {...}}}) -> {panel title: values}.

        Raises ExtensionError naming the script for an unknown title, a selectable script or bad args.
        Keys claimed by built-in features are left to them.
        """
        out: dict[str, dict[str, Any]] = {}
        for title, body in (alwayson or {}).items():
            if str(title).lower() in self.claimed_alwayson:
                continue
            panel = self.find_panel(str(title))
            if panel is None:
                if self.find_script(str(title)) is not None:
                    raise ExtensionError(f"alwayson_scripts.{title}: is a selectable script; use script_name")
                raise ExtensionError(f"alwayson_scripts.{title}: no always-on script with that name; "
                                     f"GET /sdapi/v1/scripts lists them")
            args = body.get("args", []) if isinstance(body, dict) else body
            out[panel.title] = check_params(panel.params, args, f"alwayson_scripts.{title}")
        return out

    def script_params(self, name: str | None, args: Any) -> tuple[Script | None, dict[str, Any]]:
        """The selectable script named by ``script_name`` and its checked args (None for no script)."""
        if name is None or not str(name).strip() or str(name).strip().lower() == "none":
            return None, {}
        script = self.find_script(str(name))
        if script is None:
            if self.find_panel(str(name)) is not None:
                raise ExtensionError(f"script_name: {name!r} is an always-on script; send it in alwayson_scripts")
            raise ExtensionError(f"script_name: no script named {name!r}; GET /sdapi/v1/scripts lists them")
        return script, check_params(script.params, args, f"script_args ({script.title})")

    def active_hooks(self):
        """The JobHooks of the generation running in this thread (set by ``generate_one``), or None."""
        return getattr(self._local, "hooks", None)

    def generate_one(self, request, generate, job=None):
        """Run ``generate(request)`` with a fresh JobHooks scope; after_job hooks and warnings go to the result."""
        hooks = self.job(request, job_id=getattr(job, "id", ""), progress=getattr(job, "progress", None))
        self._local.hooks = hooks
        try:
            result = generate(request)
        finally:
            self._local.hooks = None
        hooks.after_job(result)
        comments = list(getattr(result, "comments", []))
        result.comments = comments + [w for w in hooks.warnings if w not in comments]
        return result

    def job(self, request, *, job_id: str = "", progress=None, model=None):
        """The per-job hook dispatcher the generation core calls (see webui/extensions/jobhooks.py)."""
        from webui.extensions.jobhooks import JobHooks

        return JobHooks(self, request, job_id=job_id, progress=progress, model=model_view(model))
