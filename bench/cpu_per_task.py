"""CPU time per task, client and PostgreSQL server apart, for the store's hot paths.

    python3 -m bench.cpu_per_task [--tasks 50000] [--batch 100] [--sqlite-only | --postgres-only]

Throughput on a shared 2-core machine swings with whatever else runs; CPU time spent per task swings much
less, so this is the figure to compare before and after a change to a hot path (run both, interleaved;
``PYTHONPATH=/path/to/other/checkout/src`` runs another version with the same script). Phases, each through
the Store as the worker drives it but without a worker's concurrency (so no waiting is counted):

- enqueue: ``create_many`` in chunks of 1,000;
- claim+ack: ``claim(limit=batch)`` then ``acknowledge_many`` of the batch, until the queue is empty;

For each: the client's CPU (this process: user + system, SQLite included as it runs in-process) and, on
PostgreSQL, the server's CPU (user + system of the backends serving this process's connections, read from
/proc: the server must be local), in microseconds per task, and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import taskstore
from taskstore import NewTask

from .local_pg import add_backend_options, pg_schema

TICK = os.sysconf("SC_CLK_TCK")


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def backend_cpu(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICK


async def backend_pids(store: taskstore.Store) -> set[int]:
    driver: Any = store._driver
    pool = getattr(driver._pool, "pool", driver._pool)  # psycopg_pool's pool, under the driver's wrapper if any
    pids: set[int] = set()
    conns = []
    for _ in range(pool.max_size):  # hold every connection at once, so each reports its own backend
        conns.append(await pool.getconn())
    try:
        for conn in conns:
            pids.add((await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0])
    finally:
        for conn in conns:
            await pool.putconn(conn)
    return pids


async def phase(name: str, n: int, pids: set[int], work: Callable[[], Awaitable[None]]) -> None:
    c0, s0, w0 = client_cpu(), backend_cpu(pids), time.perf_counter()
    await work()
    c1, s1, w1 = client_cpu(), backend_cpu(pids), time.perf_counter()
    server = f"   server {(s1 - s0) / n * 1e6:7.1f} µs/task" if pids else ""
    print(f"  {name:<10} client {(c1 - c0) / n * 1e6:7.1f} µs/task{server}   wall {(w1 - w0) / n * 1e6:7.1f} µs/task")


async def measure(label: str, url: str, n: int, batch: int) -> None:
    async with taskstore.open(url) as store:
        pids = await backend_pids(store) if url.startswith("postgres") else set()

        async def enqueue() -> None:
            for start in range(0, n, 1000):
                await store.create_many(NewTask("q", "k", {"i": start + i}) for i in range(min(1000, n - start)))

        async def drain() -> None:
            while claimed := await store.claim("w1", ["q"], limit=batch):
                await store.acknowledge_many(claimed)

        print(f"{label} ({n:,} tasks, batches of {batch}):")
        await phase("enqueue", n, pids, enqueue)
        await phase("claim+ack", n, pids, drain)
        assert await store.count(taskstore.State.DONE) == n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100)
    add_backend_options(parser)
    args = parser.parse_args()
    print(f"taskstore from {Path(taskstore.__file__).parent}")
    if not args.postgres_only:
        with tempfile.TemporaryDirectory() as tmp:
            await measure("SQLite", f"sqlite:///{Path(tmp) / 'cpu.db'}", args.tasks, args.batch)
    if not args.sqlite_only:
        with pg_schema(args.postgres, "bench_cpu") as url:
            if url is not None:
                await measure("PostgreSQL", url, args.tasks, args.batch)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
