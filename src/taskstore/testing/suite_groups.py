"""Groups and chord claims of the result backend (SPEC §4, §8)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from taskstore import FakeClock, NewTask, State, StatusState, Store, Task, TaskStatus, errors

from ._base import SHARED, OpenStore, SuiteBase


def task(i: int, **options: object) -> NewTask:
    return NewTask("q", "member", {"args": [i], "kwargs": {}}, **options)  # type: ignore[arg-type]


CALLBACK = NewTask("q", "total", {"args": ["label"], "kwargs": {"x": 1}})


async def chord(store: Store, n: int = 3, ttl: float | None = None, **options: object) -> list[Task]:
    """A chord ``g`` of ``n`` members (ids ``g:0`` … ) with the callback ``g:callback``."""
    return await store.create_group("g", [task(i, **options) for i in range(n)], callback=CALLBACK, ttl=ttl)


async def claim_all(store: Store, n: int, worker: str = "w1") -> list[Task]:
    claimed = await store.claim(worker, ["q"], limit=n)
    assert len(claimed) == n
    return sorted(claimed, key=lambda t: t.id)


async def has_callback(store: Store) -> bool:
    try:
        await store.get("g:callback")
    except errors.NotFound:
        return False
    return True


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


class MemberGroupTests(SuiteBase):
    """A group enqueued with its members is those tasks (issue 10 §1): settled where a member ends."""

    async def test_create_group_stores_members_and_reads_them_back(self, store: Store) -> None:
        members = await chord(store)
        assert [t.id for t in members] == ["g:0", "g:1", "g:2"]
        assert all(t.group_id == "g" and t.state is State.QUEUED for t in members)
        group = await store.get_group("g")
        assert group is not None
        assert (group.expected, group.completed, group.is_complete) == (3, 0, False)
        with pytest.raises(errors.AlreadyExists):
            await chord(store)

    async def test_the_last_completion_enqueues_the_callback_with_results_in_member_order(self, store: Store) -> None:
        await chord(store)
        claimed = await claim_all(store, 3)
        for t in reversed(claimed[1:]):
            await store.mark_done(t, {"r": t.id})
            assert not await has_callback(store)
        await store.mark_done(claimed[0], {"r": "g:0"})
        callback = await store.get("g:callback")
        assert callback.state is State.QUEUED and callback.kind == "total"
        assert callback.args == {"args": [[{"r": "g:0"}, {"r": "g:1"}, {"r": "g:2"}], "label"], "kwargs": {"x": 1}}
        group = await store.get_group("g")
        assert group is not None and group.is_complete
        assert group.meta["chord.claimed"] is True and group.meta["chord.callback_task_id"] == "g:callback"
        assert group.results["g:1"].state is StatusState.SUCCEEDED and group.results["g:1"].payload == {"r": "g:1"}

    async def test_a_batch_completing_every_member_enqueues_one_callback(self, store: Store) -> None:
        await create_plain(store)
        await chord(store, n=5)
        claimed = await store.claim("w1", ["q"], limit=10)
        assert len(claimed) == 6
        assert await store.acknowledge_many([(t, t.id) for t in claimed]) == [None] * 6
        callback = await store.get("g:callback")
        assert callback.args["args"][0] == [f"g:{i}" for i in range(5)]
        assert await store.count(state=State.QUEUED) == 1

    async def test_a_stale_workers_completion_fires_no_chord(self, store: Store, clock: FakeClock) -> None:
        # (a) the member's lease was reaped; its old holder finishes and is refused: no callback.
        await chord(store, n=2, processing_timeout=10)
        first, second = await claim_all(store, 2)
        await store.mark_done(first, 1)
        clock.advance(11)
        assert await store.reap() == 1
        with pytest.raises(errors.NotClaimed):
            await store.mark_done(second, 2)
        assert (await store.get(second.id)).state is State.FAILED
        assert not await has_callback(store)
        group = await store.get_group("g")
        assert group is not None and not group.is_complete and "chord.claimed" not in group.meta
        clock.advance(3600)
        again = await claim_all(store, 1, worker="w2")
        await store.mark_done(again[0], 2)
        assert (await store.get("g:callback")).args["args"][0] == [1, 2]

    async def test_a_member_cancelled_while_queued_fails_the_group(self, store: Store) -> None:
        # (b) cancelled before it ran: the group is failed at once and never fires.
        await chord(store, n=3)
        await store.cancel("g:1")
        group = await store.get_group("g")
        assert group is not None and group.results["g:1"].state is StatusState.CANCELLED
        for t in await claim_all(store, 2):
            await store.mark_done(t, 0)
        assert not await has_callback(store)

    async def test_a_member_reaped_to_dead_fails_the_group(self, store: Store, clock: FakeClock) -> None:
        # (c) the reaper ends the member dead: recorded in the group as failed, no callback.
        await chord(store, n=2, max_attempts=1, processing_timeout=5)
        first, _ = await claim_all(store, 2)
        await store.mark_done(first, 1)
        clock.advance(6)
        assert await store.reap() == 1
        group = await store.get_group("g")
        assert group is not None and group.results["g:1"].state is StatusState.FAILED
        assert group.results["g:1"].error is not None and group.results["g:1"].error["type"] == "timed_out"
        assert not await has_callback(store)

    async def test_a_take_over_that_ends_a_member_dead_fails_the_group(self, store: Store, clock: FakeClock) -> None:
        await chord(store, n=1, max_attempts=1, processing_timeout=5)
        await claim_all(store, 1)
        clock.advance(6)
        assert await store.claim_task("g:0", "w2") is None
        group = await store.get_group("g")
        assert group is not None and group.results["g:0"].state is StatusState.FAILED

    async def test_a_retried_member_revives_the_group(self, store: Store) -> None:
        await chord(store, n=2)
        await store.cancel("g:0")
        await store.retry("g:0")
        for t in await claim_all(store, 2):
            await store.mark_done(t, t.id)
        assert (await store.get("g:callback")).args["args"][0] == ["g:0", "g:1"]

    async def test_archived_members_still_count(self, store: Store, clock: FakeClock) -> None:
        await chord(store, n=2)
        first, second = await claim_all(store, 2)
        await store.mark_done(first, "one")
        clock.advance(1)
        assert await store.archive(before=clock.now()) == 1
        await store.mark_done(second, "two")
        assert (await store.get("g:callback")).args["args"][0] == ["one", "two"]
        group = await store.get_group("g")
        assert group is not None and group.completed == 2

    async def test_a_group_does_not_expire_while_a_member_is_unfinished(self, store: Store, clock: FakeClock) -> None:
        await chord(store, n=2, ttl=10)
        clock.advance(3600)  # a long backlog: the members have not even started
        assert await store.purge_groups() == 0
        assert await store.get_group("g") is not None
        for t in await claim_all(store, 2):
            await store.mark_done(t, 0)
        assert await has_callback(store)
        group = await store.get_group("g")
        assert group is not None and group.expires_at == clock.now() + timedelta(seconds=10)
        clock.advance(10)
        assert await store.get_group("g") is None
        assert await store.purge_groups() == 1

    async def test_members_completed_concurrently_fire_one_callback(self, open_store: OpenStore) -> None:
        stores = [await open_store()] if SHARED not in self.capabilities else [await open_store() for _ in range(4)]
        await stores[0].create_group("g", [task(i) for i in range(24)], callback=CALLBACK)
        claimed = await stores[0].claim("w1", ["q"], limit=24)
        await asyncio.gather(*(stores[i % len(stores)].mark_done(t, i) for i, t in enumerate(claimed)))
        callback = await stores[0].get("g:callback")
        assert sorted(callback.args["args"][0]) == list(range(24))
        assert await stores[0].count(queue="q") == 25

    async def test_tasks_naming_an_init_group_are_its_members(self, store: Store) -> None:
        await store.init_group("s", 2)
        await store.create_many([task(0, group_id="s"), task(1, group_id="s")])
        for t in await claim_all(store, 2):
            await store.mark_done(t, t.args["args"][0])
        group = await store.get_group("s")
        assert group is not None
        assert group.is_complete
        assert sorted(status.payload for status in group.results.values()) == [0, 1]
        assert await store.count(queue="q") == 2  # no chord: nothing enqueued

    async def test_bad_group_input_is_refused_and_stores_nothing(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.create_group("g", [])
        with pytest.raises(errors.InvalidTask):
            await store.create_group("g", [task(0)], callback=NewTask("q", "cb", [1, 2]))
        with pytest.raises(errors.InvalidTask):
            await store.create_group("g", [task(0, group_id="other")])
        assert await store.get_group("g") is None
        assert await store.count() == 0


async def create_plain(store: Store) -> None:
    await store.create(NewTask("q", "plain"))
