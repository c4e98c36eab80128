"""What one ``store.health()`` (``taskstore doctor``, serve's ``taskstore_health_*``) costs, by store size.

    python -m bench.doctor_cost [--tasks 0,100000] [--runs 5] [--postgres URL]

For each size: a fresh store with that many queued tasks (1 KB payloads), ANALYZEd on PostgreSQL; then
``--runs`` timed reads of the report. On PostgreSQL it reads catalogs and statistics views only, so the
size should barely matter; on SQLite it reads every page (dbstat) for per-table sizes. PostgreSQL is
$TASKSTORE_BENCH_POSTGRES_URL, else 127.0.0.1:5432, else skipped. Not a test: figures for a person to read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import taskstore
from taskstore import NewTask

from .local_pg import pg_schema

PAD = "x" * 1000


async def measure(url: str, tasks: int, runs: int) -> str:
    async with taskstore.open(url) as store:
        for start in range(0, tasks, 5000):
            await store.create_many([NewTask("q", "k", {"pad": PAD}) for _ in range(min(5000, tasks - start))])
        if url.startswith("postgresql"):
            import psycopg

            with psycopg.connect(url.partition("?")[0], autocommit=True) as conn:
                conn.execute("ANALYZE")
        await store.health()  # the first waits for the LISTEN probe's verdict: not counted
        alone = []
        for _ in range(runs):
            started = time.perf_counter()
            await store.count()
            alone.append((time.perf_counter() - started) * 1000)
        times, others = [], []
        for _ in range(runs):
            started = time.perf_counter()
            reading = asyncio.ensure_future(store.health())
            await asyncio.sleep(0.005)  # the report is being read: how long does another call of the store wait?
            other = time.perf_counter()
            await store.count()
            others.append((time.perf_counter() - other) * 1000)
            report = await reading
            times.append((time.perf_counter() - started) * 1000)
    each = ", ".join(f"{t:.1f}" for t in times)
    return (
        f"{tasks:>8,} tasks: health() median {statistics.median(times):7.1f} ms ({each}); a count() meanwhile "
        f"median {statistics.median(others):.1f} ms, max {max(others):.1f} ms (alone: median "
        f"{statistics.median(alone):.1f} ms); {len(report.findings)} findings"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default="0,100000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres", default=os.environ.get("TASKSTORE_BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    sizes = [int(n) for n in args.tasks.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            print("SQLite    ", await measure(f"sqlite:///{Path(tmp) / f'd{n}.db'}", n, args.runs))
    for n in sizes:
        with pg_schema(args.postgres, "doctor_bench") as url:
            if url is None:
                break
            print("PostgreSQL", await measure(url, n, args.runs))


if __name__ == "__main__":
    asyncio.run(main())
