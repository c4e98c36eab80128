"""Groups and chords through real workers in one process, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from taskstore import (
    App,
    BinaryExponential,
    FakeClock,
    State,
    StatusState,
    Store,
    TaskStatus,
    Worker,
    current_task,
    errors,
)
from taskstore.canvas import ChordFailed

pytestmark = pytest.mark.asyncio


async def test_a_chord_runs_its_callback_once_with_every_result(app: App) -> None:
    calls: list[list[int]] = []

    @app.task(queue="q")
    async def square(x: int) -> int:
        await asyncio.sleep(0.001 * (x % 3))
        return x * x

    @app.task(queue="q")
    async def total(results: list[int], label: str) -> str:
        calls.append(results)
        return f"{label}={sum(results)}"

    chord = app.chord(app.group(*(square.s(i) for i in range(10))), total.s(label="sum"))
    async with Worker(app, concurrency=8):
        handle = await chord.enqueue()
        assert await handle.result(timeout=20) == "sum=285"
    assert calls == [[i * i for i in range(10)]]
    group = await handle.status()
    assert group is not None
    assert group.is_complete
    assert group.meta["chord.claimed"] is True
    assert group.meta["chord.callback_task_id"] == handle.callback


async def test_a_failed_member_leaves_the_group_failed_and_no_callback(app: App) -> None:
    @app.task(queue="q", max_attempts=2, retry=BinaryExponential(base=0.01, cap=0.02))
    async def maybe(x: int) -> int:
        if x == 3:
            raise ValueError("three is bad")
        return x

    @app.task(queue="q")
    async def never(results: list[int]) -> None:
        raise AssertionError("the callback must not run")

    chord = app.chord([maybe.s(i) for i in range(5)], never.s())
    async with Worker(app, concurrency=4):
        handle = await chord.enqueue()
        with pytest.raises(ChordFailed):
            await handle.result(timeout=20)
    group = await handle.status()
    assert group is not None
    assert group.results[handle.members[3]].state is StatusState.FAILED
    assert group.meta.get("chord.claimed") is None
    store = await app.store()
    assert await store.count(state="done") == 4


async def test_a_plain_group_gathers_results(app: App) -> None:
    @app.task(queue="q")
    async def echo(x: int) -> int:
        return x

    async with Worker(app, concurrency=4):
        handle = await app.group(*(echo.s(i) for i in range(6))).enqueue()
        for i in range(6):
            assert await handle.member(i).result(timeout=10) == i
        for _ in range(100):
            group = await handle.status()
            if group is not None and group.is_complete:
                break
            await asyncio.sleep(0.02)
    assert group is not None
    assert sorted(s.payload for s in group.results.values()) == list(range(6))


# -- issue 10 §1: the group is its member tasks -----------------------------------------------------


@pytest_asyncio.fixture
async def clocked(url: str) -> AsyncIterator[tuple[App, FakeClock]]:
    clock = FakeClock()
    the_app = App(url, clock=clock)
    yield the_app, clock
    await the_app.aclose()


async def test_a_member_finished_by_a_stale_worker_fires_no_chord(clocked: tuple[App, FakeClock]) -> None:
    # (a) The member's lease is reaped while it runs; the stale worker's completion is refused,
    # so the callback must not be created (it used to be, and ran while the member was not done).
    app, clock = clocked
    callbacks: list[list[int]] = []

    @app.task(queue="q", max_attempts=1)
    async def member(x: int) -> int:
        if x == 1:
            # Member 0 runs at the same time: its result must be written before the hour passes, or the reap
            # ends it dead too and the chord fails on it instead (its completion is batched, a few ms late).
            store = await app.store()
            sibling = current_task().id.rsplit(":", 1)[0] + ":0"
            for _ in range(500):
                if (await store.get(sibling)).state is State.DONE:
                    break
                await asyncio.sleep(0.01)
            clock.advance(3600)  # this worker's lease times out meanwhile, and the reaper ends it dead
            assert await store.reap() >= 1
        return x

    @app.task(queue="q")
    async def total(results: list[int]) -> int:
        callbacks.append(results)
        return sum(results)

    async with Worker(app, concurrency=2):
        handle = await app.chord([member.s(0), member.s(1)], total.s()).enqueue()
        with pytest.raises(ChordFailed, match=handle.members[1]):
            await handle.result(timeout=20)
    store = await app.store()
    assert (await store.get(handle.members[1])).state is State.DEAD
    with pytest.raises(errors.NotFound):
        await store.get(handle.callback)
    assert callbacks == []


async def test_a_member_cancelled_while_queued_fails_the_chord(app: App) -> None:
    # (b) A member cancelled before it ran used to be never recorded: result() waited to its timeout.
    @app.task(queue="q")
    async def member(x: int) -> int:
        return x

    @app.task(queue="q")
    async def total(results: list[int]) -> int:
        raise AssertionError("the callback must not run")

    handle = await app.chord([member.s(i) for i in range(3)], total.s()).enqueue()
    store = await app.store()
    await store.cancel(handle.members[1])
    async with Worker(app, concurrency=2):
        with pytest.raises(ChordFailed, match=r"cancelled"):
            await handle.result(timeout=10)
    group = await handle.status()
    assert group is not None
    assert group.results[handle.members[1]].state is StatusState.CANCELLED


async def test_a_member_reaped_to_dead_fails_the_chord(clocked: tuple[App, FakeClock]) -> None:
    # (c) A member whose worker vanished is ended dead by the reaper: result() raises, naming it.
    app, clock = clocked

    @app.task(queue="q", max_attempts=1)
    async def member(x: int) -> int:
        return x

    @app.task(queue="q")
    async def total(results: list[int]) -> int:
        raise AssertionError("the callback must not run")

    handle = await app.chord([member.s(i) for i in range(3)], total.s()).enqueue()
    store = await app.store()
    assert await store.claim_task(handle.members[2], "a-worker-that-died", ttl=30) is not None
    clock.advance(31)
    assert await store.reap() == 1
    async with Worker(app, concurrency=2):
        with pytest.raises(ChordFailed, match=handle.members[2]) as failed:
            await handle.result(timeout=10)
    assert failed.value.members == [handle.members[2]]


async def test_a_failing_group_record_cannot_leave_the_chord_one_short(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (d) Recording a member in its group used to be a second write whose errors were swallowed.
    async def unavailable(self: Store, group_id: str, status: TaskStatus) -> None:
        raise errors.BackendUnavailable("the group record could not be written")

    monkeypatch.setattr(Store, "add_group_result", unavailable)

    @app.task(queue="q")
    async def member(x: int) -> int:
        return x

    @app.task(queue="q")
    async def total(results: list[int]) -> int:
        return sum(results)

    async with Worker(app, concurrency=2):
        handle = await app.chord([member.s(i) for i in range(4)], total.s()).enqueue()
        assert await handle.result(timeout=10) == 6


async def test_a_backlogged_group_outlives_its_ttl(clocked: tuple[App, FakeClock]) -> None:
    # The group's TTL used to run from its enqueue: members still queued when it ran out were lost to it.
    app, clock = clocked

    @app.task(queue="q")
    async def member(x: int) -> int:
        return x

    @app.task(queue="q")
    async def total(results: list[int]) -> list[int]:
        return results

    handle = await app.chord(app.group(*(member.s(i) for i in range(3)), ttl=60), total.s()).enqueue()
    clock.advance(3600)  # a long backlog before any worker gets to the members
    store = await app.store()
    assert await store.purge_groups() == 0
    async with Worker(app, concurrency=2):
        assert await handle.result(timeout=10) == [0, 1, 2]
    group = await handle.status()
    assert group is not None
    assert group.is_complete
