"""A store made before the kept counts (SQLite schema 9, PostgreSQL migration 10) upgrades in place: the counts
start from the tasks it holds and the finishes it holds are charted, and both follow the changes made after."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import taskstore
from taskstore import FakeClock, NewTask, State, Store, transitions
from taskstore.backends.sqlite._queries import Q
from taskstore.backends.sqlite._rows import insert_params, to_us

from ..postgres_server import new_schema, with_schema
from ._old_stores import postgres_at, sqlite_at

pytestmark = pytest.mark.asyncio

T0 = datetime(2030, 1, 1, 12, 0, 10, tzinfo=UTC)
# (id, queue, state) of the tasks the old store holds; the finished ones finished at T0
HELD = [("q1", "q", "queued"), ("q2", "q", "queued"), ("q3", "q", "queued"), ("d1", "q", "done"), ("d2", "q", "done")]
HELD += [("x1", "r", "dead")]


async def _check_upgraded(store: Store, clock: FakeClock) -> None:
    counts = {q.name: {s: n for s, n in q.counts.items() if n} for q in await store.list_queues()}
    assert counts == {"q": {State.QUEUED: 3, State.DONE: 2}, "r": {State.DEAD: 1}}
    (slot,) = await store.activity(window=60, bucket=60)
    assert (slot.done, slot.dead, slot.cancelled) == (2, 1, 0)
    (claimed,) = await store.claim("w1", ["q"], limit=1)
    await store.mark_done(claimed)
    counts = {q.name: {s: n for s, n in q.counts.items() if n} for q in await store.list_queues()}
    assert counts == {"q": {State.QUEUED: 2, State.DONE: 3}, "r": {State.DEAD: 1}}
    (slot,) = await store.activity(window=60, bucket=60)
    assert (slot.done, slot.dead) == (3, 1)


async def test_a_sqlite_store_of_schema_9_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite_at(path, 9)
    for seq, (task_id, queue, state) in enumerate(HELD, start=1):
        task = transitions.create(NewTask(queue, "k", max_attempts=1), task_id=task_id, now=T0, seq=seq)
        conn.execute(Q["insert_task"], insert_params(task, b"null"))
        if state != "queued":
            conn.execute("UPDATE tasks SET state = ?, finished_at = ? WHERE id = ?", (state, to_us(T0), task_id))
    conn.close()
    clock = FakeClock(T0 + timedelta(seconds=20))
    async with taskstore.open(f"sqlite:///{path}", clock=clock) as store:
        await _check_upgraded(store, clock)


async def test_a_postgres_store_of_migration_10_upgrades(postgres_db: str) -> None:
    schema = new_schema()
    ident = sql.Identifier(schema)
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        postgres_at(conn, schema, 10)
        for task_id, queue, state in HELD:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.tasks (id, queue, kind, priority, run_at, max_attempts, attempts, "
                    "processing_timeout, state, created_at, updated_at, last_enqueued_at, version, finished_at) "
                    "VALUES (%s, %s, 'k', 0, %s, 1, 0, 60, %s, %s, %s, %s, 1, %s)"
                ).format(ident),
                (task_id, queue, T0, state, T0, T0, T0, None if state == "queued" else T0),
            )
    clock = FakeClock(T0 + timedelta(seconds=20))
    async with taskstore.open(with_schema(postgres_db, schema), clock=clock) as store:
        await _check_upgraded(store, clock)
