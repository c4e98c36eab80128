"""The transitions the Store hands to a driver's ``apply``, as frozen values.

Each value carries the parameters of one write and, called as ``change(task, now)``, applies the pure
transition from ``transitions`` (the single place where the rule lives) to the stored task. Because they
are values and not closures, a driver can look inside them: group a batch by kind and apply it in one
statement or one script (as SQLite and PostgreSQL already do for ``Completion``), provided the outcome
is what calling each one in order would give (the conformance suite checks it).

``Change`` is the closed set of them; ``backend.apply_in_order`` is how a driver applies any batch
without looking inside. Calling a change may raise a ``TaskstoreError`` (fencing, stale version): that
is the item's outcome, and its task stays as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import transitions
from .model import Claim, Failure, Task


@dataclass(frozen=True, slots=True)
class ReportIn:
    """The lease holder renews its lease (``transitions.report_in``): ``extend_by`` seconds, or the task's timeout."""

    lease: Claim
    data: Any = None
    extend_by: float | None = None

    def __call__(self, task: Task, now: datetime) -> Task:
        return transitions.report_in(task, self.lease, now=now, data=self.data, extend_by=self.extend_by)


@dataclass(frozen=True, slots=True)
class Completion:
    """The lease holder finished the task (``transitions.mark_done``) with ``value``, the encoded result.

    The change completers batch: SQLite and PostgreSQL apply a batch of completions as one fenced statement.
    """

    lease: Claim
    value: bytes | None

    def __call__(self, task: Task, now: datetime) -> Task:
        return transitions.mark_done(task, self.lease, now=now, value=self.value)


@dataclass(frozen=True, slots=True)
class MarkFailed:
    """The lease holder's attempt failed (``transitions.mark_failed``); ``retry_in`` seconds overrides the policy."""

    lease: Claim
    failure: Failure
    retry_in: float | None = None

    def __call__(self, task: Task, now: datetime) -> Task:
        return transitions.mark_failed(task, self.lease, now=now, failure=self.failure, retry_in=self.retry_in)


@dataclass(frozen=True, slots=True)
class Unclaim:
    """The lease holder releases the task without spending an attempt (``transitions.unclaim``)."""

    lease: Claim

    def __call__(self, task: Task, now: datetime) -> Task:
        return transitions.unclaim(task, self.lease, now=now)


@dataclass(frozen=True, slots=True)
class MarkCancelled:
    """The lease holder honours a cancel request (``transitions.mark_cancelled``)."""

    lease: Claim

    def __call__(self, task: Task, now: datetime) -> Task:
        return transitions.mark_cancelled(task, self.lease, now=now)


@dataclass(frozen=True, slots=True)
class Cancel:
    """An admin cancels the task, or asks its worker to (``transitions.cancel``); unfenced."""

    def __call__(self, task: Task, now: datetime) -> Task:
        return transitions.cancel(task, now=now)


@dataclass(frozen=True, slots=True)
class RetryNow:
    """An admin retries a finished task, or makes a waiting one due now (``transitions.retry``); unfenced.

    Not named ``Retry``: that is the handler's signal in the public API.
    """

    def __call__(self, task: Task, now: datetime) -> Task:
        return transitions.retry(task, now=now)


@dataclass(frozen=True, slots=True)
class Update:
    """The outbox compare-and-set on ``wanted.version`` (``transitions.update``)."""

    wanted: Task

    def __call__(self, task: Task, now: datetime) -> Task:
        return transitions.update(task, self.wanted, now=now)


# Every change a driver's ``apply`` receives; a closed union, so a driver (and mypy) can tell them apart.
Change = ReportIn | Completion | MarkFailed | Unclaim | MarkCancelled | Cancel | RetryNow | Update

__all__ = ["Cancel", "Change", "Completion", "MarkCancelled", "MarkFailed", "ReportIn", "RetryNow", "Unclaim", "Update"]
