"""pgqueuer in the recovery scenario (bench/recovery.py): the factory its workers run, and its enqueue.

The workers are ``pgq run recovery_pgqueuer:create --heartbeat-timeout 2 --max-concurrent-tasks 4 --batch-size 2``
(docs/guides/heartbeat.md, "Heartbeat timeout": a picked job whose heartbeat is older than ``heartbeat_timeout``
is re-picked by the next worker that dequeues; heartbeats go out at half of it, so every second here). The
timeout is the lease every system gets (``$BENCH_RECOVERY_LEASE``); the cap of 4 running jobs is the concurrency
every worker gets, and pgqueuer requires the cap to be at least twice the batch, hence 2. The rest is at the
CLI's defaults (``--dequeue-timeout 30``, durable tables). The factory has the shape of docs/reference/cli.md
("Factory pattern") on one direct asyncpg connection, as bench/peers/pgqueuer_app.py.

``python recovery_pgqueuer.py enqueue URL '{"durations": [...], "rate": 0, "install": true}'`` installs the
schema (unless ``install`` is false) and enqueues one ``work`` job per duration (payload ``<i> <duration>``), at
once or ``rate`` a second (_recovery_log.paced). The driver reads the log table itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

sys.path.insert(0, os.path.dirname(__file__))

import _recovery_log
import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    conn = await asyncpg.connect(os.environ["BENCH_URL"])
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("work")
    async def work(job: Job) -> None:
        n, d = (job.payload or b"").split()
        _recovery_log.started(int(n), job.attempts, job.id)
        await asyncio.sleep(float(d))
        _recovery_log.ended(int(n), job.attempts, job.id)

    try:
        yield pgq
    finally:
        await conn.close()


async def enqueue(url: str, durations: list[float], rate: float, install: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        if install:
            await queries.install()

        async def batch(first: int, ds: list[float]) -> None:
            n = len(ds)
            await queries.enqueue(["work"] * n, [f"{i} {d!r}".encode() for i, d in enumerate(ds, first)], [0] * n)

        if durations and rate:
            await _recovery_log.paced(durations, rate, batch)
        elif durations:
            await batch(0, durations)
    finally:
        await conn.close()


if __name__ == "__main__":
    command, url, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if command != "enqueue":
        raise SystemExit(f"unknown command {command!r}")
    asyncio.run(enqueue(url, params["durations"], params.get("rate", 0), params.get("install", True)))
    print("{}")
