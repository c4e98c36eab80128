"""saq on Redis: the adapter for bench/peers/_common.py. Runs in saq's own venv.

saq has no bulk enqueue; its fastest way is many ``Queue.enqueue`` calls in flight at once. Its worker waits on
Redis for new jobs (no polling delay). Deduplication is the job's ``key`` (a key already queued is not enqueued
again: ``enqueue`` returns None).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from _common import Adapter, in_flight, noop_handler, run, sleep_handler_async, timed_handler, unique_key_of
from saq import Queue, Worker

IN_FLIGHT = 100


async def noop(ctx: dict[str, Any], *, p: float) -> None:
    noop_handler(p)


async def sleep(ctx: dict[str, Any], *, p: float) -> None:
    await sleep_handler_async(p)


async def timed(ctx: dict[str, Any], *, p: float) -> None:
    timed_handler(p)


class Saq(Adapter):
    unique_api = f"Queue.enqueue(key=key), {IN_FLIGHT} in flight"

    def settings(self, concurrency: int) -> str:
        return f"Worker(concurrency={concurrency}); enqueue: Queue.enqueue, {IN_FLIGHT} in flight"

    async def open(self, url: str, install: bool) -> None:
        logging.getLogger("saq").setLevel(logging.WARNING)
        self.queue = Queue.from_url(url, name="bench")
        await self.queue.connect()

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        await in_flight(lambda p: self.queue.enqueue(kind, p=p), payloads, IN_FLIGHT)

    async def enqueue_bulk_unique(self, payloads: list[float]) -> None:
        await in_flight(lambda p: self.queue.enqueue("noop", key=unique_key_of(int(p)), p=p), payloads, IN_FLIGHT)

    async def enqueue_one(self, kind: str, payload: float) -> None:
        await self.queue.enqueue(kind, p=payload)

    async def start_worker(self, concurrency: int) -> None:
        self.worker = Worker(self.queue, functions=[noop, sleep, timed], concurrency=concurrency)
        self.runner = asyncio.create_task(self.worker.start())

    async def stop_worker(self) -> None:
        await self.worker.stop()
        self.runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.runner

    async def close(self) -> None:
        await self.queue.disconnect()


if __name__ == "__main__":
    run(Saq())
