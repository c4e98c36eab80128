"""procrastinate in the recovery scenario (bench/recovery.py): the App its workers run, and its enqueue.

The workers are ``procrastinate --app=recovery_procrastinate.app worker --queues recovery --concurrency 4``.
Recovery is what docs/howto/production/retry_stalled_jobs.md ("Retry stalled jobs") prescribes: workers write
heartbeats, and a periodic task (``queueing_lock="retry_stalled_jobs"``, ``pass_context=True``) calls
``job_manager.get_stalled_jobs()`` and ``retry_job`` on each. The page's example fires every 10 minutes with the
default 30 s staleness; here, to give it the same 2 s lease as every system (``$BENCH_RECOVERY_LEASE``):

- ``get_stalled_jobs(seconds_since_heartbeat=2)``;
- the two worker settings the page says to adjust with it, in the App's ``worker_defaults``:
  ``update_heartbeat_interval`` a third of it (the defaults are 10 s against 30 s) and ``stalled_worker_timeout``
  equal to it (the defaults are both 30 s);
- the periodic task every second (cron's sixth, seconds, column), the finest its scheduler has.

The periodic task is on the benchmark's queue, at the default priority, as in the page's example.

``python recovery_procrastinate.py enqueue URL '{"durations": [...], "rate": 0, "install": true}'`` applies the
schema (unless ``install`` is false) and defers one ``work`` job per duration, at once or ``rate`` a second
(_recovery_log.paced). The driver reads the jobs and events tables itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import _recovery_log
import procrastinate

LEASE = float(os.environ.get("BENCH_RECOVERY_LEASE", "2"))

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_URL"]),
    worker_defaults={"update_heartbeat_interval": LEASE / 3, "stalled_worker_timeout": LEASE},
)


@app.task(name="work", queue="recovery", pass_context=True)
async def work(context: procrastinate.JobContext, n: int, d: float) -> None:
    job = context.job
    _recovery_log.started(n, job.attempts, job.id)
    await asyncio.sleep(d)
    _recovery_log.ended(n, job.attempts, job.id)


@app.periodic(cron="* * * * * *")
@app.task(name="retry_stalled_jobs", queue="recovery", queueing_lock="retry_stalled_jobs", pass_context=True)
async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> None:
    for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=LEASE):
        await app.job_manager.retry_job(job)


async def enqueue(durations: list[float], rate: float, install: bool) -> None:
    async with app.open_async():
        if install:
            await app.schema_manager.apply_schema_async()

        async def batch(first: int, ds: list[float]) -> None:
            await work.batch_defer_async(*({"n": i, "d": d} for i, d in enumerate(ds, first)))

        if durations and rate:
            await _recovery_log.paced(durations, rate, batch)
        elif durations:
            await batch(0, durations)


if __name__ == "__main__":
    command, params = sys.argv[1], json.loads(sys.argv[3])
    if command != "enqueue":
        raise SystemExit(f"unknown command {command!r}")
    asyncio.run(enqueue(params["durations"], params.get("rate", 0), params.get("install", True)))
    print("{}")
