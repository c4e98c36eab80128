"""What a running handler can know about itself: ``taskstore.current_task()`` and ``cancel_requested()``."""

from __future__ import annotations

from contextvars import ContextVar

from .errors import TaskstoreError
from .model import Task

_current: ContextVar[Task | None] = ContextVar("taskstore_current_task", default=None)


class StopFlag:
    """Set by the worker when a cancel of the running task is requested, or when it stops waiting for the
    attempt (lease lost, timeout, stop past the grace); read by the handler, maybe from its own thread.

    Nobody waits on it, so a plain attribute does (its write and read are atomic): a ``threading.Event`` per
    task, with its lock and condition, cost about 5 µs of a no-op task's 70 µs of worker time.
    """

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


_stop: ContextVar[StopFlag | None] = ContextVar("taskstore_stop_requested", default=None)


class NoCurrentTask(TaskstoreError, LookupError):
    """``current_task()`` was called outside a task handler."""


def current_task() -> Task:
    """The task whose handler is running (with its ``claim`` and ``attempts``)."""
    task = _current.get()
    if task is None:
        raise NoCurrentTask("current_task() is only available inside a task handler run by a worker")
    return task


def cancel_requested() -> bool:
    """Whether the running handler should stop: a cancel of its task was requested.

    A sync handler cannot be interrupted, so a long one polls this and returns (or raises) when it says True;
    the worker then records the task ``cancelled`` whatever the handler did. An async handler is cancelled
    (``asyncio.CancelledError``) at the same moment and may poll it too. It also turns True when the worker
    has stopped waiting for this attempt for another reason (its lease lost, its timeout passed, the worker
    stopping past its grace): the outcome will be discarded either way.

    Outside a handler run by a worker it is False rather than an error, so code shared with callers outside
    a task (a test calling the function directly) may poll it unconditionally.
    """
    flag = _stop.get()
    return flag is not None and flag.is_set()
