"""The claim statements' generic plans: what a prepared claim runs once PostgreSQL plans it for any parameters.

psycopg prepares a statement after five runs on a connection, and PostgreSQL may then keep one plan for every
LIMIT and queue. The claimed rows must still be found by the primary key: a plan that scans the whole tasks
table per claim makes each claim cost as much as the table is big.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

import taskstore
from taskstore import NewTask

from ..postgres_server import new_schema, with_schema

pytestmark = pytest.mark.asyncio

# Each claim statement with its parameters' values; TYPES gives a prepared statement their types.
CLAIMS: dict[str, dict[str, Any]] = {
    "claim_queue": {"worker": "w", "queue": "q", "limit": 100},
    "claim_any": {"worker": "w", "limit": 100},
    "claim_queues": {"worker": "w", "queues": ["q", "r"], "limit": 100},
    "claim_seqs": {"buckets": "[]", "seqs": [1, 2, 3], "worker": "w"},
}

TYPES = {"now": "timestamptz", "worker": "text", "queue": "text", "limit": "bigint", "queues": "text[]",
         "buckets": "text", "seqs": "bigint[]"}  # fmt: skip


def scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from scans(child)


def prepare(conn: psycopg.Connection[Any], statement: Any, types: dict[str, str]) -> list[str]:
    """PREPARE ``statement`` (one of the driver's) as ``generic_plan``, to be run with the one plan PostgreSQL then
    keeps for any parameters; its parameters' names, in order."""
    text = statement.decode()  # the driver keeps its statements rendered, as bytes
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)[sb]", text)))  # b: a parameter sent in binary
    for i, param in enumerate(names, 1):
        text = text.replace(f"%({param})s", f"${i}").replace(f"%({param})b", f"${i}")
    conn.execute("SET plan_cache_mode = force_generic_plan")
    kinds = sql.SQL(", ").join(sql.SQL(types[n]) for n in names)
    conn.execute(sql.SQL("PREPARE generic_plan ({}) AS {}").format(kinds, sql.SQL(text)))
    return names


def explain(conn: psycopg.Connection[Any], names: list[str], values: dict[str, Any], *, analyze: bool = True) -> Any:
    """EXPLAIN [ANALYZE] of the prepared ``generic_plan``; rolled back, so nothing it writes is kept. The plan's top
    node (JSON)."""
    with conn.transaction(force_rollback=True):
        arguments = sql.SQL(", ").join(sql.Literal(values[n]) for n in names)  # EXPLAIN binds no parameters
        options = sql.SQL("ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON")
        explained = sql.SQL("EXPLAIN ({}) EXECUTE generic_plan ({})").format(options, arguments)
        row = conn.execute(explained).fetchone()
    assert row is not None
    return row[0][0]["Plan"]


def generic_plan(conn: psycopg.Connection[Any], statement: Any, values: dict[str, Any], types: dict[str, str]) -> Any:
    """EXPLAIN ANALYZE of ``statement`` (one of the driver's) as a prepared statement runs it once PostgreSQL keeps
    one plan for any parameters; rolled back, so nothing it writes is kept. The plan's top node (JSON)."""
    names = prepare(conn, statement, types)
    try:
        return explain(conn, names, values)
    finally:
        conn.execute("DEALLOCATE generic_plan")


def whole_table_reads(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in scans(plan) if s["Node Type"] == "Seq Scan" and s.get("Relation Name") == "tasks"]


@pytest_asyncio.fixture
async def store(postgres_db: str) -> AsyncIterator[taskstore.Store]:
    """A store of 2,000 waiting tasks on queue q, its statistics taken (ANALYZE) with them all waiting."""
    async with taskstore.open(with_schema(postgres_db, new_schema())) as the_store:
        await the_store.create_many(NewTask("q", "k", {"i": i}) for i in range(2_000))
        with psycopg.connect(postgres_db, autocommit=True) as conn:
            schema = the_store._driver.schema  # type: ignore[attr-defined]
            conn.execute(sql.SQL("ANALYZE {}.tasks").format(sql.Identifier(schema)))
        yield the_store


