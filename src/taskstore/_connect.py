"""``taskstore.open(url)``: pick and configure a backend from a URL.

Backends load lazily by scheme, so importing taskstore imports no database driver the user did not
ask for. With no URL, ``$TASKSTORE_URL`` is used, else ``sqlite:///taskstore.db`` in the working
directory.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .clock import Clock, SystemClock
from .codec import Codec
from .errors import ConfigError
from .store import Store

DEFAULT_URL = "sqlite:///taskstore.db"
SQLITE_CLAIM_POLL = 0.01
_STORE_OPTIONS: dict[str, type] = {"poll_interval": float, "heartbeat_retention": float}
_SQLITE_OPTIONS: dict[str, type] = {**_STORE_OPTIONS, "busy_timeout": float, "synchronous": str}


def default_url() -> str:
    return os.environ.get("TASKSTORE_URL") or DEFAULT_URL


def _sqlite_path(url: str) -> str:
    rest = url[len("sqlite://") :].split("?", 1)[0]
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(f"SQLite URLs look like sqlite:///relative.db or sqlite:////absolute.db, not {url!r}")
    return rest[1:]  # sqlite:///x.db -> "x.db", sqlite:////tmp/x.db -> "/tmp/x.db"


def _options(url: str, given: dict[str, Any], allowed: dict[str, type]) -> dict[str, Any]:
    merged: dict[str, Any] = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    merged.update(given)
    unknown = sorted(set(merged) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for {url.split(':', 1)[0]}:// "
            f"(known: {', '.join(sorted(allowed))})"
        )
    try:
        return {k: allowed[k](v) for k, v in merged.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad option value in {url!r}: {exc}") from exc


def open(url: str | None = None, *, clock: Clock | None = None, codec: Codec | None = None, **options: Any) -> Store:
    """A store for ``url``; use it as ``async with taskstore.open(url) as store``.

    ``memory://`` (one process), ``sqlite:///relative.db`` / ``sqlite:////absolute.db``.
    Options come as keyword arguments or URL query parameters; unknown ones are errors.
    """
    url = url or default_url()
    if not isinstance(url, str):
        raise ConfigError(f"url must be a string, got {type(url).__name__}")
    clock = clock or SystemClock()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "memory":
        from .backends.memory import MemoryDriver

        opts = _options(url, options, _STORE_OPTIONS)
        return Store(MemoryDriver(clock), codec=codec, url=url, **opts)
    if scheme == "sqlite":
        from .backends.sqlite import SQLiteDriver

        opts = _options(url, options, _SQLITE_OPTIONS)
        facade = {k: opts.pop(k) for k in _STORE_OPTIONS if k in opts}
        # Another process's commits are found by polling: a cheap indexed read, so poll often.
        facade.setdefault("poll_interval", SQLITE_CLAIM_POLL)
        return Store(SQLiteDriver(_sqlite_path(url), clock, **opts), codec=codec, url=url, **facade)
    if scheme in {"postgres", "postgresql", "redis", "rediss"}:
        raise ConfigError(f"the {scheme} backend is not available in this version of taskstore yet")
    raise ConfigError(f"unsupported store URL {url!r}: use memory://, sqlite:///path.db")
