"""``create_app``: the one ASGI app of ``taskstore serve`` (the API, its OpenAPI document, metrics, events).

The app owns its store when given a URL: it opens it on first use, on the server's event loop (a Starlette
app mounted inside another does not get its own lifespan events, so opening cannot wait for them), and
closes it at shutdown when the lifespan runs. Given a ``Store``, it uses it and leaves closing to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount

from .. import errors
from .._connect import open as open_store
from ..store import Store
from .auth import TOKEN_COOKIE, Authenticator, Role, Token, origin_is_loopback, parse_tokens, tokens_from_env
from .problems import HTTPProblem, error_response, problem_of, problem_response

DEFAULT_MAX_BODY = 10 * 1024 * 1024


class WebState:
    """What every request of one app shares: the store, the tokens and the limits."""

    def __init__(
        self,
        target: str | Store,
        tokens: Sequence[Token],
        *,
        max_body: int,
        store_options: dict[str, Any],
    ) -> None:
        self._target = target
        self._store: Store | None = target if isinstance(target, Store) else None
        self._owned: Store | None = None
        self._lock: asyncio.Lock | None = None
        self._store_options = store_options
        self.auth = Authenticator(tokens)
        self.max_body = max_body
        # Per-process extras hooked in by other modules (the metrics registry, the events hub).
        self.extras: dict[str, Any] = {}
        self._hooks: list[Callable[[Store], Callable[[], None] | None]] = []
        self._undo: list[Callable[[], None]] = []

    def on_store(self, hook: Callable[[Store], Callable[[], None] | None]) -> None:
        """Call ``hook(store)`` once the store is open (at once if it is); what it returns is called at close."""
        self._hooks.append(hook)
        if self._store is not None:
            self._run_hook(hook, self._store)

    def _run_hook(self, hook: Callable[[Store], Callable[[], None] | None], store: Store) -> None:
        undo = hook(store)
        if undo is not None:
            self._undo.append(undo)

    async def store(self) -> Store:
        if self._store is not None:
            return self._store
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._store is None:
                assert isinstance(self._target, str)
                store = open_store(self._target, **self._store_options)
                await store.connect()
                self._owned = self._store = store
                for hook in self._hooks:
                    self._run_hook(hook, store)
        return self._store

    async def close(self) -> None:
        undo, self._undo = self._undo, []
        for step in undo:
            step()
        owned, self._owned = self._owned, None
        if owned is not None:
            self._store = None
            await owned.close()

    def authenticate(self, request: Request, needed: Role | None) -> Role:
        """The caller's role; 401 without a valid token, 403 when the role is too low for ``needed``."""
        client = request.client
        peer = client.host if client else None
        header = request.headers.get("authorization")
        role = self.auth.role_of(header, peer)
        if role is None and header is None and request.method == "GET" and not self.auth.open:
            # The dashboard's login cookie, for reads only (the browser's EventSource cannot send a header);
            # a write never rides on a cookie, so no other site can make a logged-in browser change anything.
            cookie = request.cookies.get(TOKEN_COOKIE)
            role = None if cookie is None else self.auth.role_of_secret(cookie)
        if self.auth.open and role is not None and not origin_is_loopback(request.headers.get("origin")):
            # With no token, trust rests on the peer address, and a web page the operator opens could make the
            # browser send requests from loopback (a form POST needs no CORS preflight). Browsers name the
            # page's origin on such requests; a page not served from loopback is refused.
            raise HTTPProblem(403, "Forbidden", "with no API token configured only pages served from loopback may call")
        if needed is None:
            return role or Role.READ
        if role is None:
            if self.auth.open:
                raise HTTPProblem(401, "Unauthorized", "no API token is configured: only loopback clients are served")
            raise HTTPProblem(401, "Unauthorized", "a valid bearer token is required")
        if role < needed:
            raise HTTPProblem(403, "Forbidden", f"this needs the {needed.label} role; the token has {role.label}")
        return role


def create_app(
    url_or_store: str | Store,
    *,
    tokens: Iterable[str | Token] | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    store_options: dict[str, Any] | None = None,
) -> Starlette:
    """The ASGI app: the JSON API under ``/api/v1``, ``/api/openapi.json``, ``/metrics``, ``/api/v1/events``.

    ``tokens`` are ``ROLE:SECRET`` strings or ``Token``s; ``None`` reads ``TASKSTORE_API_TOKENS``. With no
    token at all only loopback clients are served. ``max_body`` caps request bodies (413 past it).
    """
    if not isinstance(url_or_store, str | Store):
        raise errors.ConfigError(f"create_app takes a store URL or a Store, got {type(url_or_store).__name__}")
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1024:
        raise errors.ConfigError(f"max_body must be an int of at least 1024 bytes, got {max_body!r}")
    chosen = tokens_from_env() if tokens is None else parse_tokens(tokens)
    state = WebState(url_or_store, chosen, max_body=max_body, store_options=dict(store_options or {}))

    from . import api, dashboard, metrics, openapi

    routes: list[BaseRoute] = [
        Mount("/api/v1", routes=api.routes(state)),
        *openapi.routes(state),
        *metrics.routes(state),
        *dashboard.routes(state),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await state.close()

    async def http_problem(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(status, "HTTPError")
        doc = problem_of(HTTPProblem(status, kind, f"{detail}: {request.method} {request.url.path}"))
        # Starlette's own headers go along: a 405 must say which methods are allowed (RFC 9110 §15.5.6).
        headers = exc.headers if isinstance(exc, HTTPException) else None
        return problem_response(doc, dict(headers or {}))

    async def crash(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_problem, Exception: crash},
    )
    app.state.taskstore = state
    return app
