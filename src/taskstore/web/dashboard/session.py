"""The dashboard's login and CSRF protection: the API's own tokens, carried by a cookie.

Logging in checks a token like the API does and stores it in an ``HttpOnly``, ``SameSite=Strict`` cookie, so
page scripts cannot read it and other sites' requests do not carry it. Every action (a POST) must also carry
the CSRF value: a random cookie readable by the page, echoed back in a form field or the ``X-CSRF-Token``
header (double submit). Another site can neither read that cookie nor set the header, so it cannot forge an
action, even against a loopback server that needs no token. Nothing is kept on the server: any number of
server processes accept the same cookies.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from ..auth import TOKEN_COOKIE

CSRF_COOKIE = "taskstore_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_MAX_AGE = 12 * 3600


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def csrf_value(request: Request) -> str:
    """This browser's CSRF value (given by ``csrf_for`` and ``set_csrf`` on every page)."""
    value = request.cookies.get(CSRF_COOKIE, "")
    return value if _well_formed(value) else ""


def _well_formed(value: str) -> bool:
    return 20 <= len(value) <= 100 and value.isascii() and value.replace("-", "").replace("_", "").isalnum()


def csrf_for(request: Request) -> tuple[str, bool]:
    """The browser's CSRF value, or a new one; and whether it is new (``set_csrf`` must then send it)."""
    value = csrf_value(request)
    if value:
        return value, False
    return secrets.token_urlsafe(24), True


def set_csrf(request: Request, response: Response, value: str) -> None:
    response.set_cookie(CSRF_COOKIE, value, samesite="strict", secure=_secure(request), path="/")


def csrf_ok(request: Request, submitted: str | None) -> bool:
    expected = csrf_value(request)
    given = submitted if submitted is not None else request.headers.get(CSRF_HEADER, "")
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def login(request: Request, response: Response, secret: str) -> None:
    response.set_cookie(
        TOKEN_COOKIE, secret, httponly=True, samesite="strict", secure=_secure(request), path="/", max_age=_MAX_AGE
    )


def logout(response: Response) -> None:
    response.delete_cookie(TOKEN_COOKIE, path="/")


def cookie_token(request: Request) -> str | None:
    return request.cookies.get(TOKEN_COOKIE)
