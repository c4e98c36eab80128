"""The contract between the ``Store`` facade and a backend driver, split by role.

The facade validates input, encodes payloads, waits for ``block_for`` and decodes what comes back;
a driver only stores and applies. Drivers see payloads as encoded ``bytes`` (``Task.args`` and
``Task.result.value``), never Python objects, and take every decision from ``transitions``,
applying each as one compare-and-set against the stored row.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from . import errors
from ._joins import Join

# The changes ``apply`` takes are frozen values (``changes.py``); re-exported here, where drivers look for the contract.
from .changes import Change as Change
from .changes import Completion as Completion
from .clock import Clock
from .errors import TaskstoreError
from .gates import KeyGate
from .health import HealthReport, Thresholds
from .model import DeadSummary, Limit, NewTask, State, Task, WorkerHeartbeat

Outcome = Task | TaskstoreError


def apply_in_order(current: dict[str, Task], changes: Sequence[tuple[str, Change]], now: datetime) -> list[Outcome]:
    """Apply each change to its task in ``current`` (updated in place), in order; one outcome each.

    The one place where a batch of changes is decided: every driver reads the rows (under its own
    lock or transaction), calls this, and writes back what changed. A ``TaskstoreError`` raised by a
    change is that item's outcome and leaves its task as it was; an id not in ``current`` is ``NotFound``.
    """
    outcomes: list[Outcome] = []
    for task_id, change in changes:
        task = current.get(task_id)
        if task is None:
            outcomes.append(errors.NotFound(task_id))
            continue
        try:
            changed = change(task, now)
        except errors.TaskstoreError as exc:
            outcomes.append(exc)
            continue
        if changed is not None:
            current[task_id] = task = changed
        outcomes.append(task)
    return outcomes


class NewRow(NamedTuple):
    """A validated task to insert: its id and its codec-encoded payload.

    A named tuple, not a frozen dataclass: bulk enqueue makes one per task, and a tuple is made in a fifth of
    the time (0.25 against 1.1 µs here).
    """

    new: NewTask
    id: str
    args: bytes


@dataclass(frozen=True, slots=True)
class RecurringRow:
    """A stored schedule: the template's fields as JSON, its payload encoded, the next slot due.

    ``owner`` names the App that declared it (None: added by hand); a worker of that App removes the
    App's schedules it no longer declares.
    """

    id: str
    schedule: str
    template: str
    args: bytes
    skip_if_outstanding: bool
    next_at: datetime
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A queue as stored: paused or not, its live tasks by state, and its longest-waiting ready task's run_at.

    ``counts`` holds only the states that occur; ``oldest_ready_at`` is the least ``run_at`` among its
    claimable tasks (queued, or failed and due; not expired) at the store's clock, None when there is none.
    """

    name: str
    paused: bool
    counts: dict[State, int]
    oldest_ready_at: datetime | None


@dataclass(frozen=True, slots=True)
class StatusRow:
    """A status-only record: a task the store has never held (run elsewhere), kept until it expires."""

    id: str
    state: str
    payload: Any
    error: dict[str, Any] | None
    attempt: int
    meta: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ChordRow:
    """A task to insert later, stored with its group: a chord's callback or a chain's link.

    The task's id, its template as JSON, its own encoded args (the results go before them).
    """

    id: str
    template: str
    args: bytes


class ChordArgs(Protocol):
    """Builds a callback's encoded args from its template's encoded args and the encoded results before it.

    A chord's callback gets the members' results as one list; a chain's link (``single``) gets the one
    result of the link before it, as itself.
    """

    def __call__(self, template: bytes, results: Sequence[bytes | None], /, *, single: bool = False) -> bytes: ...


@dataclass(frozen=True, slots=True)
class GroupRow:
    """A stored group, and its member tasks as they stand.

    ``results`` holds statuses recorded with ``add_group_result`` (tasks run elsewhere); ``members``
    are the store's own tasks of the group (live or archived), in member order: their states are the
    group's. ``member_ids`` and ``callback`` are set for a group enqueued with its members (a chord
    has a callback); ``ttl`` is how long the group is kept once its last member has finished.
    A chain is a group whose members are its links, inserted one at a time: ``links`` holds the
    templates of every link after the first (empty for a chain of one), in order.
    """

    id: str
    expected: int
    results: dict[str, Any]
    meta: dict[str, Any]
    chord_claimed: bool
    chord_callback_id: str | None
    chord_dispatched_at: datetime | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    member_ids: tuple[str, ...] | None = None
    callback: ChordRow | None = None
    ttl: float | None = None
    members: tuple[Task, ...] = ()
    links: tuple[ChordRow, ...] | None = None


