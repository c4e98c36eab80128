"""Bad input is refused at the boundary with a typed error, the same on every backend.

A value no backend can store or compute with must never be accepted: taken in, it fails later for
every task of the store (a lease of 1e12 s makes each claim overflow; an unbounded backoff makes
``mark_failed`` and every ``reap`` overflow). Each bound lives in ``taskstore.limits``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskstore import (
    Failure,
    FakeClock,
    NewTask,
    RecurringTask,
    State,
    StatusState,
    Store,
    TaskStatus,
    WorkerHeartbeat,
    errors,
    limits,
)
from taskstore.retry import BinaryExponential, Exponential

from . import _values as v
from ._base import SuiteBase, claim_one, create, new

TOO_LONG = [1e12, limits.MAX_DURATION * 2, timedelta(days=999_999_999), math.inf, math.nan]
BAD_NAMES = ["", "a\x00b", "\x00", "a\ud800", "\udfffz", "x" * (limits.MAX_NAME_LENGTH + 1), 7, None]

# What a refusal of caller input may be; BackendUnavailable (and anything untyped) means the input got through.
REFUSALS = (
    errors.InvalidTask,
    errors.NotFound,
    errors.AlreadyExists,
    errors.LeaseError,
    errors.StaleVersion,
    errors.ReportFromThePast,
)


async def still_works(store: Store, clock: FakeClock) -> None:
    """Every claimable task can be claimed and failed, the reaper and scheduler run, a normal task completes."""
    clock.advance(61)
    await store.reap()
    await store.enqueue_due_recurring()
    for task in await store.claim("checker", None, limit=1000):
        await store.mark_failed(task, Failure("Checked", "the liveness check fails every task it claims"))
    await store.list(limit=1000)
    await store.count()
    await store.list_statuses(limit=100)
    await store.list_recurring()
    await store.list_worker_heartbeats()
    await store.archive(older_than=0)
    made = await store.create(NewTask("normal-check", "k", {"n": 1}))
    claimed = await store.claim("checker", ["normal-check"], limit=1)
    assert [t.id for t in claimed] == [made.id]
    assert (await store.mark_done(claimed[0], result="ok")).state is State.DONE


class ValidationTests(SuiteBase):
    # -- task fields ------------------------------------------------------------------------------

    @pytest.mark.parametrize("timeout", TOO_LONG)
    async def test_a_lease_past_the_bounds_is_refused_and_claims_go_on(
        self, store: Store, clock: FakeClock, timeout: Any
    ) -> None:
        with pytest.raises(errors.InvalidTask, match="processing_timeout"):
            await store.create(new(processing_timeout=timeout))
        longest = await store.create(new(processing_timeout=limits.MAX_DURATION))
        claimed = await claim_one(store)
        assert claimed.id == longest.id
        await still_works(store, clock)

    @pytest.mark.parametrize(
        "make",
        [
            lambda: Exponential(base=1e300, cap=math.inf),
            lambda: Exponential(base=math.nan),
            lambda: Exponential(cap=1e12),
            lambda: Exponential(jitter=math.nan),
            lambda: Exponential(base="2"),  # type: ignore[arg-type]
            lambda: BinaryExponential(cap=math.inf),
            lambda: BinaryExponential(base=-1.0),
        ],
    )
    async def test_a_retry_policy_past_the_bounds_is_refused(self, make: Callable[[], Any]) -> None:
        with pytest.raises(errors.InvalidTask):
            make()

    async def test_the_longest_backoff_still_fails_and_reaps(self, store: Store, clock: FakeClock) -> None:
        huge = Exponential(base=limits.MAX_DURATION, cap=limits.MAX_DURATION, jitter=0.0)
        await store.create(new(retry=huge, max_attempts=limits.INT32_MAX, processing_timeout=1.0))
        task = await claim_one(store)
        failed = await store.mark_failed(task, Failure("Boom"))
        assert failed.state is State.FAILED
        assert failed.run_at == clock.now() + timedelta(seconds=limits.MAX_DURATION)
        await store.create(new(retry=huge, processing_timeout=1.0, id="reaped"))
        await claim_one(store)
        clock.advance(2)
        assert await store.reap() == 1
        assert (await store.get("reaped")).state is State.FAILED
        await still_works(store, clock)

    @pytest.mark.parametrize(
        "options",
        [
            {"max_attempts": 2**31},
            {"max_attempts": 2**63},
            {"priority": 2**31},
            {"priority": -(2**31) - 1},
            {"run_at": datetime.max.replace(tzinfo=UTC)},
            {"run_at": datetime.max.replace(tzinfo=UTC) - timedelta(days=365)},
            {"run_at": datetime.min.replace(tzinfo=UTC)},
        ],
    )
    async def test_numbers_and_times_past_the_bounds_are_refused(
        self, store: Store, clock: FakeClock, options: dict[str, Any]
    ) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.create(new(**options))
        assert await store.count() == 0
        await still_works(store, clock)

    @pytest.mark.parametrize("field", ["id", "reference_id", "recurring_id", "group_id", "kind"])
    @pytest.mark.parametrize("value", ["a\x00b", "a\ud800", "x" * (limits.MAX_NAME_LENGTH + 1)])
    async def test_names_without_a_text_form_are_refused(
        self, store: Store, clock: FakeClock, field: str, value: str
    ) -> None:
        with pytest.raises(errors.InvalidTask, match=field):
            await store.create(new(**{field: value}))
        assert await store.count() == 0
        await still_works(store, clock)

    @pytest.mark.parametrize("context", [{"k": "a\x00b"}, {"a\x00": 1}, {"k": ["\ud800"]}])
    async def test_context_with_text_no_backend_stores_is_refused(
        self, store: Store, clock: FakeClock, context: dict[str, Any]
    ) -> None:
        with pytest.raises(errors.InvalidTask, match="context"):
            await store.create(new(context=context))
        await still_works(store, clock)

    async def test_an_escaped_backslash_before_u0000_is_plain_text(self, store: Store) -> None:
        task = await store.create(new(context={"path": "C:\\u0000"}))
        assert (await store.get(task.id)).context == {"path": "C:\\u0000"}

    # -- store methods ----------------------------------------------------------------------------

    @pytest.mark.parametrize("name", BAD_NAMES)
    async def test_reads_and_claims_with_a_bad_name_are_refused(self, store: Store, name: Any) -> None:
        await create(store)
        for call in (
            lambda: store.get(name),
            lambda: store.get_archived(name),
            lambda: store.cancel(name),
            lambda: store.claim(name, ["q"]),
            lambda: store.claim_task(name, "w"),
            lambda: store.outstanding_count(name),
            lambda: store.get_status(name),
        ):
            with pytest.raises(errors.InvalidTask):
                await call()

    @pytest.mark.parametrize("state", ["bogus", "QUEUED", "", 3])
    async def test_an_unknown_state_is_refused(self, store: Store, state: Any) -> None:
        with pytest.raises(errors.InvalidTask, match="state"):
            await store.list(state=state)
        with pytest.raises(errors.InvalidTask, match="state"):
            await store.count(state=state)
        with pytest.raises(errors.InvalidTask, match="state"):
            await store.list_statuses(state=state)
        with pytest.raises(errors.InvalidTask, match="state"):
            await store.set_status("ext", state)

    @pytest.mark.parametrize("cursor", ["s" + "9" * 30, "s²", "s-1", "s", "s1 ", 5])
    async def test_a_cursor_out_of_range_is_refused(self, store: Store, cursor: Any) -> None:
        await create(store)
        with pytest.raises(errors.InvalidTask, match="cursor"):
            await store.list(cursor=cursor)

    @pytest.mark.parametrize(
        "cursor", ["st" + "9" * 30 + "|", "st|" + "9" * 25 + ":x", "st|1:a\x00", "st|1:", "st²|", "st 1|", 5]
    )
    async def test_a_status_cursor_out_of_range_is_refused(self, store: Store, cursor: Any) -> None:
        await store.set_status("ext", StatusState.RUNNING)
        with pytest.raises(errors.InvalidTask, match="cursor"):
            await store.list_statuses(cursor=cursor)

    @pytest.mark.parametrize("meta", [5, "key", ["key"]])
    async def test_a_meta_filter_that_is_not_a_mapping_is_refused(self, store: Store, meta: Any) -> None:
        with pytest.raises(errors.InvalidTask, match="meta"):
            await store.list_statuses(meta=meta)

    @pytest.mark.parametrize("limit", [0, -1, 2**31, 2**63, True, 1.5])
    async def test_a_limit_out_of_range_is_refused(self, store: Store, limit: Any) -> None:
        with pytest.raises(errors.InvalidTask, match="limit"):
            await store.list(limit=limit)
        with pytest.raises(errors.InvalidTask, match="limit"):
            await store.claim("w", limit=limit)
        with pytest.raises(errors.InvalidTask, match="limit"):
            await store.find_available(limit=limit)

    @pytest.mark.parametrize("seconds", [*TOO_LONG, -1.0, "5"])
    async def test_durations_past_the_bounds_are_refused(self, store: Store, clock: FakeClock, seconds: Any) -> None:
        (task,) = await create(store)
        for call in (
            lambda: store.archive(older_than=seconds),
            lambda: store.claim_task(task.id, "w", ttl=seconds),
            lambda: store.claim("w", ["q"], block_for=seconds),
            lambda: store.set_status("ext", StatusState.RUNNING, ttl=seconds),
            lambda: store.expire("ext", seconds),
            lambda: store.init_group("g", 1, ttl=seconds),
        ):
            with pytest.raises(errors.InvalidTask):
                await call()
        claimed = await claim_one(store)
        with pytest.raises(errors.InvalidTask, match="extend_by"):
            await store.report_in(claimed, extend_by=seconds)
        await store.mark_done(claimed)
        await still_works(store, clock)

    @pytest.mark.parametrize(
        "before", [datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC), datetime(2030, 1, 1)]
    )
    async def test_an_archive_cutoff_out_of_range_is_refused(self, store: Store, before: datetime) -> None:
        with pytest.raises(errors.InvalidTask, match="before"):
            await store.archive(before=before)

    @pytest.mark.parametrize(
        "changes",
        [
            {"attempts": 2**31},
            {"attempts": -1},
            {"run_at": datetime.max.replace(tzinfo=UTC)},
            {"state": "bogus"},
        ],
    )
    async def test_update_with_values_past_the_bounds_is_refused(
        self, store: Store, clock: FakeClock, changes: dict[str, Any]
    ) -> None:
        (task,) = await create(store)
        with pytest.raises(errors.InvalidTask):
            await store.update(task.replace(**changes))
        assert await store.get(task.id) == task
        await still_works(store, clock)

    async def test_report_data_with_nul_is_refused_and_the_lease_kept(self, store: Store) -> None:
        await create(store)
        claimed = await claim_one(store)
        with pytest.raises(errors.InvalidTask, match="report data"):
            await store.report_in(claimed, data={"note": "a\x00b"})
        assert (await store.mark_done(claimed)).state is State.DONE

    @pytest.mark.parametrize(
        "call",
        [
            lambda s: s.set_status("ext", StatusState.RUNNING, payload="a\x00"),
            lambda s: s.set_status("ext", StatusState.RUNNING, meta={"k": "\x00"}),
            lambda s: s.set_status("ext", StatusState.RUNNING, attempt=2**31),
            lambda s: s.init_group("g", 2**31),
            lambda s: s.init_group("g", 1, meta={"k": "\x00"}),
            lambda s: s.add_group_result("g", TaskStatus("m", "bogus")),  # type: ignore[arg-type]
            lambda s: s.add_group_result("g", TaskStatus("m", StatusState.SUCCEEDED, attempt=2**31)),
            lambda s: s.claim_chord("g", "a\x00"),
            lambda s: s.claim_chord("g", "cb", datetime.max.replace(tzinfo=UTC)),
            lambda s: s.set_worker_heartbeat(WorkerHeartbeat("w", pid=2**31)),
            lambda s: s.set_worker_heartbeat(WorkerHeartbeat("w", inflight=-1)),
            lambda s: s.set_worker_heartbeat(WorkerHeartbeat("w", host="h\x00")),
            lambda s: s.set_worker_heartbeat(WorkerHeartbeat("w", queues="q")),
            lambda s: s.set_worker_heartbeat(WorkerHeartbeat("w", extras={"x": "\x00"})),
            lambda s: s.set_worker_heartbeat(WorkerHeartbeat("w", started_at=datetime(2030, 1, 1))),
        ],
    )
    async def test_status_group_and_heartbeat_values_past_the_bounds_are_refused(
        self, store: Store, clock: FakeClock, call: Callable[[Store], Awaitable[Any]]
    ) -> None:
        await store.init_group("g", 1)
        with pytest.raises(errors.InvalidTask):
            await call(store)
        await still_works(store, clock)

    async def test_a_group_whose_callback_id_would_be_too_long_is_refused(self, store: Store, clock: FakeClock) -> None:
        group_id = "g" * (limits.MAX_NAME_LENGTH - 2)  # its members' ids ("g…:0") fit; "g…:callback" would not
        with pytest.raises(errors.InvalidTask, match="callback id"):
            await store.create_group(group_id, [new()], callback=new(kind="cb"))
        with pytest.raises(errors.InvalidTask, match="group meta"):
            await store.create_group("g", [new()], meta=["not", "a", "mapping"])  # type: ignore[arg-type]
        assert await store.count() == 0
        await still_works(store, clock)

    # -- schedules --------------------------------------------------------------------------------

    @pytest.mark.parametrize("schedule", ["0 0 30 2 *", "@every 99999999999d", "@every 1e3s", "* * * * * 99"])
    async def test_a_schedule_that_cannot_fire_is_refused(self, store: Store, schedule: str) -> None:
        with pytest.raises(errors.InvalidTask, match="schedule"):
            await store.add_recurring(RecurringTask("bad", schedule, new()))
        assert await store.list_recurring() == []

    async def test_a_schedule_past_its_last_slot_is_parked_and_others_still_fire(
        self, store: Store, clock: FakeClock
    ) -> None:
        clock.set(datetime(2030, 1, 1, tzinfo=UTC))
        year = clock.now().year + 1
        await store.add_recurring(RecurringTask("once", f"0 0 1 1 * 0 {year}", new(kind="once")))
        await store.add_recurring(RecurringTask("tick", "@every 60s", new(kind="tick")))
        clock.set(datetime(year, 1, 1, 0, 0, 30, tzinfo=UTC))
        assert await store.enqueue_due_recurring() == 2  # "once" fires its only slot, then has no next one
        clock.advance(60)
        assert await store.enqueue_due_recurring() == 1
        parked = {r.id: r.next_at for r in await store.list_recurring()}
        assert parked["once"] == limits.LATEST
        await still_works(store, clock)

    async def test_a_recurring_id_leaves_room_for_its_slot_ids(self, store: Store, clock: FakeClock) -> None:
        with pytest.raises(errors.InvalidTask, match="recurring id"):
            RecurringTask("r" * (limits.MAX_RECURRING_ID_LENGTH + 1), "@every 60s", new())
        longest = "r" * limits.MAX_RECURRING_ID_LENGTH
        await store.add_recurring(RecurringTask(longest, "@every 60s", new(kind="tick")))
        clock.advance(61)
        assert await store.enqueue_due_recurring() == 1
        (task,) = (await store.list(queue="q")).items
        assert (await store.get(task.id)).recurring_id == longest

    async def test_an_offset_of_odd_seconds_is_the_same_instant_in_utc(self, store: Store, clock: FakeClock) -> None:
        # Valid in Python, unreadable for PostgreSQL: found by the fuzzing test below.
        odd = timezone(timedelta(microseconds=1))
        when = clock.now().astimezone(odd) + timedelta(seconds=5)
        task = await store.create(new(run_at=when))
        assert task.run_at == when
        assert await store.claim("w", ["q"], limit=1) == []
        clock.advance(5)
        assert [t.id for t in await store.claim("w", ["q"], limit=1)] == [task.id]
        beat = await store.set_worker_heartbeat(WorkerHeartbeat("w", ["q"], started_at=when))
        assert beat.started_at == when
        await still_works(store, clock)

    async def test_heartbeat_extras_that_are_no_mapping_are_refused(self, store: Store, clock: FakeClock) -> None:
        for extras in (False, [1, 2], "text"):
            with pytest.raises(errors.InvalidTask, match="extras"):
                await store.set_worker_heartbeat(WorkerHeartbeat("w", ["q"], extras=extras))  # type: ignore[arg-type]
        await still_works(store, clock)

    # -- anything at all --------------------------------------------------------------------------

    @settings(
        max_examples=30,
        deadline=None,
        # One store across the examples on purpose: bad input must not leave anything behind that breaks it.
        # Every backend's class runs this same method, hence differing executors.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
            HealthCheck.too_slow,
        ],
    )
    @given(data=st.data())
    async def test_arbitrary_input_gets_a_typed_refusal_and_the_store_keeps_working(
        self, store: Store, clock: FakeClock, data: st.DataObject
    ) -> None:
        for _ in range(data.draw(st.integers(1, 4), label="operations")):
            operation = data.draw(st.sampled_from(_OPERATIONS), label="operation")
            await operation(store, data.draw)
        await still_works(store, clock)


async def _refused_or_done(call: Callable[[], Any]) -> Any:
    """The call's result, or None when it was refused with a typed error; anything else fails the test."""
    try:
        result = call()
        return await result if inspect.isawaitable(result) else result
    except REFUSALS:
        return None


