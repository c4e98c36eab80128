"""Statuses of the result backend: set, get, expire and list (SPEC §4, §8)."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import pytest

from taskstore import Failure, FakeClock, StatusState, Store, SystemClock, errors

from ._base import MULTIPROCESS, OpenStore, SuiteBase, claim_one, create, new


class StatusTests(SuiteBase):
    async def test_a_stored_task_is_its_own_status(self, store: Store) -> None:
        (task,) = await create(store, context={"team": "ops"})
        status = await store.get_status(task.id)
        assert status is not None
        assert (status.state, status.attempt) == (StatusState.QUEUED, 0)
        assert status.meta == {"team": "ops", "queue": "q", "kind": "k"}
        running = await claim_one(store)
        assert (await store.get_status(task.id)).state is StatusState.RUNNING  # type: ignore[union-attr]
        await store.mark_done(running, result={"ok": 1})
        done = await store.get_status(task.id)
        assert done is not None
        assert (done.state, done.payload, done.attempt) == (StatusState.SUCCEEDED, {"ok": 1}, 1)

    @pytest.mark.parametrize(("max_attempts", "expected"), [(2, StatusState.RETRIED), (1, StatusState.FAILED)])
    async def test_failures_map_to_retried_or_failed(
        self, store: Store, max_attempts: int, expected: StatusState
    ) -> None:
        (task,) = await create(store, max_attempts=max_attempts)
        await store.mark_failed(await claim_one(store), Failure("Boom", "broke"))
        status = await store.get_status(task.id)
        assert status is not None
        assert status.state is expected
        assert status.error is not None
        assert status.error["type"] == "Boom"

    async def test_cancelled_and_archived_tasks_keep_their_status(self, store: Store, clock: FakeClock) -> None:
        (task,) = await create(store)
        await store.cancel(task.id)
        assert (await store.get_status(task.id)).state is StatusState.CANCELLED  # type: ignore[union-attr]
        await store.archive(before=clock.now())
        assert (await store.get_status(task.id)).state is StatusState.CANCELLED  # type: ignore[union-attr]

    async def test_set_status_keeps_a_record_for_unknown_ids(self, store: Store, clock: FakeClock) -> None:
        first = await store.set_status("ext-1", StatusState.RUNNING, meta={"queue": "remote"}, ttl=60)
        clock.advance(5)
        second = await store.set_status("ext-1", "succeeded", payload=[1, 2], attempt=2, ttl=60)
        assert second.created_at == first.created_at  # overwritten, created_at kept
        assert second.updated_at == clock.now()
        got = await store.get_status("ext-1")
        assert got is not None
        assert (got.state, got.payload, got.attempt, got.meta) == (StatusState.SUCCEEDED, [1, 2], 2, {})

    async def test_set_status_takes_the_librarys_own_failure(self, store: Store) -> None:
        failure = Failure("Timeout", "took too long", traceback="tb", retryable=False, data={"after": 30})
        stored = await store.set_status("ext-f", StatusState.FAILED, error=failure, attempt=3)
        got = await store.get_status("ext-f")
        assert got is not None
        for status in (stored, got):
            assert status.error == failure.to_json()
            assert Failure.from_json(status.error) == failure

    async def test_status_records_expire_on_the_store_clock(self, store: Store, clock: FakeClock) -> None:
        await store.set_status("ext", StatusState.QUEUED, ttl=10)
        clock.advance(9)
        assert await store.get_status("ext") is not None
        clock.advance(1)
        assert await store.get_status("ext") is None
        assert (await store.list_statuses()).items == []

    async def test_expire_resets_the_deadline(self, store: Store, clock: FakeClock) -> None:
        await store.set_status("ext", StatusState.RUNNING, ttl=10)
        await store.expire("ext", 100)
        clock.advance(50)
        assert await store.get_status("ext") is not None
        await store.expire("ext", timedelta(seconds=1))
        clock.advance(1)
        assert await store.get_status("ext") is None
        await store.expire("never-seen", 10)  # a no-op

    async def test_a_task_in_the_store_cannot_be_given_another_status(self, store: Store) -> None:
        (task,) = await create(store)
        with pytest.raises(errors.InvalidTask):
            await store.set_status(task.id, StatusState.SUCCEEDED)

    async def test_bad_status_input_is_invalid(self, store: Store) -> None:
        with pytest.raises(ValueError, match="sleeping"):
            await store.set_status("x", "sleeping")
        with pytest.raises(errors.InvalidTask):
            await store.set_status("x", StatusState.RUNNING, payload=object())
        with pytest.raises(errors.InvalidTask):
            await store.set_status("x", StatusState.RUNNING, ttl=0)

    async def test_list_statuses_newest_first_across_tasks_and_records(self, store: Store, clock: FakeClock) -> None:
        await store.set_status("r1", StatusState.SUCCEEDED, meta={"queue": "q"})
        clock.advance(1)
        await store.create(new(id="t1"))
        clock.advance(1)
        await store.set_status("r2", StatusState.FAILED, meta={"queue": "other", "tag": "x"})
        clock.advance(1)
        await store.create(new(id="t2"))
        assert [s.id for s in (await store.list_statuses()).items] == ["t2", "r2", "t1", "r1"]
        assert [s.id for s in (await store.list_statuses(queue="q")).items] == ["t2", "t1", "r1"]
        assert [s.id for s in (await store.list_statuses(state="queued")).items] == ["t2", "t1"]
        assert [s.id for s in (await store.list_statuses(meta={"tag": None})).items] == ["r2"]
        assert [s.id for s in (await store.list_statuses(meta={"tag": "y"})).items] == []

    async def test_list_statuses_pages_with_a_cursor(self, store: Store, clock: FakeClock) -> None:
        for i in range(7):
            clock.advance(1)
            if i % 2:
                await store.set_status(f"r{i}", StatusState.RUNNING)
            else:
                await store.create(new(id=f"t{i}"))
        seen, cursor = [], None
        while True:
            page = await store.list_statuses(limit=3, cursor=cursor)
            seen += [s.id for s in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == ["t6", "r5", "t4", "r3", "t2", "r1", "t0"]
        with pytest.raises(errors.InvalidTask):
            await store.list_statuses(cursor="bogus")


class WatchTests(SuiteBase):
    async def test_watch_yields_each_change_in_order_and_ends(self, store: Store) -> None:
        (task,) = await create(store)
        seen: list[StatusState] = []

        async def watch() -> None:
            async for status in store.watch(task.id):
                seen.append(status.state)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.05)
        running = await claim_one(store)
        await asyncio.sleep(0.05)
        await store.mark_done(running, result="ok")
        await asyncio.wait_for(watcher, 5)
        assert seen == [StatusState.QUEUED, StatusState.RUNNING, StatusState.SUCCEEDED]

    async def test_a_slow_watcher_in_this_process_sees_every_change_in_order(
        self, store: Store, clock: FakeClock
    ) -> None:
        (task,) = await create(store, max_attempts=3)
        stream = store.watch(task.id)
        first = await anext(stream)
        # The consumer reads nothing while the task runs, fails, is retried and succeeds.
        running = await claim_one(store)
        await store.mark_failed(running, Failure("Boom", "broke"))
        clock.advance(3600)
        again = await claim_one(store)
        await store.report_in(again, data={"pct": 50})
        await store.acknowledge_many([(again, "ok")])  # returns no rows: the watcher reads the task back
        rest = [status async for status in stream]
        assert [(s.state, s.attempt) for s in [first, *rest]] == [
            (StatusState.QUEUED, 0),
            (StatusState.RUNNING, 1),
            (StatusState.RETRIED, 1),
            (StatusState.RUNNING, 2),
            (StatusState.SUCCEEDED, 2),
        ]
        assert rest[1].error is not None
        assert rest[1].error["type"] == "Boom"
        assert rest[-1].payload == "ok"

    async def test_a_slow_watcher_sees_every_status_record_in_order(self, store: Store) -> None:
        await store.set_status("ext", StatusState.QUEUED)
        stream = store.watch("ext")
        first = await anext(stream)
        await store.set_status("ext", StatusState.RUNNING, payload={"pct": 10}, attempt=1)
        await store.set_status("ext", StatusState.RUNNING, payload={"pct": 90}, attempt=1)
        await store.set_status("ext", StatusState.RETRIED, error=Failure("Flaky"), attempt=1)
        await store.set_status("ext", StatusState.SUCCEEDED, payload="done", attempt=2)
        rest = [status async for status in stream]
        assert [(s.state, s.payload) for s in [first, *rest]] == [
            (StatusState.QUEUED, None),
            (StatusState.RUNNING, {"pct": 10}),
            (StatusState.RUNNING, {"pct": 90}),
            (StatusState.RETRIED, None),
            (StatusState.SUCCEEDED, "done"),
        ]

    async def test_watch_of_a_finished_task_yields_once(self, store: Store) -> None:
        (task,) = await create(store)
        await store.cancel(task.id)
        statuses = [s async for s in store.watch(task.id)]
        assert [s.state for s in statuses] == [StatusState.CANCELLED]

    async def test_watch_waits_for_a_status_that_does_not_exist_yet(self, store: Store) -> None:
        async def later() -> None:
            await asyncio.sleep(0.1)
            await store.set_status("ext", StatusState.RUNNING)
            await asyncio.sleep(0.05)
            await store.set_status("ext", StatusState.FAILED, error={"type": "X"})

        feeding = asyncio.create_task(later())
        states = [s.state async for s in store.watch("ext")]
        await feeding
        assert states == [StatusState.RUNNING, StatusState.FAILED]

    async def test_a_watcher_in_another_process_sees_every_change(self, open_store: OpenStore, store_url: str) -> None:
        self.need(MULTIPROCESS)
        store = await open_store(clock=SystemClock())
        task = await store.create(new(id="watched"))
        watcher = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WATCHER, store_url, task.id, stdout=asyncio.subprocess.PIPE
        )
        assert watcher.stdout is not None
        states = [await _next_line(watcher.stdout)]  # the watcher is up: it has seen the current status
        running = await claim_one(store)
        states.append(await _next_line(watcher.stdout))  # each change arrives without polling's help
        await store.report_in(running, data={"pct": 50})
        await store.mark_done(running, result=42)
        out, _ = await asyncio.wait_for(watcher.communicate(), 30)
        states += out.decode().split()
        assert watcher.returncode == 0
        # Quick changes made elsewhere may merge, but never reorder; the first and the last always arrive.
        assert states[:2] == ["queued", "running"]
        assert states[-1] == "succeeded"
        order = ["queued", "running", "succeeded"]
        assert [order.index(s) for s in states] == sorted(order.index(s) for s in states)


async def _next_line(stream: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(stream.readline(), 30)).decode().strip()


_WATCHER = """
import asyncio, sys
import taskstore

async def main(url, task_id):
    async with taskstore.open(url) as store:
        async for status in store.watch(task_id):
            print(status.state.value, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""
