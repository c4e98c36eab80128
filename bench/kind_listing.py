"""How PostgreSQL serves the dashboard's queue page filtered by kind (``store.list(queue=, kind=, descending=True)``).

    python3 -m bench.kind_listing [--url postgresql://postgres@127.0.0.1:5432/postgres] [--tasks 200000]

Fills a throwaway database with ``--tasks`` tasks over four queues and a skewed mix of kinds (one common,
a few middling, one rare), then for each listing prints its plan (``EXPLAIN ANALYZE`` of the driver's own
statement, with the values bound as the driver binds them) and its time through the Store, best of
``--repeat``. The timed calls run on the pool's connections as an application's would (psycopg prepares a
statement after a few executions, and PostgreSQL may then choose a generic plan): the closing line says how
many generic and custom plans those prepared statements used.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

import taskstore
from taskstore import NewTask

CHUNK = 10_000
QUEUES = ("mail", "billing", "reports", "default")
# Per 1,000 tasks: kinds as a real queue sees them (most of one, a few others, one rare).
MIX = (("send", 700), ("render", 200), ("bounce", 60), ("digest", 39), ("audit", 1))

LISTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("queue only", {"queue": "mail"}),
    ("queue + common kind", {"queue": "mail", "kind": "send"}),
    ("queue + rare kind", {"queue": "mail", "kind": "audit"}),
    ("queue + state + rare kind", {"queue": "mail", "state": "queued", "kind": "audit"}),
    ("queue + absent kind", {"queue": "mail", "kind": "never-enqueued"}),
)


async def fill(store: taskstore.Store, n: int) -> None:
    rng = random.Random(14)  # the same store every run
    names, weights = zip(*MIX, strict=True)
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        kinds = rng.choices(names, weights, k=size)
        batch = [NewTask(rng.choice(QUEUES), kind, {"args": [start + i], "kwargs": {}}) for i, kind in enumerate(kinds)]
        await store.create_many(batch)


async def explain(store: taskstore.Store, params: dict[str, Any]) -> list[str]:
    driver: Any = store._driver  # the driver's own statement, not a copy of it
    bound = driver._params(
        state=params.get("state"),
        queue=params.get("queue"),
        kind=params.get("kind"),
        ready=None,
        after=None,
        limit=51,
    )
    name = "list_kind_desc" if params.get("kind") and params.get("queue") else "list_desc"  # as the driver picks
    statement = b"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + driver.q[name]
    async with driver._conn() as conn:
        rows = await (await conn.execute(statement, bound)).fetchall()
    return [r[0] for r in rows]


async def plans_used(store: taskstore.Store) -> list[tuple[Any, ...]]:
    """(by kind statement?, generic plans, custom plans) of the prepared listing statements, per connection."""
    driver: Any = store._driver
    seen: list[tuple[Any, ...]] = []
    for _ in range(8):  # the pool hands out its connections in turn: ask a few of them
        async with driver._conn() as conn:
            rows = await (
                await conn.execute(
                    "SELECT statement LIKE '%%WHERE queue = $%%' AS by_kind, generic_plans, custom_plans"
                    " FROM pg_prepared_statements WHERE statement LIKE %s",
                    ("%ORDER BY seq DESC%",),
                )
            ).fetchall()
            seen += [tuple(r) for r in rows]
    return seen


async def timed(store: taskstore.Store, params: dict[str, Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        await store.list(limit=50, descending=True, **params)
        best = min(best, time.perf_counter() - t0)
    return best


async def main(url: str, tasks: int, repeat: int) -> None:
    dbname = f"ts_kind_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    parts = urlsplit(url)
    db_url = urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))
    try:
        async with taskstore.open(db_url) as store:
            t0 = time.perf_counter()
            await fill(store, tasks)
            print(f"filled {tasks} tasks in {time.perf_counter() - t0:.1f} s")
            driver: Any = store._driver
            async with driver._conn() as conn:
                await conn.execute("ANALYZE")
            for label, params in LISTINGS:
                took = await timed(store, params, repeat)
                print(f"\n== {label} {params}: best of {repeat} through Store.list: {took * 1000:.2f} ms")
                for line in await explain(store, params):
                    print("    " + line)
            print(f"\nprepared listing statements (by_kind, generic_plans, custom_plans): {await plans_used(store)}")
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.tasks, args.repeat))