Draw = Callable[..., Any]

_VALID: dict[str, st.SearchStrategy[Any]] = {
    "queue": st.just("q"),
    "kind": st.sampled_from(["k", "send"]),
    "args": st.none(),
    "id": st.none(),
    "priority": st.integers(-5, 5),
    "run_at": st.none(),
    "max_attempts": st.one_of(st.none(), st.integers(1, 5)),
    "processing_timeout": st.none(),
    "retry": st.none(),
    "context": st.none(),
    "reference_id": st.none(),
    "recurring_id": st.none(),
    "group_id": st.none(),
}
_WILD: dict[str, st.SearchStrategy[Any]] = {
    "queue": v.anything(v.texts),
    "kind": v.anything(v.texts),
    "args": v.anything(v.json_values),
    "id": v.anything(v.texts),
    "priority": v.anything(v.ints),
    "run_at": v.anything(v.datetimes),
    "max_attempts": v.anything(v.ints),
    "processing_timeout": v.anything(v.durations),
    "retry": v.policies(),
    "context": v.anything(st.dictionaries(v.texts, v.json_values, max_size=3)),
    "reference_id": v.anything(v.texts),
    "recurring_id": v.anything(v.texts),
    "group_id": v.anything(v.texts),
}


def _new_task(draw: Draw) -> Callable[[], NewTask]:
    """A task whose fields are valid but for one or two drawn from anything."""
    fields = {name: draw(strategy) for name, strategy in _VALID.items()}
    for name in draw(st.lists(st.sampled_from(sorted(_WILD)), min_size=1, max_size=2, unique=True)):
        fields[name] = draw(_WILD[name])
    queue, kind, args = fields.pop("queue"), fields.pop("kind"), fields.pop("args")
    retry = fields.pop("retry")

    def make() -> NewTask:
        return NewTask(queue, kind, args, retry=retry() if callable(retry) else retry, **fields)

    return make


