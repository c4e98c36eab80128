"""taskstore in the recovery scenario (bench/recovery.py): the App its workers run, and its enqueue.

The workers are ``taskstore worker recovery_taskstore:app --url URL --queue recovery --concurrency 4``, the CLI's
defaults otherwise (reaper every 5 s, log level info, prefetch 0). The lease is the task's ``processing_timeout``,
set where users set it, on the task (``@app.task(processing_timeout=...)``; ``.options(processing_timeout=...)``
and ``NewTask(processing_timeout=...)`` take the same value): 2 s, from ``$BENCH_RECOVERY_LEASE``. The worker
renews every lease it holds a third of the way through it. Everything else is the default: 10 attempts,
the default exponential retry policy (it also sets how soon a timed-out task may run again).

``python recovery_taskstore.py enqueue URL '{"durations": [...], "rate": 0}'`` creates task ``t<i>`` for each
duration: at once, or ``rate`` a second (_recovery_log.paced); with no durations it only makes the schema.
The driver reads the outcome itself (bench/recovery.py), through the library, in the harness's venv.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import _recovery_log

import taskstore
from taskstore import NewTask

LEASE = float(os.environ.get("BENCH_RECOVERY_LEASE", "2"))
app = taskstore.App()  # the URL comes from the worker's --url


@app.task(queue="recovery", kind="work", processing_timeout=LEASE)
async def work(n: int, d: float) -> dict[str, int]:
    attempt = taskstore.current_task().attempts
    _recovery_log.started(n, attempt, f"t{n}")
    await asyncio.sleep(d)
    _recovery_log.ended(n, attempt, f"t{n}")
    # The result names the attempt whose completion the store accepted: a stale one would show here.
    return {"attempt": attempt, "pgid": os.getpgrp()}


async def enqueue(url: str, durations: list[float], rate: float) -> None:
    async with taskstore.App(url) as client:
        store = await client.store()  # opening it makes the schema: an empty list is the install step

        async def batch(first: int, ds: list[float]) -> None:
            # The lease given to NewTask directly too, so the stored tasks carry it whatever the App's default.
            await store.create_many(
                [
                    NewTask("recovery", "work", {"args": [i, d], "kwargs": {}}, id=f"t{i}", processing_timeout=LEASE)
                    for i, d in enumerate(ds, first)
                ]
            )

        if durations and rate:
            await _recovery_log.paced(durations, rate, batch)
        elif durations:
            await batch(0, durations)


if __name__ == "__main__":
    command, url, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if command != "enqueue":
        raise SystemExit(f"unknown command {command!r}")
    asyncio.run(enqueue(url, params["durations"], params.get("rate", 0)))
    print("{}")
