"""Flow control (SPEC §9) seen from a running worker, on every backend: pause, per-key limits, expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from taskstore import App, State, Worker

pytestmark = pytest.mark.asyncio


async def wait_for(condition: object, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def test_a_running_worker_stops_claiming_from_a_paused_queue_at_once(app: App) -> None:
    started: list[str] = []

    @app.task(queue="paused-q")
    async def job(name: str) -> None:
        started.append(name)

    @app.task(queue="other-q")
    async def other(name: str) -> None:
        started.append(name)

    store = await app.store()
    async with Worker(app, queues=["paused-q", "other-q"], concurrency=4):
        await job.enqueue("before")
        await wait_for(lambda: _count(store, State.DONE, 1))
        await store.pause_queue("paused-q")
        await job.enqueue("while paused")
        await other.enqueue("other queue")
        await wait_for(lambda: _count(store, State.DONE, 2))
        await asyncio.sleep(1.0)  # well past a claim round: nothing of the paused queue started
        assert started == ["before", "other queue"]
        assert await store.count(state=State.QUEUED, queue="paused-q") == 1
        await store.resume_queue("paused-q")
        await wait_for(lambda: _count(store, State.DONE, 3))
    assert started == ["before", "other queue", "while paused"]


async def test_tasks_of_one_key_never_overlap_under_a_concurrency_of_one(app: App) -> None:
    running: dict[str, int] = {}
    peak: dict[str, int] = {}

    @app.task(queue="q")
    async def tenant_job(tenant: str) -> None:
        running[tenant] = running.get(tenant, 0) + 1
        peak[tenant] = max(peak.get(tenant, 0), running[tenant])
        await asyncio.sleep(0.01)
        running[tenant] -= 1

    store = await app.store()
    await store.set_limit("tenant-a", concurrency=1)
    tasks = [tenant_job.options(concurrency_key="tenant-a").new_task("a") for _ in range(8)]
    tasks += [tenant_job.options(concurrency_key="tenant-b").new_task("b") for _ in range(8)]
    await store.create_many(tasks)
    async with Worker(app, concurrency=8):
        await wait_for(lambda: _count(store, State.DONE, 16))
    assert peak["a"] == 1
    assert peak["b"] > 1  # no limit on b: it ran side by side


async def test_an_expired_task_never_runs_and_ends_cancelled(app: App) -> None:
    ran: list[int] = []

    @app.task(queue="q")
    async def late() -> None:
        ran.append(1)

    store = await app.store()
    await store.pause_queue("q")
    handle = await late.options(expires=timedelta(seconds=0.3)).enqueue()
    await asyncio.sleep(0.5)
    await store.resume_queue("q")
    async with Worker(app, concurrency=2):
        await wait_for(lambda: _count(store, State.CANCELLED, 1))
    task = await handle.get()
    assert task.result is not None
    assert task.result.failure is not None
    assert task.result.failure.type == "Expired"
    assert ran == []


async def _count(store: object, state: State, n: int) -> bool:
    return await store.count(state=state) >= n  # type: ignore[attr-defined, no-any-return]
