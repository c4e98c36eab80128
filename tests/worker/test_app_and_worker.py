"""The App and the Worker in one process, on every embedded backend."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import taskstore
from taskstore import App, BinaryExponential, Failure, NewTask, State, Task, TaskCancelled, TaskFailed, Worker, errors

pytestmark = pytest.mark.asyncio
FAST = BinaryExponential(base=0.01, cap=0.05)


async def settle(app: App, handle: Any, timeout: float = 10) -> Any:
    return await handle.result(timeout=timeout)


# -- enqueue -------------------------------------------------------------------------------------


async def test_enqueue_stores_args_and_kwargs(app: App) -> None:
    @app.task(queue="mail", max_attempts=4, priority=2)
    async def send(to: str, subject: str = "") -> None: ...

    handle = await send.enqueue("a@b", subject="hi")
    task = await handle.get()
    assert task.args == {"args": ["a@b"], "kwargs": {"subject": "hi"}}
    assert (task.queue, task.max_attempts, task.priority) == ("mail", 4, 2)
    assert task.kind == f"{send.fn.__module__}.{send.fn.__qualname__}"


async def test_named_kind_and_per_call_options(app: App) -> None:
    @app.task(queue="mail", kind="mail.send")
    async def send(to: str) -> None: ...

    store = await app.store()
    handle = await send.options(id="welcome-7", delay=60, priority=9, queue="urgent").enqueue("a@b")
    task = await handle.get()
    assert (task.id, task.kind, task.priority, task.queue) == ("welcome-7", "mail.send", 9, "urgent")
    assert (task.run_at - store.now()).total_seconds() > 55
    with pytest.raises(errors.AlreadyExists):
        await send.options(id="welcome-7").enqueue("again")


async def test_unencodable_arguments_are_rejected_at_enqueue(app: App) -> None:
    @app.task
    async def handle_it(thing: object) -> None: ...

    with pytest.raises(errors.InvalidTask):
        await handle_it.enqueue(object())
    assert await (await app.store()).count() == 0


# -- running -------------------------------------------------------------------------------------


async def test_async_and_sync_handlers_return_results(app: App) -> None:
    seen_threads: list[str] = []

    @app.task(queue="q")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(queue="q")
    def mul(a: int, b: int) -> int:
        seen_threads.append(threading.current_thread().name)
        assert taskstore.current_task().kind.endswith("mul")
        return a * b

    handles = [await add.enqueue(1, 2), await mul.enqueue(6, 7)]
    async with Worker(app, concurrency=4):
        assert [await settle(app, h) for h in handles] == [3, 42]
    assert seen_threads[0].startswith("taskstore-task")


async def test_current_task_is_the_running_task(app: App) -> None:
    seen: list[tuple[str, int]] = []

    @app.task(queue="q")
    async def who() -> None:
        task = taskstore.current_task()
        assert task.claim is not None
        seen.append((task.id, task.attempts))

    handle = await who.enqueue()
    async with Worker(app):
        await settle(app, handle)
    assert seen == [(handle.id, 1)]
    with pytest.raises(taskstore.NoCurrentTask):
        taskstore.current_task()


async def test_failures_retry_then_go_dead_with_the_last_failure(app: App) -> None:
    attempts: list[int] = []

    @app.task(queue="q", max_attempts=3, retry=FAST)
    async def broken() -> None:
        attempts.append(taskstore.current_task().attempts)
        raise ValueError("still broken")

    handle = await broken.enqueue()
    async with Worker(app):
        with pytest.raises(TaskFailed) as caught:
            await settle(app, handle)
    assert attempts == [1, 2, 3]
    assert caught.value.failure is not None
    assert caught.value.failure.type == "ValueError"
    assert "still broken" in caught.value.failure.message
    assert "Traceback" in (caught.value.failure.traceback or "")


async def test_a_flaky_task_succeeds_on_retry(app: App) -> None:
    @app.task(queue="q", max_attempts=5, retry=FAST)
    async def flaky() -> str:
        if taskstore.current_task().attempts < 3:
            raise ConnectionError("try later")
        return "ok"

    handle = await flaky.enqueue()
    async with Worker(app):
        assert await settle(app, handle) == "ok"
    assert (await handle.get()).attempts == 3


async def test_a_handler_past_its_timeout_is_cancelled_and_failed(app: App) -> None:
    @app.task(queue="q", timeout=0.2, max_attempts=1)
    async def sleepy() -> None:
        await asyncio.sleep(30)

    handle = await sleepy.enqueue()
    start = time.monotonic()
    async with Worker(app):
        with pytest.raises(TaskFailed) as caught:
            await settle(app, handle)
    assert time.monotonic() - start < 10
    assert caught.value.failure is not None
    assert caught.value.failure.type == "HandlerTimeout"


@pytest.mark.parametrize(
    ("payload", "kind", "failure_type"),
    [
        ({"args": [], "kwargs": {}}, "nobody.handles.this", "UnknownTaskKind"),
        ("not an app payload", "tests.echo", "InvalidPayload"),
        ({"args": [1, 2, 3], "kwargs": {}}, "tests.echo", "InvalidArguments"),
    ],
)
async def test_bad_tasks_go_dead_and_the_worker_keeps_running(
    app: App, payload: Any, kind: str, failure_type: str
) -> None:
    @app.task(queue="q", kind="tests.echo")
    async def echo(x: int) -> int:
        return x

    store = await app.store()
    bad = await store.create(NewTask("q", kind, payload))
    good = await echo.enqueue(7)
    async with Worker(app):
        assert await settle(app, good) == 7
        with pytest.raises(TaskFailed) as caught:
            await settle(app, app.handle(bad.id))
    assert caught.value.failure is not None
    assert caught.value.failure.type == failure_type
    assert caught.value.task.attempts == 1


async def test_an_undecodable_payload_goes_dead(tmp_path: Path) -> None:
    class Picky:
        name = "picky"

        def encode(self, value: Any) -> bytes:
            return json.dumps(value).encode()

        def decode(self, data: bytes) -> Any:
            value = json.loads(data)
            if isinstance(value, dict) and value.get("args") == ["poison"]:
                raise ValueError("poisoned")
            return value

    app = App(f"sqlite:///{tmp_path / 'picky.db'}", codec=Picky())

    @app.task(queue="q")
    async def eat(food: str) -> str:
        return food

    bad, good = await eat.enqueue("poison"), await eat.enqueue("bread")
    async with Worker(app):
        assert await settle(app, good) == "bread"
        with pytest.raises(TaskFailed) as caught:
            await settle(app, bad)
    assert caught.value.failure is not None
    assert caught.value.failure.type == "UndecodablePayload"
    await app.aclose()


async def test_an_unencodable_result_fails_the_attempt(app: App) -> None:
    @app.task(queue="q")
    async def weird() -> object:
        return object()

    handle = await weird.enqueue()
    async with Worker(app):
        with pytest.raises(TaskFailed) as caught:
            await settle(app, handle)
    assert caught.value.failure is not None
    assert caught.value.failure.type == "UnencodableResult"


async def test_cancel_while_running_stops_the_handler(app: App) -> None:
    started = asyncio.Event()

    @app.task(queue="q", processing_timeout=0.6)
    async def long() -> None:
        started.set()
        await asyncio.sleep(30)

    handle = await long.enqueue()
    async with Worker(app):
        await asyncio.wait_for(started.wait(), 10)
        await handle.cancel()
        with pytest.raises(TaskCancelled):
            await settle(app, handle)


async def test_a_lost_lease_cancels_the_handler_and_writes_nothing(app: App) -> None:
    started, finished = asyncio.Event(), []

    @app.task(queue="q", processing_timeout=0.6)
    async def hold() -> str:
        started.set()
        await asyncio.sleep(5)
        finished.append(True)
        return "late"

    handle = await hold.enqueue()
    store = await app.store()
    # One slot, busy with the handler: the worker cannot claim the task back itself.
    async with Worker(app, concurrency=1, maintenance=False):
        await asyncio.wait_for(started.wait(), 10)
        task = await handle.get()
        assert task.claim is not None
        # Someone else takes the task over (as after a reap and a new claim).
        await store.update(task.replace(state=State.QUEUED))
        # A lease that outlasts the wait below: the worker's freed slot would recover a shorter one.
        rival = await store.claim_task(task.id, "rival", ttl=30)
        assert rival is not None
        await asyncio.sleep(1.0)  # past one heart-beat
        await store.mark_done(rival, result="rival's")
    assert finished == []
    assert await handle.result(timeout=1) == "rival's"


async def test_middleware_wraps_every_execution_in_order(app: App) -> None:
    calls: list[str] = []

    @app.middleware
    async def outer(ctx: taskstore.TaskContext, call_next: Any) -> Any:
        calls.append(f"outer:{ctx.task.kind.rsplit('.', 1)[-1]}")
        value = await call_next(ctx)
        calls.append("outer:after")
        return value

    @app.middleware
    async def inner(ctx: taskstore.TaskContext, call_next: Any) -> Any:
        calls.append("inner")
        return (await call_next(ctx)) * 10

    @app.task(queue="q")
    async def one() -> int:
        calls.append("handler")
        return 1

    handle = await one.enqueue()
    async with Worker(app):
        assert await settle(app, handle) == 10
    assert calls == ["outer:one", "inner", "handler", "outer:after"]


async def test_middleware_can_turn_failures_into_results(app: App) -> None:
    @app.middleware
    async def forgive(ctx: taskstore.TaskContext, call_next: Any) -> Any:
        try:
            return await call_next(ctx)
        except KeyError:
            return "forgiven"

    @app.task(queue="q")
    async def lookup() -> str:
        raise KeyError("missing")

    handle = await lookup.enqueue()
    async with Worker(app):
        assert await settle(app, handle) == "forgiven"


async def test_concurrency_is_never_exceeded(app: App) -> None:
    running, peak = 0, 0

    @app.task(queue="q")
    async def busy() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    store = await app.store()
    await store.create_many([busy.new_task() for _ in range(60)])
    async with Worker(app, concurrency=5):
        while await store.count(state=State.DONE) < 60:
            await asyncio.sleep(0.02)
    assert peak == 5


# -- prefetch --------------------------------------------------------------------------------------


async def test_prefetch_holds_tasks_ready_but_never_runs_more_than_concurrency(app: App) -> None:
    running, peak, gate = 0, 0, asyncio.Event()

    @app.task(queue="q")
    async def busy() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    store = await app.store()
    await store.create_many([busy.new_task() for _ in range(10)])
    async with Worker(app, concurrency=2, prefetch=3, maintenance=False) as worker:
        for _ in range(200):
            if await store.count(state=State.CLAIMED) == 5 and running == 2:
                break
            await asyncio.sleep(0.02)
        assert await store.count(state=State.CLAIMED) == 5  # 2 running + 3 held ready, no more
        assert worker.inflight == 5
        gate.set()
        while await store.count(state=State.DONE) < 10:
            await asyncio.sleep(0.02)
    assert peak == 2


async def test_a_slot_that_frees_while_a_claim_is_on_its_way_is_asked_for_at_once(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two claims on their way at once: the second claimer asks for a slot freed meanwhile, and together they never
    ask for more than concurrency + prefetch."""
    gates = {name: asyncio.Event() for name in ("a", "b")}

    @app.task(queue="q")
    async def gated(name: str) -> None:
        await gates[name].wait()

    store = await app.store()
    real_claim = store._claim  # what the worker's claimers call
    asked: list[int] = []  # the limits of the claims on their way
    peak: list[int] = []  # at each claim's start: how many were on their way, and the slots they asked for

    async def claim(*args: Any, **kwargs: Any) -> list[Task]:
        asked.append(kwargs["limit"])
        peak.append(len(asked))
        assert sum(asked) <= 2, asked
        try:
            return await real_claim(*args, **kwargs)
        finally:
            asked.remove(kwargs["limit"])

    monkeypatch.setattr(store, "_claim", claim)
    await gated.enqueue("a")
    await gated.enqueue("b")
    async with Worker(app, concurrency=2, maintenance=False, claim_wait=5.0):
        for _ in range(500):
            if await store.count(state=State.CLAIMED) == 2:
                break
            await asyncio.sleep(0.01)
        gates["a"].set()  # a slot frees: one claimer asks for it, and waits (nothing is queued)
        for _ in range(500):
            if asked == [1]:
                break
            await asyncio.sleep(0.01)
        assert asked == [1]
        gates["b"].set()  # the other slot frees while that claim still waits: the second claimer asks for it
        for _ in range(500):
            if asked == [1, 1]:
                break
            await asyncio.sleep(0.01)
        assert asked == [1, 1]
        third = await gated.enqueue("a")  # either claim takes it
        assert await settle(app, third) is None
    assert max(peak) == 2


