"""Blocked claims of one store woken together ask the database one at a time (Store._claim_woken).

A worker runs two claimers; a wake-up for one new task woke both and each asked the database, one of them for
nothing: a statement per task wasted at low rates on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import taskstore
from taskstore import NewTask

pytestmark = pytest.mark.asyncio


def _counted(store: taskstore.Store) -> list[int]:
    """Count the driver's claims, each made a little slow so that woken claimers overlap as over a network."""
    driver: Any = store._driver
    claim = driver.claim
    calls: list[int] = []

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        await asyncio.sleep(0.02)
        return await claim(*args, **kwargs)

    driver.claim = counted
    return calls


async def test_one_new_task_wakes_one_question_to_the_database() -> None:
    async with taskstore.open("memory://", poll_interval=30) as store:
        calls = _counted(store)
        claimers = [asyncio.create_task(store.claim(f"w{i}", "q", limit=2, block_for=5, at_least=1)) for i in range(2)]
        await asyncio.sleep(0.2)
        before = len(calls)  # each claimer's first attempt, before it waits
        await store.create(NewTask("q", "k"))
        done, pending = await asyncio.wait(claimers, timeout=2, return_when=asyncio.FIRST_COMPLETED)
        assert [len(t.result()) for t in done] == [1]
        await asyncio.sleep(0.2)
        assert len(calls) - before == 1  # the other claimer saw the first take less than it asked: nothing left

        # The claimer left waiting still wakes for the next task.
        await store.create(NewTask("q", "k"))
        (second,) = pending
        assert len(await asyncio.wait_for(second, 2)) == 1


async def test_a_claim_that_took_all_it_asked_for_lets_the_next_one_ask() -> None:
    async with taskstore.open("memory://", poll_interval=30) as store:
        calls = _counted(store)
        claimers = [asyncio.create_task(store.claim(f"w{i}", "q", limit=2, block_for=5, at_least=1)) for i in range(2)]
        await asyncio.sleep(0.2)
        before = len(calls)
        await store.create_many([NewTask("q", "k") for _ in range(3)])
        got = await asyncio.wait_for(asyncio.gather(*claimers), 2)
        assert sorted(len(tasks) for tasks in got) == [1, 2]
        assert len(calls) - before == 2


async def test_a_drained_claim_waits_for_a_wake_up_before_it_asks() -> None:
    """A worker's claimer keeps one waiter; after a claim that came back short it passes ``drained`` and the next
    claim asks nothing until new work wakes it (each task cost a claimer two claims: one that took it and an
    empty one right after). What was created after the short claim read the queues is not missed."""
    async with taskstore.open("memory://", poll_interval=30) as store:
        calls = _counted(store)
        waiter = await store._claim_waiter()
        assert await store._claim("w", "q", 2, 0.1, at_least=1, until=None, waiter=waiter) == []
        assert len(calls) == 1  # asked once, found nothing, waited out its 0.1 s
        # Short (nothing was queued): the next claim of this claimer waits instead of asking.
        asked = len(calls)
        claim = asyncio.create_task(store._claim("w", "q", 2, 5, at_least=1, until=None, waiter=waiter, drained=True))
        await asyncio.sleep(0.2)
        assert len(calls) == asked
        assert not claim.done()
        await store.create(NewTask("q", "k"))
        assert len(await asyncio.wait_for(claim, 2)) == 1
        assert len(calls) == asked + 1

        # A task created between a short claim and the next call wakes the waiter: that call asks at once.
        await store.create(NewTask("q", "k"))
        got = await asyncio.wait_for(
            store._claim("w", "q", 2, 5, at_least=1, until=None, waiter=waiter, drained=True), 2
        )
        assert len(got) == 1
        store._drop_claim_waiter(waiter)
