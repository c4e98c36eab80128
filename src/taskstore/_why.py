"""Why a task is not running (SPEC §9, ``store.why``): every gate holding it back, in plain words.

Pure: the store gathers the facts (the task, its queue's pause, its key's gate and holders, the live
workers) and this module words them. An empty list means nothing holds the task back: a claim would
take it now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from . import transitions
from .gates import KeyGate
from .model import CLAIMABLE_STATES, State, Task, WorkerHeartbeat


@dataclass(frozen=True, slots=True)
class Facts:
    task: Task
    now: datetime
    paused: bool
    gate: KeyGate | None
    holders: Sequence[Task]
    workers: Sequence[WorkerHeartbeat]
    worker_window: float


def _when(at: datetime, now: datetime) -> str:
    seconds = (at - now).total_seconds()
    if abs(seconds) < 1:
        return f"{at.isoformat()} (now)"
    span = _span(abs(seconds))
    return f"{at.isoformat()} ({'in ' + span if seconds > 0 else span + ' ago'})"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def _state_reason(task: Task, now: datetime) -> str | None:
    """The reason a task outside the claimable states is not waiting to run, or None if it is waiting."""
    if task.state is State.CLAIMED and task.claim is not None:
        lease = task.claim
        return (
            f"it is running: claimed by worker {lease.worker_id!r} at {lease.claimed_at.isoformat()}, "
            f"its lease runs until {_when(lease.times_out_at, now)}"
        )
    if task.state is State.DONE:
        return "it has finished: it is done"
    if task.state is State.DEAD:
        failure = task.result.failure if task.result is not None else None
        why = f" ({failure.type}: {failure.message})" if failure is not None else ""
        return f"it has finished: it is dead after {task.attempts} attempt(s){why}; retry() runs it again"
    if task.state is State.CANCELLED:
        failure = task.result.failure if task.result is not None else None
        if failure is not None and failure.type == transitions.EXPIRED and task.expires_at is not None:
            return f"it has finished: it expired at {task.expires_at.isoformat()} before it ran, and was cancelled"
        return "it has finished: it was cancelled; retry() runs it again"
    return None


def reasons(facts: Facts) -> list[str]:
    task, now = facts.task, facts.now
    stopped = _state_reason(task, now)
    if stopped is not None:
        return [stopped]
    assert task.state in CLAIMABLE_STATES
    found: list[str] = []
    if transitions.is_expired(task, now):
        assert task.expires_at is not None
        found.append(f"it expired at {_when(task.expires_at, now)}: it will not run, the reaper cancels it")
    if task.run_at > now:
        waiting = "it waits to retry after a failure" if task.state is State.FAILED else "it is scheduled"
        found.append(f"{waiting}: it runs at {_when(task.run_at, now)}")
    if facts.paused:
        found.append(f"its queue {task.queue!r} is paused (resume_queue or `taskstore queues resume {task.queue}`)")
    gate = facts.gate
    if gate is not None and task.concurrency_key is not None:
        key, limit = task.concurrency_key, gate.limit
        if limit.concurrency == 0:
            found.append(
                f"its concurrency key {key!r} has a concurrency limit of 0: none of its tasks runs until it is raised"
            )
        elif limit.concurrency is not None and gate.running >= limit.concurrency:
            held = ", ".join(
                f"{t.id} (worker {t.claim.worker_id!r})" if t.claim is not None else t.id for t in facts.holders
            )
            found.append(
                f"its concurrency key {key!r} is at its limit: {gate.running} of {limit.concurrency} claimed"
                + (f", held by {held}" if held else "")
            )
        if limit.rate is not None and not gate.admits_rate(now):
            refill = gate.next_token_at(now)
            when = f"refills a token at {_when(refill, now)}" if refill is not None else "never refills (rate 0)"
            found.append(
                f"its concurrency key {key!r} is at its rate limit ({limit.rate} per {limit.per:g} s): it {when}"
            )
    if not any(not w.queues or task.queue in w.queues for w in facts.workers):
        found.append(
            f"no live worker claims from queue {task.queue!r} (no heartbeat in the last {facts.worker_window:g} s)"
        )
    return found


__all__ = ["Facts", "reasons"]
