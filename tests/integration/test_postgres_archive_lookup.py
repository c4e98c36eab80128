"""An archived task is found by its id along an index, whatever the planner knows of the archive (migration 12).

The archive only grows, the store never analyzes it, and autovacuum may be off or behind: the plan of
get_archived must not depend on statistics. With the index on id alone, PostgreSQL walked the primary key
backwards until the id matched (every newer archived row read).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

import taskstore
from taskstore import FakeClock

from ..postgres_server import new_schema, with_schema
from ._old_stores import postgres_at

pytestmark = pytest.mark.asyncio

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ROWS = 50_000


def _fill_archive(conn: psycopg.Connection[Any], schema: str) -> None:
    """ROWS archived tasks (ids md5 of 1..ROWS, as wide as generated ids are), as the archiver leaves them: moved
    out of tasks, never analyzed. The planner guesses a never analyzed table's rows from its pages: the bigger
    the archive, the surer it was that walking the primary key would meet the id soon."""
    ident = sql.Identifier(schema)
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.tasks (id, queue, kind, priority, run_at, max_attempts, attempts, processing_timeout, "
            "state, created_at, updated_at, last_enqueued_at, version, finished_at) "
            "SELECT md5(i::text), 'q', 'k', 0, %(t)s, 1, 1, 60, 'done', %(t)s, %(t)s, %(t)s, 1, %(t)s "
            "FROM generate_series(1, %(n)s) AS i"
        ).format(ident),
        {"t": T0, "n": ROWS},
    )
    conn.execute(
        sql.SQL(
            "WITH moved AS (DELETE FROM {s}.tasks RETURNING *) "
            "INSERT INTO {s}.tasks_archive SELECT moved.*, %s FROM moved"
        ).format(s=ident),
        (T0,),
    )


def _id(i: int) -> str:
    return hashlib.md5(str(i).encode()).hexdigest()


def _rows_read(conn: psycopg.Connection[Any], schema: str, task_id: str) -> int:
    """The archive rows get_archived's plan reads to find ``task_id`` (a filter's rejects included)."""
    ident = sql.Identifier(schema)
    query = sql.SQL("SELECT * FROM {}.tasks_archive WHERE id = %(id)s ORDER BY seq DESC LIMIT 1").format(ident)
    (doc,) = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + query, {"id": task_id}).fetchone()  # type: ignore[misc]

    def walk(node: dict[str, Any]) -> int:
        here = int(node.get("Rows Removed by Filter", 0)) + (
            int(node["Actual Rows"]) if node.get("Relation Name") == "tasks_archive" else 0
        )
        return here + sum(walk(child) for child in node.get("Plans", ()))

    return walk(doc[0]["Plan"])


async def test_the_oldest_archived_task_is_read_alone_without_statistics(postgres_db: str) -> None:
    """A store of migration 11 with an archive, upgraded: a lookup reads the one row, and get_archived finds it."""
    schema = new_schema()
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        postgres_at(conn, schema, 11)
        _fill_archive(conn, schema)
    async with taskstore.open(with_schema(postgres_db, schema), clock=FakeClock(T0 + timedelta(hours=1))) as store:
        with psycopg.connect(postgres_db, autocommit=True) as conn:
            (analyzed,) = conn.execute(
                "SELECT count(*) FROM pg_stats WHERE schemaname = %s AND tablename = 'tasks_archive'", (schema,)
            ).fetchone()  # type: ignore[misc]
            assert analyzed == 0  # what the test is about: a plan made without statistics
            assert _rows_read(conn, schema, _id(1)) == 1
        archived = await store.get_archived(_id(1))
        assert archived.id == _id(1)
        assert archived.seq == 1
        assert (await store.get_archived(_id(ROWS))).seq == ROWS
