"""Flow control mixed (SPEC §9): a seeded random run of creates, claims, completions, pauses and clock steps.

After every step the store must keep every gate at once: no key over its concurrency, no rated key over
its bucket, nothing claimed from a paused queue, at most one live holder per unique key; and a claim that
returned fewer tasks than asked left nothing a claim could take (one hot key never hides the others).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from taskstore import FakeClock, State, Store, Task

from ._base import SuiteBase, new

_QUEUES = ("a", "b", "c")
_KEYS = ("hot", "slow", "rated", "free", None)
_CONCURRENCY = {"hot": 1, "slow": 2}
_RATE = 3  # tokens per second for "rated"


class FlowMixTests(SuiteBase):
    async def _nothing_left_behind(
        self, store: Store, clock: FakeClock, paused: set[str], running: dict[str, Task]
    ) -> None:
        """The model's own view after a short claim: no waiting task that every gate admits is left."""
        per_key = Counter(t.concurrency_key for t in running.values())
        waiting = (await store.list(state=State.QUEUED, limit=1000)).items
        for task in waiting:
            if task.queue in paused or task.run_at > clock.now() or task.concurrency_key == "rated":
                continue
            key = task.concurrency_key
            room = key not in _CONCURRENCY or per_key[key] < _CONCURRENCY[key]
            assert not room, f"{task.id} (key {key!r}, queue {task.queue!r}) was left behind by a short claim"

    @pytest.mark.parametrize("seed", [1, 2, 3])
    async def test_every_gate_holds_in_a_random_run(self, store: Store, clock: FakeClock, seed: int) -> None:
        rng = random.Random(seed)
        for key, concurrency in _CONCURRENCY.items():
            await store.set_limit(key, concurrency=concurrency)
        await store.set_limit("rated", rate=_RATE, per=1.0)
        start = clock.now()
        running: dict[str, Task] = {}
        rated_claims = 0
        paused: set[str] = set()
        created: set[str] = set()
        for _ in range(80):
            step = rng.random()
            if step < 0.3:
                batch = [
                    new(
                        rng.choice(_QUEUES),
                        priority=rng.choice((0, 0, 5)),
                        concurrency_key=rng.choice(_KEYS),
                        unique_key=rng.choice((None, None, "u1", "u2")),
                    )
                    for _ in range(rng.randint(1, 8))
                ]
                created |= {t.id for t in await store.create_many(batch)}
            elif step < 0.6:
                want = rng.randint(1, 12)
                got = await store.claim("w", limit=want)
                assert not {t.queue for t in got} & paused
                running |= {t.id: t for t in got}
                rated_claims += sum(1 for t in got if t.concurrency_key == "rated")
                if len(got) < want:
                    assert await store.find_available(limit=100) == [], "a claim left a claimable task behind"
                    await self._nothing_left_behind(store, clock, paused, running)
            elif step < 0.8 and running:
                task = running.pop(rng.choice(sorted(running)))
                if rng.random() < 0.7:
                    await store.mark_done(task)
                else:
                    await store.unclaim(task)
            elif step < 0.9:
                queue = rng.choice(_QUEUES)
                if queue in paused:
                    await store.resume_queue(queue)
                    paused.discard(queue)
                else:
                    await store.pause_queue(queue)
                    paused.add(queue)
            else:
                clock.advance(rng.choice((0.1, 0.5, 1.0)))
            claimed = (await store.list(state=State.CLAIMED, limit=1000)).items
            assert {t.id for t in claimed} == set(running)
            per_key = Counter(t.concurrency_key for t in claimed)
            for key, concurrency in _CONCURRENCY.items():
                assert per_key[key] <= concurrency
            elapsed = (clock.now() - start).total_seconds()
            assert rated_claims <= _RATE + elapsed * _RATE + 1e-6
            live = [t for t in (await store.list(limit=1000)).items if t.state in (State.QUEUED, State.CLAIMED)]
            holders: defaultdict[tuple[str, str], int] = defaultdict(int)
            for task in live:
                if task.unique_key is not None and task.state in (State.QUEUED, State.CLAIMED):
                    holders[(task.queue, task.unique_key)] += 1
            assert all(n == 1 for n in holders.values()), holders
        # Nothing is lost: with the gates lifted every waiting task is claimed.
        for queue in paused:
            await store.resume_queue(queue)
        for key in (*_CONCURRENCY, "rated"):
            await store.clear_limit(key)
        await store.claim("w", limit=1000)
        assert await store.count(state=State.QUEUED) == 0
        assert await store.count() == len(created)
