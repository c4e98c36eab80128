"""pgqueuer on PostgreSQL (asyncpg): the adapter for bench/peers/_common.py. Runs in pgqueuer's own venv.

Deduplication: ``Queries.enqueue(..., dedupe_key=[...])``, one key per job in the same batch call. No per-key
concurrency: ``concurrency_limit`` is per entrypoint, a handler name registered in code (the same limit declared
by every worker), not a key carried by each job; 1,000 tenants would take 1,000 registered entrypoints.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

sys.path.insert(0, os.path.dirname(__file__))

import asyncpg
from _common import Adapter, noop_handler, run, sleep_handler_async, timed_handler, unique_key_of
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries


def batch(concurrency: int) -> int:
    """pgqueuer wants max_concurrent_tasks to be at least twice the batch size."""
    return max(1, min(concurrency // 2, 100))


class Pgqueuer(Adapter):
    unique_api = "Queries.enqueue with lists, dedupe_key=[one per job]"
    limit_missing = (
        "concurrency_limit is per entrypoint (a handler registered in code), not per key carried by a job: "
        "not an equivalent"
    )

    def settings(self, concurrency: int) -> str:
        return (
            f"QueueManager.run(batch_size={batch(concurrency)}, max_concurrent_tasks={concurrency}), "
            "asyncpg; enqueue: Queries.enqueue with lists"
        )

    async def open(self, url: str, install: bool) -> None:
        self.url = url
        self.conn = await asyncpg.connect(url)
        self.queries = Queries(AsyncpgDriver(self.conn))
        if install:
            await self.queries.install()

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        await self.queries.enqueue([kind] * len(payloads), [repr(p).encode() for p in payloads], [0] * len(payloads))

    async def enqueue_bulk_unique(self, payloads: list[float]) -> None:
        await self.queries.enqueue(
            ["noop"] * len(payloads),
            [repr(p).encode() for p in payloads],
            [0] * len(payloads),
            dedupe_key=[unique_key_of(int(p)) for p in payloads],
        )

    async def enqueue_one(self, kind: str, payload: float) -> None:
        await self.queries.enqueue(kind, repr(payload).encode())

    async def start_worker(self, concurrency: int) -> None:
        self.worker_conn = await asyncpg.connect(self.url)
        self.qm = qm = QueueManager(Queries(AsyncpgDriver(self.worker_conn)))

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            noop_handler(float(job.payload or b"0"))

        @qm.entrypoint("sleep")
        async def sleep(job: Job) -> None:
            await sleep_handler_async(float(job.payload or b"0"))

        @qm.entrypoint("timed")
        async def timed(job: Job) -> None:
            timed_handler(float(job.payload or b"0"))

        self.runner = asyncio.create_task(
            qm.run(
                batch_size=batch(concurrency),
                max_concurrent_tasks=concurrency,
                dequeue_timeout=timedelta(seconds=1),
            )
        )

    async def stop_worker(self) -> None:
        self.qm.shutdown.set()
        await asyncio.wait_for(self.runner, timeout=30)  # a worker that died raises here
        await self.worker_conn.close()

    async def close(self) -> None:
        await self.conn.close()


if __name__ == "__main__":
    run(Pgqueuer())
