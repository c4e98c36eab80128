"""Fixtures and helpers shared by every part of the conformance suite.

A backend joins the suite by subclassing ``ConformanceSuite`` in a test module and providing the
``store_url`` fixture (and ``capabilities``, the optional behaviours it supports). Tests that need a
capability a backend lacks are skipped with the declared reason, never silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, ClassVar

import pytest
import pytest_asyncio

import taskstore
from taskstore import FakeClock, NewTask, Store, Task

# Optional behaviours. A backend lists the ones it has in ``capabilities``.
SHARED = "shared"  # two stores opened on the same URL see one database
MULTIPROCESS = "multiprocess"  # several OS processes may use the URL at once
JOIN_TRANSACTION = "join_transaction"  # create_many(conn=…) joins the caller's transaction

OpenStore = Callable[..., Awaitable[Store]]


class SuiteBase:
    capabilities: ClassVar[frozenset[str]] = frozenset()
    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError("a backend's test class provides the store_url fixture")

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest_asyncio.fixture
    async def open_store(self, store_url: str, clock: FakeClock) -> AsyncIterator[OpenStore]:
        """Open more stores on the backend's URL (the same database where the backend is ``SHARED``)."""
        async with contextlib.AsyncExitStack() as stack:

            async def open_(**options: Any) -> Store:
                options.setdefault("clock", clock)
                return await stack.enter_async_context(taskstore.open(store_url, **options))

            yield open_

    @pytest_asyncio.fixture
    async def store(self, open_store: OpenStore) -> Store:
        return await open_store()

    def need(self, capability: str) -> None:
        if capability not in self.capabilities:
            pytest.skip(f"{type(self).__name__} declares no {capability!r} capability")


def new(queue: str = "q", kind: str = "k", args: Any = None, **options: Any) -> NewTask:
    return NewTask(queue, kind, args, **options)


async def create(store: Store, n: int = 1, **options: Any) -> list[Task]:
    queue = options.pop("queue", "q")
    return await store.create_many([new(queue, args={"n": i}, **options) for i in range(n)])


async def claim_one(store: Store, worker: str = "w1", queues: list[str] | None = None) -> Task:
    claimed = await store.claim(worker, queues or [], limit=1)
    assert len(claimed) == 1, f"expected one claimable task, got {claimed}"
    assert claimed[0].claim is not None
    return claimed[0]


def secs(task_time: Any, base: Any) -> float:
    delta: timedelta = task_time - base
    return delta.total_seconds()


async def run_python(*args: str) -> str:
    """Run ``python -c`` with ``args`` (a program and its arguments) and return its output; it must exit 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode()
