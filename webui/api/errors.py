"""JSON error bodies for the /sdapi routes, scoped to our routes only.

Gradio's app builds its middleware stack (and so its exception handlers) at launch,
before `mount_api` runs, and its handlers serve Gradio's own routes. So instead of
app-level exception handlers, our routes use `ApiRoute`, which turns our errors,
FastAPI's request validation errors and unexpected exceptions into one body shape::

    {"error": "<one line>", "detail": [{"field": "steps", "message": "..."}, ...]}
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

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