async def _some_task_id(store: Store, draw: Draw) -> Any:
    """A stored task's id, or anything. The draws never depend on what is stored, so Hypothesis can replay them."""
    index, other = draw(st.integers(0, 19)), draw(st.one_of(st.none(), v.junk))
    ids = [t.id for t in (await store.list(limit=20)).items]
    return ids[index % len(ids)] if ids and other is None else other


async def _create(store: Store, draw: Draw) -> None:
    make = _new_task(draw)
    await _refused_or_done(lambda: store.create(make()))


async def _create_many(store: Store, draw: Draw) -> None:
    makes = [_new_task(draw) for _ in range(draw(st.integers(1, 3)))]
    await _refused_or_done(lambda: store.create_many([make() for make in makes]))


async def _read(store: Store, draw: Draw) -> None:
    states = v.anything(st.none(), st.sampled_from(list(State)))
    queues = v.anything(st.none(), st.just("q"))
    cursor = v.anything(st.none(), st.builds(lambda n: f"s{n}", v.ints))
    limit = v.anything(st.integers(1, 50))
    kwargs = {"state": draw(states), "queue": draw(queues), "cursor": draw(cursor), "limit": draw(limit)}
    await _refused_or_done(lambda: store.list(**kwargs, ready_as_of=draw(v.anything(st.none(), v.datetimes))))
    await _refused_or_done(lambda: store.count(state=kwargs["state"], queue=kwargs["queue"]))
    await _refused_or_done(lambda: store.find_available(draw(queues), limit=kwargs["limit"]))
    statuses = v.anything(st.none(), st.sampled_from(list(StatusState)))
    status_cursor = v.anything(st.builds(lambda t, at, rid: f"st{t}|{at}:{rid}", v.ints, v.ints, v.texts))
    meta = v.anything(st.none(), st.dictionaries(v.texts, v.json_values, max_size=2))
    await _refused_or_done(
        lambda: store.list_statuses(draw(statuses), meta=draw(meta), limit=kwargs["limit"], cursor=draw(status_cursor))
    )


