"""The factory ``pgq run pgqueuer_app:create`` runs: pgqueuer's worker as its docs run one.

The shape is the one pgqueuer's docs give (docs/reference/cli.md, "Factory pattern (run command)", and the README's
Quick Start): an ``@asynccontextmanager`` that opens a direct asyncpg connection (docs/guides/performance-tuning.md:
"Always use a direct asyncpg connection (not a pool) for the QueueManager"), builds ``PgQueuer`` on it, registers
the entrypoints and yields it. The handlers are the benchmark's kinds, reporting through the memory-mapped file
named in ``$BENCH_SPANS`` (_spans.py); the database is ``$BENCH_URL``. It registers the entrypoints named in
``$BENCH_PGQUEUER_KINDS`` (comma-separated; all three kinds if unset): the adapter names only the kind a drain runs,
as the README's consumer registers only the entrypoint it serves, because each dequeue looks at every registered
entrypoint (pg_stat_statements, 20,000 no-op jobs at batch 50: 1.54 ms a dequeue with three registered, 1.17 ms
with one).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

sys.path.insert(0, os.path.dirname(__file__))

import asyncpg
from _spans import Spans, handlers
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

HANDLERS = handlers(Spans.from_env())


def payload(job: Job) -> float:
    return float(job.payload or b"0")


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    conn = await asyncpg.connect(os.environ["BENCH_URL"])
    pgq = PgQueuer(AsyncpgDriver(conn))

    kinds = set(os.environ.get("BENCH_PGQUEUER_KINDS", "noop,sleep,timed").split(","))
    if "noop" in kinds:

        @pgq.entrypoint("noop")
        async def noop(job: Job) -> None:
            await HANDLERS["noop"](payload(job))

    if "sleep" in kinds:

        @pgq.entrypoint("sleep")
        async def sleep(job: Job) -> None:
            await HANDLERS["sleep"](payload(job))

    if "timed" in kinds:

        @pgq.entrypoint("timed")
        async def timed(job: Job) -> None:
            await HANDLERS["timed"](payload(job))

    try:
        yield pgq
    finally:
        await conn.close()
