"""The real worker on SQLite: end-to-end throughput of no-op tasks, and enqueue-to-start latency.

    python bench/worker_sqlite.py [--tasks 20000] [--concurrency 100] [--rate 200] [--seconds 10]

1. Drain: N no-op tasks are enqueued first, then one ``Worker`` (concurrency C) runs them all;
   tasks/s from the worker's start until the last completion is recorded.
2. Latency: a producer enqueues at a steady rate for S seconds while a worker runs; each handler
   notes when it started; p50/p99 of (start - created_at). Measured twice: with the producer in the
   worker's process (woken at once) and in another process (found by the worker's polling).

Not a test: it prints figures for a person to compare before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import taskstore
from taskstore import App, State, Worker

STARTS: dict[str, float] = {}


def build_app(url: str) -> App:
    app = App(url)

    @app.task(queue="bench", kind="bench.noop")
    async def noop(i: int) -> None:
        return None

    @app.task(queue="lat", kind="bench.mark")
    async def mark(i: int) -> None:
        STARTS[taskstore.current_task().id] = time.time()

    return app


async def drain(path: Path, n: int, concurrency: int) -> float:
    app = build_app(f"sqlite:///{path}")
    store = await app.store()
    noop = app.tasks["bench.noop"]
    for start in range(0, n, 5000):
        await store.create_many([noop.new_task(i) for i in range(start, min(start + 5000, n))])
    t0 = time.perf_counter()
    async with Worker(app, ["bench"], concurrency, maintenance=False) as worker:
        # Watch the worker's own tally: polling the store would compete with the worker for it.
        while worker.stats.succeeded < n:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t0
    assert await store.count(state=State.DONE, queue="bench") == n
    await app.aclose()
    return n / elapsed


_PRODUCER = """
import asyncio, sys, time
sys.path.insert(0, sys.argv[4])
import worker_sqlite as b

async def main(url, rate, seconds):
    app = b.build_app(url)
    mark = app.tasks["bench.mark"]
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        await mark.enqueue(i)
    await app.aclose()

asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
"""


async def latency(path: Path, rate: float, seconds: float, same_process: bool) -> tuple[float, float, int]:
    STARTS.clear()
    app = build_app(f"sqlite:///{path}")
    store = await app.store()
    mark = app.tasks["bench.mark"]
    total = int(rate * seconds)
    async with Worker(app, ["lat"], 50, maintenance=False):
        if same_process:
            start = time.perf_counter()
            for i in range(total):
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                await mark.enqueue(i)
        else:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _PRODUCER,
                f"sqlite:///{path}",
                str(rate),
                str(seconds),
                str(Path(__file__).parent),
            )
            await proc.wait()
        while len(STARTS) < total:
            await asyncio.sleep(0.02)
    delays = []
    for task in (await store.list(queue="lat", limit=total + 10)).items:
        delays.append((STARTS[task.id] - task.created_at.timestamp()) * 1000)
    await app.aclose()
    await store.archive(before=datetime.now(UTC))
    qs = statistics.quantiles(delays, n=100)
    return qs[49], qs[98], len(delays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(
        f"taskstore {taskstore.__version__}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rate = asyncio.run(drain(Path(tmp, "drain.db"), args.tasks, args.concurrency))
        print(f"drain: {args.tasks:,} no-op tasks, 1 worker, concurrency {args.concurrency}: {rate:>8,.0f} tasks/s")
        for same, label in ((True, "producer in the worker's process"), (False, "producer in another process")):
            p50, p99, n = asyncio.run(latency(Path(tmp, f"lat-{same}.db"), args.rate, args.seconds, same))
            print(
                f"latency at {args.rate:g} tasks/s for {args.seconds:g}s ({label}, {n} tasks): "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
            )


if __name__ == "__main__":
    main()
