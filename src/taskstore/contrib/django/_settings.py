"""Where a Django project's store is: its settings read into a URL and store options.

Pure functions over plain values, so they are tested without a Django project. The precedence, first wins:

1. the URL given in code (``DjangoApp(url=…)``) or to one worker (``taskstore worker --url``);
2. ``TASKSTORE_URL`` in settings, or ``TASKSTORE_DATABASE = "alias"``: the store in that Django database
   (giving both is an error: which one is meant cannot be guessed);
3. neither: ``DATABASES["default"]``, so a project on PostgreSQL or SQLite needs no setting at all.

``$TASKSTORE_URL`` is not read: the settings are the App's own configuration, which wins over the environment
for every App (``taskstore worker`` warns when the variable names another store).
``TASKSTORE_OPTIONS`` (a dict) are store options (``schema``, ``pool_max``, ``busy_timeout``…) in every case;
options given in code win over them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ...errors import ConfigError

POSTGRES_ENGINES = frozenset({"django.db.backends.postgresql", "django.contrib.gis.db.backends.postgis"})
SQLITE_ENGINES = frozenset({"django.db.backends.sqlite3", "django.contrib.gis.db.backends.spatialite"})

# Django's OPTIONS that are libpq connection parameters, passed on in the URL. The others (isolation_level,
# pool, server_side_binding, assume_role, cursor_factory…) configure Django's side of the connection.
_LIBPQ_OPTIONS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "options",
        "application_name",
        "connect_timeout",
        "target_session_attrs",
        "service",
        "passfile",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "gssencmode",
        "channel_binding",
    }
)


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """The store a Django project's settings name: its URL, the Django alias it lives in (if any), its options."""

    url: str
    database: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def store_settings(settings: Any, given: str | None = None) -> StoreSettings:
    """The store named by a Django settings object (``django.conf.settings`` or anything with its attributes),
    or at ``given`` (a URL given in code or to the worker) with the settings' options."""
    options = getattr(settings, "TASKSTORE_OPTIONS", None) or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"TASKSTORE_OPTIONS must be a dict of store options, got {type(options).__name__}")
    if given:
        return StoreSettings(given, None, dict(options))
    url = getattr(settings, "TASKSTORE_URL", None)
    alias = getattr(settings, "TASKSTORE_DATABASE", None)
    if url is not None and alias is not None:
        raise ConfigError("set TASKSTORE_URL or TASKSTORE_DATABASE, not both")
    if url is not None:
        if not isinstance(url, str) or not url:
            raise ConfigError(f"TASKSTORE_URL must be a store URL, got {url!r}")
        return StoreSettings(url, None, dict(options))
    if alias is None:
        alias = "default"
    elif not isinstance(alias, str):
        raise ConfigError(f"TASKSTORE_DATABASE must name an alias of DATABASES, got {alias!r}")
    databases = getattr(settings, "DATABASES", None) or {}
    if alias not in databases:
        known = ", ".join(sorted(map(str, databases))) or "none"
        raise ConfigError(f"TASKSTORE_DATABASE names {alias!r}, which is not in DATABASES (known: {known})")
    return StoreSettings(database_url(alias, databases[alias]), alias, dict(options))


def database_url(alias: str, database: Mapping[str, Any]) -> str:
    """A store URL for one entry of Django's ``DATABASES``: PostgreSQL and SQLite; others are a ConfigError."""
    engine = str(database.get("ENGINE", ""))
    if engine in POSTGRES_ENGINES:
        return _postgres_url(database)
    if engine in SQLITE_ENGINES:
        return _sqlite_url(alias, database)
    raise ConfigError(
        f"DATABASES[{alias!r}] uses {engine or 'no ENGINE'}: taskstore can live in a PostgreSQL or SQLite "
        "database only; set TASKSTORE_URL to a store of its own"
    )


def _postgres_url(database: Mapping[str, Any]) -> str:
    options: Mapping[str, Any] = database.get("OPTIONS") or {}
    query = [(key, str(options[key])) for key in sorted(_LIBPQ_OPTIONS & options.keys())]
    user, password = str(database.get("USER") or ""), str(database.get("PASSWORD") or "")
    host, port = str(database.get("HOST") or ""), str(database.get("PORT") or "")
    userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    if host.startswith("/"):  # a Unix socket directory: libpq takes it as a parameter, not in the authority
        query.append(("host", host))
        host = ""
    authority = (f"{userinfo}@" if userinfo else "") + (f"[{host}]" if ":" in host else host)
    if port:
        authority += f":{port}"
    name = str(database.get("NAME") or "")
    url = f"postgresql://{authority}/{quote(name, safe='')}"
    if query:
        url += "?" + "&".join(f"{key}={quote(value, safe='')}" for key, value in query)
    return url


def _sqlite_url(alias: str, database: Mapping[str, Any]) -> str:
    name = database.get("NAME")
    text = str(name) if name is not None else ""
    if not text or text == ":memory:" or text.startswith("file:") or "mode=memory" in text:
        raise ConfigError(
            f"DATABASES[{alias!r}] is an in-memory SQLite database ({text or 'no NAME'}): a worker cannot share it; "
            "give it a file NAME or set TASKSTORE_URL"
        )
    return f"sqlite:///{Path(text).resolve()}"  # absolute: a worker may start in another directory
