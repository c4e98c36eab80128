"""A cancel made in this process reaches the running handler at once, on every backend.

The handlers have 60 s leases (renewed every 20 s); each test allows 5 s from ``cancel`` to ``cancelled``,
so only the prompt path fits, never the renewal.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import taskstore
from taskstore import App, State, Store, TaskCancelled, Worker

pytestmark = pytest.mark.asyncio
BOUND = 5.0  # far below the 20 s renewal, far above the expected milliseconds
LEASE = 60.0


@pytest_asyncio.fixture
async def other_store(app: App, url: str) -> AsyncIterator[Store]:
    """Another Store of this process on the app's database (memory:// has one store per database: the app's)."""
    if url.startswith("memory"):
        yield await app.store()
        return
    async with taskstore.open(url) as store:
        yield store


async def test_an_async_handler_is_cancelled_at_once(app: App, other_store: Store) -> None:
    started = asyncio.Event()

    @app.task(queue="q", processing_timeout=LEASE)
    async def hang() -> None:
        started.set()
        await asyncio.sleep(3600)

    handle = await hang.enqueue()
    async with Worker(app, maintenance=False):
        await asyncio.wait_for(started.wait(), 10)
        await other_store.cancel(handle.id)
        with pytest.raises(TaskCancelled):
            await handle.result(timeout=BOUND)
    assert (await handle.get()).state is State.CANCELLED


async def test_a_sync_handler_polling_cancel_requested_stops(app: App, other_store: Store) -> None:
    started, stopped = threading.Event(), threading.Event()
    seen_before: list[bool] = []

    @app.task(queue="q", processing_timeout=LEASE)
    def poll() -> str:
        seen_before.append(taskstore.cancel_requested())
        started.set()
        deadline = time.monotonic() + 60
        while not taskstore.cancel_requested() and time.monotonic() < deadline:
            time.sleep(0.005)
        stopped.set()
        return "stopped"

    handle = await poll.enqueue()
    async with Worker(app, maintenance=False) as worker:
        await asyncio.to_thread(started.wait, 10)
        await other_store.cancel(handle.id)
        with pytest.raises(TaskCancelled):
            await handle.result(timeout=BOUND)
        assert await asyncio.to_thread(stopped.wait, BOUND)  # its thread returned, not abandoned for good
    assert seen_before == [False]
    assert worker.stats.cancelled == 1


async def test_cancel_requested_is_false_outside_a_handler() -> None:
    assert taskstore.cancel_requested() is False
