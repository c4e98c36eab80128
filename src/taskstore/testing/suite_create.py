"""Creating tasks: defaults, validation, idempotent ids, all-or-nothing batches (SPEC §1, §2, §3)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from taskstore import FakeClock, NewTask, State, Store, errors
from taskstore.retry import BinaryExponential

from ._base import SuiteBase, create, new


class CreateTests(SuiteBase):
    async def test_create_fills_documented_defaults(self, store: Store, clock: FakeClock) -> None:
        task = await store.create(new(args={"to": "a@b"}))
        assert task.state is State.QUEUED
        assert (task.attempts, task.version, task.max_attempts) == (0, 1, 10)
        assert task.processing_timeout == 60.0
        assert task.run_at == task.created_at == task.updated_at == task.last_enqueued_at == clock.now()
        assert task.claim is None and task.result is None and task.finished_at is None
        assert task.args == {"to": "a@b"}

    async def test_get_returns_what_create_stored(self, store: Store) -> None:
        task = await store.create(new(args={"x": [1, 2, {"y": None}]}, context={"trace": "t1"}, reference_id="ref-9"))
        got = await store.get(task.id)
        assert got == task
        assert got.context == {"trace": "t1"} and got.reference_id == "ref-9"

    async def test_caller_supplied_id_is_kept(self, store: Store) -> None:
        task = await store.create(new(id="order-17"))
        assert task.id == "order-17"
        assert (await store.get("order-17")).id == "order-17"

    async def test_taken_id_is_already_exists_and_keeps_the_first(self, store: Store) -> None:
        first = await store.create(new(id="dup", args=1))
        with pytest.raises(errors.AlreadyExists):
            await store.create(new(id="dup", args=2))
        assert (await store.get("dup")) == first

    async def test_generated_ids_are_unique_and_time_ordered(self, store: Store) -> None:
        ids = [t.id for t in await create(store, 200)]
        ids += [(await store.create(new())).id for _ in range(20)]
        assert len(set(ids)) == len(ids)
        assert ids == sorted(ids)

    @pytest.mark.parametrize("queue", ["", "Upper", "has space", "a" * 65, "mail\n", "-lead", "é", "q/x"])
    async def test_invalid_queue_names_are_rejected(self, store: Store, queue: str) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.create(NewTask(queue, "k"))
        assert await store.count() == 0

    @pytest.mark.parametrize("queue", ["a", "mail", "a" * 64, "billing.v2", "x:y-z_1", "0"])
    async def test_valid_queue_names_are_accepted(self, store: Store, queue: str) -> None:
        assert (await store.create(NewTask(queue, "k"))).queue == queue

    @pytest.mark.parametrize("kind", ["", "   "])
    async def test_empty_kind_is_rejected(self, kind: str) -> None:
        with pytest.raises(errors.InvalidTask):
            NewTask("q", kind)

    @pytest.mark.parametrize("args", [object(), {1, 2}, math.nan, {"x": math.inf}, b"raw"])
    async def test_unencodable_args_are_invalid_and_store_nothing(self, store: Store, args: Any) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.create(new(args=args))
        assert await store.count() == 0

    async def test_unencodable_context_is_invalid(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.create(new(context={"when": object()}))

    @pytest.mark.parametrize(
        "options",
        [
            {"max_attempts": 0},
            {"max_attempts": True},
            {"processing_timeout": 0},
            {"processing_timeout": -1.0},
            {"priority": 1.5},
            {"reference_id": ""},
            {"id": ""},
            {"context": ["not", "a", "mapping"]},
        ],
    )
    async def test_bad_options_are_invalid(self, options: dict[str, Any]) -> None:
        with pytest.raises(errors.InvalidTask):
            new(**options)

    async def test_naive_run_at_is_rejected(self, clock: FakeClock) -> None:
        with pytest.raises(errors.InvalidTask):
            new(run_at=clock.now().replace(tzinfo=None))

    async def test_options_are_stored(self, store: Store, clock: FakeClock) -> None:
        run_at = clock.now() + timedelta(minutes=5)
        task = await store.create(
            new(
                priority=7,
                run_at=run_at,
                max_attempts=3,
                processing_timeout=timedelta(seconds=90),
                recurring_id="nightly",
                group_id="g1",
                retry=BinaryExponential(base=2.0),
            )
        )
        got = await store.get(task.id)
        assert (got.priority, got.run_at, got.max_attempts, got.processing_timeout) == (7, run_at, 3, 90.0)
        assert (got.recurring_id, got.group_id) == ("nightly", "g1")
        assert got.retry == BinaryExponential(base=2.0)

    async def test_create_many_returns_tasks_in_order(self, store: Store) -> None:
        tasks = await create(store, 50)
        assert [t.args for t in tasks] == [{"n": i} for i in range(50)]
        page = await store.list(limit=100)
        assert [t.id for t in page.items] == [t.id for t in tasks]

    async def test_create_many_duplicate_in_batch_stores_none(self, store: Store) -> None:
        with pytest.raises(errors.AlreadyExists):
            await store.create_many([new(id="a"), new(id="b"), new(id="a")])
        assert await store.count() == 0

    async def test_create_many_duplicate_of_stored_stores_none(self, store: Store) -> None:
        await store.create(new(id="taken"))
        with pytest.raises(errors.AlreadyExists):
            await store.create_many([new(id="fresh-1"), new(id="taken"), new(id="fresh-2")])
        assert await store.count() == 1
        with pytest.raises(errors.NotFound):
            await store.get("fresh-1")

    async def test_create_many_with_one_bad_payload_stores_none(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.create_many([new(args=1), new(args=object())])
        assert await store.count() == 0

    async def test_create_many_empty_batch_is_invalid(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.create_many([])

    async def test_get_missing_is_not_found(self, store: Store) -> None:
        with pytest.raises(errors.NotFound):
            await store.get("nope")

    async def test_payload_is_not_shared_with_the_caller(self, store: Store) -> None:
        args = {"items": [1]}
        task = await store.create(new(args=args))
        args["items"].append(2)
        assert (await store.get(task.id)).args == {"items": [1]}
