"""PostgreSQL: a store LISTENs only once a waiter of its process needs other processes' wake-ups.

A process that only enqueues (a web app) opens no listening connection and is not sent every enqueue's NOTIFY;
a blocked claim, a status watch or a worker's cancel watch starts the listener, and wakes on another process's
insert through it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

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
