"""A cancel reaches a handler in another process promptly, not at its worker's next lease renewal.

The tasks (``workload.hang``/``hang_sync``) have 60 s leases, renewed every 20 s; each test allows 5 s
from ``cancel`` to ``cancelled``: only the prompt path (PostgreSQL NOTIFY, SQLite's commit watch) fits.
"""

from __future__ import annotations

from typing import Any

import pytest

import taskstore
from taskstore import State

from .test_worker_processes import Workers, run, wait_until, workers
from .workload import hang, hang_sync

pytestmark = pytest.mark.slow
__all__ = ["workers"]  # the fixture, shared with the other process tests

BOUND = 5.0  # far below the 20 s renewal, far above the expected milliseconds


@pytest.mark.parametrize("handler", [hang, hang_sync], ids=["async", "sync-polling"])
def test_a_cancel_from_another_process_stops_the_running_handler(url: str, workers: Workers, handler: Any) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            (task,) = await store.create_many([handler.new_task()])
            workers.start("hang", concurrency=2)

            async def running() -> bool:
                return any(r["id"] == task.id for r in workers.executions())

            await wait_until(running, 60, "the worker to start the handler")
            requested = await store.cancel(task.id)
            assert requested.state is State.CLAIMED
            assert requested.cancel_requested

            async def cancelled() -> bool:
                return (await store.get(task.id)).state is State.CANCELLED

            await wait_until(cancelled, BOUND, "the worker to record the cancel")
        if handler is hang_sync:  # it saw taskstore.cancel_requested() turn True and returned
            await wait_until(lambda: _stopped(workers, task.id), BOUND, "the sync handler to return")

    run(scenario())


async def _stopped(workers: Workers, task_id: str) -> bool:
    return any(r["id"] == task_id and r["kind"] == "hang_sync_stopped" for r in workers.executions())
