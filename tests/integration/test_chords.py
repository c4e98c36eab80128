"""Chords through real worker processes: crashes and volume."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest

import taskstore
from taskstore import State

from .test_worker_processes import Workers, stop_outside_a_write, wait_until
from .workload import app as workload_app
from .workload import chord_total, member

pytestmark = pytest.mark.slow


async def _enqueue_chords(url: str, count: int, size: int, slow_last: float = 0.0) -> list[str]:
    workload_app.url = url
    try:
        handles = []
        for c in range(count):
            members = [member.s(i, slow=slow_last if i == size - 1 else 0.0) for i in range(size)]
            handles.append(await workload_app.chord(members, chord_total.s(tag=f"c{c}")).enqueue())
        return [h.callback for h in handles]
    finally:
        await workload_app.aclose()
        workload_app._store = None
        workload_app.url = None


def test_a_chord_whose_worker_dies_on_the_last_member_fires_once(url: str, tmp_path: Path) -> None:
    workers = Workers(url, tmp_path / "executions.jsonl")

    async def scenario() -> None:
        (callback,) = await _enqueue_chords(url, 1, 20, slow_last=3.0)
        victim = workers.start("chord", concurrency=20)
        async with taskstore.open(url) as store:

            async def last_member_running() -> bool:
                runs = [r for r in workers.executions() if r["kind"] == "member"]
                return len(runs) >= 20

            await wait_until(last_member_running, 30, "the last member to start")
            victim.kill()
            victim.wait()
            workers.start("chord", concurrency=20)

            async def callback_done() -> bool:
                try:
                    return (await store.get(callback)).state is State.DONE
                except taskstore.errors.NotFound:
                    return False

            await wait_until(callback_done, 60, "the callback to run")
            await asyncio.sleep(1.0)
            task = await store.get(callback)
        totals = [r for r in workers.executions() if r["kind"] == "chord_results"]
        assert len(totals) == 1, totals
        assert totals[0]["results"] == [i * 10 for i in range(20)]
        assert task.result is not None
        assert task.result.value == sum(i * 10 for i in range(20))

    try:
        asyncio.run(scenario())
    finally:
        workers.stop_all()


def test_a_stalled_workers_late_member_result_fires_nothing(url: str, tmp_path: Path) -> None:
    # Issue 10 §1 (a): the member's lease is reaped while its worker is stopped, another worker takes it
    # over, and the stale one resumes and finishes it. Its refused completion must not fire the chord:
    # the callback comes from the accepted completion, in the same transaction, and runs once.
    workers = Workers(url, tmp_path / "executions.jsonl")

    async def scenario() -> None:
        (callback,) = await _enqueue_chords(url, 1, 3, slow_last=2.5)
        group_id = callback.rsplit(":", 1)[0]
        members = [f"{group_id}:{i}" for i in range(3)]
        stalled = workers.start("chord", concurrency=3, worker_id="stalled")
        async with taskstore.open(url) as store:

            async def only_the_slow_member_left() -> bool:
                states = [(await store.get(m)).state for m in members]
                return states == [State.DONE, State.DONE, State.CLAIMED]

            await wait_until(only_the_slow_member_left, 30, "the fast members to finish")
            stop_outside_a_write(stalled, url)  # it can neither finish nor renew its 1 s lease
            await asyncio.sleep(1.5)
            assert await store.reap() == 1
            workers.start("chord", concurrency=3, worker_id="rescuer")

            async def taken_over() -> bool:
                task = await store.get(members[2])
                return task.claim is not None and task.claim.worker_id == "rescuer"

            await wait_until(taken_over, 30, "the rescuer to take the member over")
            stalled.send_signal(signal.SIGCONT)  # it wakes believing it still holds the member

            async def callback_done() -> bool:
                try:
                    return (await store.get(callback)).state is State.DONE
                except taskstore.errors.NotFound:
                    return False

            await wait_until(callback_done, 60, "the callback to run")
            await asyncio.sleep(1.0)
            last = await store.get(members[2])
            task = await store.get(callback)
        assert last.finished_at is not None
        assert task.created_at >= last.finished_at  # not enqueued while the member was still running
        totals = [r for r in workers.executions() if r["kind"] == "chord_results"]
        assert len(totals) == 1, totals
        assert totals[0]["results"] == [0, 10, 20]

    try:
        asyncio.run(scenario())
    finally:
        workers.stop_all()


@pytest.mark.timeout(300)  # 2,200 tasks through three processes: minutes on a loaded machine
def test_two_hundred_chords_across_three_workers(url: str, tmp_path: Path) -> None:
    workers = Workers(url, tmp_path / "executions.jsonl")

    async def scenario() -> None:
        callbacks = await _enqueue_chords(url, 200, 10)
        for _ in range(3):
            workers.start("chord", concurrency=20)
        async with taskstore.open(url) as store:

            async def all_callbacks_done() -> bool:
                return await store.count(state=State.DONE, queue="chord") == 200 * 11

            await wait_until(all_callbacks_done, 240, "200 chords to finish")
            for cb in callbacks[:5]:
                assert (await store.get(cb)).state is State.DONE
        totals = [r for r in workers.executions() if r["kind"] == "chord_results"]
        per_tag = Counter(r["tag"] for r in totals)
        assert len(per_tag) == 200
        assert set(per_tag.values()) == {1}
        assert all(r["results"] == [i * 10 for i in range(10)] for r in totals)

    try:
        asyncio.run(scenario())
    finally:
        workers.stop_all()
