"""``taskstore serve``: the web app under uvicorn, refusing to expose an unauthenticated API.

The web dependencies are an extra (``taskstore[web]``); without them this says which extra to install
instead of failing on an import deep inside.
"""

from __future__ import annotations

import contextlib
import logging
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
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(url, tokens=chosen, max_body=max_body)
    roles = ", ".join(sorted({t.role.label for t in chosen})) or "none: loopback clients only"
    log.info("serving %s on http://%s:%d (tokens with roles: %s)", redact(url), host, port, roles)
    # The access log would print request lines only; tokens travel in headers, which it never logs.
    running = server(app, host=host, port=port, log_level=level, lifespan="on", server_header=False)
    with contextlib.suppress(KeyboardInterrupt):
        running.run()
    if not running.started:
        raise SystemExit(STARTUP_FAILURE)


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
