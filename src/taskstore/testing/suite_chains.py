"""Chains (SPEC §9): links run one after another, each moved on exactly once by the write that ends the one before."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from taskstore import Failure, FakeClock, NewTask, State, StatusState, Store, Task, errors

from ._base import SHARED, OpenStore, SuiteBase


def link(kind: str, *args: Any, **options: Any) -> NewTask:
    kwargs = options.pop("kwargs", {})
    return NewTask(options.pop("queue", "q"), kind, {"args": list(args), "kwargs": kwargs}, **options)


async def exists(store: Store, task_id: str) -> bool:
    try:
        await store.get(task_id)
    except errors.NotFound:
        return False
    return True


async def claim_one_of(store: Store, task_id: str, worker: str = "w1") -> Task:
    claimed = await store.claim(worker, ["q"], limit=2)
    assert [t.id for t in claimed] == [task_id], f"expected {task_id} alone to be claimable, got {claimed}"
    return claimed[0]


async def links_of(store: Store, chain_id: str) -> list[str]:
    """Every task of the queue that belongs to the chain, live or archived, in enqueue order."""
    live = await store.list(queue="q", limit=1000)
    archived = await store.list(queue="q", limit=1000, archived=True)
    return [t.id for t in sorted([*live.items, *archived.items], key=lambda t: t.seq) if t.group_id == chain_id]


class ChainTests(SuiteBase):
    async def test_results_are_threaded_through_three_links(self, store: Store) -> None:
        first = await store.create_chain(
            "c", [link("fetch", "url"), link("parse", "strict", kwargs={"k": 1}), NewTask("q", "save")]
        )
        assert (first.id, first.group_id, first.args) == ("c:0", "c", {"args": ["url"], "kwargs": {}})
        assert not await exists(store, "c:1")  # a later link is not there before the one before it is done
        t = await claim_one_of(store, "c:0")
        await store.mark_done(t, {"page": 1})
        t = await claim_one_of(store, "c:1")
        assert (t.kind, t.group_id) == ("parse", "c")
        assert t.args == {"args": [{"page": 1}, "strict"], "kwargs": {"k": 1}}
        await store.mark_done(t, [1, 2])
        t = await claim_one_of(store, "c:2")
        assert t.args == {"args": [[1, 2]], "kwargs": {}}
        await store.mark_done(t, "saved")
        assert await store.claim("w1", ["q"], limit=1) == []
        group = await store.get_group("c")
        assert group is not None and group.is_complete and group.expected == 3
        assert [group.results[f"c:{i}"].payload for i in range(3)] == [{"page": 1}, [1, 2], "saved"]
        assert await store.count(queue="q") == 3

    async def test_a_chain_of_one_link_is_its_task(self, store: Store) -> None:
        await store.create_chain("one", [link("only", 7)])
        t = await claim_one_of(store, "one:0")
        await store.mark_done(t, 8)
        group = await store.get_group("one")
        assert group is not None and group.is_complete
        assert await store.count() == 1

    async def test_a_dead_middle_link_stops_the_chain(self, store: Store) -> None:
        await store.create_chain("c", [link("a"), link("b", max_attempts=1), link("never")])
        await store.mark_done(await claim_one_of(store, "c:0"), 1)
        dead = await store.mark_failed(await claim_one_of(store, "c:1"), Failure(type="Boom", message="no"))
        assert dead.state is State.DEAD
        assert not await exists(store, "c:2")
        assert await store.claim("w1", ["q"], limit=1) == []
        group = await store.get_group("c")
        assert group is not None and group.results["c:1"].state is StatusState.FAILED and not group.is_complete
        # A manual retry of the failed link resumes the chain where it stopped.
        await store.retry("c:1")
        await store.mark_done(await claim_one_of(store, "c:1"), 2)
        assert (await claim_one_of(store, "c:2")).args["args"] == [2]

    async def test_a_cancelled_link_stops_the_chain(self, store: Store) -> None:
        await store.create_chain("c", [link("a"), link("b")])
        await store.cancel("c:0")
        group = await store.get_group("c")
        assert group is not None and group.results["c:0"].state is StatusState.CANCELLED
        assert not await exists(store, "c:1")
        assert await store.count() == 1

    async def test_a_reaped_and_rerun_link_enqueues_its_successor_once(self, store: Store, clock: FakeClock) -> None:
        await store.create_chain("c", [link("a", processing_timeout=10), link("b")])
        stale = await claim_one_of(store, "c:0", worker="w1")
        clock.advance(11)
        assert await store.reap() == 1
        assert not await exists(store, "c:1")  # a reaped link is unfinished, not failed: nothing moves on
        clock.advance(3600)
        rerun = await claim_one_of(store, "c:0", worker="w2")
        await store.mark_done(rerun, "second")
        with pytest.raises(errors.NotClaimed):
            await store.mark_done(stale, "first")  # the crashed holder comes back: refused, changes nothing
        with pytest.raises(errors.NotClaimed):
            await store.mark_done(rerun, "again")  # the finishing write repeated: refused too
        assert await links_of(store, "c") == ["c:0", "c:1"]
        assert (await store.get("c:1")).args["args"] == ["second"]

    async def test_a_link_finished_again_does_not_enqueue_its_successor_twice(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.create_chain("c", [link("a"), link("b"), link("c")])
        await store.mark_done(await claim_one_of(store, "c:0"), "one")
        await store.cancel("c:1")
        # An operator puts the finished link back (update() may): it runs and ends done once more.
        await store.update((await store.get("c:0")).replace(state=State.QUEUED))
        await store.mark_done(await claim_one_of(store, "c:0"), "two")
        successor = await store.get("c:1")
        assert successor.state is State.CANCELLED and successor.args["args"] == ["one"]  # not enqueued again
        # Once both are archived, the first link's id is free again: a task of the chain that takes it
        # and ends done still finds the successor (archived) and enqueues nothing.
        clock.advance(1)
        assert await store.archive(before=clock.now()) == 2
        await store.create(NewTask("q", "a", id="c:0", group_id="c"))
        await store.mark_done(await claim_one_of(store, "c:0"), "three")
        assert await links_of(store, "c") == ["c:0", "c:1", "c:0"]
        assert not await exists(store, "c:1") and not await exists(store, "c:2")

    async def test_racing_finishers_of_a_link_enqueue_its_successor_once(
        self, open_store: OpenStore, clock: FakeClock
    ) -> None:
        # The first holder's lease ran out and a second worker took the link over; both finish at once.
        stores = [await open_store()] if SHARED not in self.capabilities else [await open_store() for _ in range(4)]
        n = 12
        for c in range(n):
            await stores[0].create_chain(f"c{c}", [link("a", c, processing_timeout=5), link("b")])
        stale = await stores[0].claim("w1", ["q"], limit=n)
        clock.advance(6)
        fresh = [await stores[1 % len(stores)].claim_task(t.id, "w2") for t in stale]
        assert all(t is not None for t in fresh)
        writes = [s.mark_done(t, "stale") for s, t in zip(stores * n, stale, strict=False)]
        writes += [s.mark_done(t, "fresh") for s, t in zip(reversed(stores * n), fresh, strict=False) if t]
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        assert sum(isinstance(o, Task) for o in outcomes) == n
        assert all(isinstance(o, errors.LeaseError) for o in outcomes if not isinstance(o, Task))
        nexts = await stores[0].list(state=State.QUEUED, queue="q", limit=100)
        assert sorted(t.id for t in nexts.items) == sorted(f"c{c}:1" for c in range(n))
        assert {t.args["args"][0] for t in nexts.items} == {"fresh"}

    async def test_links_finished_in_one_batch_each_enqueue_one_successor(self, store: Store) -> None:
        await store.create(NewTask("q", "plain"))
        for c in range(5):
            await store.create_chain(f"c{c}", [link("a", c), link("b"), link("c")])
        claimed = await store.claim("w1", ["q"], limit=10)
        assert len(claimed) == 6
        assert await store.acknowledge_many([(t, t.id) for t in claimed]) == [None] * 6
        nexts = await store.claim("w1", ["q"], limit=10)
        assert sorted((t.id, t.args["args"][0]) for t in nexts) == [(f"c{c}:1", f"c{c}:0") for c in range(5)]
        outcomes = await store.mark_done_many([(t, t.id) for t in nexts])
        assert all(isinstance(o, Task) for o in outcomes)
        lasts = await store.claim("w1", ["q"], limit=10)
        assert sorted(t.id for t in lasts) == [f"c{c}:2" for c in range(5)]

    async def test_a_fifty_link_chain_runs_to_its_end(self, store: Store) -> None:
        await store.create_chain("long", [link("step", 0)] + [link("step") for _ in range(49)])
        for i in range(50):
            t = await claim_one_of(store, f"long:{i}")
            assert t.args["args"] == [i]  # each link adds one to the result before it
            await store.mark_done(t, t.args["args"][0] + 1)
        assert await store.claim("w1", ["q"], limit=1) == []
        group = await store.get_group("long")
        assert group is not None and group.is_complete and group.completed == 50
        last = (await store.get("long:49")).result
        assert last is not None and last.value == 50

    async def test_archived_links_still_move_the_chain_on(self, store: Store, clock: FakeClock) -> None:
        await store.create_chain("c", [link("a"), link("b"), link("c")])
        await store.mark_done(await claim_one_of(store, "c:0"), "one")
        clock.advance(1)
        assert await store.archive(before=clock.now()) == 1
        await store.mark_done(await claim_one_of(store, "c:1"), "two")
        assert (await claim_one_of(store, "c:2")).args["args"] == ["two"]
        assert await links_of(store, "c") == ["c:0", "c:1", "c:2"]

    async def test_a_chain_is_kept_while_a_link_is_unfinished(self, store: Store, clock: FakeClock) -> None:
        await store.create_chain("c", [link("a"), link("b")], ttl=10)
        clock.advance(3600)  # a long backlog before the first link even starts
        assert await store.purge_groups() == 0
        await store.mark_done(await claim_one_of(store, "c:0"), 1)
        clock.advance(3600)  # and again before the second
        assert await store.purge_groups() == 0
        await store.mark_done(await claim_one_of(store, "c:1"), 2)
        group = await store.get_group("c")
        assert group is not None and group.expires_at == clock.now() + timedelta(seconds=10)
        clock.advance(10)
        assert await store.purge_groups() == 1

    async def test_bad_chain_input_is_refused_and_stores_nothing(self, store: Store) -> None:
        bad: list[list[NewTask]] = [
            [],
            [link("a"), NewTask("q", "b", [1, 2])],  # a later link's args take the previous result first
            [link("a"), link("b", run_at=store.now())],  # a later link runs when the one before is done
            [link("a", group_id="other")],
            [link("a", id="same"), link("b", id="same")],
        ]
        for links in bad:
            with pytest.raises(errors.InvalidTask):
                await store.create_chain("c", links)
        with pytest.raises(errors.InvalidTask):
            await store.create_chain("", [link("a")])
        assert await store.get_group("c") is None
        assert await store.count() == 0
        await store.create_chain("c", [link("a")])
        with pytest.raises(errors.AlreadyExists):
            await store.create_chain("c", [link("a", id="other-id")])
        assert await store.count() == 1
