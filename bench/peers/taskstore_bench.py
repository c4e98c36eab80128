"""taskstore on any of its durable backends (the URL says which): the adapter for bench/peers/_common.py.

Every drain runs the worker as users run it: ``taskstore worker taskstore_app:app`` in a process of its own
(_common.WorkerProcess), with what the README recommends for short tasks: ``--prefetch`` five times
``--concurrency`` (no more than it for the keyed kinds) and ``--log-level warning`` ("past a few thousand
tasks a second"); everything else (maintenance included) at the CLI's defaults. Its handlers report through a
memory-mapped file (_spans.py). Enqueues go through the library in this process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _common import KEYS, CliWorker, key_of, run, unique_key_of

import taskstore
from taskstore import NewTask

FLOW_KINDS = {"keyed", "limited"}


def log_level() -> str:
    """``BENCH_TASKSTORE_LOG_LEVEL=info`` runs the workers logging as ``taskstore worker --log-level info`` does."""
    return os.environ.get("BENCH_TASKSTORE_LOG_LEVEL", "warning")


PREFETCH_PER_SLOT = 5  # the README's advice for short tasks: five held ready per slot


def prefetch(concurrency: int, kind: str = "") -> int:
    """Held ready beyond the running ones, as the README advises: for short tasks five per slot (a slot that frees
    starts its next task without waiting for a claim, and claims come in batches large enough to keep the slots
    busy); for tasks with a concurrency key, no more than the slots (a held task takes its key's slot while it
    waits). ``BENCH_TASKSTORE_PREFETCH`` sets another number for every kind."""
    if "BENCH_TASKSTORE_PREFETCH" in os.environ:
        return int(os.environ["BENCH_TASKSTORE_PREFETCH"])
    return concurrency if kind in FLOW_KINDS else PREFETCH_PER_SLOT * concurrency


def tenant(key: int) -> str:
    return f"tenant-{key}"


class Taskstore(CliWorker):
    unique_api = "Store.create_many, each NewTask with its own unique_key"
    limit_api = f"Store.set_limit(key, concurrency=1) for each of the {KEYS:,} keys, NewTask(concurrency_key=key)"

    def command(self, concurrency: int) -> list[str]:
        cli = Path(sys.executable).parent / "taskstore"
        return [
            str(cli), "worker", "taskstore_app:app", "--url", self.url, "--queue", "bench",
            "--concurrency", str(concurrency), "--prefetch", str(prefetch(concurrency, self.work_kind)),
            "--log-level", log_level(),
        ]  # fmt: skip

    def settings(self, concurrency: int) -> str:
        return (
            f"taskstore worker --concurrency {concurrency} --prefetch {prefetch(concurrency, self.work_kind)} "
            f"--log-level {log_level()} (1 process; maintenance on, the default), async handlers; "
            "enqueue: Store.create_many"
        )

    async def open(self, url: str, install: bool) -> None:
        self.url = url
        self.app = app = taskstore.App(url)
        self.limits_set = False

        # Declared here only so that ``enqueue_one`` can enqueue by kind: the worker process runs taskstore_app's.
        @app.task(queue="bench", kind="noop")
        async def noop(i: float) -> None:
            raise AssertionError("the benchmark's own process runs no task")

        @app.task(queue="bench", kind="timed")
        async def timed(sent: float) -> None:
            raise AssertionError("the benchmark's own process runs no task")

        self.store = await app.store()

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        if kind in FLOW_KINDS:
            await self.enqueue_keyed(kind, payloads)
            return
        await self.store.create_many([NewTask("bench", kind, {"args": [p], "kwargs": {}}) for p in payloads])

    async def enqueue_keyed(self, kind: str, payloads: list[float]) -> None:
        if kind == "limited" and not self.limits_set:
            for key in range(KEYS):
                await self.store.set_limit(tenant(key), concurrency=1)
            self.limits_set = True
        keys = [key_of(int(p)) for p in payloads]
        await self.store.create_many(
            [
                NewTask("bench", "keyed", {"args": [p, key], "kwargs": {}}, concurrency_key=tenant(key))
                for p, key in zip(payloads, keys, strict=True)
            ]
        )

    async def enqueue_bulk_unique(self, payloads: list[float]) -> None:
        await self.store.create_many(
            [NewTask("bench", "noop", {"args": [p], "kwargs": {}}, unique_key=unique_key_of(int(p))) for p in payloads]
        )

    async def enqueue_one(self, kind: str, payload: float) -> None:
        await self.app.tasks[kind].enqueue(payload)

    async def start_worker(self, concurrency: int) -> None:
        self.launch(self.command(concurrency))

    async def close(self) -> None:
        await self.app.aclose()


if __name__ == "__main__":
    run(Taskstore())
