"""A write that finds the SQLite write lock taken tries again within a fraction of a millisecond, not after SQLite's
own busy handler's 1, 2, 5, 10... ms sleeps (``BUSY_FIRST_PAUSE``), and still waits for as long as it is held."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

import taskstore
from taskstore import NewTask
from taskstore.backends.sqlite import driver as sqlite_backend


def test_a_write_lock_held_elsewhere_is_tried_again_in_short_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "busy.db"
    url = f"sqlite:///{path}"
    pauses: list[float] = []
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 8:
            holder.execute("COMMIT")  # the other process lets go after the 8th try
        real_sleep(seconds)

    async def scenario() -> None:
        async with taskstore.open(url) as store:
            holder.execute("BEGIN IMMEDIATE")
            monkeypatch.setattr(sqlite_backend.time, "sleep", sleep)
            task = await asyncio.wait_for(store.create(NewTask("q", "k")), 10)
            monkeypatch.undo()
            assert (await store.get(task.id)).id == task.id

    try:
        asyncio.run(scenario())
    finally:
        holder.close()
    assert len(pauses) == 8
    assert pauses[0] == sqlite_backend.BUSY_FIRST_PAUSE
    assert pauses == sorted(pauses)
    assert max(pauses) == sqlite_backend.BUSY_MAX_PAUSE <= 0.005


def test_a_write_lock_held_past_busy_timeout_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"

    async def scenario() -> None:
        async with taskstore.open(f"sqlite:///{path}", busy_timeout=0.3) as store:
            holder = sqlite3.connect(path, isolation_level=None)
            try:
                holder.execute("BEGIN IMMEDIATE")
                started = time.monotonic()
                with pytest.raises(taskstore.errors.BackendUnavailable, match="stayed locked"):
                    await store.create(NewTask("q", "k"))
                assert 0.25 <= time.monotonic() - started < 5
            finally:
                holder.close()

    asyncio.run(scenario())
