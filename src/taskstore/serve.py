"""``taskstore serve``: the web app under uvicorn, refusing to expose an unauthenticated API.

The web dependencies are an extra (``taskstore[web]``); without them this says which extra to install
instead of failing on an import deep inside.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._connect import redact
from .errors import ConfigError

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

log = logging.getLogger("taskstore.web")

STARTUP_FAILURE = 3  # uvicorn.run's exit status when the server could not start
# With --workers N uvicorn starts N processes that import the app by name; they get their settings (the URL,
# the tokens, the body cap) from the parent through this variable, which only the parent sets and never logs.
_CHILD_ENV = "_TASKSTORE_SERVE_CHILD"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _web_modules() -> None:
    try:
        import msgspec  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"taskstore serve needs the web extra: pip install 'taskstore[web]' ({exc})") from None


def run_server(
    url: str,
    *,
    host: str,
    port: int,
    tokens: Sequence[str] | None,
    max_body: int,
    log_level: str = "info",
    workers: int = 1,
) -> None:
    _web_modules()
    from .web import create_app
    from .web.auth import is_loopback, parse_tokens, tokens_from_env

    chosen = tokens_from_env() if not tokens else parse_tokens(tokens)
    if not chosen and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host}: with no API token configured only a loopback address is allowed "
            "(give --token ROLE:SECRET or set TASKSTORE_API_TOKENS)"
        )
    level = log_level.lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"{log_level!r} is not a log level (debug, info, warning or error)")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive int, got {workers!r}")
    if workers > 1 and url.startswith("memory:"):
        raise ConfigError("a memory:// store lives in one process: serve it with --workers 1")
    logging.basicConfig(level=level.upper(), format=_FORMAT)
    roles = ", ".join(sorted({t.role.label for t in chosen})) or "none: loopback clients only"
    processes = f", {workers} processes" if workers > 1 else ""
    log.info("serving %s on http://%s:%d (tokens with roles: %s%s)", redact(url), host, port, roles, processes)
    # The access log would print request lines only; tokens travel in headers, which it never logs.
    options: dict[str, Any] = {"host": host, "port": port, "log_level": level, "lifespan": "on", "server_header": False}
    if workers == 1:
        running = server(create_app(url, tokens=chosen, max_body=max_body), **options)
        with contextlib.suppress(KeyboardInterrupt):
            running.run()
        if not running.started:
            raise SystemExit(STARTUP_FAILURE)
        return
    import uvicorn

    # One process is one core: past it, uvicorn's processes share the listening socket, each with its own
    # event loop and its own pool of store connections (opened on its first request). Their servers are
    # uvicorn's own, which cannot end event streams first: a bounded graceful shutdown cancels what is left.
    secrets = [f"{t.role.label}:{t.secret}" for t in chosen]
    os.environ[_CHILD_ENV] = json.dumps({"url": url, "tokens": secrets, "max_body": max_body, "level": level})
    uvicorn.run("taskstore.serve:child_app", factory=True, workers=workers, timeout_graceful_shutdown=5, **options)


def child_app() -> Any:
    """The app of one of ``taskstore serve --workers N``'s processes, from the settings its parent left it."""
    from .web import create_app

    settings = json.loads(os.environ[_CHILD_ENV])
    logging.basicConfig(level=settings["level"].upper(), format=_FORMAT)
    return create_app(settings["url"], tokens=settings["tokens"], max_body=settings["max_body"])


def server(app: Starlette, **options: Any) -> uvicorn.Server:
    """A uvicorn server of ``create_app``'s ``app`` that ends its event streams when it shuts down.

    uvicorn's graceful shutdown waits for every open response, and ``/api/v1/events`` never ends by itself:
    without this, stopping the server would hang until each browser tab went away.
    """
    import uvicorn

    from .web.events import end_streams

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            end_streams(app)
            await super().shutdown(sockets)

    return Server(uvicorn.Config(app, **options))
