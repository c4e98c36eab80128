"""SQLite under faults: a COMMIT that fails, and a library too old to run the store."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import taskstore
from taskstore import FakeClock, NewTask, Store, errors
from taskstore.backends.sqlite import SQLiteDriver

pytestmark = pytest.mark.asyncio


class _FailingCommits:
    """A connection whose next ``COMMIT`` fails with ``error`` without committing, as SQLite's does.

    SQLite leaves the connection inside its transaction when COMMIT fails (SQLITE_BUSY, SQLITE_IOERR,
    SQLITE_FULL), which is exactly what not executing the statement leaves here.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.failures: list[sqlite3.Error] = []
        self.rollback_failures: list[sqlite3.Error] = []

    def execute(self, statement: str, *args: Any) -> sqlite3.Cursor:
        verb = statement.strip().upper()
        if verb == "COMMIT" and self.failures:
            raise self.failures.pop(0)
        if verb == "ROLLBACK" and self.rollback_failures:
            raise self.rollback_failures.pop(0)
        return self._conn.execute(statement, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with taskstore.open(f"sqlite:///{tmp_path / 'faults.db'}", clock=FakeClock(), busy_timeout=5) as opened:
        yield opened


def _inject(store: Store) -> _FailingCommits:
    driver = store._driver
    assert isinstance(driver, SQLiteDriver)
    assert driver._conn is not None
    failing = _FailingCommits(driver._conn)
    driver._conn = failing  # type: ignore[assignment]
    return failing


async def test_a_failed_commit_rolls_back_and_later_writes_work(store: Store) -> None:
    failing = _inject(store)
    failing.failures.append(sqlite3.OperationalError("disk I/O error"))
    with pytest.raises(errors.BackendUnavailable, match="disk I/O error"):
        await store.create(NewTask("q", "k", id="lost"))
    with pytest.raises(errors.NotFound):  # nothing half-written stays, not even on our own connection
        await store.get("lost")
    kept = await store.create(NewTask("q", "k", id="kept"))
    claimed = await store.claim("w", ["q"], limit=5)
    assert [t.id for t in claimed] == [kept.id]
    assert (await store.mark_done(claimed[0])).state.value == "done"
    assert await store.count() == 1


async def test_a_rollback_that_fails_too_is_retried_before_the_next_statement(store: Store) -> None:
    failing = _inject(store)
    failing.failures.append(sqlite3.OperationalError("disk I/O error"))
    failing.rollback_failures.append(sqlite3.OperationalError("disk I/O error"))
    with pytest.raises(errors.BackendUnavailable, match="disk I/O error"):
        await store.create(NewTask("q", "k", id="lost"))
    with pytest.raises(errors.NotFound):
        await store.get("lost")
    await store.create(NewTask("q", "k", id="kept"))
    assert [t.id for t in (await store.list()).items] == ["kept"]


async def test_a_busy_commit_is_retried_from_a_clean_transaction(store: Store) -> None:
    failing = _inject(store)
    (task,) = await store.create_many([NewTask("q", "k", id="t")])
    failing.failures.append(sqlite3.OperationalError("database is locked"))
    (claimed,) = await store.claim("w", ["q"], limit=1)
    assert claimed.id == task.id
    assert claimed.attempts == 1  # the retry claimed it once, from the state before the failed commit
    assert (await store.get(task.id)).version == claimed.version
    assert not failing.failures


async def test_sqlite_older_than_3_35_is_refused_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    path = tmp_path / "old.db"
    with pytest.raises(errors.ConfigError, match=r"SQLite 3\.34\.1 .*3\.35"):
        async with taskstore.open(f"sqlite:///{path}"):
            pass
    assert not path.exists()  # refused before anything was created
