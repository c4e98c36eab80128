"""Per-key limits (SPEC §9): concurrency across every claimer, a token-bucket rate, others never held up."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from taskstore import FakeClock, Limit, NewTask, State, Store, SystemClock, Task, errors

from ._base import MULTIPROCESS, SHARED, OpenStore, SuiteBase, claim_one, new, run_python

# A claimer process: claims tasks of queue "lim", holds each a moment, completes it, and prints each task's
# claimed_at and finished_at (ISO) as JSON, so the parent can check how many ran at once.
_HOLDER = """
import asyncio, json, sys
import taskstore

async def main(url, worker):
    spans = []
    async with taskstore.open(url) as store:
        idle = 0
        while idle < 5:
            batch = await store.claim(worker, ["lim"], limit=2, block_for=0.2)
            if not batch:
                idle += 1
                continue
            idle = 0
            await asyncio.sleep(0.05)
            for task in batch:
                done = await store.mark_done(task)
                spans.append([task.claim.claimed_at.isoformat(), done.finished_at.isoformat()])
    print(json.dumps(spans))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _most_at_once(spans: list[tuple[datetime, datetime]], slack: float) -> int:
    """The most spans running at one instant, each shortened by ``slack`` seconds at its end (clock skew)."""
    events = sorted(
        [(start.timestamp(), 1) for start, _ in spans] + [(end.timestamp() - slack, -1) for _, end in spans]
    )
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def _keys(tasks: list[Task]) -> Counter[str | None]:
    return Counter(t.concurrency_key for t in tasks)


