"""procrastinate on PostgreSQL (psycopg 3): the adapter for bench/peers/_common.py. Runs in its own venv.

The worker is procrastinate's own entry point, ``procrastinate --app=procrastinate_app.app worker --queues bench
--concurrency N`` (docs/howto/basics/worker.md, docs/howto/production/concurrency.md), in a process of its own,
with N the concurrency every system gets in a scenario (100 for the drains; the CLI's default is 1, the docs'
example 30); everything else at the CLI's defaults (LISTEN/NOTIFY on, finished jobs kept, log level warning).
``BENCH_PROCRASTINATE_CONCURRENCY`` overrides N, to see what it changes.

Flow control, as its docs (3.10) recommend: ``lock=`` (docs/howto/advanced/locks.md: jobs with the same lock
run one at a time, in order) set with ``configure(lock=...).batch_defer_async`` per key, its batch API for jobs
sharing a configuration; ``queueing_lock=`` (docs/howto/advanced/queueing_locks.md) for deduplication. A batch
shares one configuration (docs/howto/basics/batch_defer.md: a batch with one queueing lock raises
AlreadyEnqueued), so tasks with distinct queueing locks are deferred one by one, many in flight.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import procrastinate
from _common import CliWorker, in_flight, key_of, run, unique_key_of

IN_FLIGHT = 100
HERE = os.path.dirname(os.path.abspath(__file__))  # the CLI imports procrastinate_app from here


class Procrastinate(CliWorker):
    unique_api = f"task.configure(queueing_lock=key).defer_async, {IN_FLIGHT} in flight (a batch shares one lock)"
    limit_api = "task.configure(lock=key).batch_defer_async, one batch per key (a lock runs one job at a time)"

    def command(self, concurrency: int) -> list[str]:
        concurrency = int(os.environ.get("BENCH_PROCRASTINATE_CONCURRENCY", concurrency))
        cli = Path(sys.executable).parent / "procrastinate"
        return [
            str(cli),
            "--app=procrastinate_app.app",
            "worker",
            "--queues",
            "bench",
            "--concurrency",
            str(concurrency),
        ]

    def settings(self, concurrency: int) -> str:
        shown = " ".join(self.command(concurrency)[1:])
        return (
            f"procrastinate {shown} (1 process; other flags at their defaults: LISTEN/NOTIFY on, jobs kept, "
            "log level warning); enqueue: batch_defer_async"
        )

    async def open(self, url: str, install: bool) -> None:
        self.url = url
        self.app = app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

        # Declared here only to defer them: the worker process runs procrastinate_app's (same names and queue).
        async def unused(**kwargs: float) -> None:
            raise AssertionError("the benchmark's own process runs no job")

        for name in ("noop", "sleep", "timed", "keyed"):
            app.task(name=name, queue="bench")(unused)

        await app.open_async()
        if install:
            await app.schema_manager.apply_schema_async()

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        if kind == "keyed":
            await self.app.tasks["keyed"].batch_defer_async(*({"p": p, "key": key_of(int(p))} for p in payloads))
        elif kind == "limited":
            by_key: dict[int, list[float]] = {}
            for p in payloads:
                by_key.setdefault(key_of(int(p)), []).append(p)
            task = self.app.tasks["keyed"]
            for key, ps in by_key.items():
                await task.configure(lock=f"tenant-{key}").batch_defer_async(*({"p": p, "key": key} for p in ps))
        else:
            await self.app.tasks[kind].batch_defer_async(*({"p": p} for p in payloads))

    async def enqueue_bulk_unique(self, payloads: list[float]) -> None:
        task = self.app.tasks["noop"]
        await in_flight(
            lambda p: task.configure(queueing_lock=unique_key_of(int(p))).defer_async(p=p), payloads, IN_FLIGHT
        )

    async def enqueue_one(self, kind: str, payload: float) -> None:
        await self.app.tasks[kind].defer_async(p=payload)

    async def start_worker(self, concurrency: int) -> None:
        self.launch(self.command(concurrency), env={"BENCH_URL": self.url, "PYTHONPATH": HERE})

    async def close(self) -> None:
        await self.app.close_async()


if __name__ == "__main__":
    run(Procrastinate())
