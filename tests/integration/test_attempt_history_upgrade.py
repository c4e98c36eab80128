"""A store made before the attempt history (SQLite schema 7, PostgreSQL migration 7) upgrades in place: its
tasks and archived tasks read as having no failures, and new failures are kept, also through the archive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import taskstore
from taskstore import Failure, FakeClock, NewTask, State, Store, transitions
from taskstore.backends.sqlite._queries import Q
from taskstore.backends.sqlite._rows import insert_params, to_us

from ..postgres_server import new_schema, with_schema
from ._old_stores import postgres_at, sqlite_at

pytestmark = pytest.mark.asyncio

T0 = datetime(2030, 1, 1, tzinfo=UTC)
BEFORE = 7  # the last schema without the failures column


async def _check_upgraded(store: Store, clock: FakeClock) -> None:
    old = await store.get("old")
    assert old.state is State.QUEUED
    assert old.failures == ()
    assert (await store.get_archived("gone")).failures == ()
    claimed = await store.claim("w1", limit=1)
    assert [t.id for t in claimed] == ["old"]
    dead = await store.mark_failed(claimed[0], Failure(type="Boom", message="after the upgrade"))
    assert dead.state is State.DEAD
    assert [(f.attempt, f.worker_id, f.failure.type) for f in (await store.get("old")).failures] == [(1, "w1", "Boom")]
    clock.advance(1)
    assert await store.archive(before=clock.now()) == 1
    assert (await store.get_archived("old")).failures == dead.failures


async def test_a_sqlite_store_of_schema_7_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite_at(path, BEFORE)
    for seq, task_id in enumerate(("old", "gone"), start=1):
        task = transitions.create(NewTask("q", "k", max_attempts=1), task_id=task_id, now=T0, seq=seq)
        conn.execute(Q["insert_task"], insert_params(task, b"null"))
    conn.execute("UPDATE tasks SET state = 'done', finished_at = ? WHERE id = 'gone'", (to_us(T0),))
    conn.execute("INSERT INTO tasks_archive SELECT *, ? FROM tasks WHERE id = 'gone'", (to_us(T0),))
    conn.execute("DELETE FROM tasks WHERE id = 'gone'")
    conn.close()
    clock = FakeClock(T0 + timedelta(seconds=1))
    async with taskstore.open(f"sqlite:///{path}", clock=clock) as store:
        await _check_upgraded(store, clock)


async def test_a_postgres_store_of_migration_7_upgrades(postgres_db: str) -> None:
    schema = new_schema()
    ident = sql.Identifier(schema)
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        postgres_at(conn, schema, BEFORE)
        for task_id in ("old", "gone"):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.tasks (id, queue, kind, priority, run_at, max_attempts, attempts, "
                    "processing_timeout, state, created_at, updated_at, last_enqueued_at, version) "
                    "VALUES (%s, 'q', 'k', 0, %s, 1, 0, 60, 'queued', %s, %s, %s, 1)"
                ).format(ident),
                (task_id, T0, T0, T0, T0),
            )
        done = sql.SQL("UPDATE {}.tasks SET state = 'done', finished_at = %s WHERE id = 'gone'").format(ident)
        conn.execute(done, (T0,))
        conn.execute(
            sql.SQL("INSERT INTO {0}.tasks_archive SELECT *, %s FROM {0}.tasks WHERE id = 'gone'").format(ident), (T0,)
        )
        conn.execute(sql.SQL("DELETE FROM {}.tasks WHERE id = 'gone'").format(ident))
    clock = FakeClock(T0 + timedelta(seconds=1))
    async with taskstore.open(with_schema(postgres_db, schema), clock=clock) as store:
        await _check_upgraded(store, clock)
