"""procrastinate on PostgreSQL: one scenario per run (see bench/postgres.py). Runs in its own venv."""

from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import contextlib

import procrastinate
from _common import Stopwatch, args, emit, quantiles_ms

CONCURRENCY = 100
SETTINGS = f"run_worker_async(concurrency={CONCURRENCY}, listen_notify=True); batch_defer_async"

DELAYS: list[float] = []
COUNT = [0]
TARGET = [0]
DONE = asyncio.Event()


def build(dsn: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop", queue="bench")
    async def noop(i: int) -> None:
        COUNT[0] += 1
        if COUNT[0] >= TARGET[0]:
            DONE.set()

    @app.task(name="timed", queue="bench")
    async def timed(sent: float) -> None:
        DELAYS.append(time.time() - sent)
        if len(DELAYS) >= TARGET[0]:
            DONE.set()

    return app


async def enqueue(app: procrastinate.App, n: int, chunk: int = 10_000) -> None:
    noop = app.tasks["noop"]
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        await noop.batch_defer_async(*({"i": start + i} for i in range(size)))


async def run_until_done(app: procrastinate.App, n: int, cap: float = 120.0) -> float:
    """Tasks/s until n are done, or over ``cap`` seconds when that comes first (a slow backlog)."""
    TARGET[0] = n
    with Stopwatch() as watch:
        worker = asyncio.create_task(app.run_worker_async(queues=["bench"], concurrency=CONCURRENCY, wait=True))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(DONE.wait(), timeout=cap)
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(worker, timeout=30)
    return COUNT[0] / watch.elapsed


async def main() -> None:
    dsn, scenario, nums = args()
    app = build(dsn)
    async with app.open_async():
        if scenario != "produce":
            await app.schema_manager.apply_schema_async()
        if scenario == "enqueue":
            n = int(nums[0])
            with Stopwatch() as watch:
                await enqueue(app, n)
            emit(rate=n / watch.elapsed, settings="batch_defer_async in calls of 10,000")
        elif scenario in {"drain", "backlog"}:
            await enqueue(app, int(nums[0]))
            emit(rate=await run_until_done(app, int(nums[-1])), settings=SETTINGS)
        elif scenario == "latency":
            rate, seconds = float(nums[0]), float(nums[1])
            TARGET[0] = int(rate * seconds)
            worker = asyncio.create_task(app.run_worker_async(queues=["bench"], concurrency=CONCURRENCY, wait=True))
            await asyncio.sleep(1.0)
            producer = await asyncio.create_subprocess_exec(sys.executable, __file__, dsn, "produce", *nums)
            await producer.wait()
            await asyncio.wait_for(DONE.wait(), timeout=120)
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(worker, timeout=30)
            p50, p99 = quantiles_ms(DELAYS)
            emit(p50_ms=p50, p99_ms=p99, n=len(DELAYS), settings=SETTINGS + "; producer in another process")
        elif scenario == "produce":
            rate, seconds = float(nums[0]), float(nums[1])
            timed = app.tasks["timed"]
            start = time.perf_counter()
            for i in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                await timed.defer_async(sent=time.time())


asyncio.run(main())