@dataclass(frozen=True, slots=True)
class ListQuery:
    state: State | None = None
    queue: str | None = None
    ready_as_of: datetime | None = None
    after_seq: int | None = None
    limit: int = 100
    descending: bool = False
    archived: bool = False
    kind: str | None = None


class Lifecycle(Protocol):
    clock: Clock
    # True while the driver knows that other processes' wake-ups do not reach it (PostgreSQL's LISTEN behind
    # a pooler in transaction mode): the store's blocked claimers then poll at a short interval instead.
    notifications_lost: bool

    @property
    def wake_key(self) -> Hashable:
        """Stores sharing this key share a database: a write by one wakes claimers of the others."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...


class ChunkedInsert(Protocol):
    """Optional: a driver that sends a large batch in chunks takes them as they are made (``Outbox.insert``'s
    rules, for batches outside a caller's transaction), so the store encodes a chunk while the driver sends the
    one before. ``news`` are the batch's tasks as given (their unique keys are read before any chunk is made);
    ``chunks`` their rows, in order. Whatever producing a chunk raises, nothing of the batch is stored."""

    @property
    def insert_chunk(self) -> int:
        """Batches larger than this come in chunks of this many rows."""
        ...

    async def insert_chunked(self, news: Sequence[NewTask], chunks: Iterable[Sequence[NewRow]]) -> list[Task]: ...


class Outbox(Protocol):
    async def insert(self, rows: Sequence[NewRow], conn: Join | None = None) -> list[Task]:
        """All-or-nothing insert; ``conn`` is the caller's open transaction to join. One task per row.

        With ``conn`` (a ``_joins.Join``) the insert uses ``conn.raw`` only: it runs in the caller's thread,
        maybe with no event loop, so it must not await anything of the driver's own (pool, loop, locks).

        Stores each row's encoded payload; the tasks returned carry the caller's own ``args``
        (``row.new.args``), so create does not pay for a decode.

        Unique tasks (SPEC §9): a row whose ``(queue, unique_key)`` is held by a stored task
        (``transitions.holds_key``) is not inserted; its task in the result is that holder as stored
        (``args`` still encoded). A holder
        whose ``unique_until`` has passed is released (``transitions.release_key``) and the row inserted,
        in the same transaction. A later row of the batch with the key of an earlier one gets that
        earlier task (the same object, or that task as stored). The store tells inserted tasks from
        holders by ``task.args is row.new.args`` (a holder may even have the row's id: the same create
        sent twice), so an inserted task must carry the row's own ``args`` object, never a copy.
        The unique index ``tasks_unique`` (or the memory backend's lock) is what decides, so
        two processes racing to create one key get one task; never a read-then-insert without it.
        """
        ...

    async def get(self, task_id: str, *, archived: bool = False) -> Task: ...

    async def list_tasks(self, query: ListQuery) -> list[Task]: ...

    async def count(self, state: State | None, queue: str | None, archived: bool) -> int: ...

    async def finished_counts(self, since: datetime, bucket: float) -> list[tuple[int, State, int]]:
        """Finishes kept per minute (tasks that reached done, dead or cancelled, by ``finished_at``) from
        ``since`` (a whole minute) on: (slot, state, count), slot = whole ``bucket``s (whole minutes) after
        ``since``. Kept as events: archiving or retrying a task later does not take its finish back."""
        ...

    async def dead_summaries(self, limit: int) -> list[DeadSummary]:
        """The newest ``limit`` dead tasks, newest (highest seq) first, read over an index of dead tasks only."""
        ...

    async def vacuum(self) -> list[str]:
        """Reclaim the dead rows of tables that churn, where the backend keeps old row versions (PostgreSQL);
        the names of the tables it vacuumed."""
        ...

    async def analyze_grown(self) -> list[str]:
        """Refresh the planner's statistics of tables that have grown far past them, where plans kept for
        prepared statements were chosen for their old size (PostgreSQL); the names of the tables analyzed."""
        ...

    async def fold_counts(self, keep_since: datetime) -> int:
        """Tidy the kept counts: fold what is pending into the totals, where a backend keeps deltas, and drop
        the per-minute finishes before ``keep_since``. Never blocks on another process doing the same."""
        ...

    async def outstanding_count(self, recurring_id: str) -> int: ...


class Claims(Protocol):
    """Claims pass every gate of SPEC §9 inside the claim itself (one transaction or lock with it):

    - a task in a paused queue is not claimed;
    - an expired task is not claimed (``transitions.is_claimable``);
    - a task whose ``concurrency_key`` has a limit is claimed only while its ``gates.KeyGate`` admits
      one more (``gates.pick``, with the key's running count and token bucket read under the claim's
      lock, and the buckets drawn on written back in the same transaction); a task held back does not
      stop the tasks behind it from being claimed.
    ``claim_task`` honours the same gates (``None`` when one holds the task back); ``find_available``
    returns what a claim would take now, claiming nothing and drawing no tokens.
    """

    async def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, token: Callable[[], str], recover: bool = False
    ) -> list[Task]:
        """Claim up to ``limit`` ready tasks in claim order, each under a fresh token.

        With ``recover``, the timed-out leases in ``queues`` (up to ``limit``, in claim order) are reaped first
        (``transitions.reap``), so a task whose worker crashed or froze is claimed again without waiting for a
        reaper pass: at once by default, in its old place in claim order.
        """
        ...

    async def lease_expiry(self, queues: Sequence[str]) -> datetime | None:
        """The earliest ``times_out_at`` among the tasks claimed in ``queues`` (all when empty): when a blocked
        claimer should look again for a lease to recover."""
        ...

    async def claim_task(self, task_id: str, worker_id: str, ttl: float | None, token: str) -> Task | None: ...

    async def find_available(self, queues: Sequence[str], limit: int) -> list[Task]: ...

    async def has_claimable(self, queues: Sequence[str]) -> bool:
        """A cheap read-only check, used by blocked claimers that poll (paused queues and expired tasks
        excluded; it may say True for tasks a key limit still holds back)."""
        ...

    async def cancel_requested_among(self, task_ids: Sequence[str]) -> set[str]:
        """Which of these tasks are ``claimed`` with a cancel request: one cheap read-only query by id.

        A worker asks it about its in-flight tasks whenever a cancel may have been requested (see
        ``_wakeup.cancel_key``), so it must read only the ``id``/``state``/``cancel_requested`` columns.
        """
        ...


class Transitions(Protocol):
    async def apply(self, changes: Sequence[tuple[str, Change]]) -> list[Outcome]:
        """Apply each change to its task atomically, in order; one outcome per change.

        A ``TaskstoreError`` raised by a change (fencing, stale version) is that item's outcome and
        leaves its task unchanged; a missing id is ``NotFound``. Other items still apply.
        """
        ...


class Completions(Protocol):
    async def acknowledge(self, completions: Sequence[Completion]) -> list[TaskstoreError | None]:
        """Apply completions (ids unique) and return only refusals: ``None`` for each accepted one.

        The worker's completer needs no task back, so drivers skip reading and converting rows.
        """
        ...


class Maintenance(Protocol):
    async def reap(self, limit: int) -> int:
        """Time out expired leases (``transitions.reap``) and end expired waiting tasks
        (``transitions.expire``), up to ``limit`` of each; returns how many tasks changed."""
        ...

    async def archive(self, before: datetime, limit: int) -> int: ...

    async def archive_ids(self, ids: Sequence[str]) -> int:
        """Move the finished (``done``/``dead``/``cancelled``) tasks among ``ids`` to the archive, in one
        transaction, the same way ``archive`` moves them; others and unknown ids are left alone."""
        ...


class Schedules(Protocol):
    async def put_recurring(self, row: RecurringRow) -> RecurringRow:
        """Insert or replace by id; an unchanged schedule keeps its stored ``next_at``."""
        ...

    async def delete_recurring(self, recurring_id: str) -> bool: ...

    async def list_recurring(self) -> list[RecurringRow]: ...

    async def advance_recurring(self, recurring_id: str, expected: datetime, next_at: datetime) -> bool:
        """Compare-and-set ``next_at``: True for the one scheduler that moved it on."""
        ...


class Statuses(Protocol):
    async def put_status(self, row: StatusRow) -> StatusRow:
        """Upsert by id, keeping the first ``created_at`` of a live record."""
        ...

    async def get_status(self, status_id: str) -> StatusRow | None:
        """The record, or None when missing or expired."""
        ...

    async def expire_status(self, status_id: str, expires_at: datetime) -> None: ...

    async def list_statuses(
        self, state: str | None, queue: str | None, before: tuple[datetime, str] | None, limit: int
    ) -> list[StatusRow]:
        """Live records, newest first (created_at, then id, descending), strictly before ``before``."""
        ...

    async def purge_statuses(self) -> int: ...

    async def change_marker(self) -> Hashable | None:
        """Something that changes whenever another process commits (None: no cheap way to tell).

        Status watchers compare it between polls and read statuses again only when it moved.
        """
        ...


class Groups(Protocol):
    """Groups, and the chords that fire from their members' completions.

    Whenever a write ends a task that has a ``group_id`` (``apply``, ``acknowledge``, ``reap``,
    ``claim_task``), the driver settles that group in the same transaction (see ``_groups.settle``):
    once no member is unfinished it keeps the group ``ttl`` longer, and when every member is ``done``
    it claims the chord and inserts the callback, built with ``chord_args``, exactly once. A chain's
    link that ends ``done`` inserts the next link there, exactly once, the same way.
    """

    chord_args: ChordArgs

    async def insert_group(self, group: GroupRow, rows: Sequence[NewRow]) -> list[Task]:
        """Insert a new group and its member tasks in one transaction (``AlreadyExists`` for a taken id)."""
        ...

    async def put_group(self, group_id: str, expected: int, meta: dict[str, Any], expires_at: datetime) -> GroupRow:
        """Create or re-initialise a group: no results, no chord claim."""
        ...

    async def add_group_result(self, group_id: str, member_id: str, status: dict[str, Any]) -> GroupRow | None:
        """Record one member's status atomically (a member again replaces itself); None if missing or expired."""
        ...

    async def get_group(self, group_id: str) -> GroupRow | None:
        """The group with its members; None if missing, or expired with no member unfinished."""
        ...

    async def claim_chord(self, group_id: str, callback_id: str | None, dispatched_at: datetime) -> bool:
        """Compare-and-set: True for exactly one caller of a live group."""
        ...

    async def purge_groups(self) -> int:
        """Delete expired groups; a group with an unfinished member is kept."""
        ...


class FlowControl(Protocol):
    """Paused queues and per-key limits (SPEC §9), durable in the store."""

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue (it need not have tasks); claims see it at once."""
        ...

    async def paused_queues(self) -> set[str]: ...

    async def queue_rows(self) -> list[QueueRow]:
        """Every queue with a live (not archived) task or a paused/resumed record, by name."""
        ...

    async def put_limit(self, limit: Limit) -> None:
        """Set a key's limit. A new key's bucket starts full (``gates.new_gate``); setting it again keeps
        the bucket's level capped at the new rate (``gates.reset_gate``)."""
        ...

    async def delete_limit(self, key: str) -> bool: ...

    async def list_limits(self) -> list[Limit]:
        """Every limit, by key."""
        ...

    async def key_gate(self, key: str) -> KeyGate | None:
        """The key's limit, its running count and its bucket as stored (read only); None without a limit."""
        ...

    async def claimed_with_key(self, key: str, limit: int) -> list[Task]:
        """Tasks of ``key`` that are claimed now (who holds the key's concurrency)."""
        ...


class Heartbeats(Protocol):
    async def put_heartbeat(self, heartbeat: WorkerHeartbeat) -> WorkerHeartbeat:
        """Upsert by worker id, stamped with the store's clock."""
        ...

    async def get_heartbeat(self, worker_id: str, since: datetime) -> WorkerHeartbeat | None: ...

    async def list_heartbeats(self, since: datetime) -> list[WorkerHeartbeat]: ...

    async def purge_heartbeats(self, before: datetime) -> int: ...


class Health(Protocol):
    async def health(self, thresholds: Thresholds) -> HealthReport:
        """Figures of the store's storage and server, judged against ``thresholds`` (``taskstore doctor``)."""
        ...


class Driver(
    Lifecycle,
    Health,
    Outbox,
    Claims,
    Transitions,
    Completions,
    Maintenance,
    Schedules,
    Statuses,
    Groups,
    FlowControl,
    Heartbeats,
    Protocol,
):
    """Everything the store facade needs from a backend."""
