"""The SQLite backend: embedded, one machine, several processes on one file.

Every write is one ``BEGIN IMMEDIATE`` transaction (SQLite has a single writer), so a transition
read from a row and written back in the same transaction is a compare-and-set; the ``version``
guard on each UPDATE makes that explicit. WAL lets readers run beside the writer. A busy database
is retried until ``busy_timeout`` runs out, then reported as ``BackendUnavailable``: callers never
see ``database is locked``.

All statements run on one connection owned by one thread, so the event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from ... import errors, gates, limits, transitions
from ..._joins import Join
from ..._wakeup import HUB, StartWhenWanted, cancel_key
from ...backend import (
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
from ...clock import Clock
from ...gates import KeyGate
from ...health import HealthReport, Thresholds
from ...model import DEAD_MESSAGE_CHARS, DeadSummary, Limit, State, Task, WorkerHeartbeat
from .. import _groups
from .._coalesce import Coalescer
from .._columns import dead_summary
from .._records import group_from_row, heartbeat_from_row, limit_from_row, recurring_from_row, same, status_from_row
from .._sql import load_script
from . import _flow, _health
from ._checkpoints import Checkpointer
from ._commits import Spaced, watch_commits
from ._queries import Q
from ._rows import from_us, insert_params, task_from_row, to_us, write_statement

log = logging.getLogger("taskstore.sqlite")

SCHEMA_VERSION = 10
MIN_SQLITE = (3, 35, 0)
_INSERT_CHUNK = 2_000
# Workers' cancel checks woken by commits: at most one read per this many seconds, however busy the store.
CANCEL_CHECK_GAP = 0.02
# WAL checkpoints run off the commit path, on a thread of their own (_checkpoints.py): the WAL is copied back at
# least this often, and past this size a RESTART checkpoint makes it start over from its beginning.
CHECKPOINT_INTERVAL = 0.1
WAL_LIMIT = 64 * 2**20
# Single creates that queue up while the connection's thread is busy go together, in one transaction of at most
# this many rows (see backends/_coalesce.py).
COALESCE_MAX_ROWS = 500
# A write that finds the write lock taken is tried again after these pauses (doubling from the first up to the
# last), by ``_retrying`` rather than by SQLite's busy handler: that one sleeps 1, 2, 5, 10, 15, 20, 25 ms...
# between tries, while taskstore's transactions hold the lock for a fraction of a millisecond, so a create that
# met another process's claim waited whole milliseconds for a lock free long since (at 500 tasks/s, 18% of the
# producer's transactions waited 1 ms or more: the p90 of the enqueue call).
BUSY_FIRST_PAUSE = 0.0002
BUSY_MAX_PAUSE = 0.005
_MIGRATIONS = {
    1: "schema_1.sql",
    2: "schema_2.sql",
    3: "schema_3.sql",
    4: "schema_4.sql",
    5: "schema_5.sql",
    6: "schema_6.sql",
    7: "schema_7.sql",
    8: "schema_8.sql",
    9: "schema_9.sql",
    10: "schema_10.sql",
}

R = TypeVar("R")


def _check_library() -> None:
    """The queries use ``RETURNING`` (SQLite 3.35); an older library would fail on the first write."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        wanted = ".".join(map(str, MIN_SQLITE))
        raise errors.ConfigError(
            f"SQLite {sqlite3.sqlite_version} is too old: taskstore needs {wanted} or newer "
            "(Python is linked against the system's libsqlite3; upgrade it or use a newer Python build)"
        )


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


# The statement the standard library sends before the first write of a transaction, for each
# ``isolation_level`` it accepts (legacy transaction control).
_DRIVER_BEGIN = {
    "": "BEGIN",
    "DEFERRED": "BEGIN DEFERRED",
    "IMMEDIATE": "BEGIN IMMEDIATE",
    "EXCLUSIVE": "BEGIN EXCLUSIVE",
}


def _begin_caller_transaction(conn: sqlite3.Connection) -> None:
    """Make sure ``conn`` is inside a transaction that only its owner ends.

    A SAVEPOINT outside a transaction opens one that its RELEASE commits, and the caller's
    rollback would then find nothing to undo. So an idle connection gets its transaction begun
    the way the driver would begin it before the caller's own first write.
    """
    if conn.in_transaction:
        return
    autocommit = getattr(conn, "autocommit", None)  # Python 3.12+: True, False or LEGACY_TRANSACTION_CONTROL
    level = conn.isolation_level
    if autocommit is True or (autocommit is not False and level is None):
        raise errors.ConfigError(
            "conn= is in autocommit mode with no transaction open, so the tasks could not roll back with "
            "anything: BEGIN a transaction on it first, or use sqlite3's default transactional mode"
        )
    begin = "BEGIN" if autocommit is False else _DRIVER_BEGIN.get((level or "").upper())
    if begin is None:
        raise errors.ConfigError(f"conn= has an isolation_level sqlite3 does not know: {level!r}")
    conn.execute(begin)


