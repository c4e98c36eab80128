"""taskstore: a durable task store and queue for Python.

The same API and the same guarantees on every backend: no lost tasks, and no stale worker able
to overwrite a result (every worker write is fenced by its lease token).

    async with taskstore.open("sqlite:///tasks.db") as store:
        task = await store.create(NewTask(queue="mail", kind="send", args={"to": "a@b"}))
"""

from . import clock, codec, errors, retry
from ._connect import default_url, open
from .client import App, TaskCancelled, TaskFailed, TaskFunction, TaskHandle
from .clock import FakeClock, SystemClock
from .codec import Codec, JsonCodec, TaggedJsonCodec, UndecodablePayload
from .context import NoCurrentTask, cancel_requested, current_task
from .control import HandlerSignal, Reject, Retry
from .middleware import HandlerTimeout, TaskContext
from .model import (
    Activity,
    AttemptFailure,
    Claim,
    DeadSummary,
    Failure,
    GroupStatus,
    Limit,
    NewTask,
    Page,
    QueueInfo,
    RecurringTask,
    Report,
    Result,
    State,
    StatusState,
    Task,
    TaskStatus,
    WorkerHeartbeat,
)
from .pipe import pipe
from .retry import BinaryExponential, Exponential, Polynomial, RetryPolicy
from .store import Store
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Activity",
    "App",
    "AttemptFailure",
    "BinaryExponential",
    "Claim",
    "Codec",
    "DeadSummary",
    "Exponential",
    "Failure",
    "FakeClock",
    "GroupStatus",
    "HandlerSignal",
    "HandlerTimeout",
    "JsonCodec",
    "Limit",
    "NewTask",
    "NoCurrentTask",
    "Page",
    "Polynomial",
    "QueueInfo",
    "RecurringTask",
    "Reject",
    "Report",
    "Result",
    "Retry",
    "RetryPolicy",
    "State",
    "StatusState",
    "Store",
    "SystemClock",
    "TaggedJsonCodec",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "TaskFunction",
    "TaskHandle",
    "TaskStatus",
    "UndecodablePayload",
    "Worker",
    "WorkerHeartbeat",
    "__version__",
    "cancel_requested",
    "clock",
    "codec",
    "current_task",
    "default_url",
    "errors",
    "open",
    "pipe",
    "retry",
]
