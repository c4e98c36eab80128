"""arq on Redis: the adapter for bench/peers/_common.py. Runs in arq's own venv.

arq has no bulk enqueue; its fastest documented way is many ``enqueue_job`` calls in flight at once on one
pool; deduplication is ``_job_id`` (a job id already queued or kept as a result is not enqueued again). The
worker polls the queue every ``poll_delay`` (default 0.5 s; 10 ms here, for throughput and latency).
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
from arq import Worker, create_pool
from arq.connections import RedisSettings

POLL = 0.01
IN_FLIGHT = 100


async def noop(ctx: dict[str, Any], p: float) -> None:
    noop_handler(p)


async def sleep(ctx: dict[str, Any], p: float) -> None:
    await sleep_handler_async(p)


async def timed(ctx: dict[str, Any], p: float) -> None:
    timed_handler(p)


class Arq(Adapter):
    unique_api = f"enqueue_job(_job_id=key), {IN_FLIGHT} in flight"

    def settings(self, concurrency: int) -> str:
        return f"Worker(max_jobs={concurrency}, poll_delay={POLL}); enqueue: enqueue_job, {IN_FLIGHT} in flight"

    async def open(self, url: str, install: bool) -> None:
        logging.getLogger("arq").setLevel(logging.WARNING)
        self.settings_ = RedisSettings.from_dsn(url)
        self.pool = await create_pool(self.settings_)

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        await in_flight(lambda p: self.pool.enqueue_job(kind, p), payloads, IN_FLIGHT)

    async def enqueue_bulk_unique(self, payloads: list[float]) -> None:
        await in_flight(lambda p: self.pool.enqueue_job("noop", p, _job_id=unique_key_of(int(p))), payloads, IN_FLIGHT)

    async def enqueue_one(self, kind: str, payload: float) -> None:
        await self.pool.enqueue_job(kind, payload)

    async def start_worker(self, concurrency: int) -> None:
        self.worker = Worker(
            functions=[noop, sleep, timed],  # type: ignore[list-item]
            redis_settings=self.settings_,
            max_jobs=concurrency,
            poll_delay=POLL,
            handle_signals=False,
        )
        self.runner = asyncio.create_task(self.worker.async_run())

    async def stop_worker(self) -> None:
        # close() cancels the jobs still running and gathers them: the CancelledError it raises then is theirs.
        with contextlib.suppress(asyncio.CancelledError):
            await self.worker.close()
        self.runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.runner

    async def close(self) -> None:
        await self.pool.aclose()


if __name__ == "__main__":
    run(Arq())
