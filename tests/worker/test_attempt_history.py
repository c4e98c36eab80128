"""A worker's failed attempts stay visible after a later success (issue 12): ``Task.failures``."""

from __future__ import annotations

import pytest

from taskstore import App, BinaryExponential, State, Worker

from .test_handler_control import state_of

pytestmark = pytest.mark.asyncio


async def test_a_handler_that_fails_twice_then_succeeds_keeps_both_failures(app: App) -> None:
    calls: list[int] = []

    @app.task(queue="q", max_attempts=5, retry=BinaryExponential(base=0))
    async def flaky(n: int) -> str:
        calls.append(n)
        if len(calls) <= 2:
            raise ConnectionError(f"refused, call {len(calls)}")
        return "ok"

    handle = await flaky.enqueue(7)
    async with Worker(app, worker_id="worker-a"):
        task = await state_of(app, handle.id, State.DONE, State.DEAD)
    assert task.state is State.DONE
    assert [(f.attempt, f.worker_id, f.failure.type, f.failure.message) for f in task.failures] == [
        (1, "worker-a", "ConnectionError", "refused, call 1"),
        (2, "worker-a", "ConnectionError", "refused, call 2"),
    ]
    assert task.finished_at is not None
    for entry in task.failures:
        assert entry.failure.traceback is not None
        assert "raise ConnectionError" in entry.failure.traceback
        assert entry.ended_at <= task.finished_at
