"""The native extension API, version 1: the only module an extension should import from us.

An extension is a folder with an ``extension.toml`` whose ``entry`` names a function
``register(api: ExtensionAPI)``. Everything an extension adds goes through that ``api``:
settings, generation-panel parameters, selectable scripts, tabs, routes, assets and hooks.
Hooks get what they may touch as arguments (no global state), every call is isolated (an
exception is recorded as a warning, never a crashed job), and pipeline patches are context
managers the core always exits. See docs/extensions.md for a worked example.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from webui.generation.plan import BatchPlan, GenerationPlan  # noqa: F401  (re-exported for extensions)
from webui.generation.processing import SaveParams  # noqa: F401  (before_save hooks get one)
from webui.generation.request import GenerationRequest, GenerationResult  # noqa: F401  (re-exported)

API_VERSION = 1
HOOKS = ("plan", "patch", "step", "image", "before_save", "after_save", "after_job", "infotext_pasted",
         "model_loaded", "app_started")
_KINDS = (bool, int, float, str)


class ExtensionError(ValueError):
    """An extension asked for something the host refuses (a name clash, a bad parameter)."""


@dataclass(frozen=True)
class Param:
    """One named parameter of a generation panel or script: a UI control, an API field, an infotext key.

    ``kind`` is bool, int, float or str; ``choices`` makes it a dropdown. ``infotext`` is the
    key written into the PNG parameters when the panel is used (None: not written).
    """

    name: str
    kind: type
    default: Any
    label: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple | None = None
    infotext: str | None = None
    lines: int = 1  # text fields: >1 gives a multi-line box
    info: str = ""
    row: str | None = None  # consecutive params with the same row name are laid out side by side

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ExtensionError(f"param {self.name!r}: kind must be bool, int, float or str, got {self.kind!r}")
        if not self.name.isidentifier():
            raise ExtensionError(f"param {self.name!r}: the name must be a Python identifier (it is an API field)")
        object.__setattr__(self, "default", self.check(self.default))

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def check(self, value: Any) -> Any:
        """The value coerced to this param's kind, or ExtensionError saying why not."""
        kind = self.kind
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            if not isinstance(value, bool):
                raise ExtensionError(f"{self.name}: expected true or false, got {value!r}")
        elif kind in (int, float):
            if isinstance(value, str):
                try:
                    value = float(value.strip())
                except ValueError:
                    raise ExtensionError(f"{self.name}: expected a number, got {value!r}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ExtensionError(f"{self.name}: expected a number, got {value!r}")
            if kind is int:
                if float(value) != int(value):
                    raise ExtensionError(f"{self.name}: expected a whole number, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            if self.minimum is not None and value < self.minimum:
                raise ExtensionError(f"{self.name}: {value:g} is below the minimum {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise ExtensionError(f"{self.name}: {value:g} is above the maximum {self.maximum:g}")
        elif not isinstance(value, str):
            value = "" if value is None else str(value)
        if self.choices is not None and value not in self.choices:
            raise ExtensionError(f"{self.name}: {value!r} is not one of {', '.join(map(str, self.choices))}")
        return value

    def describe(self) -> dict[str, Any]:
        """A1111's ScriptArg shape (for /sdapi/v1/script-info), plus our name."""
        return {"label": self.title, "name": self.name, "value": self.default, "minimum": self.minimum,
                "maximum": self.maximum, "step": self.step, "choices": list(self.choices) if self.choices else None}


def check_params(params: Iterable[Param], given: Any, where: str) -> dict[str, Any]:
    """Map positional (A1111) or named args onto params; missing ones take defaults.

    Raises ExtensionError naming ``where`` and the bad argument.
    """
    params = list(params)
    if given is None:
        given = {}
    if isinstance(given, (list, tuple)):
        if len(given) > len(params):
            raise ExtensionError(f"{where}: {len(given)} args given, it takes {len(params)} "
                                 f"({', '.join(p.name for p in params)})")
        given = {p.name: v for p, v in zip(params, given)}
    if not isinstance(given, dict):
        raise ExtensionError(f"{where}: args must be a list (A1111's positional form) or an object of names")
    names = {p.name for p in params}
    unknown = [k for k in given if k not in names]
    if unknown:
        raise ExtensionError(f"{where}: unknown arg(s) {', '.join(map(str, unknown))}; "
                             f"it takes {', '.join(p.name for p in params) or 'none'}")
    out = {}
    for p in params:
        try:
            out[p.name] = p.check(given[p.name]) if p.name in given else p.default
        except ExtensionError as exc:
            raise ExtensionError(f"{where}: {exc}") from None
    return out


@dataclass(frozen=True)
class ModelView:
    """What hooks may know about the loaded checkpoint (read-only; no pipeline handle)."""

    title: str
    name: str
    arch: str
    hash: str | None
    filename: str


@dataclass
class StepState:
    """One finished sampling step: return new latents from a step hook to replace them."""

    step: int  # 1-based
    total: int
    timestep: Any
    latents: Any


@dataclass
class ImageInfo:
    """Which image of the job a per-image hook sees."""

    index: int
    seed: int
    prompt: str
    negative_prompt: str
    infotext: str


@dataclass
class JobContext:
    """What every generation hook receives first: this job, this extension's params, a way to warn."""

    job_id: str
    extension: str
    request: Any  # a copy of the GenerationRequest (read it; change prompts/seeds through the plan)
    params: dict[str, Any]  # this extension's panel values for this job (defaults when the client sent none)
    model: ModelView | None
    settings: Callable[[str], Any]  # settings lookup (override_settings of the request included)
    log: logging.Logger
    warnings: list[str] = field(default_factory=list)
    is_interrupted: Callable[[], bool] = lambda: False
    panels: dict[str, dict[str, Any]] = field(default_factory=dict)  # panel title -> values, per panel


    def warn(self, message: str) -> None:
        """Show a warning with the job's result (UI and the API's info.warnings)."""
        self.warnings.append(f"{self.extension}: {message}")


@dataclass
class Panel:
    """An always-on generation panel: named params shown under the generation controls."""

    extension: str
    title: str
    params: list[Param]
    tabs: tuple[str, ...] = ("txt2img", "img2img")
    enabled_param: str | None = None  # a bool param that says whether the panel is on for a job
    build: Callable | None = None  # compat scripts build their own Gradio controls (webui/ui calls this)

    @property
    def api_name(self) -> str:
        return self.title.lower()

    def active(self, values: dict[str, Any]) -> bool:
        if self.enabled_param is None:
            return True
        return bool(values.get(self.enabled_param))


@dataclass
class Script:
    """A selectable script (the "Script" dropdown): it runs the whole job through ScriptContext.process."""

    extension: str
    title: str
    params: list[Param]
    run: Callable  # run(ctx: ScriptContext, request, params: dict) -> GenerationResult
    tabs: tuple[str, ...] = ("txt2img", "img2img")

    @property
    def api_name(self) -> str:
        return self.title.lower()


@dataclass
class Tab:
    extension: str
    title: str
    build: Callable  # build(ui_ctx) inside a gr.Tab that webui/ui makes
    elem_id: str


@dataclass
class SettingSpec:
    extension: str
    key: str
    default: Any
    label: str
    section: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None


class ExtensionAPI:
    """Handed to ``register(api)``; records what one extension adds. Nothing here is global."""

    version = API_VERSION

    def __init__(self, name: str, path: Path, app: Any, log: logging.Logger | None = None):
        self.name = name
        self.path = Path(path)
        self.app = app  # an AppView: settings, paths, models (read), submit(request)
        self.log = log or logging.getLogger(f"ext.{name}")
        self.hooks: dict[str, list[Callable]] = {h: [] for h in HOOKS}
        self.settings: list[SettingSpec] = []
        self.panels: list[Panel] = []
        self.scripts: list[Script] = []
        self.tabs: list[Tab] = []
        self.javascript: list[Path] = []
        self.css: list[Path] = []
        self._router = None

    # -- declarations ---------------------------------------------------------------------------
    def setting(self, key: str, default: Any, label: str, section: str | None = None, *, minimum=None,
                maximum=None, choices=None) -> str:
        """Declare a setting (shown in Settings under ``section``, saved in config.json); returns its key."""
        if not isinstance(key, str) or not key.replace("_", "").isalnum():
            raise ExtensionError(f"setting key {key!r}: use letters, digits and _ only")
        self.settings.append(SettingSpec(self.name, key, default, label, section or f"Extension: {self.name}",
                                         minimum, maximum, tuple(choices) if choices else None))
        return key

    def panel(self, title: str, params: Iterable[Param], *, tabs=("txt2img", "img2img"),
              enabled_param: str | None = None) -> Panel:
        """An always-on panel whose params become UI controls, API args and infotext keys."""
        panel = Panel(self.name, title, list(params), tuple(tabs), enabled_param)
        if enabled_param is not None and enabled_param not in {p.name for p in panel.params}:
            raise ExtensionError(f"panel {title!r}: enabled_param {enabled_param!r} is not one of its params")
        self.panels.append(panel)
        return panel

    def script(self, title: str, params: Iterable[Param], run: Callable, *, tabs=("txt2img", "img2img")) -> Script:
        """A selectable script; ``run(ctx, request, params)`` returns a GenerationResult."""
        script = Script(self.name, title, list(params), run, tuple(tabs))
        self.scripts.append(script)
        return script

    def tab(self, title: str, build: Callable, elem_id: str | None = None) -> None:
        """A top-level tab; ``build(ui)`` runs inside the tab's Gradio context (webui/ui makes it)."""
        self.tabs.append(Tab(self.name, title, build, elem_id or f"tab_{self.name.replace('-', '_')}"))

    @property
    def router(self):
        """A FastAPI APIRouter mounted at /ext/<name>/ once the app starts."""
        if self._router is None:
            from fastapi import APIRouter

            self._router = APIRouter()
        return self._router

    def add_javascript(self, path: str | Path) -> None:
        self.javascript.append(self.path / path)

    def add_css(self, path: str | Path) -> None:
        self.css.append(self.path / path)

    # -- hooks ----------------------------------------------------------------------------------
    def on(self, hook: str, fn: Callable) -> Callable:
        """Register ``fn`` for ``hook`` (one of HOOKS); returns fn so it works as a decorator too."""
        if hook not in self.hooks:
            raise ExtensionError(f"unknown hook {hook!r}; hooks are {', '.join(HOOKS)}")
        if not callable(fn):
            raise ExtensionError(f"hook {hook!r}: {fn!r} is not callable")
        self.hooks[hook].append(fn)
        return fn

    def on_plan(self, fn):
        """fn(job: JobContext, plan: GenerationPlan): change per-image prompts/seeds before sampling."""
        return self.on("plan", fn)

    def on_patch(self, fn):
        """fn(job, pipe) -> context manager entered around the pipeline call and always exited."""
        return self.on("patch", fn)

    def on_step(self, fn):
        """fn(job, state: StepState) -> new latents or None, after every sampling step."""
        return self.on("step", fn)

    def on_image(self, fn):
        """fn(job, image, info: ImageInfo) -> a replacement PIL image or None, per finished image."""
        return self.on("image", fn)

    def on_before_save(self, fn):
        """fn(job, params: SaveParams): change the image, name or infotext before it is written."""
        return self.on("before_save", fn)

    def on_after_save(self, fn):
        """fn(job, path): after a PNG is written."""
        return self.on("after_save", fn)

    def on_after_job(self, fn):
        """fn(job, result: GenerationResult): once per job, after saving."""
        return self.on("after_job", fn)

    def on_infotext_pasted(self, fn):
        """fn(text: str, params: dict): rewrite parsed PNG-info params before they fill the UI."""
        return self.on("infotext_pasted", fn)

    def on_model_loaded(self, fn):
        """fn(model: ModelView): after a checkpoint becomes active (and once for the startup model)."""
        return self.on("model_loaded", fn)

    def on_app_started(self, fn):
        """fn(app: AppView): once, after the UI and routes are up."""
        return self.on("app_started", fn)
