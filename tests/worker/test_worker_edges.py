"""A worker at the edges: handlers that exit or hang, and a store that will not take a result.

Whatever a handler does, the attempt ends with a failure and the worker goes on; a finished result
is never dropped while its lease can still be kept.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from taskstore import App, State, TaskFailed, Worker, errors
from taskstore.store import Store

pytestmark = pytest.mark.asyncio


class Fatal(BaseException):
    """Not an Exception: what a careless library might raise."""


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ itself fails")


def _exit() -> None:
    sys.exit(3)


def _interrupt() -> None:
    raise KeyboardInterrupt


def _fatal() -> None:
    raise Fatal("gone")


def _unprintable() -> None:
    raise Unprintable


def _cancelled() -> None:
    raise asyncio.CancelledError  # from inside the handler: nobody cancelled the worker's task


def _stop_iteration() -> None:
    raise StopIteration  # an asyncio future cannot carry it: a naive hand-over from a thread hangs


RAISERS: list[tuple[Callable[[], None], str, str]] = [
    (_exit, "SystemExit", "3"),
    (_interrupt, "KeyboardInterrupt", "KeyboardInterrupt"),
    (_fatal, "Fatal", "gone"),
    (_unprintable, "Unprintable", "__str__ raised RuntimeError"),
    (_cancelled, "CancelledError", "the handler raised CancelledError"),
    (_stop_iteration, "RuntimeError", "raised StopIteration"),  # as Python turns it in any coroutine
]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("raiser", "type_name", "in_message"), RAISERS, ids=[r[1] for r in RAISERS])
async def test_a_handler_that_raises_anything_fails_its_attempt_and_the_worker_goes_on(
    app: App, is_async: bool, raiser: Callable[[], None], type_name: str, in_message: str
) -> None:
    target: Any
    if is_async:

        @app.task(queue="q", max_attempts=1)
        async def async_raise() -> None:
            raiser()

        target = async_raise
    else:

        @app.task(queue="q", max_attempts=1)
        def sync_raise() -> None:
            raiser()

        target = sync_raise

    @app.task(queue="q")
    def fine() -> str:
        return "fine"

    bad = await target.enqueue()
    async with Worker(app, concurrency=2) as worker:
        with pytest.raises(TaskFailed) as caught:
            await bad.result(timeout=10)
        assert await (await fine.enqueue()).result(timeout=10) == "fine"  # the same worker still runs tasks
        assert not worker.forced
    failure = caught.value.failure
    assert failure is not None
    assert failure.type == type_name
    assert in_message in failure.message
    assert failure.traceback is not None
    assert raiser.__name__ in failure.traceback
    assert caught.value.task.attempts == 1


async def test_a_sync_handler_past_its_timeout_frees_its_slot(app: App) -> None:
    release = threading.Event()

    @app.task(queue="q", timeout=0.2, max_attempts=1)
    def stuck() -> None:
        release.wait(60)  # ignores its timeout, as blocking code does

    @app.task(queue="q")
    def after() -> str:
        return "ran"

    first = await stuck.enqueue()
    second = await after.enqueue()
    try:
        async with Worker(app, concurrency=1) as worker:
            with pytest.raises(TaskFailed) as caught:
                await first.result(timeout=10)
            assert await second.result(timeout=10) == "ran"  # a -c 1 worker is not held by the stuck thread
            assert worker.stats.abandoned == 1
    finally:
        release.set()
    assert caught.value.failure is not None
    assert caught.value.failure.type == "HandlerTimeout"


async def test_stuck_threads_do_not_starve_a_capped_thread_pool(app: App) -> None:
    release = threading.Event()

    @app.task(queue="q", timeout=0.2, max_attempts=1)
    def stuck(i: int) -> None:
        release.wait(60)

    @app.task(queue="q")
    def after(i: int) -> int:
        return i

    stuck_ones = [await stuck.enqueue(i) for i in range(3)]
    try:
        async with Worker(app, concurrency=4, threads=2) as worker:
            for handle in stuck_ones:
                with pytest.raises(TaskFailed):
                    await handle.result(timeout=10)
            later = [await after.enqueue(i) for i in range(4)]
            assert [await h.result(timeout=10) for h in later] == [0, 1, 2, 3]
            # Two of them at least held both threads of the cap (a third may time out waiting for one).
            assert worker.stats.abandoned >= 2
    finally:
        release.set()


async def test_stop_releases_a_task_whose_sync_handler_is_stuck(app: App) -> None:
    started, release = threading.Event(), threading.Event()

    @app.task(queue="q")
    def stuck() -> None:
        started.set()
        release.wait(60)

    handle = await stuck.enqueue()
    worker = Worker(app, concurrency=1, grace=0.2, maintenance=False)
    await worker.start()
    try:
        assert await asyncio.to_thread(started.wait, 10)
        await asyncio.wait_for(worker.stop(), 10)
    finally:
        release.set()
    task = await handle.get()
    assert (task.state, task.attempts) == (State.QUEUED, 0)
    assert worker.stats.released == 1


# -- completions the store will not take yet ------------------------------------------------------


class Outage:
    """Makes the store refuse completions (as if unreachable) until ``end()``; counts the refusals."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.refused = asyncio.Event()
        self.over = asyncio.Event()
        real = store.acknowledge_many

        async def acknowledge_many(items: Any) -> Any:
            if not self.over.is_set():
                self.refused.set()
                raise errors.BackendUnavailable("the store is down (test)")
            return await real(items)

        monkeypatch.setattr(store, "acknowledge_many", acknowledge_many)

    def end(self) -> None:
        self.over.set()


