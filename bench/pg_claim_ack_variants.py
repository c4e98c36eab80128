"""What each part of a claim and a completion costs PostgreSQL: the same drain with one part taken away.

    python3 -m bench.pg_claim_ack_variants [--tasks 20000] [--batch 100] [--rounds 3] [--variants base,notrig,...]

Each run fills a fresh schema, applies one variant's DDL, VACUUM ANALYZEs, then drains through the Store as
bench/cpu_per_task.py does (``claim(limit=batch)`` then ``acknowledge_many``), and prints the server's CPU per
task for each statement (its backend's /proc/<pid>/schedstat around it, see pg_drain_profile.py) and the
client's. Variants run interleaved (A, B, C, A, B, C, ...), since the load on a shared machine drifts:

- base: the schema as migrated;
- notrig: without the kept-counts trigger on UPDATE (migration 11); emptytrig: with it, but its body empty (what
  remains is the transition tables' cost);
- noqk, nolease, nofin: without the index tasks_queue_kind, tasks_lease_timeouts, tasks_finished (a non-HOT
  update inserts into every index whose predicate the new row satisfies);
- custom: every statement planned for its own parameters (``plan_cache_mode=force_custom_plan``), never by
  the generic plan a prepared statement may switch to after five runs; generic: always that generic plan;
- ff50: the table rewritten with fillfactor 50 (room on the page for the new row version).

Only for measuring: every one of these takes away something the store needs.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from typing import Any

from psycopg import sql

import taskstore
from taskstore import NewTask

from .local_pg import pg_schema
from .pg_drain_profile import Tracer

VARIANTS: dict[str, list[str]] = {
    "base": [],
    "notrig": ["ALTER TABLE {schema}.tasks DISABLE TRIGGER tasks_count_update"],
    "emptytrig": [  # the trigger fires and its transition tables are kept, but its body does nothing
        "CREATE OR REPLACE FUNCTION {schema}.count_updated() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RETURN NULL; END $$"
    ],
    "custom": [],  # every statement planned for its parameters (URL_OPTIONS)
    "generic": [],  # every prepared statement planned once for any parameters (URL_OPTIONS)
    "noqk": ["DROP INDEX {schema}.tasks_queue_kind"],
    "nolease": ["DROP INDEX {schema}.tasks_lease_timeouts"],
    "nofin": ["DROP INDEX {schema}.tasks_finished"],
    "ff50": ["ALTER TABLE {schema}.tasks SET (fillfactor = 50)", "VACUUM FULL {schema}.tasks"],
}

# Connection options of a variant: appended to the store's URL.
URL_OPTIONS = {
    "custom": "options=-c%20plan_cache_mode%3Dforce_custom_plan",
    "generic": "options=-c%20plan_cache_mode%3Dforce_generic_plan",
}


async def run(variant: str, n: int, batch: int, tracer: Tracer, postgres: str | None) -> None:
    with pg_schema(postgres, "bench_variant") as url:
        if url is None:
            return
        if variant in URL_OPTIONS:
            url = f"{url}&{URL_OPTIONS[variant]}"
        async with taskstore.open(url) as store:
            driver: Any = store._driver
            tracer.names = {id(q): name for name, q in driver.q.items()}
            for start in range(0, n, 10_000):
                await store.create_many(NewTask("q", "k", {"i": i}) for i in range(start, min(n, start + 10_000)))
            pool = getattr(driver._pool, "pool", driver._pool)
            schema = sql.Identifier(driver.schema)
            async with pool.connection() as conn:
                for statement in VARIANTS[variant]:
                    await conn.execute(sql.SQL(statement).format(schema=schema))
                await conn.execute(sql.SQL("VACUUM ANALYZE {schema}.tasks").format(schema=schema))
            tracer.ns.clear()
            tracer.calls.clear()
            tracer.rows.clear()
            tracer.on = True
            r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            while claimed := await store.claim("w1", ["q"], limit=batch):
                await store.acknowledge_many(claimed)
            w1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            tracer.on = False
            parts = "  ".join(f"{k} {v / n / 1000:.1f}" for k, v in sorted(tracer.ns.items()) if v / n >= 100)
            client = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / n * 1e6
            print(
                f"{variant:<8} server {sum(tracer.ns.values()) / n / 1000:5.1f} µs/task ({parts})"
                f"  client {client:5.1f}  wall {(w1 - w0) / n * 1e6:4.0f}",
                flush=True,
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="base,notrig,noqk,nolease,nofin")
    parser.add_argument("--postgres", default=None)
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = set(variants) - VARIANTS.keys()
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}; known: {', '.join(VARIANTS)}")
    tracer = Tracer({})
    tracer.install()
    for _ in range(args.rounds):
        for variant in variants:
            await run(variant, args.tasks, args.batch, tracer, args.postgres)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
