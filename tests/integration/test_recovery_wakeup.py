"""A blocked claim wakes when a lease it could recover ends, on the real clock and on every backend: an idle fleet
takes over a crashed worker's task about a lease after its last renewal, however long its poll (SPEC §2).

The stores here poll every 30 s and the claim blocks for 10 s: only the wake-up at the lease's end can return the
task within the 5 s these tests allow."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import taskstore
from taskstore import NewTask, State, Task

LEASE = 0.5


def _token(task: Task) -> str:
    assert task.claim is not None
    return task.claim.token


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        from ..postgres_server import new_schema, with_schema

        return with_schema(request.getfixturevalue("postgres_db"), new_schema())
    if request.param == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path / 'tasks.db'}"


def test_a_blocked_claim_takes_over_a_lease_when_it_ends(url: str) -> None:
    async def scenario() -> None:
        async with taskstore.open(url, poll_interval=30) as store:
            created = await store.create(NewTask("q", "k", processing_timeout=LEASE))
            [lost] = await store.claim("crashed", ["q"], limit=1)
            started = time.monotonic()
            got = await store.claim("w2", ["q"], limit=1, block_for=10)
            waited = time.monotonic() - started
            assert [t.id for t in got] == [created.id], f"nothing recovered after {waited:.1f} s"
            assert waited < 5
            assert got[0].attempts == 2
            assert _token(got[0]) != _token(lost)

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_a_blocked_claim_in_another_store_takes_over_when_the_lease_ends(url: str) -> None:
    if url == "memory://":
        pytest.skip("a memory store is not shared")

    async def scenario() -> None:
        async with taskstore.open(url, poll_interval=30) as one, taskstore.open(url, poll_interval=30) as two:
            created = await one.create(NewTask("q", "k", processing_timeout=LEASE))
            [lost] = await one.claim("crashed", ["q"], limit=1)
            # two learns when the lease ends from the database, not from a claim of its own.
            waiting = asyncio.ensure_future(two.claim("w2", ["q"], limit=1, block_for=10))
            started = time.monotonic()
            got = await waiting
            waited = time.monotonic() - started
            assert [t.id for t in got] == [created.id], f"nothing recovered after {waited:.1f} s"
            assert waited < 5
            assert (await one.get(created.id)).state is State.CLAIMED
            assert _token(got[0]) != _token(lost)

    asyncio.run(asyncio.wait_for(scenario(), 20))
