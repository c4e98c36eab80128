"""The SQLite commit watcher: another connection's commit moves the WAL-index header; a read does not."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

import taskstore
from taskstore import NewTask
from taskstore.backends.sqlite._commits import Spaced, watch_commits

from ..elsewhere import create_in_another_process

pytestmark = pytest.mark.asyncio


async def test_a_commit_elsewhere_is_seen_and_a_read_is_not(tmp_path: Path) -> None:
    path = str(tmp_path / "w.db")
    ours = sqlite3.connect(path, isolation_level=None)
    ours.execute("PRAGMA journal_mode=WAL")
    ours.execute("CREATE TABLE t (x INTEGER)")
    seen = asyncio.Event()
    calls = 0

    def committed() -> None:
        nonlocal calls
        calls += 1
        seen.set()

    watcher = asyncio.create_task(watch_commits(path, committed, tick=0.001))
    try:
        other = sqlite3.connect(path, isolation_level=None)
        await asyncio.sleep(0.05)
        other.execute("SELECT count(*) FROM t").fetchone()  # a read leaves the header alone
        await asyncio.sleep(0.05)
        assert calls == 0
        other.execute("INSERT INTO t VALUES (1)")
        await asyncio.wait_for(seen.wait(), 2)
        assert calls == 1
        other.close()
    finally:
        watcher.cancel()
        ours.close()


async def test_without_a_shm_file_it_returns_and_the_store_keeps_polling(tmp_path: Path) -> None:
    await asyncio.wait_for(watch_commits(str(tmp_path / "missing.db"), lambda: None), 1)


async def test_spaced_calls_merge_within_the_gap_and_none_is_dropped() -> None:
    calls = 0
    second = asyncio.Event()

    def fn() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            second.set()

    spaced = Spaced(fn, gap=0.5)
    spaced()
    assert calls == 1  # the first is made at once
    spaced()
    spaced()
    assert calls == 1  # asked for within the gap: one call, when the gap ends
    await asyncio.wait_for(second.wait(), 5)
    assert calls == 2


async def test_a_store_watches_only_once_a_claim_waits_and_hears_another_process(tmp_path: Path) -> None:
    """An enqueuing store reads no -shm; a blocked claim starts the watch, which wakes it on another process's
    commit (with polling every 30 s, nothing else could wake it in time)."""
    url = f"sqlite:///{tmp_path / 'lazy.db'}?poll_interval=30"
    async with taskstore.open(url) as store:
        await store.create(NewTask("q", "k"))
        driver = store._driver
        assert driver._commits is None  # type: ignore[attr-defined]

        claim = asyncio.create_task(store.claim("w", "other", block_for=20))
        await asyncio.sleep(0.2)
        assert driver._commits is not None  # type: ignore[attr-defined]
        started = time.monotonic()
        await create_in_another_process(url, "other")
        claimed = await asyncio.wait_for(claim, 15)
        assert [t.queue for t in claimed] == ["other"]
        assert time.monotonic() - started < 15
