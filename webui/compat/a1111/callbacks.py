"""A1111 callback objects (ImageSaveParams, the model stub, the app proxy) and their native hooks."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from webui.extensions.loader import NeedsPort

# Paths an extension's on_app_started routes may not take: they belong to the app or to Gradio.
RESERVED_PREFIXES = ("/sdapi", "/gradio_api", "/ext/", "/file=", "/webui-ext", "/docs", "/openapi.json", "/config",
                     "/login", "/logout", "/assets", "/theme.css", "/queue", "/upload", "/mcp")


class ImageSaveParams:
    """A1111's ImageSaveParams: change ``image``, ``filename`` or ``pnginfo`` before the file is written."""

    def __init__(self, image, p, filename: str, pnginfo: dict):
        self.image = image
        self.p = p
        self.filename = filename
        self.pnginfo = pnginfo


class CheckpointInfoStub:
    """The fields of A1111's CheckpointInfo that extensions read."""

    def __init__(self, view):
        self.title = view.title
        self.filename = view.filename
        self.name = Path(view.filename).name
        self.name_for_extra = Path(view.filename).stem
        self.model_name = view.name
        self.hash = view.hash
        self.shorthash = view.hash
        self.sha256 = None


class SdModelStub:
    """Read-only stand-in for ``shared.sd_model``: which checkpoint, which architecture, nothing inside."""

    def __init__(self, view):
        self.sd_checkpoint_info = CheckpointInfoStub(view)
        self.sd_model_checkpoint = view.filename
        self.sd_model_hash = view.hash
        self.is_sdxl = view.arch.startswith("sdxl")
        self.is_sd2 = view.arch.startswith("sd2")
        self.is_sd1 = view.arch.startswith("sd1")
        self.is_sd3 = False

    def __getattr__(self, name: str):
        raise AttributeError(f"shared.sd_model.{name}: A1111's model internals do not exist on diffusers "
                             "(needs a native port)")


def native_hook(bridge, category: str, fn: Callable) -> tuple[str, Callable]:
    """The native hook name and wrapper for an A1111 callback category."""
    from webui.compat.a1111.modules.processing import p_from_request

    ext = bridge.current_api().name

    if category == "model_loaded":
        def model_loaded(view):
            with bridge.running_as(ext):
                fn(SdModelStub(view))
        return "model_loaded", model_loaded

    if category == "before_image_saved":
        def before_save(job, params):
            folder = Path(params.folder)
            save = ImageSaveParams(params.image, p_from_request(job.request), str(folder / f"{params.stem}.png"),
                                   {"parameters": params.infotext} if params.infotext else {})
            with bridge.running_as(ext):
                fn(save)
            params.image = save.image
            params.infotext = save.pnginfo.get("parameters")
            target = Path(save.filename)
            if target.parent.resolve() != folder.resolve():
                raise ValueError(f"on_before_image_saved moved the file to {target.parent}; only the name may change")
            params.stem = target.stem
        return "before_save", before_save

    if category == "image_saved":
        def after_save(job, path):
            from PIL import Image

            with Image.open(path) as image:
                image.load()
                info = dict(image.info)
            save = ImageSaveParams(image, p_from_request(job.request), str(path),
                                   {k: v for k, v in info.items() if isinstance(v, str)})
            with bridge.running_as(ext):
                fn(save)
        return "after_save", after_save

    if category == "infotext_pasted":
        def pasted(text, params):
            with bridge.running_as(ext):
                fn(text, params)
        return "infotext_pasted", pasted

    raise NeedsPort(f"uses script_callbacks.on_{category}, which is not supported here")


class AppProxy:
    """The FastAPI app as on_app_started sees it: routes may be added, app and Gradio routes not replaced."""

    def __init__(self, app, ext: str):
        object.__setattr__(self, "_app", app)
        object.__setattr__(self, "_ext", ext)

    def _check(self, path: str) -> None:
        if path == "/" or any(path.startswith(p) for p in RESERVED_PREFIXES):
            raise PermissionError(f"extension {self._ext} may not add a route at {path} (reserved by the app)")
        if any(getattr(r, "path", None) == path for r in self._app.routes):
            raise PermissionError(f"extension {self._ext}: a route at {path} already exists")

    def _route(self, method: str, path: str, **kwargs) -> Callable:
        self._check(path)
        return getattr(self._app, method)(path, **kwargs)

    def get(self, path, **kw):
        return self._route("get", path, **kw)

    def post(self, path, **kw):
        return self._route("post", path, **kw)

    def put(self, path, **kw):
        return self._route("put", path, **kw)

    def delete(self, path, **kw):
        return self._route("delete", path, **kw)

    def api_route(self, path, **kw):
        return self._route("api_route", path, **kw)

    def add_api_route(self, path, endpoint, **kw):
        self._check(path)
        return self._app.add_api_route(path, endpoint, **kw)

    def include_router(self, router, prefix: str = "", **kw):
        for route in getattr(router, "routes", []):
            self._check(prefix + getattr(route, "path", ""))
        return self._app.include_router(router, prefix=prefix, **kw)

    def mount(self, path: str, app: Any, name: str | None = None):
        self._check(path)
        return self._app.mount(path, app, name=name)

    def __getattr__(self, name):
        return getattr(self._app, name)

    def __setattr__(self, name, value):
        raise PermissionError(f"extension {self._ext} may not change the app's {name!r}")
