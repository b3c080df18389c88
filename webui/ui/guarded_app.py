"""Gradio's FastAPI app with the security gate (webui/security/gate.py) in front of everything.

`demo.launch(_app=guarded_app(policy))`: Gradio adds its routes and middleware to this app as
to its own; when Starlette builds the middleware stack, the gate goes outermost and Gradio's
CORS middleware is left out (it echoes any Origin, with credentials, whenever the Host is not
localhost; the gate decides CORS instead). Gradio's login cookies are read here, so the gate
can accept a logged-in browser and give Basic-authenticated clients a session Gradio honours.
"""
from __future__ import annotations

import secrets
import threading
from http.cookies import CookieError, SimpleCookie

from gradio.route_utils import CustomCORSMiddleware
from gradio.routes import App, ORJSONResponse

from webui.security.gate import Gate
from webui.security.policy import SecurityPolicy


class _Sessions:
    """Gradio's login tokens (app.tokens), seen from the gate."""

    def __init__(self, app: App):
        self.app = app
        self._tokens: dict[str, str] = {}  # user -> the session token minted for Basic clients
        self._lock = threading.Lock()

    def user_for(self, cookie_header: str) -> str | None:
        if not cookie_header:
            return None
        try:
            cookies = SimpleCookie(cookie_header)
        except CookieError:
            return None
        for name in (f"access-token-{self.app.cookie_id}", f"access-token-unsecure-{self.app.cookie_id}"):
            if name in cookies and cookies[name].value in self.app.tokens:
                return self.app.tokens[cookies[name].value]
        return None

    def cookie_for(self, user: str) -> tuple[str, str]:
        with self._lock:
            token = self._tokens.get(user)
            if token is None or self.app.tokens.get(token) != user:  # first time, or logged out since
                token = secrets.token_urlsafe(16)
                self._tokens[user] = token
                self.app.tokens[token] = user
        return f"access-token-unsecure-{self.app.cookie_id}", token


class GuardedApp(App):
    def __init__(self, policy: SecurityPolicy, **kwargs):
        super().__init__(**kwargs)
        self.security_policy = policy

    def build_middleware_stack(self):
        self.user_middleware = [m for m in self.user_middleware if m.cls is not CustomCORSMiddleware]
        return Gate(super().build_middleware_stack(), self.security_policy, _Sessions(self))


def guarded_app(policy: SecurityPolicy) -> GuardedApp:
    """An app for `launch(_app=...)`, made as Gradio makes its own (JSON via orjson)."""
    return GuardedApp(policy, default_response_class=ORJSONResponse)
