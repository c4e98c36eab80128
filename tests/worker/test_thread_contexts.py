"""``App.thread_context``: sync handlers run inside registered context managers, in their own thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from taskstore import App, State, Task, Worker

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def app() -> AsyncIterator[App]:
    the_app = App("memory://")
    yield the_app
    await the_app.aclose()


async def finished(app: App, task_id: str, timeout: float = 10.0) -> Task:
    store = await app.store()
    deadline = time.monotonic() + timeout
    while not (task := await store.get(task_id)).state.is_terminal and task.state is not State.FAILED:
        assert time.monotonic() < deadline, f"task {task_id} stayed {task.state}"
        await asyncio.sleep(0.02)
    return task


async def test_each_sync_call_runs_inside_the_contexts_in_its_own_thread(app: App) -> None:
    events: list[tuple[str, str, int]] = []

    def recorder(name: str) -> contextlib.AbstractContextManager[None]:
        @contextlib.contextmanager
        def around() -> Iterator[None]:
            events.append(("enter", name, threading.get_ident()))
            try:
                yield
            finally:
                events.append(("exit", name, threading.get_ident()))

        return around()

    app.thread_context(lambda: recorder("outer"))
    app.thread_context(lambda: recorder("inner"))

    @app.task
    def work(fail: bool) -> None:
        events.append(("run", "handler", threading.get_ident()))
        if fail:
            raise RuntimeError("boom")

    ok, bad = await work.enqueue(False), await work.options().enqueue(True)
    async with Worker(app, concurrency=1):
        assert (await finished(app, ok.id)).state is State.DONE
        assert (await finished(app, bad.id)).state in {State.FAILED, State.DEAD}
    per_call = [events[:5], events[5:]]
    assert len(events) == 10
    for call in per_call:
        assert [(what, name) for what, name, _ in call] == [
            ("enter", "outer"),
            ("enter", "inner"),
            ("run", "handler"),
            ("exit", "inner"),
            ("exit", "outer"),  # also when the handler raised
        ]
        threads = {thread for _, _, thread in call}
        assert threads != {threading.get_ident()}
        assert len(threads) == 1  # entered and exited in the handler's thread


async def test_async_handlers_are_not_wrapped(app: App) -> None:
    entered: list[int] = []

    @contextlib.contextmanager
    def around() -> Iterator[None]:
        entered.append(1)
        yield

    app.thread_context(around)

    @app.task
    async def work() -> int:
        return 1

    handle = await work.enqueue()
    async with Worker(app, concurrency=1):
        assert (await finished(app, handle.id)).state is State.DONE
    assert entered == []
