"""PostgreSQL under lock contention: overlapping batches, and a write that waited for a row lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

import taskstore
from taskstore import Claim, NewTask, Store

from ..postgres_server import new_schema, with_schema

pytestmark = pytest.mark.asyncio

Batch = Callable[[Store, Sequence[Claim]], Awaitable[Any]]


@pytest.fixture
def schema() -> str:
    return new_schema()


@pytest_asyncio.fixture
async def stores(postgres_db: str, schema: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores (two pools) on one schema, on the database's own clock."""
    url = with_schema(postgres_db, schema)
    async with taskstore.open(url) as first, taskstore.open(url) as second:
        yield first, second


async def _report(store: Store, claims: Sequence[Claim]) -> Any:
    return await store.report_in_many(claims)


async def _done(store: Store, claims: Sequence[Claim]) -> Any:
    return await store.mark_done_many(claims)


async def _ack(store: Store, claims: Sequence[Claim]) -> Any:
    return await store.acknowledge_many(claims)


@pytest.mark.parametrize(
    ("first", "second"),
    [(_done, _done), (_ack, _ack), (_report, _ack)],
    ids=["done-vs-done", "ack-vs-ack", "heartbeat-vs-completer"],
)
async def test_overlapping_batches_in_opposite_orders_never_deadlock(
    stores: tuple[Store, Store], first: Batch, second: Batch
) -> None:
    """Each batch locks its rows in id order, so neither waits for the other in a cycle.

    Before, rows were locked in batch order (or scan order): PostgreSQL broke the cycle by failing one
    side with "deadlock detected" (BackendUnavailable), a few times in every few rounds of this test.
    """
    a, b = stores
    n = 300
    completed: set[str] = set()
    for _ in range(8):
        await a.create_many([NewTask("q", "k", {"i": i}) for i in range(n)])
        claims = [t.claim for t in await a.claim("w", ["q"], limit=n) if t.claim is not None]
        assert len(claims) == n
        forward, backward = claims[: 2 * n // 3], claims[n // 3 :][::-1]
        await asyncio.gather(first(a, forward), second(b, backward))  # raises on a deadlock
        completed |= {
            c.task_id
            for batch, c in [(first, c) for c in forward] + [(second, c) for c in backward]
            if batch is not _report
        }
    assert await a.count(state="done") == len(completed)  # each completion was applied once, none lost


async def test_a_lease_renewed_after_waiting_for_a_lock_runs_from_the_renewal(
    stores: tuple[Store, Store], postgres_db: str, schema: str
) -> None:
    """The renewal reads the time once it holds the row; ``now()`` would be the time before the wait."""
    store, _ = stores
    await store.create(NewTask("q", "k", id="t", processing_timeout=30))
    (claimed,) = await store.claim("w", ["q"])
    assert claimed.claim is not None
    async with await psycopg.AsyncConnection.connect(postgres_db) as holder:
        await holder.execute(sql.SQL("SELECT 1 FROM {}.tasks WHERE id = 't' FOR UPDATE").format(sql.Identifier(schema)))
        renewal = asyncio.create_task(store.report_in(claimed.claim))
        await _wait_for_a_lock_wait(postgres_db)
        await asyncio.sleep(0.5)  # the renewal has now waited at least this long
        row = await (await holder.execute("SELECT clock_timestamp()")).fetchone()
        assert row is not None
        released_at = row[0]
        await holder.commit()
        renewed = await asyncio.wait_for(renewal, 30)
    assert renewed.claim is not None
    assert renewed.claim.last_report is not None
    assert renewed.claim.last_report.at >= released_at
    assert (renewed.claim.times_out_at - released_at).total_seconds() >= 30


async def _wait_for_a_lock_wait(postgres_db: str) -> None:
    """Until some session of this database waits for a row lock (bounded; no timing assumption)."""
    async with await psycopg.AsyncConnection.connect(postgres_db, autocommit=True) as admin:
        for _ in range(600):
            cur = await admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            row = await cur.fetchone()
            if row is not None and row[0] > 0:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the renewal never waited for the row lock")


async def test_keyset_listing_never_skips_a_row_committed_late(stores: tuple[Store, Store], postgres_db: str) -> None:
    """A poller that pages on by the last seq it saw also gets a row whose seq was taken before, and
    committed after, the rows it has seen (a longer transaction)."""
    store, _ = stores
    seen: list[str] = []
    cursor: str | None = None

    async def poll() -> None:
        nonlocal cursor
        while True:
            page = await store.list(cursor=cursor, limit=1)
            if not page.items:
                return
            seen.extend(t.id for t in page.items)
            cursor = f"s{page.items[-1].seq}"

    async with await psycopg.AsyncConnection.connect(postgres_db) as longer:
        await longer.execute("SELECT 1")  # its transaction is open
        late = await store.create(NewTask("q", "k", id="late"), conn=longer)
        first = await store.create(NewTask("q", "k", id="first"))
        second = await store.create(NewTask("q", "k", id="second"))
        assert late.seq < first.seq < second.seq
        await poll()
        await longer.commit()
    await poll()
    assert seen == ["late", "first", "second"]


async def test_a_transaction_enqueuing_one_by_one_announces_its_seqs_once(
    stores: tuple[Store, Store], postgres_db: str
) -> None:
    """Its first bound is its lowest: one lock per transaction, not one per enqueue (thousands of tasks
    enqueued one by one in a caller's transaction would otherwise fill the server's lock table)."""
    store, _ = stores
    async with await psycopg.AsyncConnection.connect(postgres_db) as caller:
        for n in range(50):
            await store.create(NewTask("q", "k", id=f"t{n}"), conn=caller)
        cur = await caller.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'"
        )
        row = await cur.fetchone()
        assert row is not None
        assert row[0] <= 2
        # Still announced: a listing stops below this transaction's seqs until it commits.
        assert [t.id for t in (await store.list()).items] == []
        await caller.commit()
    assert len((await store.list()).items) == 50
