"""The conformance suite against the SQLite backend."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskstore.testing import JOIN_TRANSACTION, MULTIPROCESS, SHARED, ConformanceSuite


class _Caller:
    """An application's own ``sqlite3`` connection, with an ``orders`` table for its business writes."""

    def __init__(self, path: Path, **options: Any) -> None:
        self.path = path
        self.conn: Any = sqlite3.connect(path, **options)

    async def write(self) -> None:
        self.conn.execute("INSERT INTO orders (item) VALUES ('book')")

    async def commit(self) -> None:
        self._end("COMMIT")

    async def rollback(self) -> None:
        self._end("ROLLBACK")

    def _end(self, how: str) -> None:
        # Under Python 3.12's autocommit=True, commit() and rollback() do nothing: a transaction the
        # application began with BEGIN is ended by its own statement.
        if getattr(self.conn, "autocommit", None) is True:
            if self.conn.in_transaction:
                self.conn.execute(how)
        elif how == "COMMIT":
            self.conn.commit()
        else:
            self.conn.rollback()

    async def close(self) -> None:
        self.conn.close()

    async def orders(self) -> int:
        with contextlib.closing(sqlite3.connect(self.path)) as other:
            return int(other.execute("SELECT count(*) FROM orders").fetchone()[0])


class _Callers:
    """The connections of one flavor: the standard library's implicit transactions (the default
    ``isolation_level=""``, or ``"IMMEDIATE"``), or Python 3.12's PEP 249 mode (``autocommit=False``)."""

    def __init__(self, path: Path, flavor: str) -> None:
        self.path = path
        self.flavor = flavor
        self.opened: list[_Caller] = []

    def _open(self, path: Path | None = None, **options: Any) -> _Caller:
        caller = _Caller(path or self.path, **options)
        self.opened.append(caller)
        return caller

    async def fresh(self) -> _Caller:
        if self.flavor == "pep249":
            return self._open(autocommit=False)
        return self._open(isolation_level="IMMEDIATE" if self.flavor == "immediate" else "")

    async def autocommit(self, *, begun: bool) -> _Caller:
        caller = self._open(autocommit=True) if self.flavor == "pep249" else self._open(isolation_level=None)
        if begun:
            caller.conn.execute("BEGIN")
        return caller

    async def aborted(self) -> None:
        return None  # a failed statement never poisons an SQLite transaction

    async def elsewhere(self) -> _Caller:
        other = self.path.with_name("other.db")
        with contextlib.closing(sqlite3.connect(other)) as setup:
            setup.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT)")
        return self._open(other)

    def close(self) -> None:
        for caller in self.opened:
            caller.conn.close()  # closing twice is harmless


class TestSQLite(ConformanceSuite):
    capabilities = frozenset({SHARED, MULTIPROCESS, JOIN_TRANSACTION})

    @pytest.fixture
    def db_path(self, tmp_path: Path) -> Path:
        return tmp_path / "tasks.db"

    @pytest.fixture
    def store_url(self, db_path: Path) -> str:
        return f"sqlite:///{db_path}"

    @pytest.fixture(params=["implicit", "immediate", "pep249"])
    def caller_connections(self, request: pytest.FixtureRequest, db_path: Path, store: Any) -> Iterator[_Callers]:
        # ``store`` first: the schema exists before the application's connections open.
        if request.param == "pep249" and sys.version_info < (3, 12):
            pytest.skip("sqlite3's autocommit attribute is new in Python 3.12")
        with contextlib.closing(sqlite3.connect(db_path)) as setup:
            setup.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
            setup.commit()
        callers = _Callers(db_path, request.param)
        yield callers
        callers.close()


@pytest.mark.asyncio
async def test_a_claim_that_waited_for_the_write_lock_gets_its_whole_lease(tmp_path: Path) -> None:
    """The lease starts when the claim holds the lock, not when it began waiting for it."""
    import asyncio
    import threading
    import time

    import taskstore
    from taskstore import NewTask

    url = f"sqlite:///{tmp_path / 'lock.db'}"
    async with taskstore.open(url) as store:
        await store.create(NewTask("q", "k", processing_timeout=1.0))
        locked, release = threading.Event(), threading.Event()

        def hold_the_lock() -> None:
            conn = sqlite3.connect(tmp_path / "lock.db", isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(5)
            conn.execute("COMMIT")
            conn.close()

        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        locked.wait(5)
        asyncio.get_running_loop().call_later(1.5, release.set)
        start = time.monotonic()
        (task,) = await store.claim("w", limit=1)
        holder.join()
        assert time.monotonic() - start >= 1.4  # it did wait for the lock
        assert task.claim is not None
        assert (task.claim.times_out_at - store.now()).total_seconds() > 0.5
        assert await store.reap() == 0
