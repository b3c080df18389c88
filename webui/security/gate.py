"""The ASGI gate in front of the whole server: Gradio's pages and endpoints, MCP and /sdapi.

Per request, in this order (each refusal is a JSON body `{"error": ..., "detail": []}`):
1. Host must be one this server is reached by (400), so DNS rebinding cannot reach it.
2. An Origin from another site is refused (403) unless listed with --cors-allow-origins;
   browsers send Origin on every cross-site fetch, API clients send none and pass.
3. Body size: Content-Length (or the streamed bytes) over the limit -> 413.
4. With any auth flag: a logged-in UI session or HTTP Basic credentials, except for what
   the login page itself needs (401; 429 while a client is locked out after failures).
5. Every response gets nosniff and a same-origin framing policy; CORS headers only for the
   listed origins (Gradio's own CORS middleware, which echoes any Origin when Host is not
   localhost, is removed by `webui/ui/guarded_app.py`).
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Awaitable, Callable, NamedTuple

from webui.api.auth import credentials_match
from webui.security.policy import SecurityPolicy, same_origin

log = logging.getLogger(__name__)

Scope = dict
ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]

SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"SAMEORIGIN"),
                    (b"content-security-policy", b"frame-ancestors 'self'"),
                    (b"referrer-policy", b"same-origin")]
# What the login page needs before anyone has logged in.
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
PUBLIC_PATHS = {"/", "/theme.css", "/favicon.ico", "/manifest.json", "/robots.txt",
                "/gradio_api/startup-events"}  # Gradio calls this itself at launch; idempotent after
LOGIN_PATHS = {"/login", "/login/"}
UPLOAD_PATHS = {"/gradio_api/upload", "/upload"}
# Where a 401 asks for Basic credentials (API clients, /docs in a browser); elsewhere the UI logs in.
BASIC_PREFIXES = ("/sdapi/", "/docs", "/openapi.json", "/gradio_api/mcp")
# Basic only, as A1111's API: a UI login cookie does not open these.
API_ONLY_PREFIXES = ("/sdapi/", "/docs", "/openapi.json")


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name; repeated ones joined (cookies with '; ', others with ', ')."""
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name, text = key.decode("latin-1").lower(), value.decode("latin-1")
        out[name] = f"{out[name]}{'; ' if name == 'cookie' else ', '}{text}" if name in out else text
    return out


class Identity(NamedTuple):
    user: str  # "" when no login is needed (no auth flag, or a public path)
    by_basic: bool = False


