"""What a ``jsonb`` args column would cost PostgreSQL's bulk enqueue, against today's ``bytea``.

    python3 -m bench.pg_args_jsonb [--url postgresql://postgres@127.0.0.1:5432/postgres] [--tasks 100000]

Runs taskstore's own insert path (``Store.create_many`` in calls of 10,000, as the benchmark does) into a
throwaway database, three ways, each in its own schema, alternating, best of ``--repeat``:

- ``bytea``: as shipped; the batch carries each payload in base64, decoded by the server.
- ``jsonb-cast``: the same batch, the server casting the decoded bytes to jsonb (the smallest change).
- ``jsonb-inline``: the payload spliced into the batch's JSON as JSON (no base64 either way), read as ``r->18``.

An experiment, not a feature: the jsonb variants patch the driver's insert statement in memory; nothing
reads the rows back. Payloads: the benchmark's ``{"args": [p], "kwargs": {}}`` and a ~1 KB document.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

import taskstore
from taskstore import NewTask
from taskstore.backends.postgres import driver as postgres_backend

CHUNK = 10_000
VARIANTS = ("bytea", "jsonb-cast", "jsonb-inline")
BYTEA_ARGS = "decode(r->>3, 'base64')"
_B64 = postgres_backend._b64
_MARK = "\x01ts-args\x01"  # json.dumps writes it as "\u0001ts-args\u0001"
# A row's last element is expires_at (null or a quoted timestamp) and nothing inside a row ends with "]" but the row.
_ROW_END = re.compile(r'("\\u0001ts-args\\u0001".*?)\]')


def payloads(kind: str, n: int) -> list[Any]:
    if kind == "small":
        return [{"args": [float(i)], "kwargs": {}} for i in range(n)]
    doc = {"order": 0, "customer": {"id": "c-12345", "email": "someone@example.com", "tier": "gold"}}
    doc["lines"] = [{"sku": f"SKU-{j:05d}", "qty": j % 7 + 1, "price": 9.99 + j, "note": "x" * 20} for j in range(12)]
    return [{"args": [dict(doc, order=i)], "kwargs": {"notify": True}} for i in range(n)]


def patch(store: taskstore.Store, variant: str) -> None:
    driver: Any = store._driver
    setattr(postgres_backend, "_b64", _B64)  # noqa: B010 (an experiment patches the driver in memory)
    if variant == "bytea":
        return
    text = driver.q["insert_tasks"].decode()  # the rendered statement, schema already quoted
    assert BYTEA_ARGS in text
    if variant == "jsonb-cast":
        driver.q["insert_tasks"] = text.replace(
            BYTEA_ARGS, "convert_from(decode(r->>3, 'base64'), 'UTF8')::jsonb"
        ).encode()
        return
    driver.q["insert_tasks"] = text.replace(BYTEA_ARGS, "r->18").encode()
    make_params = driver._insert_params

    def inline(rows: Sequence[Any], now: Any = None) -> dict[str, Any]:
        # The driver writes a marker where the base64 payload went; each row's own JSON payload is spliced
        # in at the row's end (index 18), so the client does no base64 and no second JSON encoding.
        params: dict[str, Any] = make_params(rows, now)
        payload = iter([b"null" if r.args is None else r.args for r in rows])
        params["rows"] = _ROW_END.sub(lambda m: f"{m.group(1)},{next(payload).decode()}]", params["rows"])
        return params

    driver._insert_params = inline
    setattr(postgres_backend, "_b64", lambda data: _MARK)  # noqa: B010


async def run_once(url: str, schema: str, variant: str, docs: list[Any]) -> float:
    async with taskstore.open(f"{url}?schema={schema}") as store:
        patch(store, variant)
        tasks = [NewTask("bench", "noop", d) for d in docs]
        start = time.perf_counter()
        for i in range(0, len(tasks), CHUNK):
            await store.create_many(tasks[i : i + CHUNK])
        elapsed = time.perf_counter() - start
    return elapsed


async def prepare(url: str, schema: str, variant: str) -> None:
    async with taskstore.open(f"{url}?schema={schema}"):
        pass
    if variant != "bytea":
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            # The ad-hoc views (migration 9) read args; the experiment's column change would break them.
            await conn.execute(
                sql.SQL("DROP VIEW IF EXISTS {0}.tasks_json, {0}.tasks_archive_json").format(sql.Identifier(schema))
            )
            await conn.execute(
                sql.SQL(
                    "ALTER TABLE {}.tasks ALTER COLUMN args TYPE jsonb USING convert_from(args, 'UTF8')::jsonb"
                ).format(sql.Identifier(schema))
            )


async def truncate(url: str, schema: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        size = await (
            await conn.execute(
                sql.SQL(
                    "SELECT pg_total_relation_size(%s), (SELECT count(*) FROM {0}.tasks),"
                    " (SELECT count(*) FROM {0}.tasks WHERE args IS NULL)"
                ).format(sql.Identifier(schema)),
                [f"{schema}.tasks"],
            )
        ).fetchone()
        await conn.execute(sql.SQL("TRUNCATE {}.tasks").format(sql.Identifier(schema)))
        await conn.execute("CHECKPOINT")
    assert size is not None
    assert size[2] == 0, "a payload was not stored"
    return int(size[0]), int(size[1])


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    dbname = f"ts_jsonb_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(opts.url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    parts = urlsplit(opts.url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", "", ""))
    try:
        for kind in ("small", "doc1k"):
            docs = payloads(kind, opts.tasks)
            best: dict[str, float] = {}
            sizes: dict[str, int] = {}
            for v in VARIANTS:
                await prepare(url, f"{kind}_{v.replace('-', '_')}", v)
            for _ in range(opts.repeat):
                for v in VARIANTS:
                    schema = f"{kind}_{v.replace('-', '_')}"
                    elapsed = await run_once(url, schema, v, docs)
                    sizes[v], count = await truncate(url, schema)
                    assert count == opts.tasks, (v, count)
                    best[v] = min(best.get(v, elapsed), elapsed)
            base = best["bytea"]
            for v in VARIANTS:
                print(
                    f"{kind:6} {v:13} {opts.tasks / best[v]:9,.0f} tasks/s  best {best[v]:.3f}s  "
                    f"{best[v] / base:.3f}x bytea's time  table+indexes {sizes[v] / 1e6:.1f} MB",
                    flush=True,
                )
    finally:
        async with await psycopg.AsyncConnection.connect(opts.url, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))


if __name__ == "__main__":
    asyncio.run(main())
