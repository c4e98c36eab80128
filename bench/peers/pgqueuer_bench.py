"""pgqueuer on PostgreSQL (asyncpg): the adapter for bench/peers/_common.py. Runs in pgqueuer's own venv.

The worker is pgqueuer's own entry point, ``pgq run pgqueuer_app:create`` (docs/reference/cli.md, "run"), in a
process of its own (uvloop, as ``pgq run`` picks it when installed), with the CLI's defaults (``--dequeue-timeout
30``, durable tables, log level INFO: nothing is logged per job at INFO) but for two settings:

- ``--max-concurrent-tasks`` is the concurrency every system gets in a scenario (100 for the drains), so no system
  runs more at once than another;
- ``--batch-size`` is half of it, the largest pgqueuer accepts (it requires ``max_concurrent_tasks`` to be at least
  twice the batch size): docs/guides/performance-tuning.md, "Batch size", says to increase ``batch_size`` when jobs
  are short-lived (< 1 s), and every task here is (no-op or 1 ms). The CLI's default, 10, costs two committed
  round trips (the claim, then the completions' log write) per 10 jobs; each commit waits for the WAL flush and,
  through the queue table's NOTIFY trigger, for PostgreSQL's cluster-wide NOTIFY lock, so at the default the drain
  measures this machine's fsync latency more than pgqueuer (bench/pgqueuer_check.py, 20,000 no-op jobs, the README's
  consumer under ``pgq run``, interleaved: 0.8-2.3k tasks/s at the default against 4.6-6.6k at
  ``--batch-size 50 --max-concurrent-tasks 100`` at load 6-7; 2.7-3.5k against 6.8-7.7k at load 3.3-3.7). At
  concurrency 10 the batch is 5.

The worker registers only the entrypoint of the kind it drains (bench/peers/pgqueuer_app.py says why). After
installing the schema, ``pgq autovac``'s settings are applied (``Queries.optimize_autovacuum``), as the same
page's checklist says ("Run `pgq autovac` after installation"). The driver is asyncpg, the one pgqueuer's docs
recommend for throughput (docs/comparisons/benchmarks.md, "asyncpg vs psycopg"), on one direct connection
(performance-tuning.md, "Use a dedicated connection for LISTEN").

``BENCH_PGQUEUER_BATCH`` and ``BENCH_PGQUEUER_MAX_CONCURRENT`` (``none``: unlimited, the CLI's default; the batch is
then the CLI's 10) override the two, and ``BENCH_PGQUEUER_AUTOVAC=0`` leaves the autovacuum settings at the
server's, to see what they change.

Enqueue: ``Queries.enqueue`` with lists, the batch form of the docs (README, docs/guides/completion-tracking.md),
on the one connection; single enqueues (the latency scenario's producer) on an ``AsyncpgPoolDriver`` pool
(performance-tuning.md's checklist: "Use `AsyncpgPoolDriver` for producers").
Deduplication: ``Queries.enqueue(..., dedupe_key=[...])``, one key per job in the same batch call. No per-key
concurrency: ``concurrency_limit`` is per entrypoint, a handler name registered in code (the same limit declared
by every worker), not a key carried by each job; 1,000 tenants would take 1,000 registered entrypoints.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import asyncpg
from _common import CliWorker, run, unique_key_of
from pgqueuer.db import AsyncpgDriver, AsyncpgPoolDriver
from pgqueuer.queries import Queries

DEFAULT_BATCH = 10  # pgq run --batch-size's default, kept when the concurrency is unlimited


def batch(concurrency: int | None) -> int:
    """The largest batch the cap allows (short jobs: performance-tuning.md, "Batch size")."""
    if "BENCH_PGQUEUER_BATCH" in os.environ:
        return int(os.environ["BENCH_PGQUEUER_BATCH"])
    return DEFAULT_BATCH if concurrency is None else max(1, concurrency // 2)


def max_concurrent(concurrency: int) -> int | None:
    raw = os.environ.get("BENCH_PGQUEUER_MAX_CONCURRENT", str(concurrency))
    return None if raw.lower() == "none" else int(raw)


def autovac() -> bool:
    return os.environ.get("BENCH_PGQUEUER_AUTOVAC", "1") != "0"


class Pgqueuer(CliWorker):
    unique_api = "Queries.enqueue with lists, dedupe_key=[one per job]"
    limit_missing = (
        "concurrency_limit is per entrypoint (a handler registered in code), not per key carried by a job: "
        "not an equivalent"
    )

    def command(self, concurrency: int) -> list[str]:
        cap = max_concurrent(concurrency)
        cmd = [str(Path(sys.executable).parent / "pgq"), "run", "pgqueuer_app:create", "--batch-size", str(batch(cap))]
        return cmd + ([] if cap is None else ["--max-concurrent-tasks", str(cap)])

    def settings(self, concurrency: int) -> str:
        shown = " ".join(self.command(concurrency)[1:])
        return (
            f"pgq {shown} (1 process; batch: performance-tuning.md's advice for short jobs, the largest the cap "
            "allows; other flags at their defaults: --dequeue-timeout 30, log level INFO), "
            "PgQueuer on one asyncpg connection, durable tables, "
            f"pgq autovac {'applied' if autovac() else 'not applied'}; enqueue: Queries.enqueue with lists, "
            "single enqueues on AsyncpgPoolDriver (pool 5-20)"
        )

    async def open(self, url: str, install: bool) -> None:
        self.url = url
        self.conn = await asyncpg.connect(url)
        self.queries = Queries(AsyncpgDriver(self.conn))
        self.pool: asyncpg.Pool | None = None
        self.pooled: Queries | None = None
        self.pool_lock = asyncio.Lock()  # the producer's first enqueues all arrive at once: one pool for them
        if install:
            await self.queries.install()
            if autovac():
                await self.queries.optimize_autovacuum()

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        await self.queries.enqueue([kind] * len(payloads), [repr(p).encode() for p in payloads], [0] * len(payloads))

    async def enqueue_bulk_unique(self, payloads: list[float]) -> None:
        await self.queries.enqueue(
            ["noop"] * len(payloads),
            [repr(p).encode() for p in payloads],
            [0] * len(payloads),
            dedupe_key=[unique_key_of(int(p)) for p in payloads],
        )

    async def enqueue_one(self, kind: str, payload: float) -> None:
        # Single enqueues (the open-loop producer) go through a pool, the page's checklist's "Use
        # AsyncpgPoolDriver for producers" with its example's sizes: on the one connection, concurrent enqueues
        # queue behind each other's commits (p50 enqueue 980 ms at 500/s here).
        async with self.pool_lock:
            if self.pooled is None:
                self.pool = await asyncpg.create_pool(self.url, min_size=5, max_size=20)
                self.pooled = Queries(AsyncpgPoolDriver(self.pool))
        await self.pooled.enqueue(kind, repr(payload).encode())

    async def start_worker(self, concurrency: int) -> None:
        # Only the drained kind's entrypoint (see pgqueuer_app.py); a latency run (no work_kind) needs all.
        kinds = os.environ.get("BENCH_PGQUEUER_KINDS") or self.work_kind or "noop,sleep,timed"
        self.launch(self.command(concurrency), env={"BENCH_URL": self.url, "BENCH_PGQUEUER_KINDS": kinds})

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        await self.conn.close()


if __name__ == "__main__":
    run(Pgqueuer())
