"""What a running handler can know about itself: ``taskstore.current_task()``."""

from __future__ import annotations

from contextvars import ContextVar

from .errors import TaskstoreError
from .model import Task

_current: ContextVar[Task | None] = ContextVar("taskstore_current_task", default=None)


class NoCurrentTask(TaskstoreError, LookupError):
    """``current_task()`` was called outside a task handler."""


def current_task() -> Task:
    """The task whose handler is running (with its ``claim`` and ``attempts``)."""
    task = _current.get()
    if task is None:
        raise NoCurrentTask("current_task() is only available inside a task handler run by a worker")
    return task
