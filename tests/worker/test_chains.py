"""Chains through real workers in one process, on every backend (SPEC §9)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from taskstore import App, BinaryExponential, FakeClock, State, StatusState, Worker, errors
from taskstore.canvas import ChainFailed

pytestmark = pytest.mark.asyncio


async def test_results_are_threaded_through_three_links(app: App) -> None:
    @app.task(queue="q")
    async def fetch(x: int) -> int:
        return x + 1

    @app.task(queue="q")
    def scale(previous: int, factor: int) -> int:
        return previous * factor

    @app.task(queue="q")
    async def show(previous: int, *, prefix: str) -> str:
        return f"{prefix}{previous}"

    handle = await app.chain(fetch.s(4), scale.s(10), show.s(prefix="n=")).enqueue()
    assert handle.links == [f"{handle.id}:{i}" for i in range(3)]
    async with Worker(app, concurrency=4):
        assert await handle.result(timeout=20) == "n=50"
        assert await handle.link(1).result(timeout=5) == 50
    group = await handle.status()
    assert group is not None
    assert group.is_complete
    assert [group.results[i].payload for i in handle.links] == [5, 50, "n=50"]


async def test_a_failing_middle_link_stops_the_chain_and_names_it(app: App) -> None:
    ran: list[str] = []

    @app.task(queue="q")
    async def first() -> int:
        ran.append("first")
        return 1

    @app.task(queue="q", max_attempts=2, retry=BinaryExponential(base=0.01, cap=0.02))
    async def middle(previous: int) -> int:
        ran.append("middle")
        raise ValueError("the middle is broken")

    @app.task(queue="q")
    async def last(previous: int) -> int:
        raise AssertionError("no link after a failed one may run")

    handle = await app.chain(first.s(), middle.s(), last.s()).enqueue()
    async with Worker(app, concurrency=2):
        with pytest.raises(ChainFailed, match=rf"link 1 '{handle.links[1]}' .*ValueError: the middle is broken"):
            await handle.result(timeout=20)
    assert ran == ["first", "middle", "middle"]
    store = await app.store()
    assert (await store.get(handle.links[1])).state is State.DEAD
    with pytest.raises(errors.NotFound):
        await store.get(handle.links[2])
    group = await handle.status()
    assert group is not None
    assert group.results[handle.links[1]].state is StatusState.FAILED


async def test_a_cancelled_first_link_fails_the_chain(app: App) -> None:
    @app.task(queue="q")
    async def step(x: int = 0) -> int:
        return x

    handle = await app.chain(step.s(1), step.s()).enqueue()
    await handle.link(0).cancel()
    with pytest.raises(ChainFailed, match="was cancelled") as failed:
        await handle.result(timeout=5)
    assert (failed.value.index, failed.value.link_id) == (0, handle.links[0])


async def test_a_chain_of_one_link(app: App) -> None:
    @app.task(queue="q")
    async def only(x: int) -> int:
        return x * 3

    async with Worker(app, concurrency=1):
        handle = await app.chain(only.s(5)).enqueue()
        assert await handle.result(timeout=10) == 15
    assert await (await app.store()).count() == 1


async def test_a_link_reaped_and_rerun_enqueues_its_successor_once(clocked: tuple[App, FakeClock]) -> None:
    # The first run of the link loses its lease while it runs (the reaper fails it), finishes anyway and
    # is refused; the second run finishes. The successor is created by the accepted completion only.
    app, clock = clocked
    runs: list[int] = []
    successors: list[str] = []

    @app.task(queue="q", max_attempts=2, retry=BinaryExponential(base=1.0, cap=1.0))
    async def slow(x: int) -> str:
        runs.append(x)
        if len(runs) == 1:
            clock.advance(3600)
            assert await (await app.store()).reap() == 1  # a lost lease: the retry is due at once
            return "stale"
        return "fresh"

    @app.task(queue="q")
    async def then(previous: str) -> str:
        successors.append(previous)
        return previous.upper()

    handle = await app.chain(slow.s(1), then.s()).enqueue()
    async with Worker(app, concurrency=2) as worker:
        assert await handle.result(timeout=20) == "FRESH"
    assert (worker.stats.succeeded, worker.stats.lost) == (2, 1)  # the stale run's completion was refused
    assert runs == [1, 1]
    assert successors == ["fresh"]
    store = await app.store()
    assert [t.id for t in (await store.list(queue="q")).items] == handle.links
    first = await store.get(handle.links[0])
    assert first.attempts == 2
    assert first.result is not None
    assert first.result.value == "fresh"


async def test_result_times_out_while_a_link_is_waiting(app: App) -> None:
    @app.task(queue="q")
    async def step() -> None:
        return None

    handle = await app.chain(step.s(), step.s()).enqueue()
    with pytest.raises(TimeoutError, match=handle.links[0]):
        await handle.result(timeout=0.05)


async def test_an_empty_chain_is_invalid(app: App) -> None:
    with pytest.raises(errors.InvalidTask):
        app.chain()


async def test_a_fifty_link_chain_on_sqlite(tmp_path: Path) -> None:
    async with App(f"sqlite:///{tmp_path / 'long.db'}") as app:

        @app.task(queue="q")
        async def step(previous: int) -> int:
            return previous + 1

        @app.task(queue="q")
        async def start() -> int:
            return 0

        started = time.monotonic()
        handle = await app.chain(start.s(), *(step.s() for _ in range(49))).enqueue()
        async with Worker(app, concurrency=4):
            assert await handle.result(timeout=60) == 49
        elapsed = time.monotonic() - started
        group = await handle.status()
        assert group is not None
        assert group.completed == 50
        print(f"50-link chain on SQLite through one worker: {elapsed:.2f}s")
