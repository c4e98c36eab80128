"""``taskstore.open(url)``: pick and configure a backend from a URL.

Backends load lazily by scheme, so importing taskstore imports no database driver the user did not
ask for. With no URL, ``$TASKSTORE_URL`` is used, else ``sqlite:///taskstore.db`` in the working
directory.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import parse_qsl, unquote

from . import limits
from .clock import Clock, SystemClock
from .codec import Codec
from .errors import ConfigError
from .store import Store

DEFAULT_URL = "sqlite:///taskstore.db"
# SQLite cannot notify another process; each store watches the WAL-index header for other processes' commits
# (backends/sqlite/_commits.py) and wakes its claimers and watchers. This poll of the database itself is only
# the safety net, and what finds delayed tasks coming due.
SQLITE_CLAIM_POLL = 0.05


def _seconds(value: object) -> float:
    """A duration option: finite seconds within ``limits`` (an endless busy or connect timeout hangs forever)."""
    seconds = float(value) if isinstance(value, str) else value
    return limits.duration(seconds, "a duration option", error=ConfigError)


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|MB|GB|)\s*$", re.IGNORECASE)


def _bytes(value: object) -> int:
    """A size option: an int, or ``1048576``, ``512KB``, ``64MB``, ``1GB`` (powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a size like 64MB or 512KB")
    return int(match.group(1)) << (10 * {"": 0, "b": 0, "kb": 1, "mb": 2, "gb": 3}[match.group(2).lower()])


_STORE_OPTIONS: dict[str, Any] = {"poll_interval": _seconds, "heartbeat_retention": _seconds}
_SQLITE_OPTIONS: dict[str, Any] = {
    **_STORE_OPTIONS,
    "busy_timeout": _seconds,
    "synchronous": str,
    "checkpoint_interval": _seconds,
    "wal_limit": _bytes,
}


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{value!r} is not a boolean")


def _threshold(value: object) -> int | None:
    """psycopg's prepare_threshold: a count, or none/off/false (never prepare, for PgBouncer before 1.21)."""
    if value is None or str(value).strip().lower() in {"none", "off", "false", "no"}:
        return None
    count = int(str(value))
    if count < 0:
        raise ValueError(f"prepare_threshold must be 0 or more, or none, not {value!r}")
    return count


_POSTGRES_OPTIONS: dict[str, Any] = {
    **_STORE_OPTIONS,
    "schema": str,
    "pool_min": int,
    "pool_max": int,
    "notify": _flag,
    "connect_timeout": _seconds,
    "pool_timeout": _seconds,
    "migrate": _flag,
    "prepare_threshold": _threshold,
}


# redis://host:port/db?prefix=name: — several stores share one Redis database under different key prefixes.
# Other query parameters belong to redis-py (``ssl_cert_reqs=``, ``socket_timeout=``...).
_REDIS_OPTIONS: dict[str, Any] = {**_STORE_OPTIONS, "prefix": str}


def _strip_query(url: str, ours: dict[str, Any]) -> str:
    """The URL without taskstore's own options; everything else is left byte for byte as libpq reads it.

    Re-encoding would change meaning: libpq takes ``+`` literally (``options=-c%20x%3D1`` must not become
    ``-c+x%3D1``), and an empty host (``postgresql:///db?host=/run/postgresql``) must keep its ``//``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url  # not a URI: libpq says what is wrong with it
    rest, _, fragment = rest.partition("#")
    base, _, query = rest.partition("?")
    kept = [part for part in query.split("&") if part and unquote(part.partition("=")[0]) not in ours]
    scheme = "postgresql" if scheme.lower() == "postgres" else scheme
    return f"{scheme}://{base}" + (f"?{'&'.join(kept)}" if kept else "") + (f"#{fragment}" if fragment else "")


def _authority_end(rest: str) -> int:
    return min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))


def secrets_in(url: str) -> list[str]:
    """The passwords a URL carries (``user:PASSWORD@`` and ``?password=``), raw and decoded."""
    _, sep, rest = url.partition("://")
    found: list[str] = []
    if not sep:
        return found
    userinfo, at, _ = rest[: _authority_end(rest)].rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    query = rest.partition("?")[2].partition("#")[0]
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if unquote(key).lower() == "password":
            found.append(value)
    return [form for raw in found if raw for form in {raw, unquote(raw)}]


def redact(url: str) -> str:
    """The URL fit to print: a password (``user:PASSWORD@`` or ``?password=``) becomes ``***``."""
    if not isinstance(url, str):
        return repr(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = _authority_end(rest)
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:***@{hosts}"
    path, q, query = tail.partition("?")
    if q:
        query, h, fragment = query.partition("#")
        parts = [
            f"{part.partition('=')[0]}=***" if unquote(part.partition("=")[0]).lower() == "password" else part
            for part in query.split("&")
        ]
        tail = f"{path}?{'&'.join(parts)}{h}{fragment}"
    return f"{scheme}://{authority}{tail}"


def scrub(text: str, url: str) -> str:
    """``text`` (say, a driver's error message) with any password of ``url`` replaced by ``***``."""
    for secret in sorted(secrets_in(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def default_url() -> str:
    return os.environ.get("TASKSTORE_URL") or DEFAULT_URL


def worker_url(flag: str | None, app_url: str | None, env_url: str | None) -> tuple[str, str | None]:
    """The store a worker of an App uses, and a warning when a URL it was given is not the one it uses.

    Precedence: ``--url``, then the App's own URL (``App(url)``), then ``$TASKSTORE_URL``, then the default.
    The App's code wins over the environment because the processes that enqueue use the same App and
    never read ``--url``: a worker that let the environment override ``App(url)`` would drain a store
    the application does not write to. ``--url`` is typed for this one worker, so it wins, with a warning.
    """
    if flag:
        if app_url and app_url != flag:
            return flag, f"--url {redact(flag)} overrides the App's own URL {redact(app_url)}"
        return flag, None
    if app_url:
        if env_url and env_url != app_url:
            return app_url, (
                f"$TASKSTORE_URL ({redact(env_url)}) is not used: the App names its own URL {redact(app_url)} "
                "(give --url to override it)"
            )
        return app_url, None
    return env_url or DEFAULT_URL, None


def _sqlite_path(url: str) -> str:
    # The scheme was matched without "://" (and in any case): "SQLITE:00/0/0" must not pass as a path.
    if url[: len("sqlite://")].lower() != "sqlite://":
        raise ConfigError(f"SQLite URLs look like sqlite:///relative.db or sqlite:////absolute.db, not {redact(url)!r}")
    rest = url[len("sqlite://") :].split("?", 1)[0]
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(f"SQLite URLs look like sqlite:///relative.db or sqlite:////absolute.db, not {redact(url)!r}")
    path = rest[1:]  # sqlite:///x.db -> "x.db", sqlite:////tmp/x.db -> "/tmp/x.db"
    if "\x00" in path or not _encodable(path):
        raise ConfigError(f"the SQLite path {path!r} has a NUL or a character with no UTF-8 form")
    return path


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _options(
    url: str, given: dict[str, Any], allowed: dict[str, Any], *, url_passthrough: bool = False
) -> dict[str, Any]:
    """Options from the URL's query and keyword arguments; unknown ones are errors.

    With ``url_passthrough`` unknown URL parameters belong to the driver (libpq's ``sslmode=``…).
    """
    merged: dict[str, Any] = {
        k: v
        for k, v in parse_qsl(url.partition("?")[2].partition("#")[0], keep_blank_values=True)
        if not url_passthrough or k in allowed
    }
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
        raise ConfigError(f"bad option value in {redact(url)!r}: {scrub(str(exc), url)}") from exc


def open(
    url: str | None = None,
    *,
    clock: Clock | None = None,
    codec: Codec | None = None,
    create: bool = True,
    **options: Any,
) -> Store:
    """A store for ``url``; use it as ``async with taskstore.open(url) as store``.

    ``memory://`` (one process), ``sqlite:///relative.db`` / ``sqlite:////absolute.db``, ``postgresql://…``
    (every URI form libpq accepts). Options come as keyword arguments or URL query parameters; unknown ones
    are errors. With ``create=False`` opening creates nothing: no file, no schema; where no store exists yet
    it raises ``ConfigError`` (what read-only tools want).
    """
    url = url or default_url()
    if not isinstance(url, str):
        raise ConfigError(f"url must be a string, got {type(url).__name__}")
    if clock is not None and not isinstance(clock, Clock):
        raise ConfigError(f"clock must have a now() method (a taskstore.clock.Clock), got {type(clock).__name__}")
    if codec is not None and not isinstance(codec, Codec):
        raise ConfigError(f"codec must be a taskstore.codec.Codec (name, encode, decode), got {type(codec).__name__}")
    explicit_clock = clock  # PostgreSQL decides with the database's now() unless a clock is injected
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
        facade.setdefault("poll_interval", SQLITE_CLAIM_POLL)
        return Store(SQLiteDriver(_sqlite_path(url), clock, create=create, **opts), codec=codec, url=url, **facade)
    if scheme in {"postgres", "postgresql"}:
        from .backends.postgres import PostgresDriver

        opts = _options(url, options, _POSTGRES_OPTIONS, url_passthrough=True)
        facade = {k: opts.pop(k) for k in _STORE_OPTIONS if k in opts}
        # With LISTEN/NOTIFY a blocked claim wakes at once; the poll only finds delayed tasks coming due.
        facade.setdefault("poll_interval", 0.25 if opts.get("notify", True) else 0.05)
        conninfo = _strip_query(url, _POSTGRES_OPTIONS)
        driver = PostgresDriver(conninfo, explicit_clock, create=create, **opts)
        return Store(driver, codec=codec, url=url, **facade)
    if scheme in {"redis", "rediss"}:
        from .backends.redis import RedisDriver

        opts = _options(url, options, _REDIS_OPTIONS, url_passthrough=True)
        facade = {k: opts.pop(k) for k in _STORE_OPTIONS if k in opts}
        # Pub/sub wakes a blocked claim at once; the poll only finds delayed tasks coming due.
        facade.setdefault("poll_interval", 0.25)
        redis_driver = RedisDriver(_strip_query(url, _REDIS_OPTIONS), explicit_clock, create=create, **opts)
        return Store(redis_driver, codec=codec, url=url, **facade)
    raise ConfigError(
        f"unsupported store URL {redact(url)!r}: use memory://, sqlite:///path.db, postgresql://… or redis://…"
    )
