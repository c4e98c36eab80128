"""The memory backend: a real backend for tests and single-process use.

It passes the whole conformance suite. State lives in dicts guarded by one lock; every operation
runs to completion under the lock without awaiting, so each change is atomic. Payloads are kept
encoded, as a database would keep them, so callers never share mutable objects with the store.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import datetime
from typing import Any

from .. import errors, gates, transitions
from .._joins import Join
from .._wakeup import HUB
from ..backend import (
    Change,
    ChordArgs,
    Completion,
    GroupRow,
    ListQuery,
    NewRow,
    Outcome,
    QueueRow,
    RecurringRow,
    StatusRow,
    apply_in_order,
)
from ..clock import Clock
from ..gates import KeyGate
from ..health import HealthReport, Thresholds, memory_report
from ..model import DEAD_MESSAGE_CHARS, DeadSummary, Limit, NewTask, State, Task, WorkerHeartbeat
from . import _groups

log = logging.getLogger("taskstore.memory")


def _key(new: NewTask) -> str:
    assert new.unique_key is not None
    return new.unique_key


_FINISHED = frozenset({State.DONE, State.DEAD, State.CANCELLED})


def _summary(task: Task) -> DeadSummary:
    failure = task.result.failure if task.result is not None else None
    return DeadSummary(
        task.id,
        task.queue,
        task.kind,
        task.finished_at,
        failure.type if failure is not None else "",
        failure.message[:DEAD_MESSAGE_CHARS] if failure is not None else "",
    )


class _TaskTable(dict[str, Task]):
    """The live tasks, keeping finishes per minute as a database's triggers do (see ``finished_counts``):
    every write of a task goes through ``__setitem__``, so no transition can miss it."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: dict[tuple[datetime, State], int] = {}

    def __setitem__(self, task_id: str, task: Task) -> None:
        old = self.get(task_id)
        if task.state in _FINISHED and task.finished_at is not None and (old is None or old.state not in _FINISHED):
            minute = task.finished_at.replace(second=0, microsecond=0)
            key = (minute, task.state)
            self.finished[key] = self.finished.get(key, 0) + 1
        super().__setitem__(task_id, task)


