"""procrastinate on PostgreSQL (psycopg 3): the adapter for bench/peers/_common.py. Runs in its own venv.

Flow control, as its docs (3.10) recommend: ``lock=`` (docs/howto/advanced/locks.md: jobs with the same lock
run one at a time, in order) set with ``configure(lock=...).batch_defer_async`` per key, its batch API for jobs
sharing a configuration; ``queueing_lock=`` (docs/howto/advanced/queueing_locks.md) for deduplication. A batch
shares one configuration (docs/howto/basics/batch_defer.md: a batch with one queueing lock raises
AlreadyEnqueued), so tasks with distinct queueing locks are deferred one by one, many in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import procrastinate
from _common import (
    Adapter,
    in_flight,
    key_of,
    keyed_handler,
    noop_handler,
    run,
    sleep_handler_async,
    timed_handler,
    unique_key_of,
)

IN_FLIGHT = 100


class Procrastinate(Adapter):
    unique_api = f"task.configure(queueing_lock=key).defer_async, {IN_FLIGHT} in flight (a batch shares one lock)"
    limit_api = "task.configure(lock=key).batch_defer_async, one batch per key (a lock runs one job at a time)"

    def settings(self, concurrency: int) -> str:
        return f"run_worker_async(concurrency={concurrency}, listen_notify=True); enqueue: batch_defer_async"

    async def open(self, url: str, install: bool) -> None:
        self.app = app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

        @app.task(name="noop", queue="bench")
        async def noop(p: float) -> None:
            noop_handler(p)

        @app.task(name="sleep", queue="bench")
        async def sleep(p: float) -> None:
            await sleep_handler_async(p)

        @app.task(name="timed", queue="bench")
        async def timed(p: float) -> None:
            timed_handler(p)

        @app.task(name="keyed", queue="bench")
        async def keyed(p: float, key: int) -> None:
            await keyed_handler(key)

        await app.open_async()
        if install:
            await app.schema_manager.apply_schema_async()

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        if kind == "keyed":
            await self.app.tasks["keyed"].batch_defer_async(*({"p": p, "key": key_of(int(p))} for p in payloads))
        elif kind == "limited":
            by_key: dict[int, list[float]] = {}
            for p in payloads:
                by_key.setdefault(key_of(int(p)), []).append(p)
            task = self.app.tasks["keyed"]
            for key, ps in by_key.items():
                await task.configure(lock=f"tenant-{key}").batch_defer_async(*({"p": p, "key": key} for p in ps))
        else:
            await self.app.tasks[kind].batch_defer_async(*({"p": p} for p in payloads))

    async def enqueue_bulk_unique(self, payloads: list[float]) -> None:
        task = self.app.tasks["noop"]
        await in_flight(
            lambda p: task.configure(queueing_lock=unique_key_of(int(p))).defer_async(p=p), payloads, IN_FLIGHT
        )

    async def enqueue_one(self, kind: str, payload: float) -> None:
        await self.app.tasks[kind].defer_async(p=payload)

    async def start_worker(self, concurrency: int) -> None:
        self.worker = asyncio.create_task(
            self.app.run_worker_async(queues=["bench"], concurrency=concurrency, wait=True, listen_notify=True)
        )

    async def stop_worker(self) -> None:
        self.worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self.worker, timeout=30)

    async def close(self) -> None:
        await self.app.close_async()


if __name__ == "__main__":
    run(Procrastinate())
