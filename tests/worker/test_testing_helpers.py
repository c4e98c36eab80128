"""taskstore.testing's helpers for apps (drain, run_until_complete), eager mode and App.configure, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from taskstore import App, FakeClock, Retry, State, errors
from taskstore.client import TaskFailed
from taskstore.middleware import CallNext, TaskContext
from taskstore.retry import Exponential
from taskstore.testing import NeverFinishes, TooManyTasks, drain, run_until_complete

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def clocked_app(url: str) -> AsyncIterator[tuple[App, FakeClock]]:
    clock = FakeClock()
    app = App(url, clock=clock)
    yield app, clock
    await app.aclose()


async def test_drain_runs_every_due_task_and_what_they_enqueue(clocked_app: tuple[App, FakeClock]) -> None:
    app, clock = clocked_app
    seen: list[int] = []

    @app.task(queue="q")
    async def child(n: int) -> int:
        seen.append(n)
        return n

    @app.task(queue="other")
    async def parent(n: int) -> int:
        await child.enqueue(n * 10)
        return n

    handles = [await parent.enqueue(i) for i in range(3)]
    later = await child.options(delay=60).enqueue(99)

    assert await drain(app) == 6  # three parents, the three children they enqueued
    assert sorted(seen) == [0, 10, 20]
    assert [await h.result(timeout=0) for h in handles] == [0, 1, 2]
    assert (await later.get()).state is State.QUEUED  # not due on the App's clock
    assert await drain(app) == 0

    clock.advance(60)
    assert await drain(app, queues=["other"]) == 0  # only the queues asked for
    assert await drain(app, queues=["q"]) == 1
    assert await later.result(timeout=0) == 99


async def test_drain_runs_a_chain_link_after_link(clocked_app: tuple[App, FakeClock]) -> None:
    app, _ = clocked_app

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    handle = await app.chain(add.s(1, 2), add.s(10), add.s(100)).enqueue()
    assert await drain(app) == 3
    assert await handle.result(timeout=0) == 113


async def test_run_until_complete_moves_the_fake_clock_through_retries(clocked_app: tuple[App, FakeClock]) -> None:
    app, clock = clocked_app
    start = clock.now()
    calls: list[int] = []

    @app.task(max_attempts=3, retry=Exponential(base=100.0, jitter=0))
    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("upstream down")
        return "ok"

    @app.task
    async def much_later() -> None: ...

    await much_later.options(delay=10_000).enqueue()
    handle = await flaky.enqueue()
    assert await run_until_complete(app, handle) == "ok"
    task = await handle.get()
    assert task.attempts == 3
    assert (clock.now() - start).total_seconds() == 100 + 200  # exactly to each retry's run_at, no further


async def test_run_until_complete_raises_as_the_handle_does(clocked_app: tuple[App, FakeClock]) -> None:
    app, _ = clocked_app

    @app.task(max_attempts=2)
    async def broken() -> None:
        raise ValueError("bad input")

    handle = await broken.enqueue()
    with pytest.raises(TaskFailed, match="bad input"):
        await run_until_complete(app, handle)
    assert (await handle.get()).attempts == 2


async def test_run_until_complete_needs_a_fake_clock_to_wait(app: App) -> None:
    @app.task
    async def later() -> None: ...

    handle = await later.options(delay=3600).enqueue()
    with pytest.raises(errors.ConfigError, match="FakeClock"):
        await run_until_complete(app, handle)


async def test_run_until_complete_says_why_nothing_runs(clocked_app: tuple[App, FakeClock]) -> None:
    app, _ = clocked_app

    @app.task(queue="held")
    async def held() -> None: ...

    handle = await held.enqueue()
    store = await app.store()
    await store.pause_queue("held")
    with pytest.raises(NeverFinishes, match="paused"):
        await run_until_complete(app, handle)


async def test_a_task_that_keeps_coming_back_is_stopped(clocked_app: tuple[App, FakeClock]) -> None:
    app, _ = clocked_app

    @app.task(max_attempts=100)
    async def again() -> None:
        raise Retry(delay=0)

    handle = await again.enqueue()
    with pytest.raises(TooManyTasks):
        await drain(app, max_tasks=5)
    with pytest.raises(TooManyTasks):
        await run_until_complete(app, handle, max_tasks=5)


async def test_eager_runs_at_enqueue_through_the_middleware(url: str) -> None:
    app = App(url, eager=True)
    seen: list[str] = []

    @app.middleware
    async def note(ctx: TaskContext, call_next: CallNext) -> Any:
        seen.append(ctx.task.kind)
        return await call_next(ctx)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    @app.task
    def sync_double(x: int) -> int:
        return 2 * x

    try:
        handle = await double.enqueue(21)
        assert handle.task is not None
        assert handle.task.state is State.DONE
        assert await handle.result(timeout=0) == 42
        assert await (await sync_double.enqueue(4)).result(timeout=0) == 8
        assert seen == [double.kind, sync_double.kind]
        chain = await app.chain(double.s(1), double.s(), double.s()).enqueue()
        assert await chain.result(timeout=0) == 8
    finally:
        await app.aclose()


async def test_eager_chord_runs_members_then_callback(url: str) -> None:
    app = App(url, eager=True)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    @app.task
    async def total(values: list[int]) -> int:
        return sum(values)

    try:
        handle = await app.chord([double.s(1), double.s(2), double.s(3)], total.s()).enqueue()
        assert await handle.result(timeout=0) == 12
    finally:
        await app.aclose()


async def test_eager_failure_propagates_or_is_recorded(clocked_app: tuple[App, FakeClock]) -> None:
    app, _ = clocked_app
    app.configure(eager=True)

    @app.task(max_attempts=2, retry=Exponential(base=30.0, jitter=0))
    async def broken(n: int) -> None:
        raise ValueError(f"bad {n}")

    with pytest.raises(ValueError, match="bad 1"):  # the handler's own exception, after it was recorded
        await broken.enqueue(1)
    store = await app.store()
    (task,) = (await store.list(queue="default")).items
    assert task.state is State.FAILED
    assert task.attempts == 1

    app.configure(eager_propagates=False)
    handle = await broken.enqueue(2)
    assert handle.task is not None
    assert handle.task.state is State.FAILED
    with pytest.raises(TaskFailed, match="bad 2"):
        await run_until_complete(app, handle)


async def test_configure_refuses_while_the_store_is_open(clocked_app: tuple[App, FakeClock]) -> None:
    app, _ = clocked_app
    await app.store()
    with pytest.raises(errors.ConfigError, match=r"await app\.aclose\(\)"):
        app.configure(url="memory://")
    with pytest.raises(errors.ConfigError, match="clock"):
        app.clock = FakeClock()  # once silently ignored
    app.configure(eager=True)  # no store setting: fine while open
    assert app.eager

    await app.aclose()
    later = FakeClock()
    later.advance(3600)
    app.clock = later
    assert app.clock is later
    store = await app.store()
    assert store.now() == later.now()  # the next store decides with the new clock
