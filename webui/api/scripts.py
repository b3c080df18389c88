"""A1111's script and extension routes, and the script fields of txt2img / img2img bodies.

``GET /sdapi/v1/scripts``, ``/script-info`` and ``/extensions`` in A1111's shapes, from the app's
ExtensionHost. ``script_fields`` checks ``script_name`` + ``script_args`` and ``alwayson_scripts``
(A1111's positional ``{"args": [...]}`` or our named ``{"args": {"name": value}}``) of a body.
There is no install route: installing stays in the UI, behind the --listen lock.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from webui.extensions.api import ExtensionError
from webui.extensions.install import commit_date
from webui.generation.request import FieldError



class ScriptsList(BaseModel):
    txt2img: list[str] = Field(default_factory=list)
    img2img: list[str] = Field(default_factory=list)


class ScriptArg(BaseModel):
    label: str | None = None
    name: str | None = Field(None, description="the arg's name for the named form (ours, not A1111's)")
    value: Any = None
    minimum: Any = None
    maximum: Any = None
    step: Any = None
    choices: list[Any] | None = None


class ScriptInfo(BaseModel):
    name: str
    is_alwayson: bool
    is_img2img: bool
    args: list[ScriptArg]


class ExtensionItem(BaseModel):
    name: str
    remote: str
    branch: str
    commit_hash: str
    version: str
    commit_date: int | None = None
    enabled: bool


def script_fields(host, script_name: Any, script_args: Any, alwayson: Any, tab: str = "txt2img") \
        -> tuple[dict[str, Any], list[FieldError]]:
    """Checked request fields for the script parts of a body, or FieldErrors naming what is wrong."""
    fields: dict[str, Any] = {"script_name": None, "script_args": {}, "alwayson_scripts": {}}
    errors: list[FieldError] = []
    if host is None:
        if (script_name and str(script_name).lower() != "none") or alwayson:
            errors.append(FieldError("script_name" if script_name else "alwayson_scripts",
                                     "extensions are not loaded in this app"))
        return fields, errors
    try:
        script, params = host.script_params(script_name, script_args)
        if script is not None:
            if tab not in script.tabs:
                raise ExtensionError(f"script_name: {script.title!r} is not available on {tab}")
            fields.update(script_name=script.title, script_args=params)
    except ExtensionError as exc:
        errors.append(FieldError("script_args" if str(exc).startswith("script_args") else "script_name", str(exc)))
    if alwayson is not None and not isinstance(alwayson, dict):
        errors.append(FieldError("alwayson_scripts", "must be an object of script names to {\"args\": ...}"))
        return fields, errors
    try:
        values = host.panel_values(alwayson or {}, tab)
        fields["alwayson_scripts"] = {title: {"args": v} for title, v in values.items()}
    except ExtensionError as exc:
        errors.append(FieldError("alwayson_scripts", str(exc)))
    return fields, errors


def build_scripts_router(ctx) -> APIRouter:
    """The routes for one AppContext (closures over ctx: no module state)."""
    from webui.api.routes import api_router  # routes imports this module

    router = api_router(ctx, tags=["sdapi"])
    host = ctx.extensions

    @router.get("/scripts", response_model=ScriptsList)
    def scripts():
        """Script names (lower-cased titles) per tab: selectable scripts and always-on ones."""
        if host is None:
            return ScriptsList()
        return ScriptsList(**{tab: [x.api_name for x in host.scripts_for(tab) + host.panels_for(tab)]
                              for tab in ("txt2img", "img2img")})

    @router.get("/script-info", response_model=list[ScriptInfo])
    def script_info():
        """Every script's args in order (positional form) with names (named form)."""
        out = []
        for tab in ("txt2img", "img2img") if host is not None else ():
            items = [(s, False) for s in host.scripts_for(tab)] + [(p, True) for p in host.panels_for(tab)]
            for item, always in items:
                out.append(ScriptInfo(name=item.api_name, is_alwayson=always, is_img2img=tab == "img2img",
                                      args=[ScriptArg(**p.describe()) for p in item.params]))
        return out

    @router.get("/extensions", response_model=list[ExtensionItem])
    def extensions():
        """Extensions installed from git (A1111 lists only those), read-only."""
        if host is None:
            return []
        disabled = set(host.settings.get("disabled_extensions"))
        return [ExtensionItem(name=r.name, remote=r.git.remote, branch=r.git.branch, commit_hash=r.git.commit,
                              version=r.git.short, commit_date=commit_date(r.path),
                              enabled=r.name not in disabled and r.path.name not in disabled)
                for r in host.records if r.git.remote]

    return router
