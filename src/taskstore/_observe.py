"""Observers: what the Store facade and the Worker report as tasks move, for metrics and the like.

A store keeps a tuple of observers (``Store.add_observer``); every hook in the hot paths is guarded by
``if self._observers:``, so a store nobody observes pays one attribute check per call and nothing more.
An observer is called synchronously on the store's loop, after the write is in: keep it cheap (a counter
increment), and never raise (an observer's exception would surface in the caller's write).

Labels are the task's ``queue`` and ``kind``. A write that names its task by a bare ``Claim`` (which carries
only the task id) and returns no task (an acknowledgement, a refusal) takes them from the store's record of
what it claimed (``Labels``); a task claimed by another process or before the observer came has no such
record, and its labels are the empty string. The reaper returns only a count: ``reaped`` has no labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from .errors import LeaseError, TaskstoreError
from .model import State, Task

Outcome = Literal["succeeded", "failed", "retried", "dead", "cancelled"]
OUTCOMES: tuple[Outcome, ...] = ("succeeded", "failed", "retried", "dead", "cancelled")


class Observer(Protocol):
    """What a store and a worker report. Subclass ``NullObserver`` to implement only some of it."""

    def enqueued(self, queue: str, kind: str, count: int) -> None:
        """``count`` tasks of one queue and kind were created (duplicates of a unique task are not)."""

    def claimed(self, queue: str, kind: str, latency: float) -> None:
        """A task was claimed, ``latency`` seconds after it became ready (``max(run_at, last_enqueued_at)``)."""

    def finished(self, outcome: Outcome, queue: str, kind: str) -> None:
        """An attempt ended: ``succeeded``; ``failed`` (any failed attempt) then ``retried`` or ``dead`` (or
        ``cancelled``, a cancel requested while it ran); or ``cancelled`` (also a waiting task cancelled)."""

    def reaped(self, count: int) -> None:
        """The reaper timed out ``count`` leases or expired waiting tasks."""

    def stale_write(self, queue: str, kind: str) -> None:
        """A fenced write was refused (``NotOwned``/``NotClaimed``): its lease had been lost."""

    def handled(self, queue: str, kind: str, seconds: float) -> None:
        """A worker's handler ran for ``seconds`` (whatever its outcome)."""


class NullObserver:
    """An observer that ignores everything: subclass it and override what you need."""

    def enqueued(self, queue: str, kind: str, count: int) -> None:
        pass

    def claimed(self, queue: str, kind: str, latency: float) -> None:
        pass

    def finished(self, outcome: Outcome, queue: str, kind: str) -> None:
        pass

    def reaped(self, count: int) -> None:
        pass

    def stale_write(self, queue: str, kind: str) -> None:
        pass

    def handled(self, queue: str, kind: str, seconds: float) -> None:
        pass


Observers = Sequence[Observer]

# Labels of the tasks a store claimed, by id, kept only while it is observed; a bound, not a tuning knob.
_MAX_LABELS = 100_000


class Labels:
    """The queue and kind of each task claimed through one store, until its attempt ends.

    A fenced write may name its task by a bare ``Claim`` (the HTTP API's completions, a refused write): the
    claim carries only the task id, so the labels it was claimed with are looked up here. Entries of tasks
    whose end this store never sees (reaped, finished by another process) are dropped wholesale at the bound.
    """

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[str, str]] = {}

    def remember(self, task: Task) -> tuple[str, str]:
        by_id = self._by_id
        if len(by_id) >= _MAX_LABELS:
            by_id.clear()
        pair = by_id[task.id] = (task.queue, task.kind)
        return pair

    def forget(self, task_id: str) -> None:
        self._by_id.pop(task_id, None)

    def of(self, item: object) -> tuple[str, str]:
        """The labels of a write's item (a task, a claim, either paired with a result), ending its entry."""
        if isinstance(item, tuple) and item:
            item = item[0]
        if isinstance(item, Task):
            self._by_id.pop(item.id, None)
            return item.queue, item.kind
        task_id = getattr(item, "task_id", None)
        if isinstance(task_id, str):
            return self._by_id.pop(task_id, ("", ""))
        return "", ""


def enqueued(observers: Observers, tasks: Iterable[Task]) -> None:
    counts = Counter((t.queue, t.kind) for t in tasks)
    for (queue, kind), n in counts.items():
        for o in observers:
            o.enqueued(queue, kind, n)


def claimed(observers: Observers, tasks: Iterable[Task], labels: Labels) -> None:
    for task in tasks:
        queue, kind = labels.remember(task)
        latency = 0.0
        if task.claim is not None:
            ready = task.run_at if task.run_at > task.last_enqueued_at else task.last_enqueued_at
            latency = max((task.claim.claimed_at - ready).total_seconds(), 0.0)
        for o in observers:
            o.claimed(queue, kind, latency)


def ended(
    observers: Observers,
    outcomes: Iterable[Task | TaskstoreError | None],
    items: Iterable[object],
    labels: Labels,
    *,
    attempt_failed: bool = False,
) -> None:
    """Report the outcomes of fenced writes (or admin cancels), one per item, by the state each left.

    An outcome is the written task, the error that refused it, or ``None`` (an acknowledgement accepted: the
    task is ``done``, its labels come from its item). ``attempt_failed`` for ``mark_failed``.
    """
    for outcome, item in zip(outcomes, items, strict=False):
        if isinstance(outcome, Task):
            queue, kind, state = outcome.queue, outcome.kind, outcome.state
            if state is not State.CLAIMED:
                labels.forget(outcome.id)
        elif outcome is None:
            (queue, kind), state = labels.of(item), State.DONE
        else:
            if isinstance(outcome, LeaseError):
                queue, kind = labels.of(item)
                for o in observers:
                    o.stale_write(queue, kind)
            continue
        if attempt_failed:
            for o in observers:
                o.finished("failed", queue, kind)
        name = _OUTCOME_OF.get(state)
        if name is not None:
            for o in observers:
                o.finished(name, queue, kind)


_OUTCOME_OF: dict[State, Outcome] = {
    State.DONE: "succeeded",
    State.FAILED: "retried",
    State.DEAD: "dead",
    State.CANCELLED: "cancelled",
}
