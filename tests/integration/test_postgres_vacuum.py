"""The store vacuums its own churning tables on PostgreSQL when their dead rows pile up, whatever autovacuum does
(this test server runs with autovacuum off, as some do): archiving deletes every task it moves, and without a
VACUUM those rows' space is never used again."""

from __future__ import annotations

import asyncio
import logging
import secrets

import psycopg
import pytest
from psycopg import sql

import taskstore
from taskstore import NewTask, State
from taskstore.maintenance import Maintenance, MaintenanceConfig

from ..postgres_server import new_schema, with_schema

pytestmark = pytest.mark.asyncio


def _dead(url: str, schema: str, table: str = "tasks") -> int:
    return _counts(url, schema, table)[3]


def _counts(url: str, schema: str, table: str = "tasks") -> tuple[int, int, int, int]:
    """The table's rows inserted, updated and deleted so far, and its dead rows, as the statistics count them."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT n_tup_ins, n_tup_upd, n_tup_del, n_dead_tup FROM pg_stat_user_tables"
            " WHERE schemaname = %s AND relname = %s",
            (schema, table),
        ).fetchone()
    return (int(row[0]), int(row[1]), int(row[2]), int(row[3])) if row else (0, 0, 0, 0)


async def _archive_many(store: taskstore.Store, n: int) -> None:
    await store.create_many(NewTask("q", "k") for _ in range(n))
    while claimed := await store.claim("w", limit=500):
        await store.acknowledge_many(claimed)
    assert await store.archive(older_than=0) == n


async def _until(check: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def test_vacuum_reclaims_the_rows_archiving_left_dead(postgres_db: str) -> None:
    schema = new_schema()
    async with taskstore.open(with_schema(postgres_db, schema)) as store:
        assert await store.vacuum() == []  # nothing dead yet: nothing to do
        await _archive_many(store, 6_000)
    # A connection sends its counts when it next works or when it closes, not while it sits idle in the pool: a
    # VACUUM before the archive's deletes are counted would see 6,000 dead rows turn up after it. Closing the
    # store sends them all; every insert, update (a claim and an acknowledgement each) and delete counted means
    # every connection's share is in. Not n_live_tup: the server clamps it at 0 as each connection's share
    # arrives, so the deletes counted before the inserts leave 6,000 "live" rows for good.
    await _until(lambda: _counts(postgres_db, schema)[:3] == (6_000, 12_000, 6_000))
    async with taskstore.open(with_schema(postgres_db, schema)) as store:
        assert "tasks" in await store.vacuum()
        assert _dead(postgres_db, schema) < 100
        assert await store.vacuum() == []
        assert await store.count(State.DONE, archived=True) == 6_000


async def test_a_workers_maintenance_vacuums(postgres_db: str, caplog: pytest.LogCaptureFixture) -> None:
    schema = new_schema()
    async with taskstore.open(with_schema(postgres_db, schema)) as store:
        await _archive_many(store, 6_000)
    # Closed, so that its connections send their counts now rather than after ten idle seconds.
    await _until(lambda: _counts(postgres_db, schema)[:3] == (6_000, 12_000, 6_000))
    async with taskstore.open(with_schema(postgres_db, schema)) as store:
        stop = asyncio.Event()
        config = MaintenanceConfig(reap_every=60, archive_every=60, purge_every=60, vacuum_every=0.2)
        with caplog.at_level(logging.DEBUG, logger="taskstore.maintenance"):
            running = asyncio.create_task(Maintenance(store, config).run(stop))
            try:
                await _until(lambda: _dead(postgres_db, schema) < 100)
            finally:
                stop.set()
                await running
        assert any("vacuumed" in r.getMessage() and "tasks" in r.getMessage() for r in caplog.records)


def _no_autovacuum(url: str, schema: str) -> None:
    """Autovacuum off for the schema's tasks table: nothing but the test's own calls analyzes it."""
    with psycopg.connect(url, autocommit=True) as conn:
        table = sql.Identifier(schema, "tasks")
        conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(table))


def _planned_rows(url: str, schema: str) -> float:
    """The tasks table's rows as its last VACUUM or ANALYZE recorded them (-1: never)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", (f"{schema}.tasks",)
        ).fetchone()
    return float(row[0]) if row else -1.0


def _live(url: str, schema: str) -> int:
    """The tasks table's live rows as the statistics count them now."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT n_live_tup FROM pg_stat_user_tables WHERE schemaname = %s AND relname = 'tasks'", (schema,)
        ).fetchone()
    return int(row[0]) if row else 0


async def _add(url: str, schema: str, n: int) -> None:
    """n tasks from a store of their own, closed after: its connections send their counts (n_live_tup) as they close."""
    async with taskstore.open(with_schema(url, schema)) as producer:
        await producer.create_many(NewTask("q", "k") for _ in range(n))


async def test_a_workers_maintenance_analyzes_a_table_that_has_grown(
    postgres_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The planner's picture of the tasks table is refreshed within a second or so of it growing to twice its size
    (see Store.analyze_grown). Autovacuum is off for the table: only the maintenance analyzes it."""
    schema = new_schema()
    async with taskstore.open(with_schema(postgres_db, schema)) as store:
        _no_autovacuum(postgres_db, schema)
        stop = asyncio.Event()
        config = MaintenanceConfig(reap_every=60, archive_every=60, purge_every=60, analyze_every=0.1)
        with caplog.at_level(logging.DEBUG, logger="taskstore.maintenance"):
            running = asyncio.create_task(Maintenance(store, config).run(stop))
            try:
                await asyncio.sleep(0.3)
                assert _planned_rows(postgres_db, schema) < 0  # never analyzed: nothing has grown yet
                # (An ANALYZE while the insert is still open counts none of its rows; the next, once they are
                # counted, does.)
                await _add(postgres_db, schema, 5_000)
                await _until(lambda: _planned_rows(postgres_db, schema) >= 4_000)
            finally:
                stop.set()
                await running
        assert any("analyzed" in r.getMessage() and "tasks" in r.getMessage() for r in caplog.records)


