"""HTTP Basic auth for the API (`--api-auth user:pass[,user:pass]`), as A1111 does it."""
from __future__ import annotations

import base64
import binascii
import secrets
from typing import Callable, Sequence

from fastapi import Request

from webui.api.errors import ApiError

REALM = "SD Studio API"


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, [{"field": "authorization", "message": message}],
                    headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})


def credentials_match(user: str, password: str, accounts: Sequence[tuple[str, str]]) -> bool:
    """Constant-time check against every account, so timing tells nothing about which part was wrong."""
    found = False
    for known_user, known_password in accounts:
        user_ok = secrets.compare_digest(user.encode("utf-8"), known_user.encode("utf-8"))
        password_ok = secrets.compare_digest(password.encode("utf-8"), known_password.encode("utf-8"))
        found |= user_ok and password_ok
    return found


def basic_auth_guard(accounts: Sequence[tuple[str, str]] | None) -> Callable[[Request], None] | None:
    """A guard for ApiRoute that demands one of `accounts`; None (no guard) when there are none."""
    if not accounts:
        return None
    accounts = [(str(u), str(p)) for u, p in accounts]

    def guard(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            raise _unauthorized("authentication required: send HTTP Basic credentials (--api-auth is set)")
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise _unauthorized("malformed Basic credentials") from None
        if not sep or not credentials_match(user, password, accounts):
            raise _unauthorized("incorrect username or password")

    return guard
