"""procrastinate on PostgreSQL (psycopg 3): the adapter for bench/peers/_common.py. Runs in its own venv."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import procrastinate
from _common import Adapter, noop_handler, run, sleep_handler_async, timed_handler


class Procrastinate(Adapter):
    def settings(self, concurrency: int) -> str:
        return f"run_worker_async(concurrency={concurrency}, listen_notify=True); enqueue: batch_defer_async"

    async def open(self, url: str, install: bool) -> None:
        self.app = app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

        @app.task(name="noop", queue="bench")
        async def noop(p: float) -> None:
            noop_handler(p)

        @app.task(name="sleep", queue="bench")
        async def sleep(p: float) -> None:
            await sleep_handler_async(p)

        @app.task(name="timed", queue="bench")
        async def timed(p: float) -> None:
            timed_handler(p)

        await app.open_async()
        if install:
            await app.schema_manager.apply_schema_async()

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        await self.app.tasks[kind].batch_defer_async(*({"p": p} for p in payloads))

    async def enqueue_one(self, kind: str, payload: float) -> None:
        await self.app.tasks[kind].defer_async(p=payload)

    async def start_worker(self, concurrency: int) -> None:
        self.worker = asyncio.create_task(
            self.app.run_worker_async(queues=["bench"], concurrency=concurrency, wait=True, listen_notify=True)
        )

    async def stop_worker(self) -> None:
        self.worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self.worker, timeout=30)

    async def close(self) -> None:
        await self.app.close_async()


if __name__ == "__main__":
    run(Procrastinate())
