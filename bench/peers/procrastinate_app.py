"""The App ``procrastinate --app=procrastinate_app.app worker`` runs: procrastinate's worker as its docs run one.

docs/howto/basics/worker.md ("Launch a worker": ``procrastinate --app=dotted.path.to.app worker``) and
docs/howto/production/concurrency.md (``procrastinate worker --concurrency=30``: async sub-workers in one
process). The tasks are the ones the benchmark's adapter defers (same names, same queue); their bodies report
through the memory-mapped file named in ``$BENCH_SPANS`` (_spans.py); the database is ``$BENCH_URL``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import procrastinate
from _spans import Spans, handlers

HANDLERS = handlers(Spans.from_env())

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_URL"]))


@app.task(name="noop", queue="bench")
async def noop(p: float) -> None:
    await HANDLERS["noop"](p)


@app.task(name="sleep", queue="bench")
async def sleep(p: float) -> None:
    await HANDLERS["sleep"](p)


@app.task(name="timed", queue="bench")
async def timed(p: float) -> None:
    await HANDLERS["timed"](p)


@app.task(name="keyed", queue="bench")
async def keyed(p: float, key: int) -> None:
    await HANDLERS["keyed"](p, key)
