"""SQLite's WAL checkpoints run on the store's own thread: commits never run one, and the WAL stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

import taskstore
from taskstore import NewTask, Store, errors
from taskstore.backends.sqlite import SQLiteDriver, _checkpoints
from taskstore.backends.sqlite._checkpoints import Checkpointer

pytestmark = pytest.mark.asyncio

MiB = 2**20


def _driver(store: Store) -> SQLiteDriver:
    driver = store._driver
    assert isinstance(driver, SQLiteDriver)
    return driver


def _wal_size(path: Path) -> int:
    try:
        return os.path.getsize(f"{path}-wal")
    except FileNotFoundError:
        return 0


async def _write_for(store: Store, seconds: float, db: Path) -> list[int]:
    """Commits without pause (20 tasks of ~2 KB each) for ``seconds``; the WAL's size after each one."""
    sizes = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await store.create_many([NewTask("q", "k", {"pad": "x" * 2000}) for _ in range(20)])
        sizes.append(_wal_size(db))
        await asyncio.sleep(0.001)  # the checkpointer's thread gets the GIL, as it would beside a real workload
    return sizes


async def test_the_stores_connections_leave_checkpoints_to_the_thread(tmp_path: Path) -> None:
    async with taskstore.open(f"sqlite:///{tmp_path / 'a.db'}") as store:
        driver = _driver(store)
        assert driver._conn is not None
        assert driver._checkpointer is not None
        assert driver._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert driver._conn.execute("PRAGMA journal_size_limit").fetchone()[0] == 64 * MiB
        assert driver._checkpointer.running
        thread = driver._checkpointer._thread
        assert thread is not None
        assert thread.name == "taskstore-sqlite-checkpoints"
        assert thread.daemon  # a store never closed must not hold the interpreter's exit


async def test_checkpoint_interval_zero_keeps_sqlites_own_checkpoints(tmp_path: Path) -> None:
    async with taskstore.open(f"sqlite:///{tmp_path / 'a.db'}?checkpoint_interval=0") as store:
        driver = _driver(store)
        assert driver._checkpointer is None
        assert driver._conn is not None
        assert driver._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000


async def test_options_come_from_the_url_or_keywords(tmp_path: Path) -> None:
    store = taskstore.open(f"sqlite:///{tmp_path / 'a.db'}?checkpoint_interval=0.25&wal_limit=8MB")
    assert (_driver(store).checkpoint_interval, _driver(store).wal_limit) == (0.25, 8 * MiB)
    store = taskstore.open(f"sqlite:///{tmp_path / 'a.db'}", wal_limit=4096, checkpoint_interval=1)
    assert (_driver(store).checkpoint_interval, _driver(store).wal_limit) == (1.0, 4096)
    for bad in ("wal_limit=0", "wal_limit=lots", "wal_limit=-1", "checkpoint_interval=-1", "checkpoint_interval=inf"):
        with pytest.raises(errors.ConfigError):
            taskstore.open(f"sqlite:///{tmp_path / 'a.db'}?{bad}")


async def test_sustained_writes_keep_the_wal_near_its_limit(tmp_path: Path) -> None:
    """No commit runs a checkpoint, and commits that never pause never let the WAL start over by itself."""
    db = tmp_path / "a.db"
    async with taskstore.open(f"sqlite:///{db}?wal_limit=1MB&checkpoint_interval=0.02") as store:
        sizes = await _write_for(store, 1.5, db)
        checkpointer = _driver(store)._checkpointer
        assert checkpointer is not None
        assert checkpointer.escalations > 0
    # Past the limit by what one tick's commits add, while the RESTART waits for the next write to start over.
    assert max(sizes) <= 4 * MiB, f"largest WAL {max(sizes) / MiB:.1f} MiB"


async def test_the_wal_comes_back_under_its_limit_once_a_long_reader_lets_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_checkpoints, "MAX_BACKOFF", 0.1)  # retry a busy RESTART often: the test is short
    db = tmp_path / "a.db"
    async with taskstore.open(f"sqlite:///{db}?wal_limit=1MB&checkpoint_interval=0.02") as store:
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as reader:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM tasks").fetchone()  # holds its snapshot: nothing can start over
            held = await _write_for(store, 1.0, db)
            assert max(held) > 4 * MiB  # the reader pins every frame written since: the WAL has to grow
            reader.execute("COMMIT")
            await _write_for(store, 1.0, db)
            after = await _write_for(store, 0.5, db)
    # The file shrinks back to the limit when the WAL starts over (journal_size_limit), then stays near it.
    assert max(after) <= 4 * MiB, f"WAL {max(after) / MiB:.1f} MiB after the reader let go of {max(held) / MiB:.1f}"


async def test_close_leaves_the_wal_empty_while_another_connection_keeps_the_file_open(tmp_path: Path) -> None:
    """The last connection to close deletes the WAL by itself; with another one still open, the store empties it."""
    db = tmp_path / "a.db"
    store = taskstore.open(f"sqlite:///{db}")
    await store.__aenter__()
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("PRAGMA wal_autocheckpoint=0")  # like a process of ours: it leaves checkpoints to threads
        other.execute("SELECT count(*) FROM tasks").fetchone()
        await _write_for(store, 0.3, db)
        assert _wal_size(db) > MiB
        checkpointer = _driver(store)._checkpointer
        assert checkpointer is not None
        thread = checkpointer._thread
        assert thread is not None
        await store.close()
        assert not thread.is_alive()
        assert not checkpointer.running
        assert _wal_size(db) == 0
        assert other.execute("SELECT count(*) FROM tasks").fetchone()[0] > 0


async def test_two_stores_on_one_file_both_checkpoint_without_complaint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every process runs a checkpointer: one of two at once is answered busy, which is skipped, not reported."""
    db = tmp_path / "a.db"
    url = f"sqlite:///{db}?wal_limit=1MB&checkpoint_interval=0.01"
    with caplog.at_level(logging.DEBUG, logger="taskstore.sqlite"):
        async with taskstore.open(url) as one, taskstore.open(url) as two:
            sizes = await asyncio.gather(_write_for(one, 1.0, db), _write_for(two, 1.0, db))
            checkpointers = [_driver(s)._checkpointer for s in (one, two)]
    assert all(c is not None and c.checkpoints > 0 for c in checkpointers)
    # Twice the writes, and four threads sharing the GIL: more slack than for one store, still bounded.
    assert max(max(s) for s in sizes) <= 16 * MiB, f"largest WAL {max(max(s) for s in sizes) / MiB:.1f} MiB"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_frames_left_by_another_connection_are_copied_back_by_a_store_that_only_reads(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    async with taskstore.open(f"sqlite:///{db}"):
        pass
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as writer:
        writer.execute("PRAGMA wal_autocheckpoint=0")  # say, a process that died before checkpointing
        writer.execute("CREATE TABLE other (x)")
        writer.executemany("INSERT INTO other VALUES (?)", [("x" * 1000,)] * 200)
        probe = Checkpointer(str(db), interval=1, wal_limit=MiB)
        assert probe._shm is None
        probe._shm = os.open(f"{db}-shm", os.O_RDONLY)
        try:
            assert probe._frames()[1] > 0
            async with taskstore.open(f"sqlite:///{db}", create=False) as store:
                await store.count()
                for _ in range(200):
                    if probe._frames()[1] == 0:
                        break
                    await asyncio.sleep(0.01)
                assert probe._frames()[1] == 0
        finally:
            os.close(probe._shm)
