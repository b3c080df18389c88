"""JSON error bodies for the /sdapi routes, scoped to our routes only.

Gradio's app builds its middleware stack (and so its exception handlers) at launch,
before `mount_api` runs, and its handlers serve Gradio's own routes. So instead of
app-level exception handlers, our routes use `ApiRoute`, which turns our errors,
FastAPI's request validation errors and unexpected exceptions into one body shape::

    {"error": "<one line>", "detail": [{"field": "steps", "message": "..."}, ...]}
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Iterable

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from webui.userfiles import has_lone_surrogate, parse_json_strict

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A client-facing error: HTTP status, one-line summary, per-field details."""

    def __init__(self, status: int, error: str, detail: Iterable[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = list(detail or [])
        self.headers = headers

    @classmethod
    def field(cls, status: int, field: str, message: str) -> "ApiError":
        """An error about one field; the summary names it too."""
        return cls(status, f"{field}: {message}", [{"field": field, "message": message}])

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "detail": self.detail}, status_code=self.status,
                            headers=self.headers)


def _field_name(loc: Iterable[Any]) -> str:
    """('body', 'styles', 0) -> 'styles[0]'; a bare ('body',) is the whole body."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        kind, parts = parts[0], parts[1:]
        if not parts:
            return kind
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def validation_detail(exc: RequestValidationError) -> list[dict[str, str]]:
    """FastAPI/pydantic errors as [{"field", "message"}], with readable JSON-syntax errors."""
    out = []
    for err in exc.errors():
        loc = err.get("loc", ())
        if err.get("type") == "json_invalid":
            # loc is ('body', <character position>); the position helps people fix hand-written JSON.
            position = loc[1] if len(loc) > 1 else "?"
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            out.append({"field": "body", "message": f"malformed JSON at character {position}: {reason}"})
            continue
        if err.get("type") == "missing" and tuple(loc) == ("body",):
            out.append({"field": "body", "message": "a JSON object is required"})
            continue
        message = err.get("msg", "invalid value")
        if "input" in err and err.get("type") != "missing":
            shown = repr(err["input"])
            message += f", got {shown if len(shown) <= 60 else shown[:57] + '...'}"
        out.append({"field": _field_name(loc), "message": message})
    return out


def summary(detail: list[dict[str, str]]) -> str:
    return "; ".join(f"{d['field']}: {d['message']}" for d in detail) or "invalid request"


def _lone_surrogate_at(value: Any) -> str | None:
    """The JSON path of the first string holding a lone surrogate ('\\ud800' decodes to one), or None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return path or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                if has_lone_surrogate(str(key)):
                    return name.encode("utf-8", "backslashreplace").decode("ascii", "replace")
                stack.append((name, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


async def parse_body_strictly(request: Request) -> None:
    """Parse a JSON body as plain JSON before FastAPI does, so bad bodies are a 422, never a 500.

    Python's json accepts NaN, Infinity and 1e999 (which become floats no setting or size can
    hold), recurses until RecursionError on deep nesting, and decodes '\\ud800' to a string that
    cannot be encoded again. The result is cached on the request, so the body is parsed once.
    """
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    content_type = request.headers.get("content-type", "")
    if content_type and "json" not in content_type.split(";")[0].lower():
        return
    body = await request.body()
    if not body:
        return
    try:
        data = parse_json_strict(body)
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            return  # FastAPI reports syntax errors with their position (see validation_detail)
        raise ApiError.field(422, "body", str(exc)) from None
    if b"\\u" in body:  # only escapes can produce a lone surrogate from valid UTF-8
        where = _lone_surrogate_at(data)
        if where:
            raise ApiError.field(422, where, "contains invalid Unicode (a lone surrogate such as \\ud800)")
    request._json = data  # Starlette's cache: FastAPI's own request.json() returns this


class ApiRoute(APIRoute):
    """An APIRoute whose errors are JSON bodies of our shape, with an optional guard run first.

    `guard(request)` (e.g. HTTP Basic auth) runs before the body is read, so a client
    without credentials gets 401, never a validation error that reveals the schema.
    """

    guard: Callable[[Request], None] | None = None

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        guard = type(self).guard

        async def route_handler(request: Request):
            try:
                if guard is not None:
                    guard(request)
                await parse_body_strictly(request)
                return await handler(request)
            except ApiError as exc:
                return exc.response()
            except RequestValidationError as exc:
                detail = validation_detail(exc)
                return JSONResponse({"error": summary(detail), "detail": detail}, status_code=422)
            except HTTPException as exc:
                message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
                return JSONResponse({"error": message, "detail": []}, status_code=exc.status_code,
                                    headers=getattr(exc, "headers", None))
            except Exception as exc:  # a bug must still answer JSON, and the server keeps serving
                log.exception("%s %s failed", request.method, request.url.path)
                return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}", "detail": []},
                                    status_code=500)

        return route_handler


def route_class(guard: Callable[[Request], None] | None) -> type[ApiRoute]:
    """An ApiRoute subclass bound to this app's guard (a class per app: no shared state)."""
    return type("GuardedApiRoute", (ApiRoute,), {"guard": staticmethod(guard) if guard else None})
