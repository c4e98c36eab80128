"""``conn=``: the caller's transaction, whatever library holds it, as the DBAPI connection a driver joins.

An enqueue with ``conn=`` inserts on the caller's own connection, inside its transaction, so the task exists
if and only if that transaction commits. Applications hold that transaction in many forms: a ``sqlite3`` or
psycopg connection, a SQLAlchemy ``Connection``/``Session`` (or their asyncio forms), Django's connection.
``resolve`` (sync, in the caller's thread: Django's and SQLAlchemy's objects are per thread) and ``aresolve``
(for SQLAlchemy's asyncio objects) turn each into a ``Join``: the raw connection the drivers use, whether it is
async, what must wrap the insert (Django outside ``atomic()``), and the library's after-commit hook, if any
(the memory backend, which cannot join a transaction, records the task there).

No library is imported unless the object given comes from it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import errors

OnCommit = Callable[[Callable[[], None]], None]


@dataclass(frozen=True, slots=True)
class Join:
    """The caller's transaction as a driver sees it."""

    raw: Any  # sqlite3.Connection | psycopg.Connection | psycopg.AsyncConnection
    is_async: bool = False
    around: Callable[[], contextlib.AbstractContextManager[Any]] = field(default=contextlib.nullcontext)
    hook: OnCommit | None = None
    source: str = ""  # what the caller gave, for messages

    def on_commit(self, callback: Callable[[], None]) -> bool:
        """Run ``callback`` once the caller's transaction commits (never if it rolls back).

        False when the library offers no such hook (a raw ``sqlite3``/psycopg connection).
        """
        if self.hook is None:
            return False
        self.hook(callback)
        return True


def _module(conn: object) -> str:
    return type(conn).__module__ or ""


def _is_sqlalchemy_async(conn: object) -> bool:
    return _module(conn).startswith("sqlalchemy.ext.asyncio")


def resolve(conn: object) -> Join:
    """The ``Join`` for a connection given from sync code (or any but SQLAlchemy's asyncio objects)."""
    if isinstance(conn, Join):
        return conn
    if isinstance(conn, sqlite3.Connection):
        return Join(conn, source="sqlite3.Connection")
    module = _module(conn)
    if module.startswith("psycopg"):
        return _psycopg(conn)
    if module.startswith("django.") or _is_django(conn):
        return _django(conn)
    if module.startswith("sqlalchemy"):
        if _is_sqlalchemy_async(conn):
            raise errors.ConfigError(
                f"conn= is a SQLAlchemy {type(conn).__name__}: enqueue with `await fn.options(conn=...).enqueue(...)`"
            )
        return _sqlalchemy(conn)
    raise errors.ConfigError(
        "conn= must be a sqlite3 or psycopg connection, a SQLAlchemy Connection/Session/AsyncConnection/"
        f"AsyncSession, or a Django connection; got {type(conn).__module__}.{type(conn).__name__}"
    )


async def aresolve(conn: object) -> Join:
    """``resolve`` for async callers: also SQLAlchemy's ``AsyncConnection`` and ``AsyncSession``."""
    if not _is_sqlalchemy_async(conn):
        return resolve(conn)
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if isinstance(conn, AsyncSession):
        connection = await conn.connection()  # begins the session's transaction, as its first statement would
        hook = _session_hook(conn.sync_session)
    elif isinstance(conn, AsyncConnection):
        if not conn.in_transaction():
            await conn.begin()  # what SQLAlchemy's autobegin does before a statement; the caller commits
        connection = conn
        hook = _connection_hook(conn.sync_connection)
    else:
        raise errors.ConfigError(f"conn= cannot be a SQLAlchemy {type(conn).__name__}")
    raw = (await connection.get_raw_connection()).driver_connection
    return _driver_join(raw, hook, f"SQLAlchemy {type(conn).__name__}")


def _psycopg(conn: Any) -> Join:
    import psycopg

    if isinstance(conn, psycopg.AsyncConnection):
        return Join(conn, is_async=True, source="psycopg.AsyncConnection")
    if isinstance(conn, psycopg.Connection):
        return Join(conn, source="psycopg.Connection")
    raise errors.ConfigError(f"conn= must be a psycopg connection, got {type(conn).__name__}")