@pytest.mark.parametrize("name", sorted(CLAIMS))
async def test_a_claims_generic_plan_reads_no_whole_table(postgres_db: str, store: taskstore.Store, name: str) -> None:
    driver: Any = store._driver
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        plan = generic_plan(conn, driver.q[name], {"now": None, **CLAIMS[name]}, TYPES)
    whole = whole_table_reads(plan)
    assert not whole, f"{name}'s generic plan scans the whole tasks table: {whole}"


@pytest.mark.parametrize("name", ["claim_queue", "complete_many_ids"])
async def test_a_plan_kept_since_the_table_was_small_is_made_again_once_it_has_grown(
    postgres_db: str, name: str
) -> None:
    """A plan prepared while the tasks table is small reads all of it (the cheapest way then), and PostgreSQL keeps
    it until the table is next analyzed or vacuumed: as the table grows, every claim and completion costs as much
    as the table is big. analyze_grown (run by workers' maintenance every second) analyzes a table that has grown
    to twice its size since, and every plan made for it is made again for its size. Autovacuum is off for the
    table, so nothing else analyzes it meanwhile."""
    types = {**TYPES, "ids": "text[]", "tokens": "text[]", "workers": "text[]", "values": "bytea[]",
             "status_channel": "text"}  # fmt: skip
    values = {"now": None, **CLAIMS["claim_queue"], "ids": ["x"], "tokens": ["t"], "workers": ["w"],
              "values": [None], "status_channel": ""}  # fmt: skip
    async with taskstore.open(with_schema(postgres_db, new_schema())) as store:
        driver: Any = store._driver
        assert await store.analyze_grown() == []  # a new store: nothing has grown
        with psycopg.connect(postgres_db, autocommit=True) as conn:
            table = sql.Identifier(driver.schema, "tasks")
            conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(table))
            names = prepare(conn, driver.q[name], types)  # planned now, for the empty table
            assert whole_table_reads(explain(conn, names, values, analyze=False))
            await store.create_many(NewTask("q", "k") for _ in range(5_000))
            # Still the plan made for the empty table: it reads all 5,000 rows.
            assert whole_table_reads(explain(conn, names, values, analyze=False))
            assert "tasks" in await store.analyze_grown()
            plan = explain(conn, names, values, analyze=False)
            assert not whole_table_reads(plan), plan
            assert await store.analyze_grown() == []  # no bigger since: no ANALYZE (and no plans made again)


async def test_a_completions_generic_plan_reads_its_rows_by_id_not_every_claimed_row(
    postgres_db: str, store: taskstore.Store
) -> None:
    """A completion of n tasks reads n rows by the unique index on id. Reading every claimed row along the lease
    index instead (the plan a join on the batch's columns got) costs what all outstanding claims do, and grew
    through a drain as that index kept the entries of rows claimed and since finished."""
    driver: Any = store._driver
    claimed = await store.claim("w", "q", limit=500)  # claimed after the statistics, as in a drain
    batch = claimed[:10]
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        values: dict[str, Any] = {
            "now": None,
            "ids": [t.id for t in batch],
            "tokens": [t.claim.token for t in batch if t.claim is not None],
            "workers": ["w"] * len(batch),
            "values": [None] * len(batch),
            "status_channel": "",
        }
        types = {"now": "timestamptz", "ids": "text[]", "tokens": "text[]", "workers": "text[]",
                 "values": "bytea[]", "status_channel": "text"}  # fmt: skip
        plan = generic_plan(conn, driver.q["complete_many_ids"], values, types)
    assert plan["Actual Rows"] == len(batch)  # all ten completed (and rolled back)
    reads = [s for s in scans(plan) if s.get("Relation Name") == "tasks" and "Scan" in s["Node Type"]]
    assert reads, plan
    for scan in reads:
        assert scan.get("Index Name") in ("tasks_id_key", "tasks_pkey"), scan
        assert scan["Actual Rows"] * scan.get("Actual Loops", 1) <= 2 * len(batch), scan