async def _by_id(store: Store, draw: Draw) -> None:
    task_id = await _some_task_id(store, draw)
    method = draw(st.sampled_from(["get", "get_archived", "cancel", "retry", "get_status", "outstanding_count"]))
    await _refused_or_done(lambda: getattr(store, method)(task_id))


async def _claims(store: Store, draw: Draw) -> None:
    worker = draw(v.anything(st.just("fuzzer")))
    queues = draw(v.anything(st.none(), st.just(["q"]), st.lists(v.texts, max_size=2)))
    # Only waits that end at once: a valid long block_for would just wait.
    block_for = draw(st.one_of(st.just(0.0), st.sampled_from([-1.0, math.inf, math.nan, 1e12, "1"])))
    claimed = await _refused_or_done(
        lambda: store.claim(worker, queues, draw(v.anything(st.integers(1, 3))), block_for)
    )
    task_id = await _some_task_id(store, draw)
    await _refused_or_done(lambda: store.claim_task(task_id, worker, ttl=draw(v.anything(st.none(), v.durations))))
    data, extend = draw(v.json_values), draw(v.anything(st.none(), v.durations))
    for task in claimed or []:
        await _refused_or_done(functools.partial(store.report_in, task, data, extend_by=extend))


async def _admin(store: Store, draw: Draw) -> None:
    when = draw(st.sampled_from(["before", "older_than", "both"]))
    cutoff = {"before": draw(v.datetimes)} if when != "older_than" else {}
    if when != "before":
        cutoff["older_than"] = draw(v.anything(v.durations))
    await _refused_or_done(lambda: store.archive(**cutoff))
    index, field, value = draw(st.integers(0, 4)), draw(st.sampled_from(["state", "attempts", "run_at"])), draw(v.junk)
    tasks = (await store.list(limit=5)).items
    if tasks:
        task = tasks[index % len(tasks)]
        await _refused_or_done(lambda: store.update(task.replace(**{field: value})))


