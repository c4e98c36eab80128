"""The worker's log: one line per attempt (INFO done, WARNING will retry, ERROR dead) with the failure's traceback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from taskstore import App, BinaryExponential, NewTask, State, Task, Worker

pytestmark = pytest.mark.asyncio

NO_WAIT = BinaryExponential(base=0.0, cap=0.0)


@pytest_asyncio.fixture
async def app() -> AsyncIterator[App]:
    the_app = App("memory://")
    yield the_app
    await the_app.aclose()


async def finished(app: App, task_id: str, timeout: float = 10.0) -> Task:
    store = await app.store()
    deadline = time.monotonic() + timeout
    while (task := await store.get(task_id)).state not in (State.DONE, State.DEAD):
        assert time.monotonic() < deadline, f"task {task_id} stayed {task.state}"
        await asyncio.sleep(0.01)
    return task


def about(caplog: pytest.LogCaptureFixture, task_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "taskstore.worker" and f"task {task_id} " in r.getMessage()]


async def test_a_done_task_is_one_info_line(app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="taskstore.worker")

    @app.task(queue="mail", kind="send", max_attempts=4)
    async def send(to: str) -> str:
        return to

    handle = await send.enqueue("a@b")
    async with Worker(app):
        await handle.result(timeout=10)
    [line] = about(caplog, handle.id)
    assert line.levelno == logging.INFO
    assert line.getMessage().startswith(f"task {handle.id} (send) on queue mail, attempt 1/4: done in ")
    assert line.getMessage().endswith("s")


async def test_failures_warn_while_retries_remain_and_the_last_is_an_error_with_its_traceback(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskstore.worker")

    def explode() -> None:
        raise ValueError("boom")

    @app.task(queue="q", kind="flaky", max_attempts=2, retry=NO_WAIT)
    def flaky() -> None:
        explode()

    handle = await flaky.enqueue()
    async with Worker(app):
        task = await finished(app, handle.id)
    assert task.state is State.DEAD
    first, last = about(caplog, handle.id)
    assert first.levelno == logging.WARNING
    assert "attempt 1/2: failed in " in first.getMessage()
    assert "will retry: ValueError: boom" in first.getMessage()
    assert last.levelno == logging.ERROR
    assert "attempt 2/2: failed in " in last.getMessage()
    assert "dead: ValueError: boom" in last.getMessage()
    stored = task.result.failure.traceback if task.result and task.result.failure else None
    assert stored is not None
    for record in (first, last):
        assert record.exc_text is not None
        assert record.exc_text.startswith("Traceback (most recent call last):")
        assert "in explode" in record.exc_text
        assert record.exc_text.splitlines()[-1] == "ValueError: boom"
    # The text the store keeps, less the worker's own outer frames (it is formatted one frame further out).
    assert last.exc_text is not None
    assert stored.rstrip("\n").endswith(last.exc_text.removeprefix("Traceback (most recent call last):\n"))
    assert caplog.text.count("Traceback (most recent call last)") == 2  # a formatter prints it under the line


async def test_the_traceback_is_escaped_as_task_data_is(app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="taskstore.worker")

    @app.task(queue="q", kind="loud", max_attempts=1)
    async def loud() -> None:
        raise RuntimeError("\x1b[2J\u202egone")

    handle = await loud.enqueue()
    async with Worker(app):
        await finished(app, handle.id)
    [line] = about(caplog, handle.id)
    assert line.exc_text is not None
    assert "\x1b" not in line.exc_text
    assert "\u202e" not in line.exc_text
    assert "RuntimeError: \\x1b[2J\\u202egone" in line.exc_text


async def test_a_task_that_cannot_run_is_an_error_line(app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="taskstore.worker")
    store = await app.store()
    task = await store.create(NewTask("q", "nobody.handles.this"))
    async with Worker(app, ["q"]):
        await finished(app, task.id)
    [line] = about(caplog, task.id)
    assert line.levelno == logging.ERROR
    assert "attempt 1/" in line.getMessage()
    assert "failed before it ran, dead: UnknownTaskKind" in line.getMessage()


async def test_at_warning_a_done_task_logs_nothing(app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="taskstore.worker")

    @app.task(queue="q", kind="quiet")
    async def quiet() -> None:
        return None

    @app.task(queue="q", kind="noisy", max_attempts=1)
    async def noisy() -> None:
        raise KeyError("k")

    ok, bad = await quiet.enqueue(), await noisy.enqueue()
    async with Worker(app):
        await ok.result(timeout=10)
        await finished(app, bad.id)
    assert about(caplog, ok.id) == []
    [line] = about(caplog, bad.id)
    assert line.levelno == logging.ERROR
