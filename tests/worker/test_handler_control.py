"""Handler control (SPEC §9): Retry, Reject and retry_for, and App tasks stored with args None (issue 11)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

import taskstore
from taskstore import App, BinaryExponential, FakeClock, NewTask, State, Task, TaskFailed, Worker

pytestmark = pytest.mark.asyncio


async def state_of(app: App, task_id: str, *states: State, timeout: float = 10.0) -> Task:
    """The task once it reaches one of ``states`` (bounded polling: the worker runs in this loop)."""
    store = await app.store()
    deadline = time.monotonic() + timeout
    while True:
        task = await store.get(task_id)
        if task.state in states:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} stayed {task.state}, expected one of {states}")
        await asyncio.sleep(0.02)


# -- Retry ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [3600, timedelta(hours=1)])
async def test_retry_with_a_delay_fails_the_attempt_and_waits_that_long(
    clocked: tuple[App, FakeClock], delay: float | timedelta
) -> None:
    app, clock = clocked

    @app.task(queue="q", max_attempts=5, retry=BinaryExponential(base=7))
    async def later() -> None:
        raise taskstore.Retry(delay=delay, reason="upstream busy")

    handle = await later.enqueue()
    async with Worker(app):
        task = await state_of(app, handle.id, State.FAILED, State.DEAD)
    assert task.state is State.FAILED
    assert task.attempts == 1
    assert task.run_at == clock.now() + timedelta(seconds=3600)  # not the policy's 7 s
    assert task.result is not None
    assert task.result.failure is not None
    assert task.result.failure.type == "Retry"
    assert "in 3600s" in task.result.failure.message
    assert "upstream busy" in task.result.failure.message


async def test_retry_without_a_delay_uses_the_tasks_policy(clocked: tuple[App, FakeClock]) -> None:
    app, clock = clocked

    @app.task(queue="q", max_attempts=5, retry=BinaryExponential(base=7))
    def later() -> None:  # a sync handler: the signal crosses its thread
        raise taskstore.Retry()

    handle = await later.enqueue()
    async with Worker(app):
        task = await state_of(app, handle.id, State.FAILED, State.DEAD)
    assert task.state is State.FAILED
    assert task.run_at == clock.now() + timedelta(seconds=7)


async def test_retry_spends_an_attempt_and_the_last_one_goes_dead(app: App) -> None:
    attempts: list[int] = []

    @app.task(queue="q", max_attempts=3)
    async def stubborn() -> None:
        attempts.append(taskstore.current_task().attempts)
        raise taskstore.Retry(delay=0)

    handle = await stubborn.enqueue()
    async with Worker(app):
        with pytest.raises(TaskFailed) as caught:
            await handle.result(timeout=10)
    assert attempts == [1, 2, 3]
    assert caught.value.failure is not None
    assert caught.value.failure.type == "Retry"


async def test_retry_then_success(app: App) -> None:
    @app.task(queue="q", max_attempts=5)
    async def eventually() -> int:
        attempt = taskstore.current_task().attempts
        if attempt < 3:
            raise taskstore.Retry(delay=0.0)
        return attempt

    handle = await eventually.enqueue()
    async with Worker(app):
        assert await handle.result(timeout=10) == 3


async def test_a_bad_retry_delay_fails_the_attempt_with_invalid_task(app: App) -> None:
    @app.task(queue="q", max_attempts=1)
    async def confused() -> None:
        raise taskstore.Retry(delay=-5)

    handle = await confused.enqueue()
    async with Worker(app):
        with pytest.raises(TaskFailed) as caught:
            await handle.result(timeout=10)
    assert caught.value.failure is not None
    assert caught.value.failure.type == "InvalidTask"
    assert "Retry delay" in caught.value.failure.message


# -- Reject --------------------------------------------------------------------------------------


async def test_reject_is_dead_at_once_whatever_attempts_remain(app: App) -> None:
    calls: list[int] = []

    @app.task(queue="q", max_attempts=10)
    def refuse(order: str) -> None:
        calls.append(1)
        raise taskstore.Reject(f"order {order} was deleted")

    handle = await refuse.enqueue("o-7")
    async with Worker(app):
        with pytest.raises(TaskFailed) as caught:
            await handle.result(timeout=10)
    assert calls == [1]
    failure = caught.value.failure
    assert failure is not None
    assert (failure.type, failure.retryable) == ("Reject", False)
    assert "order o-7 was deleted" in failure.message
    assert caught.value.task.attempts == 1


# -- retry_for -----------------------------------------------------------------------------------


async def test_retry_for_retries_only_the_listed_exceptions(clocked: tuple[App, FakeClock]) -> None:
    app, _ = clocked

    @app.task(queue="q", max_attempts=5, retry_for=(ConnectionError, TimeoutError))
    async def fetch(what: str) -> None:
        if what == "network":
            raise ConnectionResetError("peer went away")  # a ConnectionError: retried
        raise KeyError(what)  # not listed: dead at once

    listed = await fetch.enqueue("network")
    other = await fetch.enqueue("bug")
    async with Worker(app):
        retried = await state_of(app, listed.id, State.FAILED, State.DEAD)
        dead = await state_of(app, other.id, State.FAILED, State.DEAD)
    assert retried.state is State.FAILED
    assert dead.state is State.DEAD
    assert dead.attempts == 1
    assert dead.result is not None
    assert dead.result.failure is not None
    assert (dead.result.failure.type, dead.result.failure.retryable) == ("KeyError", False)


async def test_retry_for_does_not_stop_an_explicit_retry(clocked: tuple[App, FakeClock]) -> None:
    app, clock = clocked

    @app.task(queue="q", max_attempts=5, retry_for=ConnectionError)
    def asks() -> None:
        raise taskstore.Retry(delay=60)

    handle = await asks.enqueue()
    async with Worker(app):
        task = await state_of(app, handle.id, State.FAILED, State.DEAD)
    assert task.state is State.FAILED
    assert task.run_at == clock.now() + timedelta(seconds=60)


# -- args None (issue 11) --------------------------------------------------------------------------


async def test_an_app_task_created_with_args_none_runs_with_no_arguments(app: App) -> None:
    @app.task(queue="q", kind="tests.ping")
    async def ping() -> str:
        return "pong"

    store = await app.store()
    raw = await store.create(NewTask("q", "tests.ping", None))
    async with Worker(app):
        assert await app.handle(raw.id).result(timeout=10) == "pong"


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"to": "a@b"}, "unexpected key(s) 'to'"),
        ({"args": [], "kwargs": {}, "extra": 1}, "unexpected key(s) 'extra'"),
        ({"args": {"x": 1}}, "args must be a list"),
        ({"kwargs": [1]}, "kwargs must be an object"),
        ([1, 2], "got list"),
    ],
)
async def test_other_malformed_args_still_go_dead_with_a_clear_message(app: App, payload: Any, says: str) -> None:
    @app.task(queue="q", kind="tests.ping")
    async def ping() -> str:
        return "pong"

    store = await app.store()
    bad = await store.create(NewTask("q", "tests.ping", payload))
    async with Worker(app):
        with pytest.raises(TaskFailed) as caught:
            await app.handle(bad.id).result(timeout=10)
    failure = caught.value.failure
    assert failure is not None
    assert failure.type == "InvalidPayload"
    assert says in failure.message
    assert "None or" in failure.message
