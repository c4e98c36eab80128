"""huey on SQLite (SqliteHuey, thread workers): the adapter for bench/peers/_common.py. Runs in its own venv.

The URL is ``sqlite:///path``. huey has no bulk enqueue; ``TaskWrapper.map`` (one enqueue per item) is its
fastest documented way to enqueue many. The consumer runs in this process with thread workers and a 10 ms
polling delay that does not back off (huey's default starts at 100 ms and backs off to 10 s when idle).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _common import Adapter, noop_handler, run, sleep_handler_sync, timed_handler
from huey import SqliteHuey

DELAY = 0.01


class Huey(Adapter):
    drain_concurrency = 8
    limit_missing = (
        "no per-key concurrency limit (lock_task fails a task whose lock is held instead of holding it back)"
    )

    def settings(self, concurrency: int) -> str:
        return (
            f"consumer workers={concurrency}, worker_type=thread, initial_delay={DELAY}, backoff=1, "
            f"max_delay={DELAY}; enqueue: task.map"
        )

    async def open(self, url: str, install: bool) -> None:
        logging.getLogger("huey").setLevel(logging.WARNING)
        self.huey = huey = SqliteHuey("bench", filename=url.removeprefix("sqlite:///"))
        self.tasks = {
            "noop": huey.task(name="noop")(noop_handler),
            "sleep": huey.task(name="sleep")(sleep_handler_sync),
            "timed": huey.task(name="timed")(timed_handler),
        }

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        await asyncio.to_thread(self.tasks[kind].map, payloads)

    async def enqueue_one(self, kind: str, payload: float) -> None:
        await asyncio.to_thread(self.tasks[kind], payload)

    async def start_worker(self, concurrency: int) -> None:
        self.consumer = self.huey.create_consumer(
            workers=concurrency,
            worker_type="thread",
            initial_delay=DELAY,
            backoff=1,
            max_delay=DELAY,
            periodic=False,
            check_worker_health=False,
        )
        self.consumer.start()

    async def stop_worker(self) -> None:
        await asyncio.to_thread(self.consumer.stop, True)


if __name__ == "__main__":
    run(Huey())