class LimitTests(SuiteBase):
    async def test_concurrency_one_claims_one_of_the_key_and_every_other(self, store: Store) -> None:
        await store.set_limit("K", concurrency=1)
        await store.create_many(
            [new(concurrency_key="K") for _ in range(5)] + [new(concurrency_key=f"o{i}") for i in range(4)] + [new()]
        )
        got = await store.claim("w", limit=10)
        assert len(got) == 6 and _keys(got)["K"] == 1
        assert await store.claim("w", limit=10) == []

    @pytest.mark.parametrize("end", ["done", "failed", "unclaim", "reap", "cancelled"])
    async def test_a_finished_task_frees_its_slot(self, store: Store, clock: FakeClock, end: str) -> None:
        await store.set_limit("K", concurrency=1)
        await store.create_many([new(id=f"k{i}", concurrency_key="K", processing_timeout=10) for i in range(3)])
        task = await claim_one(store)
        assert await store.claim("w", limit=10) == []
        if end == "done":
            await store.mark_done(task)
        elif end == "failed":
            await store.mark_failed(task, RuntimeError("boom"))
        elif end == "unclaim":
            await store.unclaim(task)
        elif end == "cancelled":
            await store.cancel(task.id)
            await store.mark_cancelled(task)
        else:
            clock.advance(11)
            assert await store.reap() == 1
        got = await store.claim("w", limit=10)
        assert len(got) == 1 and got[0].concurrency_key == "K"

    async def test_acknowledge_many_frees_the_slots(self, store: Store) -> None:
        await store.set_limit("K", concurrency=2)
        await store.create_many([new(concurrency_key="K") for _ in range(5)])
        got = await store.claim("w", limit=10)
        assert len(got) == 2
        assert await store.acknowledge_many(got) == [None, None]
        assert len(await store.claim("w", limit=10)) == 2

    async def test_concurrency_two_with_claim_task(self, store: Store) -> None:
        await store.set_limit("K", concurrency=2)
        await store.create_many([new(id=f"k{i}", concurrency_key="K") for i in range(4)])
        one = await store.claim_task("k2", "w")
        two = await store.claim_task("k0", "w")
        assert one is not None and two is not None
        assert await store.claim_task("k1", "w") is None
        assert await store.claim("w", limit=5) == []
        await store.mark_done(one)
        three = await store.claim_task("k3", "w")
        assert three is not None
        assert await store.claim_task("k1", "w") is None

    async def test_a_hot_key_first_in_order_does_not_hide_the_others(self, store: Store) -> None:
        await store.set_limit("K", concurrency=1)
        await store.create_many([new(concurrency_key="K", priority=5) for _ in range(100)])
        await store.create_many([new(concurrency_key="L") for _ in range(10)])
        got = await store.claim("w", limit=100)
        assert _keys(got) == Counter({"K": 1, "L": 10})

    async def test_a_hot_key_does_not_hide_others_from_find_available(self, store: Store) -> None:
        await store.set_limit("K", concurrency=1)
        await store.create_many([new(concurrency_key="K", priority=5) for _ in range(60)])
        await store.create_many([new() for _ in range(5)])
        found = await store.find_available(limit=10)
        assert _keys(found) == Counter({"K": 1, None: 5})
        assert all(t.state is State.QUEUED for t in found)

    async def test_several_limited_keys_at_once(self, store: Store) -> None:
        await store.set_limit("A", concurrency=2)
        await store.set_limit("B", concurrency=3)
        await store.create_many([new(concurrency_key=k) for k in "ABAB" * 10] + [new(concurrency_key="C")] * 4)
        got = await store.claim("w", limit=100)
        assert _keys(got) == Counter({"A": 2, "B": 3, "C": 4})
        assert await store.claim("w2", limit=100) == []

    async def test_concurrency_holds_across_claimers(self, store: Store) -> None:
        await store.set_limit("K", concurrency=3)
        await store.create_many([new(concurrency_key="K") for _ in range(30)])
        batches = await asyncio.gather(*(store.claim(f"w{i}", limit=5) for i in range(10)))
        assert sum(len(b) for b in batches) == 3

    async def test_concurrency_holds_across_stores(self, open_store: OpenStore) -> None:
        self.need(SHARED)
        one, two = await open_store(), await open_store()
        await one.set_limit("K", concurrency=2)
        await one.create_many([new(concurrency_key="K") for _ in range(10)])
        batches = await asyncio.gather(*(s.claim("w", limit=5) for s in (one, two, one, two)))
        assert sum(len(b) for b in batches) == 2
        assert await two.list_limits() == [Limit("K", concurrency=2)]

    async def test_concurrency_holds_across_processes(self, open_store: OpenStore, store_url: str) -> None:
        self.need(MULTIPROCESS)
        store = await open_store(clock=SystemClock())
        await store.set_limit("K", concurrency=2)
        await store.create_many([NewTask("lim", "k", {"i": i}, concurrency_key="K") for i in range(24)])
        outputs = await asyncio.gather(*(run_python(_HOLDER, store_url, f"proc-{i}") for i in range(3)))
        spans = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for out in outputs for a, b in json.loads(out)]
        assert len(spans) == 24
        assert await store.count(state=State.DONE) == 24
        assert _most_at_once(spans, slack=0.02) <= 2  # each task runs >= 50 ms: a third at once would show

    async def test_rate_is_a_token_bucket(self, store: Store, clock: FakeClock) -> None:
        await store.set_limit("K", rate=10, per=1.0)
        await store.create_many([new(concurrency_key="K") for _ in range(200)])
        first = await store.claim("w", limit=100)
        assert len(first) == 10  # a full bucket: a burst of up to `rate`
        assert await store.claim("w", limit=100) == []
        later = 0
        for _ in range(50):
            clock.advance(0.1)
            later += len(await store.claim("w", limit=100))
        assert 49 <= later <= 51  # 10 per second over 5 s

    async def test_rate_per_longer_period(self, store: Store, clock: FakeClock) -> None:
        await store.set_limit("K", rate=2, per=60)
        await store.create_many([new(concurrency_key="K") for _ in range(10)])
        assert len(await store.claim("w", limit=10)) == 2
        clock.advance(29)
        assert await store.claim("w", limit=10) == []
        clock.advance(1)
        assert len(await store.claim("w", limit=10)) == 1

    async def test_rate_and_concurrency_together(self, store: Store, clock: FakeClock) -> None:
        await store.set_limit("K", concurrency=2, rate=5)
        await store.create_many([new(concurrency_key="K") for _ in range(20)])
        got = await store.claim("w", limit=10)
        assert len(got) == 2
        await store.mark_done_many(got)
        assert len(await store.claim("w", limit=10)) == 2  # 3 tokens left, concurrency the tighter gate
        assert await store.claim("w", limit=10) == []

    async def test_claim_task_draws_a_token(self, store: Store, clock: FakeClock) -> None:
        await store.set_limit("K", rate=1, per=10)
        await store.create_many([new(id=f"k{i}", concurrency_key="K") for i in range(3)])
        assert await store.claim_task("k1", "w") is not None
        assert await store.claim_task("k0", "w") is None
        assert await store.claim("w", limit=5) == []
        clock.advance(10)
        assert await store.claim_task("k0", "w") is not None

    async def test_find_available_draws_no_tokens(self, store: Store) -> None:
        await store.set_limit("K", rate=2)
        await store.create_many([new(concurrency_key="K") for _ in range(5)])
        for _ in range(3):
            assert len(await store.find_available(limit=10)) == 2
        assert len(await store.claim("w", limit=10)) == 2

    @pytest.mark.parametrize("options", [{"concurrency": 0}, {"rate": 0}, {"concurrency": 0, "rate": 0}])
    async def test_zero_holds_every_task(self, store: Store, clock: FakeClock, options: dict[str, Any]) -> None:
        await store.set_limit("K", **options)
        await store.create_many([new(concurrency_key="K") for _ in range(3)] + [new(id="free")])
        claimed = await store.claim("w", limit=10)
        assert [t.id for t in claimed] == ["free"]
        await store.acknowledge_many(claimed)
        clock.advance(3600)
        assert await store.claim("w", limit=10) == []
        assert await store.find_available(limit=10) == []

    async def test_clear_limit_releases_the_key(self, store: Store) -> None:
        await store.set_limit("K", concurrency=0)
        await store.create_many([new(concurrency_key="K") for _ in range(3)])
        assert await store.claim("w", limit=10) == []
        assert await store.clear_limit("K") is True
        assert await store.clear_limit("K") is False
        assert len(await store.claim("w", limit=10)) == 3
        assert await store.list_limits() == []

    async def test_set_limit_again_replaces_it(self, store: Store, clock: FakeClock) -> None:
        await store.set_limit("K", concurrency=1)
        await store.create_many([new(concurrency_key="K") for _ in range(10)])
        assert len(await store.claim("w", limit=10)) == 1
        limit = await store.set_limit("K", concurrency=3)
        assert limit == Limit("K", concurrency=3)
        assert len(await store.claim("w", limit=10)) == 2
        await store.set_limit("K", rate=4)  # concurrency gone, a rate instead
        assert await store.list_limits() == [Limit("K", rate=4)]
        assert len(await store.claim("w", limit=10)) == 4

    async def test_setting_a_rate_again_keeps_the_bucket_level(self, store: Store, clock: FakeClock) -> None:
        await store.set_limit("K", rate=5, per=10)
        await store.create_many([new(concurrency_key="K") for _ in range(20)])
        assert len(await store.claim("w", limit=20)) == 5
        await store.set_limit("K", rate=5, per=10)  # not a way round the limit: the bucket stays empty
        assert await store.claim("w", limit=20) == []
        clock.advance(2)
        assert len(await store.claim("w", limit=20)) == 1

    @pytest.mark.parametrize("finish", ["mark_done", "acknowledge_many"])
    async def test_a_blocked_claim_wakes_when_a_slot_frees(self, open_store: OpenStore, finish: str) -> None:
        store = await open_store(poll_interval=60)  # woken, not found by polling
        await store.set_limit("K", concurrency=1)
        await store.create_many([new(id=f"k{i}", concurrency_key="K") for i in range(2)])
        running = await claim_one(store)
        waiting = asyncio.create_task(store.claim("w2", limit=1, block_for=30))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        if finish == "mark_done":
            await store.mark_done(running)
        else:  # a bulk completion frees the slot too
            assert await store.acknowledge_many([running]) == [None]
        assert [t.id for t in await asyncio.wait_for(waiting, timeout=10)] == ["k1"]

    async def test_list_limits_by_key(self, store: Store) -> None:
        await store.set_limit("b", rate=3, per=2.5)
        await store.set_limit("a", concurrency=4)
        await store.set_limit("c", concurrency=1, rate=1)
        assert await store.list_limits() == [
            Limit("a", concurrency=4),
            Limit("b", rate=3, per=2.5),
            Limit("c", concurrency=1, rate=1),
        ]

    async def test_a_key_without_a_limit_is_unlimited(self, store: Store) -> None:
        await store.set_limit("other", concurrency=0)
        await store.create_many([new(concurrency_key="K") for _ in range(50)])
        assert len(await store.claim("w", limit=100)) == 50

    async def test_limits_apply_in_every_queue(self, store: Store) -> None:
        await store.set_limit("K", concurrency=1)
        await store.create_many([new("a", concurrency_key="K"), new("b", concurrency_key="K")])
        assert len(await store.claim("w", ["a"], limit=5)) == 1
        assert await store.claim("w", ["b"], limit=5) == []

    async def test_concurrency_key_is_on_the_task(self, store: Store) -> None:
        task = await store.create(new(concurrency_key="K"))
        assert task.concurrency_key == "K"
        assert (await store.get(task.id)).concurrency_key == "K"
        assert (await claim_one(store)).concurrency_key == "K"

    @pytest.mark.parametrize(
        "options",
        [
            {},
            {"concurrency": -1},
            {"rate": -1},
            {"concurrency": 2**40},
            {"rate": 2**40},
            {"concurrency": 1.5},
            {"concurrency": True},
            {"rate": 1, "per": float("nan")},
            {"rate": 1, "per": 0},
            {"rate": 1, "per": -1},
            {"rate": 1, "per": float("inf")},
        ],
    )
    async def test_bad_limits_are_refused(self, store: Store, options: dict[str, Any]) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.set_limit("K", **options)
        assert await store.list_limits() == []

    @pytest.mark.parametrize("key", ["", "x" * 300, "nul\x00"])
    async def test_bad_limit_keys_are_refused(self, store: Store, key: str) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.set_limit(key, concurrency=1)
        with pytest.raises(errors.InvalidTask):
            await store.clear_limit(key)
        with pytest.raises(errors.InvalidTask):
            await store.create(new(concurrency_key=key))
        assert await store.list_limits() == []
