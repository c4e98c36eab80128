"""The App's sync side: registration checks and the sync facade."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from taskstore import App, Worker, errors


def test_enqueue_sync_works_without_a_running_loop(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path / 'sync.db'}")

    @app.task(queue="q")
    def add(a: int, b: int) -> int:
        return a + b

    handle = add.enqueue_sync(2, 3)
    assert handle.id
    with pytest.raises(TimeoutError):
        handle.result_sync(timeout=0.05)

    async def work() -> int:
        async with Worker(app, concurrency=2):
            return await app.handle(handle.id).result(timeout=10)

    assert asyncio.run(work()) == 5
    app.close()


def test_the_task_function_is_still_callable() -> None:
    app = App("memory://")

    @app.task
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42


def test_two_tasks_cannot_share_a_kind() -> None:
    app = App("memory://")

    @app.task(kind="same")
    def one() -> None: ...

    with pytest.raises(errors.ConfigError):

        @app.task(kind="same")
        def two() -> None: ...


def test_bad_task_options_fail_at_registration() -> None:
    app = App("memory://")
    with pytest.raises(errors.InvalidTask):
        app.task(queue="Bad Queue")
    with pytest.raises(errors.InvalidTask):
        app.task(timeout=0)
    with pytest.raises(errors.InvalidTask):
        app.task(max_attempts=0)


def test_a_chain_enqueue_sync_and_result_sync(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path / 'sync.db'}")

    @app.task(queue="q")
    def add(a: int, b: int) -> int:
        return a + b

    handle = app.chain(add.s(1, 2), add.s(10)).enqueue_sync()
    with pytest.raises(TimeoutError):
        handle.result_sync(timeout=0.05)

    async def work() -> int:
        async with Worker(app, concurrency=2):
            return int(await handle.result(timeout=10))

    assert asyncio.run(work()) == 13
    assert handle.result_sync(timeout=5) == 13
    app.close()


def test_groups_and_chords_enqueue_sync(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path / 'sync.db'}")

    @app.task(queue="q")
    def echo(x: int) -> int:
        return x

    @app.task(queue="q")
    def total(results: list[int]) -> int:
        return sum(results)

    group = app.group(echo.s(1), echo.s(2)).enqueue_sync()
    chord = app.chord([echo.s(3), echo.s(4)], total.s()).enqueue_sync()

    async def work() -> tuple[int, int]:
        async with Worker(app, concurrency=2):
            return await group.member(1).result(timeout=10), await chord.result(timeout=10)

    assert asyncio.run(work()) == (2, 7)
    app.close()
