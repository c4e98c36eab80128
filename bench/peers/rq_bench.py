"""rq on Redis: the adapter for bench/peers/_common.py. Runs in rq's own venv.

rq runs one job at a time per worker process, so concurrency is the number of ``SimpleWorker`` processes (no
fork per job: rq's documented choice when the fork costs more than the job). Enqueue: ``Queue.enqueue_many``,
one pipeline per call. Flow control (rq 3.0): ``rate_limit=RateLimit(key, concurrency=1)`` (python-rq.org, rate
limiting: at most N jobs of a key queued or running at once, across workers; the rest held back and promoted as
slots free) and ``job_id=key, unique=True`` (DuplicateJobError when the id exists). ``enqueue_many`` takes neither
(its jobs are built without them), so both go one ``enqueue`` per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

import redis
import rq_tasks
from _common import Adapter, Counter, key_of, run, unique_key_of
from rq import Queue, SimpleWorker
from rq.exceptions import DuplicateJobError
from rq.rate_limit import RateLimit

MAX_PROCESSES = 16


class RedisCounter(Counter):
    def __init__(self, conn: redis.Redis) -> None:
        super().__init__()
        self.conn = conn

    def read(self) -> tuple[int, float | None, float | None, list[float]]:
        done, first, last = self.conn.mget("bench:done", "bench:first", "bench:last")
        delays = [float(d) for d in self.conn.lrange("bench:delays", 0, -1)]
        return int(done or 0), float(first) if first else None, float(last) if last else None, delays

    def read_spans(self) -> tuple[list[tuple[int, float, float]], int]:
        spans = []
        for raw in self.conn.lrange("bench:spans", 0, -1):
            key, start, end = raw.split()
            spans.append((int(key), float(start), float(end)))
        return spans, 0


class Rq(Adapter):
    drain_concurrency = 4
    max_concurrency = MAX_PROCESSES
    unique_api = "Queue.enqueue(job_id=key, unique=True), one call per job (enqueue_many has no unique)"
    limit_api = "Queue.enqueue(rate_limit=RateLimit(key, concurrency=1)), one call per job"

    def settings(self, concurrency: int) -> str:
        return f"{concurrency} SimpleWorker processes; enqueue: Queue.enqueue_many"

    async def open(self, url: str, install: bool) -> None:
        self.url = url
        self.conn = redis.Redis.from_url(url)
        self.queue = Queue("bench", connection=self.conn)
        self.counter = RedisCounter(self.conn)
        self.funcs = {"noop": rq_tasks.noop, "sleep": rq_tasks.sleep, "timed": rq_tasks.timed, "keyed": rq_tasks.keyed}
        self.workers: list[subprocess.Popen[bytes]] = []

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        if kind == "limited":
            await asyncio.to_thread(self.enqueue_limited, payloads)
            return
        func = self.funcs[kind]
        if kind == "keyed":
            datas = [Queue.prepare_data(func, (p, key_of(int(p)))) for p in payloads]
            await asyncio.to_thread(self.queue.enqueue_many, datas)
            return
        datas = [Queue.prepare_data(func, (p,)) for p in payloads]
        await asyncio.to_thread(self.queue.enqueue_many, datas)

    def enqueue_limited(self, payloads: list[float]) -> None:
        for p in payloads:
            key = key_of(int(p))
            self.queue.enqueue(rq_tasks.keyed, p, key, rate_limit=RateLimit(f"tenant-{key}", concurrency=1))

    async def enqueue_bulk_unique(self, payloads: list[float]) -> None:
        def enqueue() -> None:
            for p in payloads:
                with contextlib.suppress(DuplicateJobError):
                    self.queue.enqueue(rq_tasks.noop, p, job_id=unique_key_of(int(p)), unique=True)

        await asyncio.to_thread(enqueue)

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
