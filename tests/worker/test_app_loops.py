"""One App, many event loops and threads: the store lives on its home loop and the App's API reaches it.

A web app opens the App's store on its server's loop (the lifespan) while sync endpoints run on threads and
tests run on loops of their own; a Store's connections belong to the loop that opened them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

import taskstore
from taskstore import App, NewTask, State, Worker, errors

R = TypeVar("R")


class LoopInThread:
    """An event loop running in a thread of its own: a web server's loop, seen from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[R]) -> R:
        async def wrapped() -> R:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def server_loop() -> Iterator[LoopInThread]:
    loop = LoopInThread()
    yield loop
    loop.close()


def _app(url: str) -> tuple[App, Any]:
    app = App(url, name="loops")

    @app.task(queue="q")
    def echo(x: int) -> int:
        return x

    return app, echo


@pytest.mark.asyncio
async def test_a_store_used_from_another_loop_is_refused_at_once(url: str, server_loop: LoopInThread) -> None:
    store = taskstore.open(url)
    server_loop.run(store.connect())
    try:
        if url.startswith("memory"):  # plain dicts under a lock: any loop may use it
            await store.create(NewTask("q", "k"))
            assert server_loop.run(store.count()) == 1
            return
        with pytest.raises(errors.ConfigError, match="opened on another event loop"):
            await store.create(NewTask("q", "k"))
        with pytest.raises(errors.ConfigError, match="another event loop"):
            await store.count()
        assert server_loop.run(store.count()) == 0  # nothing was stored by the refused call
    finally:
        server_loop.run(store.close())


@pytest.mark.asyncio
async def test_the_apps_api_works_from_a_loop_other_than_the_stores(url: str, server_loop: LoopInThread) -> None:
    app, echo = _app(url)
    store = server_loop.run(app.store())  # opened in the "lifespan", on the server's loop
    try:
        handle = await echo.enqueue(1)  # from this test's loop
        assert (await handle.get()).state is State.QUEUED
        assert (await handle.cancel()).state is State.CANCELLED
        with pytest.raises(taskstore.TaskCancelled):
            await handle.result(timeout=5)
        assert server_loop.run(store.count()) == 1
        assert store.loop is server_loop.loop
    finally:
        server_loop.run(app.aclose())


def test_sync_callers_on_threads_share_the_store_of_a_running_loop(url: str, server_loop: LoopInThread) -> None:
    app, echo = _app(url)
    store = server_loop.run(app.store())

    def endpoint(i: int) -> str:
        return echo.enqueue_sync(i).id

    async def async_endpoint(i: int) -> str:
        return (await echo.enqueue(i)).id

    async def requests() -> list[str]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(8) as pool:
            sync_ids = [loop.run_in_executor(pool, endpoint, i) for i in range(40)]
            return list(await asyncio.gather(*sync_ids, *(async_endpoint(i) for i in range(40))))

    try:
        ids = server_loop.run(requests())
        assert len(set(ids)) == 80
        assert server_loop.run(store.count(state=State.QUEUED)) == 80
        assert app._sync.loop is None  # no second loop (and no second pool) was started for the sync callers
    finally:
        server_loop.run(app.aclose())


def test_a_sync_call_on_the_stores_own_loop_is_an_error_not_a_deadlock(url: str, server_loop: LoopInThread) -> None:
    app, echo = _app(url)
    server_loop.run(app.store())

    async def async_endpoint_calling_sync() -> None:
        echo.enqueue_sync(1)

    try:
        with pytest.raises(errors.ConfigError, match="would wait for itself"):
            server_loop.run(async_endpoint_calling_sync())
    finally:
        server_loop.run(app.aclose())


def test_after_its_loop_closed_the_app_opens_its_store_on_the_next_loop(url: str) -> None:
    app, echo = _app(url)

    async def first() -> str:
        return (await echo.enqueue(1)).id

    async def second(task_id: str) -> tuple[int, State]:
        store = await app.store()
        return await store.count(), (await app.handle(task_id).get()).state

    task_id = asyncio.run(first())  # its loop is closed when asyncio.run returns, the store not closed
    count, state = asyncio.run(second(task_id))
    assert (count, state) == (1, State.QUEUED)  # memory:// too: its tasks survive the move
    asyncio.run(app.aclose())


@pytest.mark.asyncio
async def test_a_worker_on_its_own_loop_uses_a_store_of_its_own(url: str, server_loop: LoopInThread) -> None:
    app, echo = _app(url)
    apps_own = server_loop.run(app.store())
    try:
        handle = await echo.enqueue(7)
        async with Worker(app, ["q"], concurrency=2, maintenance=False) as worker:
            assert await handle.result(timeout=10) == 7
        if url.startswith("memory"):  # one process's dicts, usable from any loop: a second store would be empty
            assert worker.store is apps_own
        else:
            assert worker.store is not apps_own
            assert not worker.store._opened  # the worker closed the store it opened
    finally:
        server_loop.run(app.aclose())


def _run_in_thread(fn: Callable[[], R]) -> R:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result(timeout=30)


def test_options_override_the_tasks_own_for_one_call() -> None:
    app = App("memory://", name="opts")

    @app.task(max_attempts=3, processing_timeout=60, priority=1)
    def job() -> None: ...

    policy = taskstore.retry.BinaryExponential(base=2.0)
    task = job.options(max_attempts=9, processing_timeout=5, retry=policy, priority=4).enqueue_sync().task
    assert task is not None
    assert (task.max_attempts, task.processing_timeout, task.priority) == (9, 5.0, 4)
    assert task.retry == policy
    plain = job.enqueue_sync().task
    assert plain is not None
    assert (plain.max_attempts, plain.processing_timeout, plain.priority) == (3, 60.0, 1)
    for bad in ({"max_attempts": 0}, {"processing_timeout": -1}, {"processing_timeout": float("nan")}):
        with pytest.raises(errors.InvalidTask):
            job.options(**bad)
    app.close()
