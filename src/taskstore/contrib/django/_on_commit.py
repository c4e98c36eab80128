"""``enqueue_on_commit``: enqueue once Django's transaction commits, for a store outside Django's database.

A store in Django's own database (``TASKSTORE_DATABASE``) can do better: ``fn.options(conn=connection)``
inserts the task in Django's transaction itself, so it exists if and only if the transaction commits, with
no window where the commit is in and the enqueue is not (a crash, a store that is down) and no second
connection. ``enqueue_on_commit`` is for every other store: the task is enqueued right after the commit,
and never when the transaction rolls back. Outside ``atomic()`` Django runs the callback at once.
"""

from __future__ import annotations

import functools
from typing import ParamSpec, TypeVar

from ...client import TaskFunction, _Enqueuer

P = ParamSpec("P")
R = TypeVar("R")


class OnCommit:
    """Enqueue after the transaction of one Django database commits: ``enqueue_on_commit(fn, *args, **kwargs)``.

    ``enqueue_on_commit.using("other")(fn, ...)`` waits for the transaction of another database alias. (A
    ``using=`` keyword cannot sit beside a task's own typed arguments: ``fn``'s parameters type the call.)
    ``robust=True`` logs an enqueue that fails after the commit instead of raising it from ``atomic()``.
    """

    def __init__(self, using: str | None = None, *, robust: bool = False) -> None:
        self.database = using
        self.robust = robust

    def using(self, alias: str, *, robust: bool | None = None) -> OnCommit:
        return OnCommit(alias, robust=self.robust if robust is None else robust)

    def __call__(self, fn: TaskFunction[P, R] | _Enqueuer[P, R], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Enqueue ``fn(*args, **kwargs)`` (a task, or ``task.options(...)``) once the transaction commits."""
        from django.db import transaction

        # Run by Django in the thread that commits: a plain sync enqueue there.
        transaction.on_commit(
            functools.partial(fn.enqueue_sync, *args, **kwargs), using=self.database, robust=self.robust
        )

    def __repr__(self) -> str:
        return f"<enqueue_on_commit using={self.database or 'default'}>"


enqueue_on_commit = OnCommit()
"""Enqueue a task once the current transaction of Django's default database commits."""
