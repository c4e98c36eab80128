"""taskstore on any of its durable backends (the URL says which): the adapter for bench/peers/_common.py.

The flow-control drains (kinds ``keyed`` and ``limited``) run the worker as users run it, ``taskstore worker``
in a process of its own with the settings of the in-process drain (concurrency, prefetch, no maintenance); its
handlers report through a memory-mapped file (_spans.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import _spans
from _common import (
    KEYS,
    Adapter,
    Counter,
    key_of,
    noop_handler,
    run,
    sleep_handler_async,
    timed_handler,
    unique_key_of,
)

import taskstore
from taskstore import NewTask, Worker

HERE = Path(__file__).resolve().parent
FLOW_KINDS = {"keyed", "limited"}


def log_level() -> str:
    """``BENCH_TASKSTORE_LOG_LEVEL=info`` runs the workers logging as ``taskstore worker --log-level info`` does."""
    return os.environ.get("BENCH_TASKSTORE_LOG_LEVEL", "warning")


def configure_logging() -> None:
    """The in-process worker logs to stderr with the CLI's format, at ``log_level()``."""
    from taskstore.cli import _LogFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(_LogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=log_level().upper(), handlers=[handler])


def prefetch(concurrency: int) -> int:
    """As many held ready as run: a slot that frees starts its next task without waiting for a claim."""
    return int(os.environ.get("BENCH_TASKSTORE_PREFETCH", concurrency))


def tenant(key: int) -> str:
    return f"tenant-{key}"


class SpanCounter(Counter):
    """What the ``taskstore worker`` process's handlers wrote."""

    def __init__(self, spans: _spans.Spans) -> None:
        super().__init__()
        self.spans_file = spans

    def read(self) -> tuple[int, float | None, float | None, list[float]]:
        done, first, last, _ = self.spans_file.header()
        return done, first, last, []

    def read_spans(self) -> tuple[list[tuple[int, float, float]], int]:
        return self.spans_file.records(), self.spans_file.header()[3]


class Taskstore(Adapter):
    unique_api = "Store.create_many, each NewTask with its own unique_key"
    limit_api = (
        f"Store.set_limit(key, concurrency=1) for each of the {KEYS:,} keys, NewTask(concurrency_key=key); "
        "the worker: taskstore worker (a process of its own)"
    )

    def settings(self, concurrency: int) -> str:
        if self.work_kind in FLOW_KINDS:
            return (
                f"taskstore worker --concurrency {concurrency} --prefetch {prefetch(concurrency)} --no-maintenance, "
                "async handlers; enqueue: Store.create_many"
            )
        return (
            f"Worker(concurrency={concurrency}, prefetch={prefetch(concurrency)}), async handlers; "
            "enqueue: Store.create_many"
        )

    async def open(self, url: str, install: bool) -> None:
        self.url = url
        self.app = app = taskstore.App(url)
        self.worker: Worker | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.limits_set = False

        @app.task(queue="bench", kind="noop")
        async def noop(i: float) -> None:
            noop_handler(i)

        @app.task(queue="bench", kind="sleep")
        async def sleep(i: float) -> None:
            await sleep_handler_async(i)

        @app.task(queue="bench", kind="timed")
        async def timed(sent: float) -> None:
            timed_handler(sent)

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
        if self.work_kind in FLOW_KINDS:
            await self.start_cli_worker(concurrency)
            return
        self.worker = Worker(self.app, ["bench"], concurrency, prefetch=prefetch(concurrency), maintenance=False)
        await self.worker.start()

    async def start_cli_worker(self, concurrency: int) -> None:
        self.spans_dir = tempfile.TemporaryDirectory(prefix="bench-spans-")
        path = Path(self.spans_dir.name) / "spans"
        _spans.create(path, capacity=1_000_000)
        self.counter = SpanCounter(_spans.Spans(path))
        cli = Path(sys.executable).parent / "taskstore"
        cmd = [
            str(cli), "worker", "taskstore_flow_app:app", "--url", self.url, "--queue", "bench",
            "--concurrency", str(concurrency), "--prefetch", str(prefetch(concurrency)), "--no-maintenance",
            "--log-level", log_level(),
        ]  # fmt: skip
        self.process = subprocess.Popen(cmd, cwd=HERE, env={**os.environ, "BENCH_SPANS": str(path)})  # noqa: ASYNC220

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.stop(grace=10)
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(self.process.wait)
            if code != 0:
                raise SystemExit(f"taskstore worker exited {code}")

    async def close(self) -> None:
        await self.app.aclose()


if __name__ == "__main__":
    configure_logging()
    run(Taskstore())