class MemoryDriver:
    loop_free = True  # plain dicts under a threading lock: usable from any event loop (see Store.rebind)
    notifications_lost = False  # every waiter is in this process: wake-ups never get lost

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._tasks = _TaskTable()  # insertion order is seq order
        self._archive: list[Task] = []
        self._seq = itertools.count(1)
        self._key = object()
        self._recurring: dict[str, RecurringRow] = {}
        self._heartbeats: dict[str, WorkerHeartbeat] = {}
        self._groups: dict[str, GroupRow] = {}
        self._statuses: dict[str, StatusRow] = {}
        # Flow control (SPEC §9). ``_unique`` points each held (queue, unique_key) at its holder; an entry
        # whose task no longer holds the key (finished, released, archived) is stale and ignored.
        self._unique: dict[tuple[str, str], str] = {}
        self._queues: dict[str, bool] = {}  # queue -> paused, for every queue paused or resumed once
        self._limits: dict[str, gates.KeyGate] = {}  # key -> its limit and stored bucket (running unused)
        self.chord_args: ChordArgs = _groups.no_chord_args

    @property
    def wake_key(self) -> Hashable:
        return self._key

    async def open(self) -> None:
        return None

    async def health(self, thresholds: Thresholds) -> HealthReport:
        return memory_report()

    async def close(self) -> None:
        return None

    # -- outbox ---------------------------------------------------------------------------------

    async def insert(self, rows: Sequence[NewRow], conn: Join | None = None) -> list[Task]:
        if conn is None:
            with self._lock:
                return self._insert(rows)
        return self._insert_at_commit(rows, conn)

    def _insert_at_commit(self, rows: Sequence[NewRow], join: Join) -> list[Task]:
        """``conn=``: there is no database of the caller's to write into, so follow its transaction instead.

        Where the caller's library has a commit hook (``join.on_commit``: SQLAlchemy, Django) the tasks
        are recorded when its transaction commits, and never if it rolls back; a raw sqlite3/psycopg
        connection has none, so they are recorded at once (a rollback does not take them back). A taken
        id is refused now; the ids are known now. Runs in the caller's thread; the hook may fire on any.
        """
        with self._lock:
            now = self.clock.now()
            seen: set[str] = set()
            for row in rows:
                if row.id in self._tasks or row.id in seen:
                    raise errors.AlreadyExists(row.id)
                seen.add(row.id)
        on_commit = getattr(join, "on_commit", None)
        if on_commit is None or not on_commit(lambda: self._record_committed(rows)):
            with self._lock:
                inserted = self._insert(rows)
            self._woken()
            return inserted
        # What the tasks will be once recorded (their order number comes at commit).
        return [transitions.create(row.new, task_id=row.id, now=now, args=row.new.args) for row in rows]

    def _record_committed(self, rows: Sequence[NewRow]) -> None:
        try:
            with self._lock:
                self._insert(rows)
        except errors.TaskstoreError as exc:  # an id taken between enqueue and commit: the commit stands
            log.error("memory store: tasks enqueued in a transaction that committed were not recorded: %s", exc)
            return
        self._woken()

    def _woken(self) -> None:
        """Tasks recorded outside a Store call: wake this process's claimers and status watchers, as a Store does."""
        HUB.notify(self._key)
        HUB.notify(("status", self._key))

    def _insert(self, rows: Sequence[NewRow]) -> list[Task]:
        """All-or-nothing insert; the caller holds the lock. A held unique key gives back its holder."""
        now = self.clock.now()
        seen: set[str] = set()
        batch: dict[tuple[str, str], int] = {}  # a unique key this batch inserts -> its row's index
        holders: dict[int, Task] = {}  # row index -> the existing task it gets instead of a new one
        releases: list[Task] = []
        for index, row in enumerate(rows):
            key = row.new.unique_key
            if key is not None:
                slot = (row.new.queue, key)
                if slot in batch:
                    continue
                holder = self._holder(slot)
                if holder is not None and transitions.holds_key(holder, now):
                    holders[index] = holder
                    continue
                if holder is not None:
                    releases.append(holder)  # past its unique_for: gives the key up to this row
                batch[slot] = index
            if row.id in self._tasks or row.id in seen:
                raise errors.AlreadyExists(row.id)
            seen.add(row.id)
        for holder in releases:
            self._tasks[holder.id] = transitions.release_key(holder, now)
        result: list[Task] = []
        for index, row in enumerate(rows):
            if index in holders:
                result.append(holders[index])
                continue
            new = row.new
            first = None if new.unique_key is None else batch[(new.queue, new.unique_key)]
            if first is not None and first != index:
                result.append(result[first])  # the same key earlier in this batch: that task
                continue
            task = transitions.create(new, task_id=row.id, now=now, args=new.args, seq=next(self._seq))
            self._tasks[task.id] = task.replace(args=row.args)  # kept encoded, as a database keeps it
            if first is not None:
                self._unique[(new.queue, _key(new))] = task.id
            result.append(task)
        return result

    def _holder(self, slot: tuple[str, str]) -> Task | None:
        """The live task holding ``slot``'s key in its hold states (within unique_for or not), if any."""
        task_id = self._unique.get(slot)
        task = None if task_id is None else self._tasks.get(task_id)
        if task is None or task.unique_hold is None or task.state not in task.unique_hold:
            return None
        return task

    async def get(self, task_id: str, *, archived: bool = False) -> Task:
        with self._lock:
            if archived:
                for task in reversed(self._archive):
                    if task.id == task_id:
                        return task
                raise errors.NotFound(task_id, "archived task")
            try:
                return self._tasks[task_id]
            except KeyError:
                raise errors.NotFound(task_id) from None

    def _matching(self, query: ListQuery) -> Iterable[Task]:
        source: Sequence[Task] = self._archive if query.archived else list(self._tasks.values())
        ordered = reversed(source) if query.descending else iter(source)
        for task in ordered:
            if query.after_seq is not None and (
                task.seq >= query.after_seq if query.descending else task.seq <= query.after_seq
            ):
                continue
            if query.state is not None and task.state is not query.state:
                continue
            if query.queue is not None and task.queue != query.queue:
                continue
            if query.kind is not None and task.kind != query.kind:
                continue
            if query.ready_as_of is not None and task.run_at > query.ready_as_of:
                continue
            yield task

    async def list_tasks(self, query: ListQuery) -> list[Task]:
        with self._lock:
            return list(itertools.islice(self._matching(query), query.limit))

    async def count(self, state: State | None, queue: str | None, archived: bool) -> int:
        with self._lock:
            return sum(1 for _ in self._matching(ListQuery(state=state, queue=queue, archived=archived)))

    async def finished_counts(self, since: datetime, bucket: float) -> list[tuple[int, State, int]]:
        counts: dict[tuple[int, State], int] = {}
        with self._lock:
            for (minute, state), n in self._tasks.finished.items():
                if minute >= since:
                    key = (int((minute - since).total_seconds() // bucket), state)
                    counts[key] = counts.get(key, 0) + n
        return [(slot, state, n) for (slot, state), n in counts.items()]

    async def dead_summaries(self, limit: int) -> list[DeadSummary]:
        with self._lock:
            dead = itertools.islice((t for t in reversed(self._tasks.values()) if t.state is State.DEAD), limit)
            return [_summary(t) for t in dead]

    async def vacuum(self) -> list[str]:
        return []

    async def analyze_grown(self) -> list[str]:
        return []

    async def fold_counts(self, keep_since: datetime) -> int:
        with self._lock:
            old = [key for key in self._tasks.finished if key[0] < keep_since]
            for key in old:
                del self._tasks.finished[key]
            return len(old)

    async def outstanding_count(self, recurring_id: str) -> int:
        outstanding = (State.QUEUED, State.FAILED, State.CLAIMED)
        with self._lock:
            return sum(1 for t in self._tasks.values() if t.recurring_id == recurring_id and t.state in outstanding)

    # -- claims ---------------------------------------------------------------------------------

    def _ready(self, queues: Sequence[str], limit: int, now: datetime, *, draw: bool) -> list[Task]:
        """What a claim takes now, past every gate of SPEC §9, in claim order; ``draw`` takes the tokens."""
        wanted, paused = set(queues), {q for q, p in self._queues.items() if p}
        ready = (
            t
            for t in self._tasks.values()
            if transitions.is_claimable(t, now) and (not wanted or t.queue in wanted) and t.queue not in paused
        )
        if not self._limits:
            return heapq.nsmallest(limit, ready, key=transitions.claim_order)
        candidates = sorted(ready, key=transitions.claim_order)
        limited = {t.concurrency_key for t in candidates if t.concurrency_key in self._limits}
        keyed = self._gates({k for k in limited if k is not None})
        chosen, _ = gates.pick([t.concurrency_key for t in candidates], keyed, now, limit)
        if draw:
            self._draw(keyed)
        return [candidates[i] for i in chosen]

    def _gates(self, keys: set[str], *, skip: str | None = None) -> dict[str, gates.KeyGate]:
        """The gates of limited ``keys`` as a claim sees them now (fresh copies; ``skip`` is not counted running)."""
        running = dict.fromkeys(keys, 0)
        if keys:
            for task in self._tasks.values():
                key = task.concurrency_key
                if key in running and task.state is State.CLAIMED and task.id != skip:
                    running[key] += 1
        return {k: dataclasses.replace(self._limits[k], running=n, drawn=0) for k, n in running.items()}

    def _draw(self, keyed: dict[str, gates.KeyGate]) -> None:
        """Store the buckets a claim drew on."""
        for key, gate in keyed.items():
            if gate.drawn:
                self._limits[key] = dataclasses.replace(gate, running=0, drawn=0)

    async def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, token: Callable[[], str], recover: bool = False
    ) -> list[Task]:
        with self._lock:
            now = self.clock.now()
            if recover:
                wanted = set(queues)
                lost = (t for t in self._tasks.values() if transitions.is_timed_out(t, now))
                for task in heapq.nsmallest(
                    limit, (t for t in lost if not wanted or t.queue in wanted), key=transitions.claim_order
                ):
                    changed = transitions.reap(task, now=now)
                    if changed is not None:
                        self._tasks[task.id] = changed
                        self._settle([(task, changed)], now)
            claimed = [
                transitions.claim(task, worker_id=worker_id, token=token(), now=now)
                for task in self._ready(queues, limit, now, draw=True)
            ]
            for task in claimed:
                self._tasks[task.id] = task
            return claimed

    async def claim_task(self, task_id: str, worker_id: str, ttl: float | None, token: str) -> Task | None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise errors.NotFound(task_id)
            now = self.clock.now()
            changed = transitions.take_over(task, worker_id=worker_id, token=token, now=now, lease=ttl)
            if changed is None:
                return None
            if changed.state is State.CLAIMED:
                if self._queues.get(task.queue, False):
                    return None  # a paused queue: not taken, not changed
                key = task.concurrency_key
                if key is not None and key in self._limits:
                    keyed = self._gates({key}, skip=task.id)
                    if not keyed[key].admits(now):
                        return None
                    keyed[key].take(now)
                    self._draw(keyed)
            self._tasks[task_id] = changed
            self._settle([(task, changed)], now)
            return changed if changed.state is State.CLAIMED else None

    async def find_available(self, queues: Sequence[str], limit: int) -> list[Task]:
        with self._lock:
            return self._ready(queues, limit, self.clock.now(), draw=False)

    async def lease_expiry(self, queues: Sequence[str]) -> datetime | None:
        with self._lock:
            wanted = set(queues)
            ends = [
                t.claim.times_out_at
                for t in self._tasks.values()
                if t.state is State.CLAIMED and t.claim is not None and (not wanted or t.queue in wanted)
            ]
            return min(ends, default=None)

    async def has_claimable(self, queues: Sequence[str]) -> bool:
        with self._lock:
            now = self.clock.now()
            wanted, paused = set(queues), {q for q, p in self._queues.items() if p}
            return any(
                transitions.is_claimable(t, now) and (not wanted or t.queue in wanted) and t.queue not in paused
                for t in self._tasks.values()
            )

    async def cancel_requested_among(self, task_ids: Sequence[str]) -> set[str]:
        with self._lock:
            found = (self._tasks.get(i) for i in task_ids)
            return {t.id for t in found if t is not None and t.state is State.CLAIMED and t.cancel_requested}

    # -- transitions ----------------------------------------------------------------------------

    async def apply(self, changes: Sequence[tuple[str, Change]]) -> list[Outcome]:
        with self._lock:
            now = self.clock.now()
            before = {task_id: self._tasks.get(task_id) for task_id, _ in changes}
            outcomes = apply_in_order(self._tasks, changes, now)
            self._settle(
                [(old, self._tasks[i]) for i, old in before.items() if old is not None and self._tasks[i] is not old],
                now,
            )
            return outcomes

    async def acknowledge(self, completions: Sequence[Completion]) -> list[errors.TaskstoreError | None]:
        outcomes = await self.apply([(c.lease.task_id, c) for c in completions])
        return [o if isinstance(o, errors.TaskstoreError) else None for o in outcomes]

    # -- maintenance ----------------------------------------------------------------------------

    async def reap(self, limit: int) -> int:
        """Time out expired leases, then cancel waiting tasks past ``expires_at``: up to ``limit`` changes in all."""
        with self._lock:
            now = self.clock.now()
            reaped = 0
            for step in (transitions.reap, transitions.expire):
                for task in list(self._tasks.values()):
                    if reaped >= limit:
                        return reaped
                    changed = step(task, now=now)
                    if changed is not None:
                        self._tasks[task.id] = changed
                        self._settle([(task, changed)], now)
                        reaped += 1
            return reaped

    async def archive(self, before: datetime, limit: int) -> int:
        with self._lock:
            moving = [
                t
                for t in self._tasks.values()
                if t.state.is_terminal and t.finished_at is not None and t.finished_at <= before
            ][:limit]
            return self._move_to_archive(moving)

    async def archive_ids(self, ids: Sequence[str]) -> int:
        with self._lock:
            found = (self._tasks.get(i) for i in ids)
            return self._move_to_archive([t for t in found if t is not None and t.state.is_terminal])

    def _move_to_archive(self, moving: list[Task]) -> int:
        """Both archivers' one move, under the lock: out of the live tasks (and the unique index), into the archive."""
        for task in moving:
            del self._tasks[task.id]
            if task.unique_key is not None and self._unique.get((task.queue, task.unique_key)) == task.id:
                del self._unique[(task.queue, task.unique_key)]  # the index does not outgrow the live tasks
        self._archive.extend(moving)
        self._archive.sort(key=lambda t: t.seq)
        return len(moving)

    # -- recurring schedules --------------------------------------------------------------------

    async def put_recurring(self, row: RecurringRow) -> RecurringRow:
        with self._lock:
            old = self._recurring.get(row.id)
            if old is not None and old.schedule == row.schedule:
                row = dataclasses.replace(row, next_at=old.next_at)
            self._recurring[row.id] = row
            return row

    async def delete_recurring(self, recurring_id: str) -> bool:
        with self._lock:
            return self._recurring.pop(recurring_id, None) is not None

    async def list_recurring(self) -> list[RecurringRow]:
        with self._lock:
            return sorted(self._recurring.values(), key=lambda r: r.id)

    async def advance_recurring(self, recurring_id: str, expected: datetime, next_at: datetime) -> bool:
        with self._lock:
            row = self._recurring.get(recurring_id)
            if row is None or row.next_at != expected:
                return False
            self._recurring[recurring_id] = dataclasses.replace(row, next_at=next_at)
            return True

    # -- status-only records --------------------------------------------------------------------

    def _live_status(self, status_id: str) -> StatusRow | None:
        row = self._statuses.get(status_id)
        return row if row is not None and row.expires_at > self.clock.now() else None

    async def put_status(self, row: StatusRow) -> StatusRow:
        with self._lock:
            old = self._live_status(row.id)
            if old is not None:
                row = dataclasses.replace(row, created_at=old.created_at)
            self._statuses[row.id] = row
            return row

    async def get_status(self, status_id: str) -> StatusRow | None:
        with self._lock:
            return self._live_status(status_id)

    async def expire_status(self, status_id: str, expires_at: datetime) -> None:
        with self._lock:
            row = self._live_status(status_id)
            if row is not None:
                self._statuses[status_id] = dataclasses.replace(row, expires_at=expires_at)

    async def list_statuses(
        self, state: str | None, queue: str | None, before: tuple[datetime, str] | None, limit: int
    ) -> list[StatusRow]:
        with self._lock:
            now = self.clock.now()
            rows = [
                r
                for r in self._statuses.values()
                if r.expires_at > now
                and (state is None or r.state == state)
                and (queue is None or r.meta.get("queue") == queue)
                and (before is None or (r.created_at, r.id) < before)
            ]
            return sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)[:limit]

    async def change_marker(self) -> Hashable | None:
        return None  # one process: every change already wakes watchers in-process

    async def purge_statuses(self) -> int:
        with self._lock:
            now = self.clock.now()
            old = [k for k, r in self._statuses.items() if r.expires_at <= now]
            for key in old:
                del self._statuses[key]
            return len(old)

    # -- groups and chords ----------------------------------------------------------------------

    def _with_members(self, group: GroupRow) -> GroupRow:
        if group.member_ids is not None:
            live = [t for t in map(self._tasks.get, group.member_ids) if t is not None and t.group_id == group.id]
        else:
            live = [t for t in self._tasks.values() if t.group_id == group.id]
        archived = [t for t in self._archive if t.group_id == group.id]
        return dataclasses.replace(group, members=_groups.in_order(group, live, archived))

    def _live_group(self, group_id: str) -> GroupRow | None:
        """A group lives until it expires, and past that while a member is unfinished."""
        group = self._groups.get(group_id)
        if group is None:
            return None
        group = self._with_members(group)
        if group.expires_at > self.clock.now() or any(not t.state.is_terminal for t in group.members):
            return group
        return None

    def _settle(self, changes: Sequence[tuple[Task, Task]], now: datetime) -> None:
        """Settle the groups of members this write ended, under the same lock (see ``_groups.settle``)."""
        for group_id in _groups.ended_groups(changes):
            group = self._groups.get(group_id)
            if group is None:
                continue
            settled = _groups.settle(self._with_members(group), now, self.chord_args)
            if settled is None:
                continue
            self._groups[group_id] = dataclasses.replace(settled.group, members=())
            callback = settled.callback
            # Through the unique check, as the SQL backends do: a callback whose key is held is not
            # inserted (the holder stands in), and the key's holder stays the one the index knows.
            if (
                callback is not None
                and callback.id not in self._tasks
                and self._insert([callback])[0].id == callback.id
            ):
                HUB.notify(self._key)

    async def insert_group(self, group: GroupRow, rows: Sequence[NewRow]) -> list[Task]:
        with self._lock:
            if group.id in self._groups:
                raise errors.AlreadyExists(group.id)
            now = self.clock.now()
            created = self._insert(rows)
            self._groups[group.id] = dataclasses.replace(group, created_at=now, updated_at=now)
            return created

    async def put_group(self, group_id: str, expected: int, meta: dict[str, Any], expires_at: datetime) -> GroupRow:
        with self._lock:
            now = self.clock.now()
            old = self._live_group(group_id)
            created = old.created_at if old is not None else now
            row = _groups.initial_group(group_id, expected, meta, created, now, expires_at)
            self._groups[group_id] = row
            return self._with_members(row)

    async def add_group_result(self, group_id: str, member_id: str, status: dict[str, Any]) -> GroupRow | None:
        with self._lock:
            group = self._live_group(group_id)
            if group is None:
                return None
            row = dataclasses.replace(group, results={**group.results, member_id: status}, updated_at=self.clock.now())
            self._groups[group_id] = dataclasses.replace(row, members=())
            return row

    async def get_group(self, group_id: str) -> GroupRow | None:
        with self._lock:
            return self._live_group(group_id)

    async def claim_chord(self, group_id: str, callback_id: str | None, dispatched_at: datetime) -> bool:
        with self._lock:
            group = self._live_group(group_id)
            if group is None or group.chord_claimed:
                return False
            self._groups[group_id] = dataclasses.replace(
                group,
                chord_claimed=True,
                chord_callback_id=callback_id,
                chord_dispatched_at=dispatched_at,
                updated_at=self.clock.now(),
                members=(),
            )
            return True

    async def purge_groups(self) -> int:
        with self._lock:
            old = [k for k in self._groups if self._live_group(k) is None]
            for key in old:
                del self._groups[key]
            return len(old)

    # -- flow control (SPEC §9) -----------------------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        with self._lock:
            self._queues[queue] = paused

    async def paused_queues(self) -> set[str]:
        with self._lock:
            return {q for q, p in self._queues.items() if p}

    async def queue_rows(self) -> list[QueueRow]:
        with self._lock:
            now = self.clock.now()
            counts: dict[str, dict[State, int]] = {q: {} for q in self._queues}
            oldest: dict[str, datetime] = {}
            for task in self._tasks.values():
                by_state = counts.setdefault(task.queue, {})
                by_state[task.state] = by_state.get(task.state, 0) + 1
                if transitions.is_claimable(task, now):
                    first = oldest.get(task.queue)
                    if first is None or task.run_at < first:
                        oldest[task.queue] = task.run_at
            return [
                QueueRow(name=q, paused=self._queues.get(q, False), counts=counts[q], oldest_ready_at=oldest.get(q))
                for q in sorted(counts)
            ]

    async def put_limit(self, limit: Limit) -> None:
        with self._lock:
            now = self.clock.now()
            old = self._limits.get(limit.key)
            self._limits[limit.key] = gates.new_gate(limit, now) if old is None else gates.reset_gate(old, limit, now)

    async def delete_limit(self, key: str) -> bool:
        with self._lock:
            return self._limits.pop(key, None) is not None

    async def list_limits(self) -> list[Limit]:
        with self._lock:
            return [self._limits[k].limit for k in sorted(self._limits)]

    async def key_gate(self, key: str) -> KeyGate | None:
        with self._lock:
            return self._gates({key})[key] if key in self._limits else None

    async def claimed_with_key(self, key: str, limit: int) -> list[Task]:
        with self._lock:
            held = [t for t in self._tasks.values() if t.concurrency_key == key and t.state is State.CLAIMED]
            return held[:limit]

    # -- worker heartbeats ----------------------------------------------------------------------

    async def put_heartbeat(self, heartbeat: WorkerHeartbeat) -> WorkerHeartbeat:
        with self._lock:
            stamped = dataclasses.replace(heartbeat, timestamp=self.clock.now())
            self._heartbeats[heartbeat.worker_id] = stamped
            return stamped

    async def get_heartbeat(self, worker_id: str, since: datetime) -> WorkerHeartbeat | None:
        with self._lock:
            found = self._heartbeats.get(worker_id)
            return found if found is not None and found.timestamp is not None and found.timestamp >= since else None

    async def list_heartbeats(self, since: datetime) -> list[WorkerHeartbeat]:
        with self._lock:
            live = [h for h in self._heartbeats.values() if h.timestamp is not None and h.timestamp >= since]
            return sorted(live, key=lambda h: h.worker_id)

    async def purge_heartbeats(self, before: datetime) -> int:
        with self._lock:
            old = [k for k, h in self._heartbeats.items() if h.timestamp is None or h.timestamp < before]
            for key in old:
                del self._heartbeats[key]
            return len(old)
