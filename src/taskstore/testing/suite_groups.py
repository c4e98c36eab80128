"""Groups and chord claims of the result backend (SPEC §4, §8)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from taskstore import FakeClock, StatusState, Store, TaskStatus, errors

from ._base import SHARED, OpenStore, SuiteBase


def member(i: int, state: StatusState = StatusState.SUCCEEDED, payload: object = None) -> TaskStatus:
    return TaskStatus(id=f"m{i}", state=state, payload=payload if payload is not None else {"n": i}, attempt=1)


class GroupTests(SuiteBase):
    async def test_init_group_and_read_it_back(self, store: Store, clock: FakeClock) -> None:
        group = await store.init_group("g1", 3, meta={"batch": "nightly"}, ttl=60)
        assert (group.id, group.expected, group.completed, group.is_complete) == ("g1", 3, 0, False)
        assert group.meta == {"batch": "nightly"}
        assert group.expires_at == clock.now() + timedelta(seconds=60)
        assert await store.get_group("g1") == group

    async def test_results_accumulate_until_complete(self, store: Store) -> None:
        await store.init_group("g1", 3)
        for i in range(3):
            group = await store.add_group_result("g1", member(i))
            assert group is not None
            assert group.completed == i + 1
        assert group is not None
        assert group.is_complete
        assert group.results["m1"].payload == {"n": 1}
        assert group.results["m1"].state is StatusState.SUCCEEDED

    async def test_a_member_added_twice_counts_once(self, store: Store) -> None:
        await store.init_group("g1", 2)
        await store.add_group_result("g1", member(0, payload="first"))
        group = await store.add_group_result("g1", member(0, payload="again"))
        assert group is not None
        assert group.completed == 1
        assert group.results["m0"].payload == "again"

    async def test_a_missing_or_expired_group_takes_no_result(self, store: Store, clock: FakeClock) -> None:
        assert await store.add_group_result("nope", member(0)) is None
        await store.init_group("short", 2, ttl=10)
        clock.advance(10)
        assert await store.add_group_result("short", member(0)) is None
        assert await store.get_group("short") is None
        assert await store.purge_groups() == 1

    async def test_re_init_clears_results_and_the_chord_claim(self, store: Store) -> None:
        await store.init_group("g1", 2)
        await store.add_group_result("g1", member(0))
        assert await store.claim_chord("g1", "callback-1")
        group = await store.init_group("g1", 4, meta={"round": 2})
        assert (group.completed, group.expected, group.meta) == (0, 4, {"round": 2})
        assert await store.claim_chord("g1", "callback-2")

    async def test_claim_chord_is_true_once_and_recorded(self, store: Store, clock: FakeClock) -> None:
        await store.init_group("g1", 1, meta={"k": "v"})
        when = clock.now()
        assert await store.claim_chord("g1", "cb-task", dispatched_at=when) is True
        assert await store.claim_chord("g1", "cb-other") is False
        group = await store.get_group("g1")
        assert group is not None
        assert group.meta["chord.claimed"] is True
        assert group.meta["chord.callback_task_id"] == "cb-task"
        assert group.meta["chord.dispatched_at"] == when.isoformat()
        assert group.meta["k"] == "v"

    async def test_claim_chord_of_a_missing_group_is_false(self, store: Store) -> None:
        assert await store.claim_chord("never-made") is False

    async def test_fifty_concurrent_chord_claims_give_one_true(self, store: Store) -> None:
        await store.init_group("race", 10)
        results = await asyncio.gather(*(store.claim_chord("race", f"cb-{i}") for i in range(50)))
        assert results.count(True) == 1

    async def test_chord_claims_race_across_store_handles(self, open_store: OpenStore) -> None:
        self.need(SHARED)
        stores = [await open_store() for _ in range(5)]
        await stores[0].init_group("race", 10)
        results = await asyncio.gather(
            *(s.claim_chord("race", f"cb-{i}-{j}") for i, s in enumerate(stores) for j in range(10))
        )
        assert results.count(True) == 1

    async def test_concurrent_members_never_lose_each_other(self, open_store: OpenStore) -> None:
        stores = [await open_store()] if SHARED not in self.capabilities else [await open_store() for _ in range(4)]
        await stores[0].init_group("many", 40)
        await asyncio.gather(*(stores[i % len(stores)].add_group_result("many", member(i)) for i in range(40)))
        group = await stores[0].get_group("many")
        assert group is not None
        assert group.completed == 40
        assert group.is_complete

    async def test_bad_group_input_is_invalid(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.init_group("g", -1)
        with pytest.raises(errors.InvalidTask):
            await store.init_group("", 1)
        with pytest.raises(errors.InvalidTask):
            await store.init_group("g", 1, ttl=0)
        await store.init_group("g", 1)
        with pytest.raises(errors.InvalidTask):
            await store.add_group_result("g", TaskStatus("m", StatusState.SUCCEEDED, payload=object()))
