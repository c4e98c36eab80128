"""One exception tree for everything taskstore raises.

::

    TaskstoreError
    ├── NotFound              no task (or archived task) with that id
    ├── AlreadyExists         a create reused a taken id (stored, or twice in one batch)
    ├── StaleVersion          update() lost a compare-and-set on ``version``
    ├── LeaseError            a fenced write was refused; nothing changed
    │   ├── NotClaimed        the task is not in ``claimed`` (reaped, finished, released)
    │   └── NotOwned          claimed under another worker or another lease token
    ├── ReportFromThePast     a report older than the last one
    ├── InvalidTask           bad input: queue name, kind, payload, empty batch, bad option
    ├── ConfigError           a URL or option the store cannot work with
    └── BackendUnavailable    the store could not be reached (or stayed locked) in time

Backends translate driver errors into this tree at their boundary, so callers never see
``sqlite3.OperationalError`` or a psycopg exception.

Outside the tree on purpose: ``taskstore.Retry`` and ``taskstore.Reject`` (``control.HandlerSignal``)
are raised by handlers to tell the worker how an attempt ends, never by taskstore; a handler's
``except TaskstoreError`` around its own store calls must not swallow them.
"""

from __future__ import annotations


class TaskstoreError(Exception):
    """Base of every error taskstore raises on purpose."""


class NotFound(TaskstoreError):
    def __init__(self, task_id: str, what: str = "task") -> None:
        super().__init__(f"{what} {task_id!r} not found")
        self.task_id = task_id


class AlreadyExists(TaskstoreError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} already exists")
        self.task_id = task_id


class StaleVersion(TaskstoreError):
    def __init__(self, task_id: str, expected: int, actual: int) -> None:
        super().__init__(f"task {task_id!r}: version {expected} is stale (stored version is {actual})")
        self.task_id = task_id
        self.expected = expected
        self.actual = actual


class LeaseError(TaskstoreError):
    """A write by a worker was refused by fencing; the task was left unchanged."""

    def __init__(self, task_id: str, message: str) -> None:
        super().__init__(f"task {task_id!r}: {message}")
        self.task_id = task_id


class NotClaimed(LeaseError):
    """The task is not in ``claimed``: it was reaped, finished, released or never claimed."""


class NotOwned(LeaseError):
    """The task is claimed, but under another worker or another lease token."""


class ReportFromThePast(TaskstoreError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r}: report is older than the last report")
        self.task_id = task_id


class InvalidTask(TaskstoreError, ValueError):
    """Bad input: an invalid queue name, an empty kind, an unencodable payload, an empty batch."""


class ConfigError(TaskstoreError, ValueError):
    """A URL, option or environment the store cannot work with."""


class BackendUnavailable(TaskstoreError):
    """The backing store could not be reached, or stayed busy past the deadline."""


__all__ = [
    "AlreadyExists",
    "BackendUnavailable",
    "ConfigError",
    "InvalidTask",
    "LeaseError",
    "NotClaimed",
    "NotFound",
    "NotOwned",
    "ReportFromThePast",
    "StaleVersion",
    "TaskstoreError",
]
