"""How soon a watcher in another process sees a task finish: p50/p99 on SQLite and PostgreSQL.

    python bench/watch_latency.py [--tasks 200] [--postgres URL]

For each task: a watcher process starts watching it (and says so once it has seen "queued"); this
process then claims and completes it and notes the time; the watcher notes when it saw "succeeded".
PostgreSQL is $TASKSTORE_BENCH_POSTGRES_URL, else 127.0.0.1:5432, else skipped with a line saying so.
Not a test: it prints figures for a person to read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import taskstore
from bench.local_pg import pg_schema
from taskstore import NewTask

_WATCHER = """
import asyncio, sys, time
import taskstore

async def main(url):
    async with taskstore.open(url) as store:
        for line in sys.stdin:
            task_id = line.strip()
            async for status in store.watch(task_id):
                if status.state.value == "queued":
                    print("ready", flush=True)
                if status.state.is_terminal:
                    print(f"seen {time.time()!r}", flush=True)

asyncio.run(main(sys.argv[1]))
"""


async def measure(url: str, n: int) -> tuple[float, float]:
    delays = []
    async with taskstore.open(url) as store:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WATCHER, url, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        for i in range(n):
            task = await store.create(NewTask("watch", "noop", {"i": i}))
            proc.stdin.write(f"{task.id}\n".encode())
            await proc.stdin.drain()
            assert (await proc.stdout.readline()).startswith(b"ready")
            (claimed,) = await store.claim("bench", ["watch"], limit=1)
            await asyncio.sleep(0.01)
            await store.mark_done(claimed, result=i)
            done_at = time.time()
            seen = await proc.stdout.readline()
            delays.append((float(seen.split()[1]) - done_at) * 1000)
        proc.stdin.close()
        await proc.wait()
    qs = statistics.quantiles(delays, n=100)
    return qs[49], qs[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--postgres", default=os.environ.get("TASKSTORE_BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        p50, p99 = asyncio.run(measure(f"sqlite:///{Path(tmp, 'watch.db')}", args.tasks))
        print(f"SQLite:     completion -> watcher in another process: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    with pg_schema(args.postgres, "bench_watch") as url:
        if url is not None:
            p50, p99 = asyncio.run(measure(url, args.tasks))
            print(f"PostgreSQL: completion -> watcher in another process: p50 {p50:.1f} ms, p99 {p99:.1f} ms")


if __name__ == "__main__":
    main()