def parse_basic(header: str | None) -> tuple[str, str] | None | bool:
    """(user, password) from an Authorization header; None when absent; False when malformed."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return False
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    return (user, password) if sep else False


async def _send_json(send, status: int, error: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": error, "detail": []}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS, *headers]})
    await send({"type": "http.response.body", "body": body})


class Gate:
    """ASGI middleware applying a SecurityPolicy; `sessions` answers Gradio's login cookies.

    `sessions` is an object with `user_for(cookie_header: str) -> str | None` (a valid UI login) and
    `cookie_for(user) -> (name, value)` (a session for a Basic-authenticated client, so Gradio's
    own login checks let it through); see `webui/ui/guarded_app.py`.
    """

    def __init__(self, app: ASGIApp, policy: SecurityPolicy, sessions=None):
        self.app = app
        self.policy = policy
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await _send_json(send, *refusal)
            return
        origin = headers.get("origin")
        cross = origin is not None and not same_origin(origin, headers.get("host"))
        if cross and scope["type"] == "http" and scope["method"] == "OPTIONS" \
                and "access-control-request-method" in headers:
            await self._preflight(send, origin, headers)
            return
        auth = self._authenticate(scope, headers)
        if scope["type"] == "websocket":
            if not isinstance(auth, Identity):
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        receive = await self._limit_body(scope, headers, receive, send)
        if receive is None:
            return
        if not isinstance(auth, Identity):
            await _send_json(send, *auth)
            return
        if auth.by_basic and self.sessions is not None and not scope["path"].startswith(API_ONLY_PREFIXES):
            scope = self._with_session(scope, auth.user)  # so Gradio's own login checks let it through
        send = self._decorate(send, origin if cross else None)
        if scope["path"] in LOGIN_PATHS and scope["method"] == "POST":
            send = self._watch_login(send, client_of(scope))
        await self.app(scope, receive, send)

    # --- checks ---------------------------------------------------------------------------------

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple | None:
        host = headers.get("host")
        if not self.policy.host_allowed(host):
            log.warning("refused %s %s: Host %r is not a name this server answers to", scope.get("method", "WS"),
                        scope["path"], host)
            return (400, f"Host {host[:100]!r} is not served here; if it is yours, start with "
                         "--allowed-hosts NAME (docs/security.md)")
        origin = headers.get("origin")
        if origin is not None and not same_origin(origin, host) and not self.policy.cross_origin_allowed(origin):
            log.warning("refused %s %s from Origin %r (another site)", scope.get("method", "WS"), scope["path"],
                        origin[:100])
            return (403, f"requests from another site ({origin[:100]}) are refused; to allow one, start with "
                         "--cors-allow-origins ORIGIN (docs/security.md)")
        return None

    def _authenticate(self, scope: Scope, headers: dict[str, str]) -> Identity | tuple:
        """Who is calling, or a refusal (status, message, headers)."""
        policy = self.policy
        path = scope["path"]
        if not policy.auth_required:
            return Identity("")
        if scope.get("method") in ("GET", "HEAD") and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)):
            return Identity("")
        client = client_of(scope)
        if path in LOGIN_PATHS:  # Gradio checks the form; the gate only refuses clients locked out
            return self._locked(client) or Identity("")
        api_only = path.startswith(API_ONLY_PREFIXES)
        if not api_only and self.sessions is not None:
            user = self.sessions.user_for(headers.get("cookie", ""))
            if user:
                return Identity(user)
        basic = parse_basic(headers.get("authorization"))
        challenge = [(b"www-authenticate", b'Basic realm="SD Studio"')] if path.startswith(BASIC_PREFIXES) else []
        if basic is None:
            return (401, "authentication required: log in, or send HTTP Basic credentials", challenge)
        locked = self._locked(client)
        if locked:
            return locked
        accounts = policy.api_accounts if api_only else policy.api_accounts + policy.ui_accounts
        if basic is False or not credentials_match(basic[0], basic[1], accounts):
            policy.throttle.failed(client, basic[0] if basic else "")
            return (401, "incorrect username or password" if basic else "malformed Basic credentials", challenge)
        policy.throttle.succeeded(client)
        return Identity(basic[0], by_basic=True)

    def _locked(self, client: str) -> tuple | None:
        wait = self.policy.throttle.retry_after(client)
        if not wait:
            return None
        return (429, f"too many failed logins from {client}; try again in {wait:.0f} s",
                [(b"retry-after", str(int(wait) + 1).encode())])

    async def _limit_body(self, scope: Scope, headers: dict[str, str], receive, send):
        """receive, or a replaying receive for streamed bodies; None after answering 413."""
        limit = self.policy.max_upload_bytes if scope["path"] in UPLOAD_PATHS else self.policy.max_body_bytes
        flag = "--max-upload-size" if scope["path"] in UPLOAD_PATHS else "--max-body-size"
        message = f"request body larger than {limit / (1 << 20):g} MB; the owner can raise it with {flag} (in MB)"
        length = headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                await _send_json(send, 400, "malformed Content-Length")
                return None
            if too_big:
                await _send_json(send, 413, message)
                return None
            return receive
        if "chunked" not in headers.get("transfer-encoding", "").lower():
            return receive
        # No length given: read it here, up to the limit, then replay it to the app.
        chunks, size = [], 0
        while True:
            message_in = await receive()
            if message_in["type"] != "http.request":
                return receive
            size += len(message_in.get("body", b""))
            if size > limit:
                await _send_json(send, 413, message)
                return None
            chunks.append(message_in.get("body", b""))
            if not message_in.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    # --- responses ------------------------------------------------------------------------------

    async def _preflight(self, send, origin: str, headers: dict[str, str]) -> None:
        allow = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin"),
                 (b"access-control-allow-credentials", b"true"),
                 (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
                 (b"access-control-max-age", b"600")]
        if "access-control-request-headers" in headers:
            allow.append((b"access-control-allow-headers",
                          headers["access-control-request-headers"].encode("latin-1")))
        await send({"type": "http.response.start", "status": 200, "headers": [*SECURITY_HEADERS, *allow]})
        await send({"type": "http.response.body", "body": b""})

    def _decorate(self, send, allowed_origin: str | None):
        async def decorated(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if allowed_origin:
                    extra += [(b"access-control-allow-origin", allowed_origin.encode("latin-1")),
                              (b"access-control-allow-credentials", b"true"), (b"vary", b"Origin")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return decorated

    def _watch_login(self, send, client: str):
        """Count Gradio's /login answers: 200 clears the client's record, anything else is a failure."""
        async def watched(message):
            if message["type"] == "http.response.start":
                if message["status"] == 200:
                    self.policy.throttle.succeeded(client)
                elif message["status"] in (400, 401):
                    self.policy.throttle.failed(client, "(login form)")
            await send(message)

        return watched

    def _with_session(self, scope: Scope, user: str) -> Scope:
        name, value = self.sessions.cookie_for(user)
        cookie = f"{name}={value}".encode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"cookie"]
        existing = [v for k, v in scope["headers"] if k.lower() == b"cookie"]
        headers.append((b"cookie", b"; ".join(existing + [cookie])))
        return {**scope, "headers": headers}
