"""Helpers for unit-testing code that enqueues tasks: run them in this process, on the App's clock.

    app.configure(url="memory://", clock=FakeClock())
    handle = await send.enqueue("a@b")
    assert await drain(app) == 1                      # every due task ran (and what they enqueued)
    assert await run_until_complete(app, handle) is True   # runs, and moves the FakeClock through retries

Tasks run as a worker runs them (``Worker.run_claimed``: claim, middleware, handler, retry or
dead-letter decision), one at a time, each outcome recorded before the next claim. Nothing here
needs pytest: the pytest fixtures are in ``taskstore.testing.plugin``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from .. import errors
from .._inline import InlineRunner
from ..client import App
from ..clock import FakeClock
from ..model import State, check_queue
from ..store import Store

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

DEFAULT_MAX_TASKS = 10_000


class TooManyTasks(errors.TaskstoreError):
    """``drain``/``run_until_complete`` ran ``max_tasks`` tasks and more were due (a task that re-enqueues itself?)."""


class NeverFinishes(errors.TaskstoreError):
    """``run_until_complete``: nothing is due and nothing is scheduled, yet the handle's task has not ended."""


class Finishable(Protocol[R_co]):
    """A ``TaskHandle``, ``ChainHandle``, ``ChordHandle`` or ``GroupHandle``: something with ``result(timeout=)``."""

    def result(self, timeout: float | None = ...) -> Awaitable[R_co]: ...


def _queues(queues: Iterable[str] | None) -> list[str]:
    if isinstance(queues, str):
        raise errors.ConfigError("queues= takes a list of queue names, not one string")
    return [] if queues is None else [check_queue(q) for q in queues]


async def drain(app: App, *, queues: Iterable[str] | None = None, max_tasks: int = DEFAULT_MAX_TASKS) -> int:
    """Run every due task of ``queues`` (``None``: every queue) in this process until none is due; how many ran.

    "Due" is on the App's clock: a delayed task or a retry waiting for its ``run_at`` stays (move a
    ``FakeClock``, or use ``run_until_complete``). Tasks the handlers enqueue, chains' next links and
    chords' callbacks run too, when due. Raises ``TooManyTasks`` after ``max_tasks`` runs with more due.
    """
    chosen = _queues(queues)

    async def run(store: Store) -> int:
        runner = InlineRunner(app)
        try:
            ran = 0
            while await runner.run_next_due(store, chosen) is not None:
                ran += 1
                if ran >= max_tasks and await store.find_available(queues=chosen, limit=1):
                    raise TooManyTasks(f"drain ran {ran} tasks and more are due")
            return ran
        finally:
            runner.close()

    return await app.on_home(run)


def drain_sync(app: App, *, queues: Iterable[str] | None = None, max_tasks: int = DEFAULT_MAX_TASKS) -> int:
    """``drain`` from sync test code."""
    return app.run_sync(drain(app, queues=queues, max_tasks=max_tasks))


async def run_until_complete(
    app: App,
    handle: Finishable[R],
    *,
    queues: Iterable[str] | None = None,
    max_tasks: int = DEFAULT_MAX_TASKS,
) -> R:
    """Run due tasks in this process until ``handle``'s task has ended, and return its result.

    When nothing is due, the App's ``FakeClock`` is moved to the next ``run_at`` of a waiting task
    (a retry's backoff, a delay) and running goes on; with another clock that is a ``ConfigError``.
    Raises as ``handle.result()`` does (``TaskFailed``, ``TaskCancelled``, ``ChainFailed`` …),
    ``NeverFinishes`` when nothing is left to run or wait for (say, its queue is paused: the message
    says why, from ``store.why``), and ``TooManyTasks`` after ``max_tasks`` runs.
    """
    chosen = _queues(queues)

    async def run(store: Store) -> None:
        runner = InlineRunner(app)
        try:
            ran = 0
            while not await _ended(handle):
                if await runner.run_next_due(store, chosen) is not None:
                    ran += 1
                    if ran >= max_tasks:
                        raise TooManyTasks(f"run_until_complete ran {ran} tasks and the task has not ended")
                    continue
                await _move_to_next(store, chosen, handle)
        finally:
            runner.close()

    await app.on_home(run)
    return await handle.result(timeout=0)


def run_until_complete_sync(
    app: App, handle: Finishable[R], *, queues: Iterable[str] | None = None, max_tasks: int = DEFAULT_MAX_TASKS
) -> R:
    """``run_until_complete`` from sync test code."""

    async def run() -> R:
        return await run_until_complete(app, handle, queues=queues, max_tasks=max_tasks)

    return app.run_sync(run())


async def _ended(handle: Finishable[Any]) -> bool:
    """Whether the handle's result is there (or its failure): ``result(timeout=0)`` waits for nothing."""
    try:
        await handle.result(timeout=0)
    except TimeoutError:
        return False
    except Exception:  # TaskFailed and the like: ended; run_until_complete raises it to its caller
        return True
    return True


async def _move_to_next(store: Store, queues: list[str], handle: Finishable[Any]) -> None:
    """Nothing is due: move the FakeClock to the earliest run_at still ahead, or say why nothing will run."""
    now = store.now()
    upcoming = [at for at in await _waiting_run_ats(store, queues) if at > now]
    if not upcoming:
        task_id = getattr(handle, "id", None)
        why = ""
        if isinstance(task_id, str):
            try:
                why = "; ".join(await store.why(task_id))
            except errors.NotFound:
                why = ""
        raise NeverFinishes(
            f"{handle!r} has not ended, nothing is due and nothing waits for a later run_at"
            + (f": {why}" if why else "")
        )
    clock = store.clock
    if not isinstance(clock, FakeClock):
        raise errors.ConfigError(
            f"run_until_complete must move the clock to {min(upcoming).isoformat()}, the next run_at, but the App's "
            f"store runs on {clock!r}: configure the App with clock=taskstore.clock.FakeClock()"
        )
    clock.set(min(upcoming))


async def _waiting_run_ats(store: Store, queues: list[str]) -> list[datetime]:
    found: list[datetime] = []
    every: list[str | None] = [None]
    for queue in queues or every:
        for state in (State.QUEUED, State.FAILED):
            cursor: str | None = None
            while True:
                page = await store.list(state=state, queue=queue, cursor=cursor, limit=500)
                found.extend(t.run_at for t in page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
    return found


__all__ = [
    "Finishable",
    "NeverFinishes",
    "TooManyTasks",
    "drain",
    "drain_sync",
    "run_until_complete",
    "run_until_complete_sync",
]