async def test_a_finished_task_keeps_its_lease_until_its_completion_is_written(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task(queue="q", processing_timeout=3.0)
    async def quick() -> str:
        return "ok"

    store = await app.store()
    outage = Outage(store, monkeypatch)
    handle = await quick.enqueue()
    async with Worker(app, maintenance=False):
        await asyncio.wait_for(outage.refused.wait(), 10)  # the handler has finished; its result waits
        finished_with = (await handle.get()).claim
        assert finished_with is not None

        async def renewed() -> bool:
            claim = (await handle.get()).claim
            return claim is not None and claim.times_out_at > finished_with.times_out_at

        deadline = time.monotonic() + 10
        while not await renewed():
            assert time.monotonic() < deadline, "the finished task's lease was not renewed"
            await asyncio.sleep(0.05)
        assert await store.reap() == 0
        outage.end()
        assert await handle.result(timeout=10) == "ok"
    assert (await handle.get()).attempts == 1


@pytest_asyncio.fixture
async def memory_app() -> AsyncIterator[App]:
    the_app = App("memory://")
    yield the_app
    await the_app.aclose()


async def test_stop_writes_finished_results_within_the_grace(memory_app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    app = memory_app

    @app.task(queue="q", processing_timeout=2.0)
    async def quick(i: int) -> int:
        return i

    store = await app.store()
    outage = Outage(store, monkeypatch)
    handles = [await quick.enqueue(i) for i in range(3)]
    worker = Worker(app, grace=30, maintenance=False)
    await worker.start()
    await asyncio.wait_for(outage.refused.wait(), 10)
    stopping = asyncio.create_task(worker.stop())
    await asyncio.sleep(6)  # an outage longer than a fixed flush timeout, well within the grace
    assert not stopping.done()
    outage.end()
    await asyncio.wait_for(stopping, 20)
    tasks = [await h.get() for h in handles]
    assert [(t.state, t.attempts) for t in tasks] == [(State.DONE, 1)] * 3
    assert worker.stats.succeeded == 3


async def test_stop_gives_up_on_unwritten_results_at_the_end_of_the_grace(
    memory_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = memory_app

    @app.task(queue="q")
    async def quick() -> str:
        return "ok"

    store = await app.store()
    outage = Outage(store, monkeypatch)
    handle = await quick.enqueue()
    worker = Worker(app, grace=0.5, maintenance=False)
    await worker.start()
    await asyncio.wait_for(outage.refused.wait(), 10)
    start = time.monotonic()
    await asyncio.wait_for(worker.stop(), 30)
    assert time.monotonic() - start < 15  # the grace and a bounded last flush, not forever
    assert (await handle.get()).state is State.CLAIMED  # its lease will time out and it runs again


async def test_a_failure_waits_for_the_store_with_its_lease_kept(
    memory_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = memory_app

    @app.task(queue="q", processing_timeout=2.0, max_attempts=1)
    async def boom() -> None:
        raise RuntimeError("boom")

    store = await app.store()
    refused, over = asyncio.Event(), asyncio.Event()
    real = store.mark_failed

    async def mark_failed(claim: Any, failure: Any, **options: Any) -> Any:
        if not over.is_set():
            refused.set()
            raise errors.BackendUnavailable("the store is down (test)")
        return await real(claim, failure, **options)

    monkeypatch.setattr(store, "mark_failed", mark_failed)
    handle = await boom.enqueue()
    async with Worker(app, maintenance=False):
        await asyncio.wait_for(refused.wait(), 10)
        await asyncio.sleep(6)  # an outage longer than a few fixed retries and a lease after them
        assert await store.reap() == 0  # the lease was kept meanwhile
        over.set()
        with pytest.raises(TaskFailed) as caught:
            await handle.result(timeout=10)
    assert caught.value.failure is not None
    assert caught.value.failure.message == "boom"
    assert caught.value.task.attempts == 1