class SQLiteDriver:
    notifications_lost = False  # other processes' commits are seen through the -shm watch, or by polling

    def __init__(
        self,
        path: str,
        clock: Clock,
        *,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
        create: bool = True,
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
        wal_limit: int = WAL_LIMIT,
    ) -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise errors.ConfigError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        if isinstance(wal_limit, bool) or not isinstance(wal_limit, int) or wal_limit <= 0:
            raise errors.ConfigError(f"wal_limit must be a positive number of bytes, not {wal_limit!r}")
        self.checkpoint_interval = limits.duration(checkpoint_interval, "checkpoint_interval", error=errors.ConfigError)
        self.wal_limit = wal_limit
        self._checkpointer: Checkpointer | None = None
        self.path = path
        self.clock = clock
        self.create = create
        self.busy_timeout = busy_timeout
        self._synchronous = synchronous.upper()
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._key = ("sqlite", os.path.realpath(path))
        self._commits: asyncio.Task[None] | None = None
        self._watch_when_wanted: StartWhenWanted | None = None
        self._cancel_checks = Spaced(functools.partial(HUB.notify, cancel_key(self._key)), CANCEL_CHECK_GAP)
        self._coalescer = self._new_coalescer()
        self.chord_args: ChordArgs = _groups.no_chord_args

    @property
    def wake_key(self) -> Hashable:
        return self._key

    async def health(self, thresholds: Thresholds) -> HealthReport:
        report = await self._run(lambda conn: _health.gather(conn, self.path, SCHEMA_VERSION, thresholds))
        sizes = await asyncio.to_thread(_health.table_sizes, self.path, self.busy_timeout)
        return dataclasses.replace(report, findings=report.findings + sizes)

    # -- connection and thread ------------------------------------------------------------------

    def _new_coalescer(self) -> Coalescer:
        # One batch at a time: the connection's one thread runs one call at a time, and what queues behind a
        # batch goes in the next one.
        return Coalescer(self._send_batch, max_rows=COALESCE_MAX_ROWS, flights=1)

    async def open(self) -> None:
        self._coalescer = self._new_coalescer()  # a store closed may be opened again
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskstore-sqlite")
        try:
            await self._call(self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        # Watched once a waiter of this process needs other processes' commits (a blocked claim, a status watch,
        # a worker's cancel watch): a process that only enqueues does not read the -shm every 2 ms.
        self._watch_when_wanted = StartWhenWanted(
            (self._key, ("status", self._key), cancel_key(self._key)), self._start_watch
        )

    def _start_watch(self) -> None:
        if self._commits is None and self._executor is not None:
            self._commits = asyncio.get_running_loop().create_task(
                watch_commits(self._key[1], self._committed, started=self._committed),
                name="taskstore-sqlite-commits",
            )

    def _committed(self) -> None:
        HUB.notify(self._key)
        HUB.notify(("status", self._key))
        self._cancel_checks()  # any commit may be a cancel request: workers here re-read their in-flight tasks

    async def close(self) -> None:
        if self._watch_when_wanted is not None:
            self._watch_when_wanted.close()
        await self._coalescer.close()  # the batch on its way is written and answered before the thread stops
        commits, self._commits = self._commits, None
        self._cancel_checks.cancel()
        if commits is not None:
            commits.cancel()
            if commits.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await commits
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, self._disconnect)
        executor.shutdown(wait=True)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()  # after the last write: its final checkpoint leaves the WAL empty if it can

    def _connect(self) -> None:
        _check_library()
        if not self.create and not os.path.isfile(self.path):
            raise self._no_store()
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise errors.ConfigError(f"directory {directory!r} for the SQLite database does not exist")
        # Without create, mode=rw makes SQLite itself refuse to create the file (no race with a check).
        target = self.path if self.create else f"{Path(os.path.abspath(self.path)).as_uri()}?mode=rw"
        try:
            # timeout=0: a busy database is waited for by _retrying, in short pauses (see BUSY_FIRST_PAUSE).
            conn = sqlite3.connect(
                target, timeout=0, isolation_level=None, check_same_thread=False, uri=not self.create
            )
        except sqlite3.Error as exc:
            if not self.create and not os.path.exists(self.path):
                raise self._no_store() from None
            raise errors.BackendUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        self._conn = conn
        if not self.create and self._retrying(lambda: conn.execute("PRAGMA user_version").fetchone()[0]) == 0:
            self._disconnect()
            raise self._no_store()
        self._retrying(lambda: self._configure(conn))
        self._retrying(lambda: self._migrate(conn))
        if self.checkpoint_interval > 0:
            self._start_checkpoints(conn)

    def _start_checkpoints(self, conn: sqlite3.Connection) -> None:
        """Checkpoints move to a thread of their own; if it cannot start, SQLite's auto-checkpoint stays on."""
        checkpointer = Checkpointer(self._key[1], interval=self.checkpoint_interval, wal_limit=self.wal_limit)
        try:
            checkpointer.start()
        except sqlite3.Error as exc:
            log.warning("cannot start WAL checkpoints for %s (%s); SQLite's own run inside commits", self.path, exc)
            return
        self._checkpointer = checkpointer
        conn.execute("PRAGMA wal_autocheckpoint=0")

    def _no_store(self) -> errors.ConfigError:
        return errors.ConfigError(f"no taskstore store at {self.path!r} (nothing was created)")

    def _configure(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise errors.BackendUnavailable(f"SQLite database {self.path!r} could not switch to WAL (got {mode})")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")  # validated against a fixed set above
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-65536")
        # A WAL started over after growing past the limit is cut back to it (SQLite keeps a WAL file's size).
        conn.execute(f"PRAGMA journal_size_limit={int(self.wal_limit)}")
        conn.execute(Q["create_completion_stage"])

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create or upgrade the schema; ``user_version`` records how far it has got."""
        if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _statements(load_script("taskstore.backends.sqlite", _MIGRATIONS[version])):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={int(SCHEMA_VERSION)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _retrying(self, fn: Callable[[], R]) -> R:
        """Run ``fn``; retry while the database is busy, up to ``busy_timeout`` in all."""
        deadline = time.monotonic() + self.busy_timeout
        pause = BUSY_FIRST_PAUSE
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise errors.BackendUnavailable(f"SQLite error: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise errors.BackendUnavailable(
                        f"SQLite database {self.path!r} stayed locked for {self.busy_timeout:.0f}s"
                    ) from exc
                time.sleep(pause)
                pause = min(pause * 2, BUSY_MAX_PAUSE)
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.IntegrityError):
                    raise
                raise errors.BackendUnavailable(f"SQLite error: {exc}") from exc

    async def _call(self, fn: Callable[[], R]) -> R:
        if self._executor is None:
            raise errors.BackendUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    async def _run(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        def call() -> R:
            conn = self._conn
            if conn is None:
                raise errors.BackendUnavailable("the store is closed")
            return self._retrying(lambda: fn(self._out_of_transaction(conn)))

        return await self._call(call)

    @staticmethod
    def _out_of_transaction(conn: sqlite3.Connection) -> sqlite3.Connection:
        """Every call starts outside a transaction; one left open by a failed ROLLBACK is rolled back now."""
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return conn

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            # Also for a failed COMMIT (busy, I/O error, disk full): SQLite then stays inside the
            # transaction, and without this rollback every later BEGIN on the connection would fail.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _write_back(self, conn: sqlite3.Connection, changes: Sequence[tuple[Task, Task]]) -> None:
        """The compare-and-set: each ``(old, new)`` row is written only if its version is still ``old``'s.

        Rows are grouped by the narrowest statement that writes them (see ``write_statement``) and
        each group goes to SQLite in one ``executemany``.
        """
        if not changes:
            return
        groups: dict[str, list[tuple[Any, ...]]] = {}
        for old, new in changes:
            name, params = write_statement(old, new)
            groups.setdefault(name, []).append(params)
        for name, rows in groups.items():
            if conn.executemany(Q[name], rows).rowcount != len(rows):
                raise errors.BackendUnavailable("a compare-and-set lost its row inside a write transaction")

    # -- outbox ---------------------------------------------------------------------------------

    async def insert(self, rows: Sequence[NewRow], conn: Join | None = None) -> list[Task]:
        seen: set[str] = set()
        for row in rows:
            if row.id in seen:
                raise errors.AlreadyExists(row.id)
            seen.add(row.id)
        if conn is not None:
            return self._insert_joined(rows, conn.raw)
        if len(rows) == 1 and rows[0].new.unique_key is None:
            # A single create goes with the others queued meanwhile (.._coalesce); a unique one keeps its own
            # transaction, and a batch is all-or-nothing on its own.
            return [await self._coalescer.insert(rows[0])]
        return await self._run(lambda c: self._insert_own(c, rows))

    def _insert_own(self, conn: sqlite3.Connection, rows: Sequence[NewRow]) -> list[Task]:
        with self._write(conn):
            return self._insert_in(conn, rows)

    async def _send_batch(self, rows: Sequence[NewRow]) -> list[Task | BaseException]:
        """Single creates written together in one transaction, each answered as it would have been alone."""
        if len(rows) == 1:
            try:
                return [*await self._run(lambda c: self._insert_own(c, rows))]
            except errors.TaskstoreError as exc:
                return [exc]
        return await self._run(lambda c: self._insert_each(c, rows))

    def _insert_each(self, conn: sqlite3.Connection, rows: Sequence[NewRow]) -> list[Task | BaseException]:
        """All rows in one statement when none of their ids is taken; else each in a savepoint of its own, so
        a taken id fails its own row only. Any other error fails the batch (the transaction rolls back)."""
        with self._write(conn):
            now = self.clock.now()  # read inside the write lock, as _insert_in does
            conn.execute("SAVEPOINT taskstore_batch")
            try:
                tasks: list[Task | BaseException] = [*self._insert_now(conn, rows, now)]
            except errors.AlreadyExists:
                conn.execute("ROLLBACK TO taskstore_batch")
            else:
                conn.execute("RELEASE taskstore_batch")
                return tasks
            conn.execute("RELEASE taskstore_batch")
            answers: list[Task | BaseException] = []
            for row in rows:
                conn.execute("SAVEPOINT taskstore_row")
                try:
                    answers.append(self._insert_now(conn, [row], now)[0])
                except errors.AlreadyExists as exc:
                    conn.execute("ROLLBACK TO taskstore_row")
                    answers.append(exc)
                conn.execute("RELEASE taskstore_row")
            return answers

    def _insert_in(self, conn: sqlite3.Connection, rows: Sequence[NewRow], now: datetime | None = None) -> list[Task]:
        """Insert inside the writer's open transaction.

        Rows with a unique key are first resolved against the stored holders (``_flow.dedupe``); the
        write lock held since BEGIN IMMEDIATE keeps that true until the insert, and ``tasks_unique`` backs it.
        """
        if now is None:
            now = self.clock.now()  # read inside the write lock: waiting for it must not age the task
        if not any(row.new.unique_key is not None for row in rows):
            return self._insert_now(conn, rows, now)
        plan = _flow.dedupe(conn, rows, now)
        self._write_back(conn, plan.released)
        return _flow.assemble(rows, plan, self._insert_now(conn, plan.insert, now))

    def _insert_now(self, conn: sqlite3.Connection, rows: Sequence[NewRow], now: datetime) -> list[Task]:
        tasks: list[Task] = []
        if not rows:
            return tasks
        base = conn.execute(Q["next_seq"]).fetchone()[0]
        # Chunks keep the parameter lists small (fewer live objects for the garbage collector to
        # walk); the transaction still covers the whole batch.
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[start : start + _INSERT_CHUNK]
            first = base + start + 1
            news, ids = [row.new for row in chunk], [row.id for row in chunk]
            created = transitions.create_all(news, ids, range(first, first + len(chunk)), now)
            self._insert_rows(conn, created, chunk)
            tasks += created
        return tasks

    def _insert_rows(self, conn: sqlite3.Connection, tasks: Sequence[Task], rows: Sequence[NewRow]) -> None:
        try:
            conn.executemany(Q["insert_task"], [insert_params(t, r.args) for t, r in zip(tasks, rows, strict=True)])
        except sqlite3.IntegrityError as exc:
            taken = conn.execute(Q["existing_ids"], (json.dumps([t.id for t in tasks]),)).fetchone()
            raise errors.AlreadyExists(taken[0] if taken else "?") from exc

    def _insert_joined(self, rows: Sequence[NewRow], conn: Any) -> list[Task]:
        """Insert on the caller's connection inside its transaction; the caller commits or rolls back.

        A savepoint keeps the batch all-or-nothing even if the caller goes on after an error.
        Sequence numbers come from SQLite (AUTOINCREMENT), as another writer may hold a newer base.
        """
        if not isinstance(conn, sqlite3.Connection):
            raise errors.ConfigError(f"conn= must be a sqlite3.Connection for this store, got {type(conn).__name__}")
        now = self.clock.now()
        unique = any(row.new.unique_key is not None for row in rows)
        tasks: list[Task] = []
        plan: _flow.Dedupe | None = None
        try:
            self._check_same_file(conn)
            _begin_caller_transaction(conn)
            conn.execute("SAVEPOINT taskstore_insert")
            try:
                inserted = rows
                if unique:
                    # A deferred transaction takes the write lock now, before the holders are read:
                    # no other writer can then insert one of these keys before this insert.
                    conn.execute(Q["take_write_lock"])
                    plan = _flow.dedupe(conn, rows, now)
                    self._write_back(conn, plan.released)
                    inserted = plan.insert
                tasks = [
                    transitions.create(row.new, task_id=row.id, now=now, args=row.new.args, seq=0) for row in inserted
                ]
                params = [(None, *insert_params(t, r.args)[1:]) for t, r in zip(tasks, inserted, strict=True)]
                conn.executemany(Q["insert_task"], params)
                seqs = dict(conn.execute(Q["seqs_of_ids"], (json.dumps([t.id for t in tasks]),)).fetchall())
            except BaseException:
                conn.execute("ROLLBACK TO taskstore_insert")
                conn.execute("RELEASE taskstore_insert")
                raise
            conn.execute("RELEASE taskstore_insert")
        except sqlite3.IntegrityError as exc:
            taken = conn.execute(Q["existing_ids"], (json.dumps([t.id for t in tasks]),)).fetchone()
            raise errors.AlreadyExists(taken[0] if taken else "?") from exc
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise errors.BackendUnavailable(f"SQLite database {self.path!r} is locked: {exc}") from exc
            raise errors.BackendUnavailable(f"SQLite error in the caller's transaction: {exc}") from exc
        except sqlite3.ProgrammingError as exc:  # closed, or used from another thread
            raise errors.ConfigError(f"conn= cannot be used: {exc}") from exc
        created = [t.replace(seq=seqs[t.id]) for t in tasks]
        return created if plan is None else _flow.assemble(rows, plan, created)

    def open_waits_on(self, raw: Any) -> bool:
        """Whether ``open`` would wait for the write lock that ``raw``'s open transaction holds on this file.

        It would when the store's tables are missing or out of date there: creating them needs that lock, and
        the caller holding it waits for the enqueue, so both would wait until ``busy_timeout`` ran out.
        """
        if not isinstance(raw, sqlite3.Connection) or not raw.in_transaction:
            return False
        try:
            self._check_same_file(raw)
        except errors.ConfigError:
            return False  # the insert refuses it, saying why
        return bool(raw.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION)

    def _check_same_file(self, conn: sqlite3.Connection) -> None:
        files = [row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
        if not files or os.path.realpath(files[0]) != self._key[1]:
            raise errors.ConfigError(f"conn= is open on {files[0] if files else '?'!r}, not on {self.path!r}")

    async def get(self, task_id: str, *, archived: bool = False) -> Task:
        def read(conn: sqlite3.Connection) -> Task:
            row = conn.execute(Q["get_archived" if archived else "get_task"], (task_id,)).fetchone()
            if row is None:
                raise errors.NotFound(task_id, "archived task" if archived else "task")
            return task_from_row(row)

        return await self._run(read)

    async def list_tasks(self, query: ListQuery) -> list[Task]:
        # One queue and one kind (the dashboard's filter) has its own queries and index: see list_kind_asc.
        by_kind = query.kind is not None and query.queue is not None and not query.archived
        prefix = "list_kind_" if by_kind else "list_archived_" if query.archived else "list_"
        name = prefix + ("desc" if query.descending else "asc")
        params = {
            "state": None if query.state is None else query.state.value,
            "queue": query.queue,
            "kind": query.kind,
            "ready": None if query.ready_as_of is None else to_us(query.ready_as_of),
            "after": query.after_seq,
            "limit": query.limit,
        }
        return await self._run(lambda c: [task_from_row(r) for r in c.execute(Q[name], params)])

    async def count(self, state: State | None, queue: str | None, archived: bool) -> int:
        params = {"state": None if state is None else state.value, "queue": queue}
        name = "count_archived" if archived else "count"
        return await self._run(lambda c: int(c.execute(Q[name], params).fetchone()[0]))

    async def finished_counts(self, since: datetime, bucket: float) -> list[tuple[int, State, int]]:
        params = {"since": to_us(since), "bucket": max(int(bucket * 1_000_000), 1)}
        rows = await self._run(lambda c: c.execute(Q["finished_counts"], params).fetchall())
        return [(int(slot), State(state), int(n)) for slot, state, n in rows]

    async def dead_summaries(self, limit: int) -> list[DeadSummary]:
        params = {"limit": limit, "chars": DEAD_MESSAGE_CHARS}
        rows = await self._run(lambda c: c.execute(Q["dead_summaries"], params).fetchall())
        return [dead_summary(row, from_us) for row in rows]

    async def vacuum(self) -> list[str]:
        return []  # one version of each row: a deleted row's pages go to the free list and are used again

    async def analyze_grown(self) -> list[str]:
        return []  # SQLite plans by table size only from statistics ANALYZE stores, which the store never runs

    async def fold_counts(self, keep_since: datetime) -> int:
        """The triggers keep the totals themselves (one writer: no deltas to fold); drop old minutes."""

        def purge(conn: sqlite3.Connection) -> int:
            with self._write(conn):
                return conn.execute(Q["purge_finished_minutes"], {"before": to_us(keep_since)}).rowcount

        return await self._run(purge)

    async def outstanding_count(self, recurring_id: str) -> int:
        return await self._run(lambda c: int(c.execute(Q["outstanding"], (recurring_id,)).fetchone()[0]))

    # -- claims ---------------------------------------------------------------------------------

    async def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, token: Callable[[], str], recover: bool = False
    ) -> list[Task]:
        """One fenced UPDATE … RETURNING over the chosen rows; tokens come from SQLite's CSPRNG.

        The candidates, the gates of their limited keys and the claim are read and written under one
        write lock, so a key's running count and bucket hold across every process on the file. Leases
        recovered (``recover``) are reaped under the same lock, just before.
        """

        def claim(conn: sqlite3.Connection) -> list[Task]:
            with self._write(conn):
                # The clock is read once the write lock is held: a wait for it must not shorten the lease.
                now = self.clock.now()
                if recover:
                    lost = self._change_rows(conn, "lost_leases", limit, now, transitions.reap, queues)
                    self._settle(conn, _groups.ended_groups(lost), now)
                choice = _flow.choose(conn, queues, limit, now)
                if not choice.seqs:
                    return []
                params = {"worker": worker_id, "now": to_us(now), "seqs": json.dumps(choice.seqs)}
                claimed = [task_from_row(r) for r in conn.execute(Q["claim_seqs"], params)]
                _flow.draw(conn, choice.gates.values())
            claimed.sort(key=transitions.claim_order)
            return claimed

        return await self._run(claim)

    async def claim_task(self, task_id: str, worker_id: str, ttl: float | None, token: str) -> Task | None:
        def claim_one(conn: sqlite3.Connection) -> Task | None:
            with self._write(conn):
                now = self.clock.now()
                row = conn.execute(Q["get_task"], (task_id,)).fetchone()
                if row is None:
                    raise errors.NotFound(task_id)
                task = task_from_row(row)
                if conn.execute(Q["queue_paused"], (task.queue,)).fetchone() is not None:
                    return None
                changed = transitions.take_over(task, worker_id=worker_id, token=token, now=now, lease=ttl)
                if changed is None:
                    return None
                gate = None
                if changed.state is State.CLAIMED and task.concurrency_key is not None:
                    gate = _flow.key_gates(conn, [task.concurrency_key]).get(task.concurrency_key)
                if gate is not None:
                    if task.state is State.CLAIMED:
                        gate.running -= 1  # a timed-out lease taken over: its slot passes to this claim
                    if not gate.admits(now):
                        return None
                    gate.take(now)
                    _flow.draw(conn, [gate])
                self._write_back(conn, [(task, changed)])
                self._settle(conn, _groups.ended_groups([(task, changed)]), now)
            return changed if changed.state is State.CLAIMED else None

        return await self._run(claim_one)

    async def find_available(self, queues: Sequence[str], limit: int) -> list[Task]:
        """What a claim would take now (the same gates), claiming nothing and drawing no tokens."""

        def find(conn: sqlite3.Connection) -> list[Task]:
            conn.execute("BEGIN")  # one snapshot for the scans and the gates
            try:
                seqs = _flow.choose(conn, queues, limit, self.clock.now()).seqs
                rows = conn.execute(Q["tasks_of_seqs"], (json.dumps(seqs),)).fetchall() if seqs else []
            finally:
                conn.execute("COMMIT")
            return sorted(map(task_from_row, rows), key=transitions.claim_order)

        return await self._run(find)

    async def lease_expiry(self, queues: Sequence[str]) -> datetime | None:
        def earliest(conn: sqlite3.Connection) -> datetime | None:
            if queues:
                row = conn.execute(Q["lease_expiry_in_queues"], (json.dumps(list(queues)),)).fetchone()
            else:
                row = conn.execute(Q["lease_expiry"]).fetchone()
            return None if row is None or row[0] is None else from_us(row[0])

        return await self._run(earliest)

    async def has_claimable(self, queues: Sequence[str]) -> bool:
        def probe(conn: sqlite3.Connection) -> bool:
            now_us = to_us(self.clock.now())
            if not queues:
                return conn.execute(Q["any_claimable"], {"now": now_us}).fetchone() is not None
            return any(
                conn.execute(Q["any_claimable_in_queue"], {"queue": q, "now": now_us}).fetchone() is not None
                for q in queues
            )

        return await self._run(probe)

    async def cancel_requested_among(self, task_ids: Sequence[str]) -> set[str]:
        ids = json.dumps(list(task_ids))
        return await self._run(lambda conn: {r[0] for r in conn.execute(Q["cancel_requested_among"], (ids,))})

    # -- transitions ----------------------------------------------------------------------------

    async def apply(self, changes: Sequence[tuple[str, Change]]) -> list[Outcome]:
        if len(changes) > 1 and all(type(change) is Completion for _, change in changes):
            ids = {task_id for task_id, _ in changes}
            if len(ids) == len(changes):  # a repeated id must see the first completion: the general path
                completions = cast(Sequence[tuple[str, Completion]], changes)
                outcomes = await self._run(lambda c: self._complete(c, completions))
                return [o for o in outcomes if o is not None]

        def apply(conn: sqlite3.Connection) -> list[Outcome]:
            ids = list(dict.fromkeys(task_id for task_id, _ in changes))
            with self._write(conn):
                now = self.clock.now()
                if len(ids) == 1:
                    rows = conn.execute(Q["get_task"], (ids[0],)).fetchall()
                else:
                    rows = conn.execute(Q["get_tasks"], (json.dumps(ids),)).fetchall()
                current = {r[1]: task_from_row(r) for r in rows}
                original = dict(current)
                outcomes = apply_in_order(current, changes, now)
                written = [(original[i], t) for i, t in current.items() if t is not original[i]]
                self._write_back(conn, written)
                self._settle(conn, _groups.ended_groups(written), now)
            return outcomes

        return await self._run(apply)

    def _complete(
        self, conn: sqlite3.Connection, changes: Sequence[tuple[str, Completion]], returning: bool = True
    ) -> list[Outcome | None]:
        """``mark_done_many`` in one fenced statement (the completer's hot path).

        Without ``returning`` only the ids come back: accepted items are ``None``.
        """
        staged = [(c.lease.task_id, c.lease.token, c.lease.worker_id, c.value) for _, c in changes]
        with self._write(conn):
            now = self.clock.now()
            now_us = to_us(now)
            conn.executemany(Q["stage_completion"], staged)
            done: dict[str, Task | None]
            if returning:
                tasks = [task_from_row(row) for row in conn.execute(Q["complete_staged"], {"now": now_us})]
                done = {t.id: t for t in tasks}
                group_ids = {t.group_id for t in tasks}
            else:
                rows = conn.execute(Q["complete_staged_ids"], {"now": now_us}).fetchall()
                done = {row[0]: None for row in rows}
                group_ids = {row[1] for row in rows}
            conn.execute(Q["clear_completion_stage"])
            group_ids.discard(None)
            if group_ids:  # only members pay: their groups settle in this same transaction
                self._settle(conn, sorted(cast(set[str], group_ids)), now)
            refused = self._refusals(conn, [(i, c) for i, c in changes if i not in done])
        return [done[task_id] if task_id in done else refused[task_id] for task_id, _ in changes]

    def _refusals(
        self, conn: sqlite3.Connection, missed: Sequence[tuple[str, Completion]]
    ) -> dict[str, errors.TaskstoreError]:
        """Why each missed completion was refused: NotFound, NotClaimed or NotOwned."""
        if not missed:
            return {}
        rows = conn.execute(Q["get_tasks"], (json.dumps([i for i, _ in missed]),)).fetchall()
        found = {r[1]: task_from_row(r) for r in rows}
        refused: dict[str, errors.TaskstoreError] = {}
        for task_id, completion in missed:
            task = found.get(task_id)
            if task is None:
                refused[task_id] = errors.NotFound(task_id)
                continue
            try:
                transitions.check_lease(task, completion.lease)
            except errors.LeaseError as exc:
                refused[task_id] = exc
            else:
                raise errors.BackendUnavailable(f"task {task_id!r}: a fenced completion missed a live lease")
        return refused

    async def acknowledge(self, completions: Sequence[Completion]) -> list[errors.TaskstoreError | None]:
        changes = [(c.lease.task_id, c) for c in completions]
        outcomes = await self._run(lambda conn: self._complete(conn, changes, returning=False))
        return [o if isinstance(o, errors.TaskstoreError) else None for o in outcomes]

    # -- maintenance ----------------------------------------------------------------------------

    def _change_rows(
        self,
        conn: sqlite3.Connection,
        query: str,
        limit: int,
        now: datetime,
        change: Callable[..., Task | None],
        queues: Sequence[str] = (),
    ) -> list[tuple[Task, Task]]:
        """Apply ``change(task, now=now)`` to up to ``limit`` rows of ``query`` and write back what changed
        (with ``queues``, ``query + "_in_queues"`` over the rows of those queues)."""
        changes = []
        params = (to_us(now), json.dumps(list(queues)), limit) if queues else (to_us(now), limit)
        for row in conn.execute(Q[f"{query}_in_queues" if queues else query], params).fetchall():
            task = task_from_row(row)
            changed = change(task, now=now)
            if changed is not None:
                changes.append((task, changed))
        self._write_back(conn, changes)
        return changes

    async def reap(self, limit: int) -> int:
        def reap(conn: sqlite3.Connection) -> int:
            with self._write(conn):
                now = self.clock.now()
                reaped = self._change_rows(conn, "timed_out", limit, now, transitions.reap)
                # Then waiting tasks past expires_at end cancelled (SPEC §9), read after the leases above
                # were written so a lease timed out past its expiry ends now too: ``limit`` changes in all.
                left = limit - len(reaped)
                if left > 0:
                    reaped += self._change_rows(conn, "expired_waiting", left, now, transitions.expire)
                self._settle(conn, _groups.ended_groups(reaped), now)
            return len(reaped)

        return await self._run(reap)

    async def archive(self, before: datetime, limit: int) -> int:
        def archive(conn: sqlite3.Connection) -> int:
            with self._write(conn):
                seqs = [r[0] for r in conn.execute(Q["finished_before"], (to_us(before), limit))]
                return self._move_to_archive(conn, seqs)

        return await self._run(archive)

    async def archive_ids(self, ids: Sequence[str]) -> int:
        def archive(conn: sqlite3.Connection) -> int:
            with self._write(conn):
                seqs = [r[0] for r in conn.execute(Q["finished_among"], (json.dumps(list(ids)),))]
                return self._move_to_archive(conn, seqs)

        return await self._run(archive)

    def _move_to_archive(self, conn: sqlite3.Connection, seqs: list[int]) -> int:
        """Both archivers' one move, inside their write transaction: copy the rows, then delete them."""
        if seqs:
            encoded = json.dumps(seqs)
            copied = conn.execute(Q["copy_to_archive"], (to_us(self.clock.now()), encoded)).rowcount
            deleted = conn.execute(Q["delete_archived"], (encoded,)).rowcount
            if copied != len(seqs) or deleted != len(seqs):
                raise errors.BackendUnavailable("archive copied and deleted different rows")
        return len(seqs)

    # -- recurring schedules --------------------------------------------------------------------

    async def put_recurring(self, row: RecurringRow) -> RecurringRow:
        params = {
            "id": row.id,
            "schedule": row.schedule,
            "template": row.template,
            "args": row.args,
            "skip": int(row.skip_if_outstanding),
            "next_at": to_us(row.next_at),
            "now": to_us(self.clock.now()),
            "owner": row.owner,
        }

        def put(conn: sqlite3.Connection) -> RecurringRow:
            with self._write(conn):
                stored = conn.execute(Q["put_recurring"], params).fetchone()
            return _recurring_row(stored)

        return await self._run(put)

    async def delete_recurring(self, recurring_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            with self._write(conn):
                return bool(conn.execute(Q["delete_recurring"], (recurring_id,)).rowcount)

        return await self._run(delete)

    async def list_recurring(self) -> list[RecurringRow]:
        return await self._run(lambda c: [_recurring_row(r) for r in c.execute(Q["list_recurring"])])

    async def advance_recurring(self, recurring_id: str, expected: datetime, next_at: datetime) -> bool:
        params = (to_us(next_at), to_us(self.clock.now()), recurring_id, to_us(expected))

        def advance(conn: sqlite3.Connection) -> bool:
            with self._write(conn):
                return conn.execute(Q["advance_recurring"], params).rowcount == 1

        return await self._run(advance)

    # -- status-only records --------------------------------------------------------------------

    async def put_status(self, row: StatusRow) -> StatusRow:
        params = {
            "id": row.id,
            "state": row.state,
            "payload": json.dumps(row.payload),
            "error": None if row.error is None else json.dumps(row.error),
            "attempt": row.attempt,
            "meta": json.dumps(row.meta),
            "queue": row.meta.get("queue") if isinstance(row.meta.get("queue"), str) else None,
            "now": to_us(row.updated_at),
            "expires_at": to_us(row.expires_at),
        }

        def put(conn: sqlite3.Connection) -> StatusRow:
            with self._write(conn):
                return _status(conn.execute(Q["put_status"], params).fetchone())

        return await self._run(put)

    async def get_status(self, status_id: str) -> StatusRow | None:
        def get(conn: sqlite3.Connection) -> StatusRow | None:
            row = conn.execute(Q["get_status"], (status_id, to_us(self.clock.now()))).fetchone()
            return None if row is None else _status(row)

        return await self._run(get)

    async def expire_status(self, status_id: str, expires_at: datetime) -> None:
        def expire(conn: sqlite3.Connection) -> None:
            with self._write(conn):
                conn.execute(Q["expire_status"], (to_us(expires_at), status_id, to_us(self.clock.now())))

        await self._run(expire)

    async def list_statuses(
        self, state: str | None, queue: str | None, before: tuple[datetime, str] | None, limit: int
    ) -> list[StatusRow]:
        params = {
            "now": to_us(self.clock.now()),
            "state": state,
            "queue": queue,
            "limit": limit,
            "before_at": None if before is None else to_us(before[0]),
            "before_id": None if before is None else before[1],
        }
        return await self._run(lambda c: [_status(r) for r in c.execute(Q["list_statuses"], params)])

    async def change_marker(self) -> Hashable | None:
        """``PRAGMA data_version`` moves when another connection commits; ``total_changes`` when ours does."""

        def marker(conn: sqlite3.Connection) -> Hashable:
            return (conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes)

        return await self._run(marker)

    async def purge_statuses(self) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            with self._write(conn):
                return int(conn.execute(Q["purge_statuses"], (to_us(self.clock.now()),)).rowcount)

        return await self._run(purge)

    # -- groups and chords ----------------------------------------------------------------------

    def _with_members(self, conn: sqlite3.Connection, group: GroupRow) -> GroupRow:
        live = [task_from_row(r) for r in conn.execute(Q["group_tasks"], (group.id,))]
        archived = [task_from_row(r) for r in conn.execute(Q["group_tasks_archived"], (group.id,))]
        return dataclasses.replace(group, members=_groups.in_order(group, live, archived))

    def _settle(self, conn: sqlite3.Connection, group_ids: Sequence[str], now: datetime) -> None:
        """Settle the groups of members just ended, inside the writer's transaction (``_groups.settle``)."""
        for group_id in group_ids:
            row = conn.execute(Q["lock_group"], (group_id,)).fetchone()
            if row is None:
                continue
            settled = _groups.settle(self._with_members(conn, _group(row)), now, self.chord_args)
            if settled is None:
                continue
            g = settled.group
            params = {
                "id": g.id,
                "expires_at": to_us(g.expires_at),
                "now": to_us(now),
                "claimed": int(g.chord_claimed),
                "callback": g.chord_callback_id,
                "dispatched_at": None if g.chord_dispatched_at is None else to_us(g.chord_dispatched_at),
            }
            conn.execute(Q["settle_group"], params)
            callback = settled.callback
            # Through the unique check too: a callback whose key is held is not inserted (the holder
            # stands in), rather than the unique index failing the completion that settled the group.
            if (
                callback is not None
                and conn.execute(Q["existing_ids"], (json.dumps([callback.id]),)).fetchone() is None
                and self._insert_in(conn, [callback], now)[0].id == callback.id
            ):
                HUB.notify(self._key)

    async def insert_group(self, group: GroupRow, rows: Sequence[NewRow]) -> list[Task]:
        chord = group.callback
        params = {
            "id": group.id,
            "expected": group.expected,
            "meta": json.dumps(group.meta),
            "expires_at": to_us(group.expires_at),
            "member_ids": None if group.member_ids is None else json.dumps(list(group.member_ids)),
            "callback_id": None if chord is None else chord.id,
            "callback_template": None if chord is None else chord.template,
            "callback_args": None if chord is None else chord.args,
            "ttl": group.ttl,
            "chain_links": None if group.links is None else _groups.links_json(group.links),
        }

        def insert(conn: sqlite3.Connection) -> list[Task]:
            with self._write(conn):
                try:
                    conn.execute(Q["insert_group"], {**params, "now": to_us(self.clock.now())})
                except sqlite3.IntegrityError as exc:
                    raise errors.AlreadyExists(group.id) from exc
                return self._insert_in(conn, rows)

        return await self._run(insert)

    async def put_group(self, group_id: str, expected: int, meta: dict[str, Any], expires_at: datetime) -> GroupRow:
        def put(conn: sqlite3.Connection) -> GroupRow:
            with self._write(conn):
                now = self.clock.now()
                params = {
                    "id": group_id,
                    "expected": expected,
                    "meta": json.dumps(meta),
                    "now": to_us(now),
                    "expires_at": to_us(expires_at),
                    "ttl": (expires_at - now).total_seconds(),
                }
                return self._with_members(conn, _group(conn.execute(Q["put_group"], params).fetchone()))

        return await self._run(put)

    async def add_group_result(self, group_id: str, member_id: str, status: dict[str, Any]) -> GroupRow | None:
        def add(conn: sqlite3.Connection) -> GroupRow | None:
            with self._write(conn):
                params = {
                    "id": group_id,
                    "member": member_id,
                    "status": json.dumps(status),
                    "now": to_us(self.clock.now()),
                }
                row = conn.execute(Q["add_group_result"], params).fetchone()
            return None if row is None else _group(row)

        return await self._run(add)

    async def get_group(self, group_id: str) -> GroupRow | None:
        def get(conn: sqlite3.Connection) -> GroupRow | None:
            row = conn.execute(Q["get_group"], {"id": group_id, "now": to_us(self.clock.now())}).fetchone()
            return None if row is None else self._with_members(conn, _group(row))

        return await self._run(get)

    async def claim_chord(self, group_id: str, callback_id: str | None, dispatched_at: datetime) -> bool:
        def claim(conn: sqlite3.Connection) -> bool:
            with self._write(conn):
                params = {
                    "id": group_id,
                    "callback": callback_id,
                    "dispatched_at": to_us(dispatched_at),
                    "now": to_us(self.clock.now()),
                }
                return conn.execute(Q["claim_chord"], params).rowcount == 1

        return await self._run(claim)

    async def purge_groups(self) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            with self._write(conn):
                return int(conn.execute(Q["purge_groups"], {"now": to_us(self.clock.now())}).rowcount)

        return await self._run(purge)

    # -- worker heartbeats ----------------------------------------------------------------------

    # -- flow control (SPEC §9) -----------------------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        def put(conn: sqlite3.Connection) -> None:
            with self._write(conn):
                conn.execute(Q["set_paused"], (queue, int(paused), to_us(self.clock.now())))

        await self._run(put)

    async def paused_queues(self) -> set[str]:
        return await self._run(lambda c: {r[0] for r in c.execute(Q["paused_queues"])})

    async def queue_rows(self) -> list[QueueRow]:
        def read(conn: sqlite3.Connection) -> list[QueueRow]:
            conn.execute("BEGIN")  # one snapshot for the three reads
            try:
                paused = {r[0]: bool(r[1]) for r in conn.execute(Q["queue_records"])}
                counts: dict[str, dict[State, int]] = {}
                for queue, state, n in conn.execute(Q["queue_counts"]):
                    counts.setdefault(queue, {})[State(state)] = n
                oldest = {q: from_us(at) for q, at in conn.execute(Q["oldest_ready"], {"now": to_us(self.clock.now())})}
            finally:
                conn.execute("COMMIT")
            return [
                QueueRow(name=q, paused=paused.get(q, False), counts=counts.get(q, {}), oldest_ready_at=oldest.get(q))
                for q in sorted(paused.keys() | counts.keys())
            ]

        return await self._run(read)

    async def put_limit(self, limit: Limit) -> None:
        def put(conn: sqlite3.Connection) -> None:
            with self._write(conn):
                now = self.clock.now()
                row = conn.execute(Q["get_limit"], (limit.key,)).fetchone()
                if row is None:
                    gate = gates.new_gate(limit, now)
                else:
                    gate = gates.reset_gate(_flow.gate_from_row(row), limit, now)
                params = {
                    "key": limit.key,
                    "concurrency": limit.concurrency,
                    "rate": limit.rate,
                    "per": limit.per,
                    "tokens": gate.tokens,
                    "refilled_at": to_us(gate.refilled_at),
                    "now": to_us(now),
                }
                conn.execute(Q["put_limit"], params)

        await self._run(put)

    async def delete_limit(self, key: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            with self._write(conn):
                return conn.execute(Q["delete_limit"], (key,)).rowcount == 1

        return await self._run(delete)

    async def list_limits(self) -> list[Limit]:
        def read(conn: sqlite3.Connection) -> list[Limit]:
            return [limit_from_row(r) for r in conn.execute(Q["list_limits"])]

        return await self._run(read)

    async def key_gate(self, key: str) -> KeyGate | None:
        def read(conn: sqlite3.Connection) -> KeyGate | None:
            row = conn.execute(Q["get_limit"], (key,)).fetchone()
            return None if row is None else _flow.gate_from_row(row)

        return await self._run(read)

    async def claimed_with_key(self, key: str, limit: int) -> list[Task]:
        return await self._run(lambda c: [task_from_row(r) for r in c.execute(Q["claimed_with_key"], (key, limit))])

    async def put_heartbeat(self, heartbeat: WorkerHeartbeat) -> WorkerHeartbeat:
        stamped = dataclasses.replace(heartbeat, timestamp=self.clock.now())
        params = (
            stamped.worker_id,
            json.dumps(list(stamped.queues)),
            stamped.inflight,
            stamped.host,
            stamped.pid,
            stamped.version,
            None if stamped.started_at is None else to_us(stamped.started_at),
            to_us(self.clock.now()),
            None if stamped.extras is None else json.dumps(dict(stamped.extras)),
        )

        def put(conn: sqlite3.Connection) -> None:
            with self._write(conn):
                conn.execute(Q["put_heartbeat"], params)

        await self._run(put)
        return stamped

    async def get_heartbeat(self, worker_id: str, since: datetime) -> WorkerHeartbeat | None:
        def get(conn: sqlite3.Connection) -> WorkerHeartbeat | None:
            row = conn.execute(Q["get_heartbeat"], (worker_id, to_us(since))).fetchone()
            return None if row is None else _heartbeat(row)

        return await self._run(get)

    async def list_heartbeats(self, since: datetime) -> list[WorkerHeartbeat]:
        return await self._run(lambda c: [_heartbeat(r) for r in c.execute(Q["list_heartbeats"], (to_us(since),))])

    async def purge_heartbeats(self, before: datetime) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            with self._write(conn):
                return int(conn.execute(Q["purge_heartbeats"], (to_us(before),)).rowcount)

        return await self._run(purge)


def _recurring_row(r: Any) -> RecurringRow:
    return recurring_from_row(r, from_us, same)


def _status(r: Any) -> StatusRow:
    return status_from_row(r, from_us, json.loads)


def _group(r: Any) -> GroupRow:
    return group_from_row(r, from_us, json.loads, same)


def _heartbeat(r: Any) -> WorkerHeartbeat:
    return heartbeat_from_row(r, from_us, json.loads)


def _statements(script: str) -> list[str]:
    """Split a schema script into statements, letting SQLite say where each one ends."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in pending.splitlines()):
        raise RuntimeError("schema script ends inside a statement")
    return statements