async def _statuses(store: Store, draw: Draw) -> None:
    status_id, ttl = draw(v.anything(st.just("ext"))), draw(v.anything(st.none(), v.durations))
    state = draw(v.anything(st.sampled_from(list(StatusState))))
    payload, meta = draw(v.json_values), draw(v.anything(st.none(), st.dictionaries(v.texts, v.json_values)))
    attempt = draw(v.anything(st.integers(0, 3)))
    await _refused_or_done(lambda: store.set_status(status_id, state, payload, None, attempt, meta, ttl))
    await _refused_or_done(lambda: store.expire(status_id, draw(v.anything(v.durations))))


async def _groups(store: Store, draw: Draw) -> None:
    group_id = draw(v.anything(st.just("g")))
    await _refused_or_done(
        lambda: store.init_group(group_id, draw(v.anything(st.integers(0, 3))), None, draw(v.anything(v.durations)))
    )
    member = TaskStatus(
        draw(v.anything(st.just("m"))),
        draw(v.anything(st.sampled_from(list(StatusState)))),
        payload=draw(v.json_values),
        attempt=draw(v.anything(st.integers(0, 3))),
    )
    await _refused_or_done(lambda: store.add_group_result(group_id, member))
    await _refused_or_done(
        lambda: store.claim_chord(group_id, draw(v.anything(st.none())), draw(v.anything(st.none())))
    )


