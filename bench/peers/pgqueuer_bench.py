"""pgqueuer on PostgreSQL: one scenario per run (see bench/postgres.py). Runs in pgqueuer's own venv."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(__file__))

import asyncpg
from _common import Stopwatch, args, emit, quantiles_ms
from pgqueuer.db import AsyncpgDriver
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries
from pgqueuer.types import QueueExecutionMode

BATCH = 100
SETTINGS = f"QueueManager.run(batch_size={BATCH}, mode=drain), asyncpg; enqueue with lists"


async def enqueue(queries: Queries, n: int, chunk: int = 10_000) -> None:
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        await queries.enqueue(["noop"] * size, [str(start + i).encode() for i in range(size)], [0] * size)


async def drain(dsn: str, n: int) -> float:
    conn = await asyncpg.connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint("noop")
    async def noop(job: object) -> None:
        return None

    with Stopwatch() as watch:
        await qm.run(batch_size=BATCH, mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=1))
    await conn.close()
    return n / watch.elapsed


async def main() -> None:
    dsn, scenario, nums = args()
    conn = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(conn))
    if scenario != "produce":
        await queries.install()
    if scenario == "enqueue":
        n = int(nums[0])
        with Stopwatch() as watch:
            await enqueue(queries, n)
        emit(rate=n / watch.elapsed, settings="Queries.enqueue with lists of 10,000")
    elif scenario == "drain":
        n = int(nums[0])
        await enqueue(queries, n)
        emit(rate=await drain(dsn, n), settings=SETTINGS)
    elif scenario == "backlog":
        # drain mode would run through the whole backlog: time the first n jobs, then stop the worker.
        await enqueue(queries, int(nums[0]))
        emit(rate=await drain_some(dsn, int(nums[1])), settings=SETTINGS.replace("mode=drain", "continuous"))
    elif scenario == "latency":
        rate, seconds = float(nums[0]), float(nums[1])
        expected = int(rate * seconds)
        delays: list[float] = []
        done = asyncio.Event()
        worker_conn = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))

        @qm.entrypoint("timed")
        async def timed(job: object) -> None:
            delays.append(time.time() - float(job.payload.decode()))  # type: ignore[attr-defined]
            if len(delays) >= expected:
                done.set()

        runner = asyncio.create_task(qm.run(batch_size=BATCH, dequeue_timeout=timedelta(seconds=1)))
        await asyncio.sleep(1.0)
        producer = await asyncio.create_subprocess_exec(sys.executable, __file__, dsn, "produce", *nums)
        await producer.wait()
        await asyncio.wait_for(done.wait(), timeout=60)
        qm.shutdown.set()
        await asyncio.wait_for(runner, timeout=30)
        p50, p99 = quantiles_ms(delays)
        emit(
            p50_ms=p50,
            p99_ms=p99,
            n=len(delays),
            settings=SETTINGS.replace("mode=drain", "continuous") + "; producer in another process",
        )
    elif scenario == "produce":
        rate, seconds = float(nums[0]), float(nums[1])
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            await queries.enqueue("timed", str(time.time()).encode())
    await conn.close()


async def drain_some(dsn: str, n: int, cap: float = 120.0) -> float:
    """Run the worker until n jobs are done (or ``cap`` seconds pass), then stop it; tasks/s."""
    conn = await asyncpg.connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))
    count = [0]
    finished = asyncio.Event()

    @qm.entrypoint("noop")
    async def noop(job: object) -> None:
        count[0] += 1
        if count[0] >= n:
            finished.set()

    with Stopwatch() as watch:
        runner = asyncio.create_task(qm.run(batch_size=BATCH, dequeue_timeout=timedelta(seconds=1)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), timeout=cap)
    qm.shutdown.set()
    await asyncio.wait_for(runner, timeout=60)
    await conn.close()
    return count[0] / watch.elapsed


asyncio.run(main())
