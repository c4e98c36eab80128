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
