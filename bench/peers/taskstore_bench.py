"""taskstore on PostgreSQL: one scenario per run (see bench/postgres.py)."""

from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from _common import Stopwatch, args, emit, quantiles_ms

import taskstore
from taskstore import NewTask, Worker

CONCURRENCY = 100
SETTINGS = f"Worker(concurrency={CONCURRENCY}), claims up to free capacity, batched completer; create_many"

DELAYS: list[float] = []
DONE = asyncio.Event()
EXPECTED = [0]


def build(dsn: str) -> taskstore.App:
    app = taskstore.App(dsn)

    @app.task(queue="bench", kind="noop")
    async def noop(i: int) -> None:
        return None

    @app.task(queue="bench", kind="timed")
    async def timed(sent: float) -> None:
        DELAYS.append(time.time() - sent)
        if len(DELAYS) >= EXPECTED[0]:
            DONE.set()

    return app


async def enqueue(store: taskstore.Store, n: int, chunk: int = 10_000) -> None:
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        await store.create_many([NewTask("bench", "noop", {"args": [start + i], "kwargs": {}}) for i in range(size)])


async def drain(app: taskstore.App, n: int) -> float:
    with Stopwatch() as watch:
        async with Worker(app, ["bench"], CONCURRENCY, maintenance=False) as worker:
            while worker.stats.succeeded < n:
                await asyncio.sleep(0.005)
    return n / watch.elapsed


async def main() -> None:
    dsn, scenario, nums = args()
    app = build(dsn)
    store = await app.store()
    if scenario == "enqueue":
        n = int(nums[0])
        with Stopwatch() as watch:
            await enqueue(store, n)
        emit(rate=n / watch.elapsed, settings="create_many in calls of 10,000")
    elif scenario == "drain":
        n = int(nums[0])
        await enqueue(store, n)
        emit(rate=await drain(app, n), settings=SETTINGS)
    elif scenario == "backlog":
        backlog, n = int(nums[0]), int(nums[1])
        await enqueue(store, backlog)
        emit(rate=await drain(app, n), settings=SETTINGS)
    elif scenario == "latency":
        rate, seconds = float(nums[0]), float(nums[1])
        EXPECTED[0] = int(rate * seconds)
        async with Worker(app, ["bench"], CONCURRENCY, maintenance=False):
            producer = await asyncio.create_subprocess_exec(sys.executable, __file__, dsn, "produce", *nums)
            await producer.wait()
            await asyncio.wait_for(DONE.wait(), timeout=60)
        p50, p99 = quantiles_ms(DELAYS)
        emit(p50_ms=p50, p99_ms=p99, n=len(DELAYS), settings=SETTINGS + "; producer in another process")
    elif scenario == "produce":
        rate, seconds = float(nums[0]), float(nums[1])
        timed = app.tasks["timed"]
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            await timed.enqueue(time.time())
    await app.aclose()


asyncio.run(main())