async def _heartbeats(store: Store, draw: Draw) -> None:
    beat = WorkerHeartbeat(
        draw(v.anything(st.just("fuzzer"))),
        queues=draw(v.anything(st.just(["q"]), st.lists(v.texts, max_size=2))),
        inflight=draw(v.anything(st.integers(0, 3))),
        host=draw(v.anything(v.texts)),
        pid=draw(v.anything(st.integers(0, 99999))),
        version=draw(v.anything(st.just("1.0"))),
        started_at=draw(v.anything(st.none())),
        extras=draw(v.anything(st.none(), st.dictionaries(v.texts, v.json_values, max_size=2))),
    )
    await _refused_or_done(lambda: store.set_worker_heartbeat(beat))


async def _recurring(store: Store, draw: Draw) -> None:
    schedule = draw(
        v.anything(st.sampled_from(["@every 30s", "*/5 * * * *", "0 0 30 2 *", "@every 99999999999d", "@every 0s"]))
    )
    make = _new_task(draw)
    recurring_id = draw(v.anything(st.just("cron")))
    await _refused_or_done(lambda: store.add_recurring(RecurringTask(recurring_id, schedule, make())))


_OPERATIONS: list[Callable[[Store, Draw], Awaitable[None]]] = [
    _create,
    _create,
    _create,
    _create_many,
    _read,
    _by_id,
    _claims,
    _claims,
    _admin,
    _statuses,
    _groups,
    _heartbeats,
    _recurring,
]
