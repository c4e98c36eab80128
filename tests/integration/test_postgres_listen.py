"""PostgreSQL: a store LISTENs only once a waiter of its process needs other processes' wake-ups.

A process that only enqueues (a web app) opens no listening connection and is not sent every enqueue's NOTIFY;
a blocked claim, a status watch or a worker's cancel watch starts the listener, and wakes on another process's
insert through it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

import taskstore
from taskstore import NewTask

from ..elsewhere import create_in_another_process
from ..postgres_server import new_schema, with_schema

pytestmark = pytest.mark.asyncio


async def _listeners(url: str, schema: str) -> int:
    """Sessions whose last statement was this store's LISTEN (the listener runs nothing else but probes)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = %s",
            [f'LISTEN "taskstore_{schema}_cancel"'],
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def _wait_for(check: Callable[[], Awaitable[int]], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_bulk_enqueue_past_one_chunk_wakes_another_process_claim(postgres_db: str) -> None:
    """A batch larger than one chunk goes by COPY, not by the INSERT that notifies: it notifies all the same."""
    from taskstore.backends.postgres.driver import _INSERT_CHUNK

    url = with_schema(postgres_db, new_schema())
    async with taskstore.open(url + ("&" if "?" in url else "?") + "poll_interval=30") as store:
        claim = asyncio.create_task(store.claim("w", "bulk", block_for=20))
        assert await _wait_for(lambda: _listeners(postgres_db, url.rsplit("schema=", 1)[1]))
        await create_in_another_process(url, "bulk", 2 * _INSERT_CHUNK + 1)
        claimed = await asyncio.wait_for(claim, 15)
        assert [t.queue for t in claimed] == ["bulk"]
        assert await store.count(queue="bulk") == 2 * _INSERT_CHUNK + 1


async def test_an_enqueuing_store_does_not_listen_until_a_claim_waits(postgres_db: str) -> None:
    schema = new_schema()
    url = with_schema(postgres_db, schema)
    async with taskstore.open(url + ("&" if "?" in url else "?") + "poll_interval=30") as store:
        for _ in range(5):
            await store.create(NewTask("q", "k"))
        await store.create_many([NewTask("q", "k") for _ in range(3)])
        await asyncio.sleep(0.3)
        assert await _listeners(postgres_db, schema) == 0

        claim = asyncio.create_task(store.claim("w", "other", block_for=20))
        assert await _wait_for(lambda: _listeners(postgres_db, schema)), "a blocked claim started no listener"
        # Another process enqueues into the awaited queue: with polling every 30 s, only its NOTIFY, heard by
        # the listener the claim started, can wake the claim in time.
        started = time.monotonic()
        await create_in_another_process(url, "other")
        claimed = await asyncio.wait_for(claim, 15)
        assert [t.queue for t in claimed] == ["other"]
        assert time.monotonic() - started < 15


async def test_the_status_channel_is_listened_to_only_once_a_status_watch_waits(postgres_db: str) -> None:
    """A worker's blocked claims and cancel checks need the wake and cancel channels; every completion batch notifies
    the status channel, so a worker's process that listened to it was sent one notification per batch of every
    worker. It is listened to once a status watch of the process waits, and then such a notification wakes it."""
    from taskstore._wakeup import HUB

    schema = new_schema()
    url = with_schema(postgres_db, schema)
    async with taskstore.open(url + ("&" if "?" in url else "?") + "poll_interval=30") as store:
        driver: Any = store._driver
        claim = asyncio.create_task(store.claim("w", "q", block_for=20))
        assert await _wait_for(lambda: _listeners(postgres_db, schema)), "a blocked claim started no listener"
        assert not driver._statuses_wanted.is_set()

        status = HUB.subscribe(("status", driver.wake_key))
        try:
            assert driver._statuses_wanted.is_set()
            assert await status.wait(5)  # listening again, to the status channel too: everyone looks again
            async with await psycopg.AsyncConnection.connect(postgres_db, autocommit=True) as other:
                await other.execute(f'NOTIFY "taskstore_{schema}_status"')
            assert await status.wait(5), "a status notification from elsewhere did not wake the watch"

            await create_in_another_process(url, "q")  # the claim still wakes on the wake channel
            assert [t.queue for t in await asyncio.wait_for(claim, 15)] == ["q"]
        finally:
            HUB.unsubscribe(("status", driver.wake_key), status)