async def test_a_table_analyzed_before_is_analyzed_again_once_its_rows_have_doubled(postgres_db: str) -> None:
    schema = new_schema()
    async with taskstore.open(with_schema(postgres_db, schema)) as store:
        _no_autovacuum(postgres_db, schema)
        await _add(postgres_db, schema, 3_000)
        with psycopg.connect(postgres_db, autocommit=True) as conn:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, "tasks")))
        await _add(postgres_db, schema, 2_000)  # 5,000: not yet twice 3,000
        assert await store.analyze_grown() == []
        await _add(postgres_db, schema, 1_000)  # 6,000
        await _until(lambda: _live(postgres_db, schema) >= 6_000)
        assert await store.analyze_grown() == ["tasks"]
        assert await store.analyze_grown() == []


async def test_a_table_grown_only_by_dead_rows_is_not_analyzed(postgres_db: str) -> None:
    """A drain writes each row again on its claim and on its completion: the table's pages grow, its rows do not.
    The plans made for it still fit its rows; its dead rows are VACUUM's business (which records the new size too),
    so analyze_grown does nothing."""
    schema = new_schema()
    async with taskstore.open(with_schema(postgres_db, schema)) as store:
        table = sql.Identifier(schema, "tasks")
        _no_autovacuum(postgres_db, schema)
        with psycopg.connect(postgres_db, autocommit=True) as conn:
            await store.create_many(NewTask("q", "k") for _ in range(3_000))
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
            while claimed := await store.claim("w", limit=500):
                await store.acknowledge_many(claimed)
            row = conn.execute(
                "SELECT pg_relation_size(oid) / current_setting('block_size')::int, relpages FROM pg_class"
                " WHERE oid = to_regclass(%s)",
                (f"{schema}.tasks",),
            ).fetchone()
        assert row is not None
        assert row[0] >= 2 * row[1], row  # the pages have doubled at least
        assert await store.analyze_grown() == []


async def test_tables_this_role_may_not_analyze_are_left_alone(postgres_db: str) -> None:
    """A worker whose role does not own the store's tables (it was granted what a worker needs, no more) cannot
    ANALYZE them: PostgreSQL only warns and skips, so analyze_grown leaves them to their owner or autovacuum
    rather than sending an ANALYZE that does nothing every second, and says it analyzed none."""
    schema, role = new_schema(), f"worker_{secrets.token_hex(4)}"
    async with taskstore.open(with_schema(postgres_db, schema)):
        pass  # the schema and its tables, owned by the test's own role
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        ident, name = sql.Identifier(role), sql.Identifier(schema)
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(name, ident))
        conn.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA {} TO {}").format(name, ident))
        conn.execute(sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA {} TO {}").format(name, ident))
    _no_autovacuum(postgres_db, schema)
    try:
        # The test's role may take on the worker's (SET ROLE, here at connect): then the worker's is current.
        as_worker = f"{with_schema(postgres_db, schema)}&options=-c%20role%3D{role}"
        async with taskstore.open(as_worker, create=False) as store:
            await store.create_many(NewTask("q", "k") for _ in range(5_000))
            assert await store.analyze_grown() == []
        assert _planned_rows(postgres_db, schema) == -1.0  # never analyzed
    finally:
        with psycopg.connect(postgres_db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_the_finishes_past_their_week_are_vacuumed_away(postgres_db: str) -> None:
    """fold_counts deletes the minutes older than FINISHES_KEPT; their rows must not stay dead for good."""
    schema = new_schema()
    async with taskstore.open(with_schema(postgres_db, schema)) as store:
        with psycopg.connect(postgres_db, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.finished_minutes (minute, queue, state, n) SELECT now() - interval '8 days'"
                    " - i * interval '1 minute', 'q', 'done', 1 FROM generate_series(1, 6000) AS i"
                ).format(sql.Identifier(schema))
            )
        assert await store.fold_counts() >= 6_000  # the week-old minutes purged
    await _until(lambda: _dead(postgres_db, schema, "finished_minutes") >= 6_000)
    async with taskstore.open(with_schema(postgres_db, schema)) as store:
        assert "finished_minutes" in await store.vacuum()
        assert _dead(postgres_db, schema, "finished_minutes") < 100


async def test_sqlite_and_memory_have_nothing_to_vacuum(tmp_path: object) -> None:
    async with taskstore.open("memory://") as store:
        assert await store.vacuum() == []
        assert await store.analyze_grown() == []
    async with taskstore.open(f"sqlite:///{tmp_path}/v.db") as store:
        await _archive_many(store, 50)
        assert await store.vacuum() == []
        assert await store.analyze_grown() == []
