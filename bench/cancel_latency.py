"""How soon a running handler sees ``store.cancel(id)``: p50/p99 per backend, same process and another process.

    python bench/cancel_latency.py [--tasks 100] [--postgres URL]

For each task: a worker (in this process, or in a child process running this script with ``--worker``)
starts a handler that sleeps; once it runs, this process notes the time and calls ``store.cancel(id)``;
the handler notes when its ``CancelledError`` arrives. Both read ``time.monotonic()`` (one clock for
every process on Linux); the handler has run 50 ms when it is cancelled. The tasks' leases are 60 s, so
without prompt delivery each cancel would take about 20 s (the next renewal). The figures include the
cancel's own write, also shown alone. PostgreSQL is $TASKSTORE_BENCH_POSTGRES_URL, else 127.0.0.1:5432, else
skipped with a line saying so. Not a test: it prints figures for a person to read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import taskstore
from taskstore import App, State, Worker

LEASE = 60.0
# A cancel usually comes for a task that has run a while: let the claim's own commits age past SQLite's
# 20 ms spacing of commit wakes (on a store busy with other commits, add up to that much).
RUNNING = 0.05


def make_app(url: str, started: Callable[[str], None], seen: Callable[[str, float], None]) -> tuple[App, Any]:
    app = App(url)

    @app.task(queue="cancel-bench", kind="bench.hang", max_attempts=1, processing_timeout=LEASE)
    async def hang() -> None:
        task_id = taskstore.current_task().id
        started(task_id)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen(task_id, time.monotonic())
            raise

    return app, hang


async def serve(url: str) -> None:
    """The child process: a worker that reports on stdout when each handler starts and sees its cancel."""
    app, _ = make_app(
        url, lambda i: print(f"started {i}", flush=True), lambda i, t: print(f"seen {i} {t!r}", flush=True)
    )
    async with Worker(app, concurrency=1, maintenance=False) as worker:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
        worker.request_stop(immediate=True)
    await app.aclose()


async def in_process(url: str, n: int, writes: list[float]) -> list[float]:
    started: asyncio.Queue[str] = asyncio.Queue()
    seen: dict[str, float] = {}
    app, hang = make_app(url, started.put_nowait, seen.__setitem__)
    delays = []
    async with Worker(app, concurrency=1, maintenance=False):
        store = await app.store()
        for _ in range(n):
            handle = await hang.enqueue()
            assert await asyncio.wait_for(started.get(), 30) == handle.id
            await asyncio.sleep(RUNNING)
            asked = time.monotonic()
            await store.cancel(handle.id)
            writes.append((time.monotonic() - asked) * 1000)
            await _ended(store, handle.id)
            delays.append((seen[handle.id] - asked) * 1000)
    await app.aclose()
    return delays


async def other_process(url: str, n: int, writes: list[float]) -> list[float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--worker",
        url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    delays = []
    try:
        assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"ready"
        app, hang = make_app(url, lambda i: None, lambda i, t: None)
        store = await app.store()
        for _ in range(n):
            handle = await hang.enqueue()
            assert (await asyncio.wait_for(proc.stdout.readline(), 30)).split() == [b"started", handle.id.encode()]
            await asyncio.sleep(RUNNING)
            asked = time.monotonic()
            await store.cancel(handle.id)
            writes.append((time.monotonic() - asked) * 1000)
            word, task_id, at = (await asyncio.wait_for(proc.stdout.readline(), 60)).split()
            assert (word, task_id) == (b"seen", handle.id.encode())
            delays.append((float(at) - asked) * 1000)
            await _ended(store, handle.id)
        await app.aclose()
    finally:
        proc.stdin.close()
        await proc.wait()
    return delays


async def _ended(store: taskstore.Store, task_id: str) -> None:
    """The worker has recorded the cancel: the next task starts on a quiet store."""
    while (await store.get(task_id)).state is not State.CANCELLED:
        await asyncio.sleep(0.001)


def _line(name: str, where: str, measure: Callable[[list[float]], Any]) -> str:
    writes: list[float] = []
    delays = asyncio.run(measure(writes))
    qs = statistics.quantiles(delays, n=100)
    return (
        f"{name:<11} cancel() -> handler, {where:<14} p50 {qs[49]:6.2f} ms   p99 {qs[98]:6.2f} ms"
        f"   (the cancel() call itself: p50 {statistics.median(writes):5.2f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--postgres", default=os.environ.get("TASKSTORE_BENCH_POSTGRES_URL"))
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(serve(args.worker))
        return
    n = args.tasks
    print(_line("memory", "same process:", lambda w: in_process("memory://", n, w)))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp, 'cancel.db')}"
        print(_line("SQLite", "same process:", lambda w: in_process(url, n, w)))
        print(_line("SQLite", "other process:", lambda w: other_process(url, n, w)))
    from bench.local_pg import pg_schema  # here: this file also runs by path as the measured worker process

    with pg_schema(args.postgres, "bench_cancel") as pg_url:
        if pg_url is not None:
            print(_line("PostgreSQL", "same process:", lambda w: in_process(pg_url, n, w)))
            print(_line("PostgreSQL", "other process:", lambda w: other_process(pg_url, n, w)))


if __name__ == "__main__":
    main()
