"""Groups and chords through real workers in one process, on every backend."""

from __future__ import annotations

import asyncio

import pytest

from taskstore import App, BinaryExponential, StatusState, Worker
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
