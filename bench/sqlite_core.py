"""SQLite core throughput: bulk create, and claim + mark_done_many in batches.

    python bench/sqlite_core.py [--tasks 100000] [--drain 20000] [--batch 100]

Prints tasks/s for ``create_many`` of N tasks (in one call, and in chunks of 1,000), and for
claiming and completing M tasks in batches. Each figure runs on a fresh database file in a temporary
directory. Not a test: it prints figures for a person to compare before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

import taskstore
from taskstore import NewTask


def _tasks(n: int) -> list[NewTask]:
    return [NewTask(queue="bench", kind="noop", args={"i": i}) for i in range(n)]


async def bench_create(path: Path, n: int, chunk: int | None) -> float:
    async with taskstore.open(f"sqlite:///{path}") as store:
        news = _tasks(n)
        start = time.perf_counter()
        if chunk is None:
            await store.create_many(news)
        else:
            for i in range(0, n, chunk):
                await store.create_many(news[i : i + chunk])
        elapsed = time.perf_counter() - start
        assert await store.count() == n
    return n / elapsed


async def bench_drain(path: Path, n: int, batch: int) -> float:
    async with taskstore.open(f"sqlite:///{path}") as store:
        await store.create_many(_tasks(n))
        start = time.perf_counter()
        done = 0
        while True:
            claimed = await store.claim("bench-worker", ["bench"], limit=batch)
            if not claimed:
                break
            outcomes = await store.mark_done_many([(t.claim, None) for t in claimed if t.claim is not None])
            done += sum(1 for o in outcomes if isinstance(o, taskstore.Task))
        elapsed = time.perf_counter() - start
        assert done == n, (done, n)
        assert await store.count(state="done") == n
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks for the create_many figures")
    parser.add_argument("--drain", type=int, default=20_000, help="tasks for the claim + done figure")
    parser.add_argument("--batch", type=int, default=100, help="claim / mark_done_many batch size")
    args = parser.parse_args()
    print(f"taskstore {taskstore.__version__}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory() as tmp:
        rate = asyncio.run(bench_create(Path(tmp, "a.db"), args.tasks, None))
        print(f"create_many, {args.tasks:,} tasks in one call:       {rate:>10,.0f} tasks/s")
        rate = asyncio.run(bench_create(Path(tmp, "b.db"), args.tasks, 1_000))
        print(f"create_many, {args.tasks:,} tasks in calls of 1,000: {rate:>10,.0f} tasks/s")
        rate = asyncio.run(bench_drain(Path(tmp, "c.db"), args.drain, args.batch))
        print(f"claim + mark_done_many, {args.drain:,} tasks in batches of {args.batch}: {rate:>10,.0f} tasks/s")


if __name__ == "__main__":
    main()
