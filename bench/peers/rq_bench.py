"""rq on Redis: the adapter for bench/peers/_common.py. Runs in rq's own venv.

rq runs one job at a time per worker process, so concurrency is the number of ``SimpleWorker`` processes (no
fork per job: rq's documented choice when the fork costs more than the job). Enqueue: ``Queue.enqueue_many``,
one pipeline per call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

import redis
import rq_tasks
from _common import Adapter, Counter, run
from rq import Queue, SimpleWorker

MAX_PROCESSES = 16


class RedisCounter(Counter):
    def __init__(self, conn: redis.Redis) -> None:
        super().__init__()
        self.conn = conn

    def read(self) -> tuple[int, float | None, float | None, list[float]]:
        done, first, last = self.conn.mget("bench:done", "bench:first", "bench:last")
        delays = [float(d) for d in self.conn.lrange("bench:delays", 0, -1)]
        return int(done or 0), float(first) if first else None, float(last) if last else None, delays


class Rq(Adapter):
    drain_concurrency = 4
    max_concurrency = MAX_PROCESSES

    def settings(self, concurrency: int) -> str:
        return f"{concurrency} SimpleWorker processes; enqueue: Queue.enqueue_many"

    async def open(self, url: str, install: bool) -> None:
        self.url = url
        self.conn = redis.Redis.from_url(url)
        self.queue = Queue("bench", connection=self.conn)
        self.counter = RedisCounter(self.conn)
        self.funcs = {"noop": rq_tasks.noop, "sleep": rq_tasks.sleep, "timed": rq_tasks.timed}
        self.workers: list[subprocess.Popen[bytes]] = []

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        func = self.funcs[kind]
        datas = [Queue.prepare_data(func, (p,)) for p in payloads]
        await asyncio.to_thread(self.queue.enqueue_many, datas)

    async def enqueue_one(self, kind: str, payload: float) -> None:
        await asyncio.to_thread(self.queue.enqueue, self.funcs[kind], payload)

    async def start_worker(self, concurrency: int) -> None:
        env = {**os.environ, "BENCH_REDIS_URL": self.url}
        self.workers = [
            subprocess.Popen([sys.executable, __file__, "rqworker", self.url, "{}"], env=env)  # noqa: ASYNC220
            for _ in range(concurrency)
        ]

    async def stop_worker(self) -> None:
        for proc in self.workers:
            proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            await asyncio.to_thread(proc.wait)

    async def close(self) -> None:
        self.conn.close()


def rqworker(url: str) -> None:
    conn = redis.Redis.from_url(url)
    SimpleWorker([Queue("bench", connection=conn)], connection=conn).work(logging_level="WARNING")


if __name__ == "__main__":
    if sys.argv[1] == "rqworker":
        rqworker(sys.argv[2])
    else:
        run(Rq())
