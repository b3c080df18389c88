"""Extension assets: localization packs, JavaScript, CSS, and the routes that serve them.

Localization packs use A1111's format (``{"English UI string": "translation", "rtl"?: true}``)
and places (``<data dir>/localizations/*.json`` and ``<extension>/localizations/*.json``);
files with the same name are merged, later ones winning per key, as A1111 does. The
``localization`` setting picks one ("None" for English).

The page's head script (webui/ui/static/extensions.js) fetches ``/webui-ext/page.json`` on
load: the chosen pack, the settings as A1111's ``opts``, and the extension JS/CSS URLs, so a
change of language takes effect on reload without a restart. ``/file=<path>`` (A1111's static
route, which extension JS uses) serves only files under extension folders, localizations and
``<data dir>/tmp``; anything else is a 404.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

from webui.settings import Option

log = logging.getLogger(__name__)
PAGE_ROUTE = "/webui-ext/page.json"
NO_LOCALIZATION = "None"


class Assets:
    """The asset view of one ExtensionHost."""

    def __init__(self, host):
        self.host = host

    # -- which files ----------------------------------------------------------------------------
    def _asset_records(self):
        return [r for r in self.host.records if r.state == "loaded"]

    @property
    def localizations_dir(self) -> Path:
        return self.host.data_dir / "localizations"

    def localization_files(self) -> dict[str, list[Path]]:
        """Pack name -> its files, loose ones first, then extensions in load order."""
        packs: dict[str, list[Path]] = {}
        folders = [self.localizations_dir] + [r.path / "localizations" for r in self._asset_records()]
        for folder in folders:
            if folder.is_dir():
                for file in sorted(folder.glob("*.json")):
                    packs.setdefault(file.stem, []).append(file)
        return packs

    def localization(self, name: str | None) -> dict[str, Any]:
        """The merged pack ``name`` ({} for None or an unknown name); a broken file is skipped with a log line."""
        merged: dict[str, Any] = {}
        for file in self.localization_files().get(name or "", []):
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("localization %s: unreadable (%s); skipped", file, exc)
                continue
            if isinstance(data, dict):
                merged.update(data)
        return merged

    def register_localization_setting(self) -> None:
        """A1111's ``localization`` option (Settings -> User interface), choices from the packs found now."""
        choices = (NO_LOCALIZATION, *sorted(self.localization_files()))
        settings = self.host.settings
        current = settings.values.pop("localization", None) if "localization" in settings.options else None
        settings.options.pop("localization", None)
        if current is not None:
            settings.extra["localization"] = current  # re-checked against the new choices below
        settings.add_option(Option("localization", NO_LOCALIZATION, "Localization", "User interface",
                                   choices=choices))

    def _files(self, attr: str) -> list[Path]:
        files: list[Path] = []
        for record in self._asset_records():
            api = self.host.apis.get(record.name)
            from_folder = (record.path / "javascript") if attr == "javascript" else record.path
            if attr == "javascript" and from_folder.is_dir():
                files += sorted(p for p in from_folder.iterdir() if p.suffix in (".js", ".mjs"))
            elif attr == "css" and (record.path / "style.css").is_file():
                files.append(record.path / "style.css")
            if api is not None:
                files += [p for p in getattr(api, attr) if p.is_file() and p not in files]
        return files

    def javascript_files(self) -> list[Path]:
        return self._files("javascript")

    def css_files(self) -> list[Path]:
        return self._files("css")

    # -- serving --------------------------------------------------------------------------------
    def allowed_roots(self) -> list[Path]:
        return [self.host.builtin_dir.resolve(), self.host.user_dir.resolve(), self.localizations_dir.resolve(),
                (self.host.data_dir / "tmp").resolve()]

    def url_for(self, path: Path) -> str:
        stamp = int(path.stat().st_mtime) if path.exists() else 0
        return f"file={path.resolve().as_posix()}?{stamp}"

    def resolve_file(self, requested: str) -> Path | None:
        """The file a ``file=`` request may read, or None (outside the allowed folders, hidden, missing)."""
        requested = requested.split("?", 1)[0]
        candidates = [Path(requested)] if Path(requested).is_absolute() else \
            [self.host.data_dir / requested, self.host.builtin_dir.parent / requested]
        for candidate in candidates:
            try:
                path = candidate.resolve()
            except (OSError, RuntimeError):
                continue
            for root in self.allowed_roots():
                if path.is_relative_to(root) and path.is_file():
                    inside = path.relative_to(root).parts
                    if any(part.startswith(".") for part in inside):
                        return None  # .git/config may hold a token in the remote URL
                    return path
        return None

    def page_payload(self) -> dict[str, Any]:
        name = self.host.settings.get("localization") if "localization" in self.host.settings.options else None
        pack = self.localization(name) if name and name != NO_LOCALIZATION else {}
        opts = {k: v for k, v in self.host.settings.as_dict().items() if _jsonable(v)}
        return {"localization": pack, "localization_name": name or NO_LOCALIZATION,
                "opts": opts, "javascript": [self.url_for(p) for p in self.javascript_files()],
                "css": [self.url_for(p) for p in self.css_files()], "safe_mode": self.host.safe_mode}

    def mount(self, app) -> None:
        """Add the page payload and ``file=`` routes to the app (guarded like the UI when it has a login)."""
        def guard(request: Request) -> None:
            if getattr(app, "auth", None) is None:
                return
            # Gradio's own login cookie: the same check its file routes make.
            token = request.cookies.get(f"access-token-{getattr(app, 'cookie_id', '')}") or \
                request.cookies.get("access-token")
            if token is None or token not in getattr(app, "tokens", {}):
                raise HTTPException(status_code=401, detail={"error": "Not authenticated"})

        @app.get(PAGE_ROUTE, include_in_schema=False)
        def page(request: Request):
            guard(request)
            return JSONResponse(self.page_payload(), headers={"Cache-Control": "no-store"})

        @app.get("/file={path:path}", include_in_schema=False)
        def static_file(path: str, request: Request):
            guard(request)
            found = self.resolve_file(path)
            if found is None:
                return JSONResponse({"error": "Not found", "detail": f"{path} is not an extension or "
                                     "localization file"}, status_code=404)
            return FileResponse(found)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
