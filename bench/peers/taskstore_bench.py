"""taskstore on any of its durable backends (the URL says which): the adapter for bench/peers/_common.py."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _common import Adapter, noop_handler, run, sleep_handler_async, timed_handler

import taskstore
from taskstore import NewTask, Worker


def prefetch(concurrency: int) -> int:
    """As many held ready as run: a slot that frees starts its next task without waiting for a claim."""
    return int(os.environ.get("BENCH_TASKSTORE_PREFETCH", concurrency))


class Taskstore(Adapter):
    def settings(self, concurrency: int) -> str:
        return (
            f"Worker(concurrency={concurrency}, prefetch={prefetch(concurrency)}), async handlers; "
            "enqueue: Store.create_many"
        )

    async def open(self, url: str, install: bool) -> None:
        self.app = app = taskstore.App(url)
        self.worker: Worker | None = None

        @app.task(queue="bench", kind="noop")
        async def noop(i: float) -> None:
            noop_handler(i)

        @app.task(queue="bench", kind="sleep")
        async def sleep(i: float) -> None:
            await sleep_handler_async(i)

        @app.task(queue="bench", kind="timed")
        async def timed(sent: float) -> None:
            timed_handler(sent)

        self.store = await app.store()

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        await self.store.create_many([NewTask("bench", kind, {"args": [p], "kwargs": {}}) for p in payloads])

    async def enqueue_one(self, kind: str, payload: float) -> None:
        await self.app.tasks[kind].enqueue(payload)

    async def start_worker(self, concurrency: int) -> None:
        self.worker = Worker(self.app, ["bench"], concurrency, prefetch=prefetch(concurrency), maintenance=False)
        await self.worker.start()

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.stop(grace=10)

    async def close(self) -> None:
        await self.app.aclose()


if __name__ == "__main__":
    run(Taskstore())
