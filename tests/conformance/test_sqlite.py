"""The conformance suite against the SQLite backend."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskstore.testing import JOIN_TRANSACTION, MULTIPROCESS, SHARED, ConformanceSuite


class _Transaction:
    def __init__(self, path: Path) -> None:
        self.conn: Any = sqlite3.connect(path)  # the standard library's default: implicit transactions
        self.conn.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT)")
        self.conn.commit()
        self.conn.execute("INSERT INTO orders (item) VALUES ('book')")  # opens the business transaction

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()


class TestSQLite(ConformanceSuite):
    capabilities = frozenset({SHARED, MULTIPROCESS, JOIN_TRANSACTION})

    @pytest.fixture
    def db_path(self, tmp_path: Path) -> Path:
        return tmp_path / "tasks.db"

    @pytest.fixture
    def store_url(self, db_path: Path) -> str:
        return f"sqlite:///{db_path}"

    @pytest.fixture
    def caller_transaction(self, db_path: Path, store: Any) -> Iterator[_Transaction]:
        # ``store`` first: the schema exists before the application's connection opens.
        tx = _Transaction(db_path)
        yield tx
        tx.conn.close()


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