async def test_claims_wait_while_finished_results_pile_up_unwritten(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """Claiming no faster than results are written: a slow store for completions holds claims back, rather than
    the worker running ahead with every lease it then has to renew."""
    ran = 0

    @app.task(queue="q")
    async def quick() -> None:
        nonlocal ran
        ran += 1

    store = await app.store()
    real_acknowledge = store.acknowledge_many
    writes_open = asyncio.Event()

    async def acknowledge_many(*args: Any, **kwargs: Any) -> Any:
        await writes_open.wait()
        return await real_acknowledge(*args, **kwargs)

    monkeypatch.setattr(store, "acknowledge_many", acknowledge_many)
    await store.create_many([quick.new_task() for _ in range(30)])
    async with Worker(app, concurrency=2, completion_batch=2, maintenance=False):
        await asyncio.sleep(1.0)
        # 2 being written, 2 more waiting (one batch), then room for 2 more to run: never the whole queue.
        assert ran <= 6
        writes_open.set()
        for _ in range(500):
            if await store.count(state=State.DONE) == 30:
                break
            await asyncio.sleep(0.01)
    assert ran == 30
    assert await store.count(state=State.DONE) == 30


async def test_a_stopping_worker_gives_back_the_tasks_it_held_ready(app: App) -> None:
    started = asyncio.Event()

    @app.task(queue="q")
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    handles = [await forever.enqueue() for _ in range(3)]
    worker = Worker(app, concurrency=1, prefetch=2, grace=0.2, maintenance=False)
    await worker.start()
    await asyncio.wait_for(started.wait(), 10)
    store = await app.store()
    for _ in range(200):
        if await store.count(state=State.CLAIMED) == 3:
            break
        await asyncio.sleep(0.02)
    await worker.stop()
    for handle in handles:
        task = await handle.get()
        assert (task.state, task.attempts) == (State.QUEUED, 0)
    assert worker.stats.released == 3


async def test_a_held_task_keeps_its_lease_and_a_cancel_request_reaches_it(app: App) -> None:
    ran: list[str] = []
    release = asyncio.Event()

    @app.task(queue="q", processing_timeout=0.6)
    async def step(name: str) -> None:
        ran.append(name)
        if name == "first":
            await release.wait()

    first = await step.enqueue("first")
    held = await step.enqueue("held")
    cancelled = await step.enqueue("cancelled")
    store = await app.store()
    async with Worker(app, concurrency=1, prefetch=2, maintenance=False):
        for _ in range(200):
            if ran == ["first"] and await store.count(state=State.CLAIMED) == 3:
                break
            await asyncio.sleep(0.02)
        await cancelled.cancel()
        await asyncio.sleep(1.5)  # over two leases: only renewals keep the held tasks
        await store.reap()
        assert (await held.get()).state is State.CLAIMED
        release.set()
        assert await settle(app, first) is None
        assert await settle(app, held) is None
        with pytest.raises(TaskCancelled):
            await settle(app, cancelled)
    assert ran == ["first", "held"]
    assert (await held.get()).attempts == 1


async def test_prefetch_must_be_a_non_negative_int(app: App) -> None:
    @app.task(queue="q")
    async def noop() -> None:
        return None

    with pytest.raises(errors.ConfigError):
        Worker(app, prefetch=-1)


async def test_graceful_stop_releases_unfinished_tasks(app: App) -> None:
    started = asyncio.Event()

    @app.task(queue="q")
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    handle = await forever.enqueue()
    worker = Worker(app, grace=0.2)
    await worker.start()
    await asyncio.wait_for(started.wait(), 10)
    await worker.stop()
    task = await handle.get()
    assert task.state is State.QUEUED
    assert task.attempts == 0
    assert worker.stats.released == 1


async def test_the_worker_keeps_a_heartbeat_record(app: App) -> None:
    @app.task(queue="q")
    async def nothing() -> None: ...

    store = await app.store()
    async with Worker(app, worker_id="w-record", concurrency=3):
        beat = await store.get_worker_heartbeat("w-record")
        assert beat is not None
        assert list(beat.queues) == ["q"]
        assert beat.extras is not None
        assert beat.extras["concurrency"] == 3


async def test_recurring_registered_on_the_app_fires(app: App) -> None:
    @app.task(queue="cron")
    async def tick() -> None: ...

    app.recurring("every-tenth", every=0.1, task=tick)
    store = await app.store()
    async with Worker(app):
        deadline = time.monotonic() + 10
        while await store.count(state=State.DONE, queue="cron") < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert await store.count(state=State.DONE, queue="cron") >= 3
    assert [r.id for r in await store.list_recurring()] == ["every-tenth"]


async def test_a_failure_the_store_refuses_does_not_crash_the_worker(app: App) -> None:
    @app.task(queue="q", max_attempts=1)
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.task(queue="q")
    async def fine() -> str:
        return "fine"

    first = await boom.enqueue()
    async with Worker(app):
        with pytest.raises(TaskFailed):
            await settle(app, first)
        assert await settle(app, await fine.enqueue()) == "fine"


# -- pipe ----------------------------------------------------------------------------------------


async def test_pipe_feeds_sync_and_async_iterables(url: str) -> None:
    async with taskstore.open(url) as store:

        async def numbers() -> AsyncIterator[int]:
            for i in range(25):
                yield i

        assert await taskstore.pipe(range(10), store, queue="in", kind="num", batch=3) == 10
        assert await taskstore.pipe(numbers(), store, queue="in", kind="num", batch=10, priority=2) == 25
        assert await store.count(queue="in") == 35
        page = await store.list(queue="in", limit=100)
        assert [t.args for t in page.items][:3] == [0, 1, 2]
        assert page.items[-1].priority == 2


async def test_pipe_rejects_bad_items_before_writing_their_batch(url: str) -> None:
    async with taskstore.open(url) as store:

        def items() -> Iterator[Any]:
            yield from [1, 2, object()]

        with pytest.raises(errors.InvalidTask):
            await taskstore.pipe(items(), store, queue="in", kind="num", batch=2)
        assert await store.count() == 2


async def test_failure_helper_round_trips(url: str) -> None:
    async with taskstore.open(url) as store:
        task = await store.create(NewTask("q", "k"))
        (claimed,) = await store.claim("w", limit=1)
        failed = await store.mark_failed(claimed, Failure("X", "y", retryable=False))
        assert failed.id == task.id
        assert failed.state is State.DEAD