def _driver_join(raw: Any, hook: OnCommit | None, source: str) -> Join:
    """The join for the DBAPI connection under a SQLAlchemy object."""
    if isinstance(raw, sqlite3.Connection):
        return Join(raw, hook=hook, source=source)
    module = _module(raw)
    if module.startswith("psycopg"):
        return Join(raw, is_async=_psycopg(raw).is_async, hook=hook, source=source)
    if module.startswith("aiosqlite"):
        # aiosqlite runs a sqlite3 connection on a thread of its own; SQLAlchemy awaits each of its calls, so
        # while the caller awaits this enqueue nothing else uses it. The insert uses it directly (SQLAlchemy
        # opens file databases with check_same_thread=False; otherwise sqlite3 refuses, and that is reported).
        inner = getattr(raw, "_conn", None)
        if isinstance(inner, sqlite3.Connection):
            return Join(inner, hook=hook, source=source)
    raise errors.ConfigError(
        f"conn= is a {source} over the {module.split('.')[0]} driver: taskstore joins transactions of sqlite3, "
        "aiosqlite and psycopg (postgresql+psycopg://) connections"
    )


def _sqlalchemy(conn: Any) -> Join:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    if isinstance(conn, Session):
        connection = conn.connection()  # begins the session's transaction, as its first statement would
        hook = _session_hook(conn)
    elif isinstance(conn, Connection):
        if not conn.in_transaction():
            conn.begin()  # what SQLAlchemy's autobegin does before a statement; the caller commits
        connection = conn
        hook = _connection_hook(conn)
    else:
        raise errors.ConfigError(f"conn= cannot be a SQLAlchemy {type(conn).__name__}")
    return _driver_join(connection.connection.driver_connection, hook, f"SQLAlchemy {type(conn).__name__}")


# The callbacks waiting for each SQLAlchemy Session's / Connection's next commit (a target without an entry has
# no listeners yet). Listeners stay registered: one cannot remove itself while its event is being dispatched.
_pending: weakref.WeakKeyDictionary[Any, list[Callable[[], None]]] = weakref.WeakKeyDictionary()


def _once_per_transaction(target: Any, commit: str, rollbacks: tuple[str, ...]) -> OnCommit:
    """A hook running callbacks at ``target``'s next ``commit`` event; its next rollback drops them."""
    from sqlalchemy import event

    def committed(*_: Any) -> None:
        callbacks, _pending[target] = _pending.get(target, []), []
        for callback in callbacks:
            callback()

    def rolled_back(*_: Any) -> None:
        _pending[target] = []

    def hook(callback: Callable[[], None]) -> None:
        if target not in _pending:
            _pending[target] = []
            event.listen(target, commit, committed)
            for name in rollbacks:
                event.listen(target, name, rolled_back)
        _pending[target].append(callback)

    return hook


def _session_hook(session: Any) -> OnCommit:
    return _once_per_transaction(session, "after_commit", ("after_rollback",))


def _connection_hook(connection: Any) -> OnCommit:
    # A Connection has no after-commit event: "commit" comes just before the database commits.
    return _once_per_transaction(connection, "commit", ("rollback",))


def _is_django(conn: object) -> bool:
    return any(c.__module__.startswith("django.db.backends") for c in type(conn).__mro__)


def _django(conn: Any) -> Join:
    """Django's connection (``django.db.connection``, ``connections[alias]``), in the caller's thread."""
    from django.db import connections, transaction

    if not _is_django(conn):  # django.db.connection is a proxy to the thread's default connection
        alias = getattr(conn, "alias", None)
        if not isinstance(alias, str) or alias not in connections:
            raise errors.ConfigError(f"conn= must be a Django database connection, got {type(conn).__name__}")
        conn = connections[alias]

    alias = conn.alias
    conn.ensure_connection()
    raw = conn.connection
    if conn.vendor not in ("postgresql", "sqlite"):
        raise errors.ConfigError(f"conn= is Django's {conn.vendor} connection: taskstore joins PostgreSQL and SQLite")

    def hook(callback: Callable[[], None]) -> None:
        transaction.on_commit(callback, using=alias)

    @contextlib.contextmanager
    def around() -> Iterator[None]:
        # Outside atomic() Django commits every statement at once; the enqueue does the same, as one atomic
        # block of its own. Inside one it joins it.
        if conn.in_atomic_block:
            yield
        else:
            with transaction.atomic(using=alias):
                yield

    return Join(raw, around=around, hook=hook, source=f"Django connection {alias!r}")
