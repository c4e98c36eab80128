"""How fast the dashboard's pages render on a store of 1,000,000 tasks (issue 14: the overview under 200 ms).

    python3 -m bench.overview_1m [--tasks 1000000] [--repeat 7] [--sqlite-only | --postgres-only]
                                 [--postgres URL]

Fills a fresh store (SQLite in a temporary directory; PostgreSQL in a schema of its own, dropped afterwards)
through ``Store.create_many``, then moves tasks into the states a busy store holds, with one UPDATE per
state as an operator's bulk job would (the store's own bookkeeping sees those writes like any other):

    62% done (finished over the last 2 hours), 20% queued, 5% scheduled (run_at tomorrow), 5% dead
    (a dozen failure messages), 4% cancelled, 3% failed (waiting to retry), 1% claimed

over four queues. PostgreSQL gets ``VACUUM ANALYZE`` after the fill, as autovacuum soon would. Then for each
page it prints the best and median of ``--repeat`` GETs through the ASGI app (an in-process client: template
rendering included, no socket), and the store calls the overview is made of.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx  # the test extra installs httpx2 (what starlette.testclient uses)

import taskstore
from taskstore import NewTask
from taskstore.web import create_app

from .local_pg import add_backend_options, pg_schema

CHUNK = 10_000
QUEUES = ("mail", "billing", "reports", "default")
# (state, share of the tasks in per-mille): applied to consecutive seq ranges, so every queue gets each state.
STATES = (("done", 620), ("queued", 200), ("scheduled", 50), ("dead", 50), ("cancelled", 40), ("failed", 30))
# the rest (10 per mille) is claimed

_PG_FILL = {
    "done": "UPDATE {t} SET state = 'done', attempts = 1, finished_at = now() - (random() * interval '2 hours'), "
    "result_at = now(), version = version + 1 WHERE seq > %(lo)s AND seq <= %(hi)s",
    "scheduled": "UPDATE {t} SET run_at = now() + interval '1 day' WHERE seq > %(lo)s AND seq <= %(hi)s",
    "dead": "UPDATE {t} SET state = 'dead', attempts = 1, finished_at = now() - (random() * interval '2 hours'), "
    "result_at = now(), result_failure = jsonb_build_object('type', 'ValueError', 'message', "
    "'bad row ' || (seq %% 12)::text, 'traceback', 'Traceback ...'), version = version + 1 "
    "WHERE seq > %(lo)s AND seq <= %(hi)s",
    "cancelled": "UPDATE {t} SET state = 'cancelled', finished_at = now() - (random() * interval '2 hours'), "
    "version = version + 1 WHERE seq > %(lo)s AND seq <= %(hi)s",
    "failed": "UPDATE {t} SET state = 'failed', attempts = 1, run_at = now() + interval '1 minute', "
    "version = version + 1 WHERE seq > %(lo)s AND seq <= %(hi)s",
    "claimed": "UPDATE {t} SET state = 'claimed', attempts = 1, worker_id = 'w1', token = md5(seq::text), "
    "claimed_at = now(), times_out_at = now() + interval '1 hour', version = version + 1 "
    "WHERE seq > %(lo)s AND seq <= %(hi)s",
}

_SQLITE_NOW = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
_SQLITE_FILL = {
    "done": "UPDATE tasks SET state = 'done', attempts = 1, finished_at = {now} - abs(random() % 7200000000), "
    "result_at = {now}, version = version + 1 WHERE seq > :lo AND seq <= :hi",
    "scheduled": "UPDATE tasks SET run_at = {now} + 86400000000 WHERE seq > :lo AND seq <= :hi",
    "dead": "UPDATE tasks SET state = 'dead', attempts = 1, finished_at = {now} - abs(random() % 7200000000), "
    "result_at = {now}, result_failure = json_object('type', 'ValueError', 'message', 'bad row ' || (seq % 12), "
    "'traceback', 'Traceback ...'), version = version + 1 WHERE seq > :lo AND seq <= :hi",
    "cancelled": "UPDATE tasks SET state = 'cancelled', finished_at = {now} - abs(random() % 7200000000), "
    "version = version + 1 WHERE seq > :lo AND seq <= :hi",
    "failed": "UPDATE tasks SET state = 'failed', attempts = 1, run_at = {now} + 60000000, "
    "version = version + 1 WHERE seq > :lo AND seq <= :hi",
    "claimed": "UPDATE tasks SET state = 'claimed', attempts = 1, worker_id = 'w1', token = hex(seq), "
    "claimed_at = {now}, times_out_at = {now} + 3600000000, version = version + 1 WHERE seq > :lo AND seq <= :hi",
}


def ranges(n: int) -> list[tuple[str, int, int]]:
    out, lo = [], 0
    for state, share in STATES:
        hi = lo + n * share // 1000
        out.append((state, lo, hi))
        lo = hi
    out.append(("claimed", lo, n))
    return out


async def fill(store: taskstore.Store, n: int) -> None:
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        await store.create_many(
            NewTask(QUEUES[(start + i) % len(QUEUES)], "send", {"args": [start + i], "kwargs": {}}) for i in range(size)
        )


def shape_sqlite(path: Path, n: int) -> None:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as conn:
        for state, lo, hi in ranges(n):
            if state != "queued":
                conn.execute(_SQLITE_FILL[state].format(now=_SQLITE_NOW), {"lo": lo, "hi": hi})
        conn.commit()
        conn.execute("ANALYZE")


def shape_postgres(url: str, n: int) -> None:
    from urllib.parse import parse_qs, urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    schema = parse_qs(parts.query)["schema"][0]
    with psycopg.connect(urlunsplit(parts._replace(query="")), autocommit=True) as conn:
        table = sql.Identifier(schema, "tasks")
        for state, lo, hi in ranges(n):
            if state != "queued":
                conn.execute(sql.SQL(_PG_FILL[state]).format(t=table), {"lo": lo, "hi": hi})  # type: ignore[arg-type]
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))


async def timed(label: str, repeat: int, call: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    print(f"  {label:<34} best {min(times):8.1f} ms   median {statistics.median(times):8.1f} ms")
    return min(times)


async def measure(name: str, url: str, n: int, repeat: int, shape: Callable[[], None]) -> None:
    print(f"{name}: filling {n:,} tasks ...", flush=True)
    started = time.perf_counter()
    async with taskstore.open(url) as store:
        await fill(store, n)
    shape()
    print(f"{name}: filled in {time.perf_counter() - started:.0f} s", flush=True)
    async with taskstore.open(url) as store:
        app = create_app(store, tokens=[])
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:

            async def get(path: str) -> None:
                response = await http.get(path)
                response.raise_for_status()

            queues = await store.list_queues()
            total = sum(sum(q.counts.values()) for q in queues)
            print(f"{name}: {total:,} tasks in {len(queues)} queues")
            await timed("store.list_queues()", repeat, store.list_queues)
            await timed("store.activity(1 h, 1 min)", repeat, lambda: store.activity(3600, 60))
            await timed("store.list_worker_heartbeats()", repeat, store.list_worker_heartbeats)
            await timed("GET / (overview page)", repeat, lambda: get("/"))
            await timed("GET / (overview, htmx partial)", repeat, lambda: http.get("/", headers={"hx-request": "1"}))
            await timed("GET /queues/mail", repeat, lambda: get("/queues/mail"))
            await timed("GET /queues/mail?state=dead", repeat, lambda: get("/queues/mail?state=dead"))
            await timed("GET /dead (failure groups)", repeat, lambda: get("/dead"))
            await timed("GET /api/v1/queues", repeat, lambda: get("/api/v1/queues"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    add_backend_options(parser)
    args = parser.parse_args()
    if not args.postgres_only:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "overview.db"
            db = f"sqlite:///{path}"
            await measure("SQLite", db, args.tasks, args.repeat, lambda: shape_sqlite(path, args.tasks))
    if not args.sqlite_only:
        with pg_schema(args.postgres, "bench_overview") as url:
            if url is not None:
                pg = url
                await measure("PostgreSQL", pg, args.tasks, args.repeat, lambda: shape_postgres(pg, args.tasks))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
