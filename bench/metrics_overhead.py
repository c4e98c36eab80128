"""What Prometheus metrics cost a worker: µs per no-op task drained with and without a ``TaskMetrics`` observer.

    python bench/metrics_overhead.py [--tasks 20000] [--rounds 5] [--concurrency 100]

Each round drains N no-op tasks through one ``Worker`` on ``memory://`` and on SQLite, once without metrics
and once with them (alternating, so drift hits both alike); the median and the best round of each are
printed (the best is the least disturbed by other load on the machine). Then the
observer's own calls for one task (claimed, succeeded, handled) are timed alone. Needs ``taskstore[web]``.

Not a test: it prints figures for a person to compare before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import taskstore
from taskstore import App, Worker
from taskstore.web.metrics import TaskMetrics


def build_app(url: str) -> App:
    app = App(url)

    @app.task(queue="bench", kind="bench.noop")
    async def noop(i: int) -> None:
        return None

    return app


async def drain(url: str, n: int, concurrency: int, metrics: bool) -> tuple[float, float]:
    """µs per task from the worker's start to its last completion: wall clock, and this process's CPU time
    (every thread's; steadier than the wall clock when other work shares the machine)."""
    app = build_app(url)
    store = await app.store()
    noop = app.tasks["bench.noop"]
    for start in range(0, n, 5000):
        await store.create_many([noop.new_task(i) for i in range(start, min(start + 5000, n))])
    observers = [TaskMetrics()] if metrics else []
    t0, c0 = time.perf_counter(), time.process_time()
    async with Worker(app, ["bench"], concurrency, maintenance=False, observers=observers) as worker:
        while worker.stats.succeeded < n:
            await asyncio.sleep(0.005)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    await app.aclose()
    if metrics:
        got = observers[0].registry.get_sample_value(
            "taskstore_tasks_succeeded_total", {"queue": "bench", "kind": "bench.noop"}
        )
        assert got == n, got
    return elapsed / n * 1e6, cpu / n * 1e6


def observer_calls(n: int = 200_000) -> float:
    """µs for the observer calls one task makes: claimed, succeeded, handled."""
    m = TaskMetrics()
    t0 = time.perf_counter()
    for _ in range(n):
        m.claimed("bench", "bench.noop", 0.01)
        m.finished("succeeded", "bench", "bench.noop")
        m.handled("bench", "bench.noop", 0.0001)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    print(f"taskstore {taskstore.__version__}, Python {platform.python_version()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("memory", "sqlite"):
            times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for r in range(args.rounds):
                for metrics in (False, True) if r % 2 == 0 else (True, False):
                    url = "memory://" if backend == "memory" else f"sqlite:///{Path(tmp, f'{r}-{metrics}.db')}"
                    times[metrics].append(asyncio.run(drain(url, args.tasks, args.concurrency, metrics)))
            for i, clock in enumerate(("wall", "CPU")):
                for name, pick in (("median", statistics.median), ("best", min)):
                    off, on = pick(t[i] for t in times[False]), pick(t[i] for t in times[True])
                    print(
                        f"{backend:>6} {clock:>4}: {args.tasks:,} no-op tasks, concurrency {args.concurrency}, "
                        f"{name} of {args.rounds}: metrics off {off:.1f} µs/task, on {on:.1f} µs/task "
                        f"({on - off:+.1f} µs)"
                    )
    print(f"observer calls alone (claimed + succeeded + handled): {observer_calls():.2f} µs/task")


if __name__ == "__main__":
    main()
