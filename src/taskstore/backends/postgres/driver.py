"""The PostgreSQL backend: many workers on many machines, one database.

- Claims are one statement: ``FOR UPDATE SKIP LOCKED`` over a partial index of exactly the
  claimable rows, then ``UPDATE … RETURNING``; claimers never wait on each other's rows. Paused
  queues and expired tasks are filtered in that statement; when a candidate's concurrency key has a
  limit, the claim instead runs in a transaction that locks the keys' limit rows (SPEC §9).
- Unique tasks: ``INSERT … ON CONFLICT DO NOTHING`` on the partial unique index, then the holders read.
- Completions in batches are one fenced ``UPDATE … FROM unnest(…)``; other transitions are decided
  in Python (``transitions``) on rows locked ``FOR UPDATE`` and written back under a version guard.
- Every decision uses the database's ``now()`` (or a clock injected for tests), never a worker's.
- Blocked claimers wake on ``LISTEN``/``NOTIFY`` (one notification per enqueuing transaction), and
  poll as a fallback; ``notify=False`` turns notifications off. The listener proves that LISTEN works: it
  sends itself a probe NOTIFY when it connects and every minute after. Behind a pooler in transaction mode
  (PgBouncer ``pool_mode=transaction``) the LISTEN does not stick to a server session and the probe never
  arrives: then ``notifications_lost`` is set, claimers poll every ``LOST_WAKEUPS_POLL`` seconds, and one
  warning says why and what to do.
  A cancel requested of a claimed task sends one NOTIFY on ``taskstore_<schema>_cancel`` in its
  transaction: the worker holding it reads its in-flight tasks' cancel flags at once (without
  notifications it learns at its next lease renewal).
- Single creates that arrive while inserts are on their way go together as one multi-row insert, each
  caller answered on its own (``backends/_coalesce.py``); a busy pool is waited for as long as it keeps working, a
  server that cannot be reached is reported within about a second (``_waiting.py``).
- The schema is created and upgraded by numbered migrations under an advisory lock.

Driver errors are translated here: a lost connection is ``BackendUnavailable``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import math
import re
import secrets
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, cast

from ... import errors, transitions
from ..._connect import scrub
from ..._joins import Join
from ..._wakeup import HUB, LOST_WAKEUPS_POLL, StartWhenWanted, cancel_key
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
from ...gates import KeyGate, new_gate, pick, reset_gate
from ...health import HealthReport, Thresholds
from ...model import (
    CLAIMABLE_STATES,
    DEAD_MESSAGE_CHARS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PROCESSING_TIMEOUT,
    DeadSummary,
    Limit,
    NewTask,
    State,
    Task,
    WorkerHeartbeat,
)
from ...retry import DEFAULT_POLICY
from .. import _groups
from .._columns import dead_summary, hold_text
from .._records import group_from_row, heartbeat_from_row, limit_from_row, recurring_from_row, same, status_from_row
from .._sql import load_queries

try:
    import psycopg
    from psycopg import sql
    from psycopg.pq import TransactionStatus
    from psycopg_pool import AsyncConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - depends on the install
    raise errors.ConfigError(
        "the PostgreSQL backend needs psycopg 3 and psycopg-pool: pip install 'taskstore[postgres]'"
    ) from exc

from .._coalesce import Coalescer
from . import _health
from ._rows import gate_from_row, task_from_row, write_statement
from ._waiting import Connections

log = logging.getLogger("taskstore.postgres")

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,49}")
_RAW = load_queries("taskstore.backends.postgres", "queries.sql")
_HEALTH = load_queries("taskstore.backends.postgres", "health.sql")
if set(_RAW) & set(_HEALTH):  # pragma: no cover - a mistake in the files
    raise RuntimeError(f"queries defined in both queries.sql and health.sql: {sorted(set(_RAW) & set(_HEALTH))}")
# The LISTEN probe: how long its NOTIFY may take to come back once sent before LISTEN is judged not to work (a
# NOTIFY arrives in about a millisecond; a busy server or a slow network gets far more than that, and a false
# alarm costs only a warning and faster polling), and how often the listener probes again (a pooler's mode can
# change under a running worker; a verdict can also heal).
PROBE_TIMEOUT = 5.0
PROBE_EVERY = 60.0
_PROBE_PREFIX = "probe:"
# A connection the pool hands out is checked with a round trip only if it has sat idle this long: one that
# worked a moment ago almost always still works, and the check would double the cost of a single enqueue.
# A connection that broke in between fails its statement, is discarded by the pool, and the caller sees
# BackendUnavailable (the worker retries).
CHECK_IF_IDLE_FOR = 1.0
# The tables whose rows are updated or deleted all day, and when the store vacuums one itself (``vacuum``):
# dead rows past this many plus this share of its live ones. finished_minutes loses its week-old minutes every
# fold (a row per minute, queue and state): few a minute, but with autovacuum off nothing else ever removes them
# or their primary key entries, so it grew a little every day for good.
CHURNED_TABLES = (
    "tasks", "count_deltas", "queue_counts", "finished_minutes", "worker_heartbeats", "statuses", "groups", "limits"
)  # fmt: skip
VACUUM_DEAD_ROWS = 5_000
VACUUM_DEAD_SHARE = 0.1
# A prepared statement (psycopg prepares one run five times on a connection) soon runs one generic plan, chosen
# for the table's size when it was planned, until the table is next vacuumed or analyzed. Planned while the tasks
# table is small (a new store, or one that archiving keeps small), it reads the whole table for every claim and
# completion, the cheapest way then; as the table grows each of them costs as much as the table is big. At 2,000
# creates a second into a new store, completions took 40-190 ms by 20,000 rows and the worker fell 5 s behind in
# 10 s, with autovacuum's first visit still up to a minute away. So the store ANALYZEs a table whose live rows
# have grown to ANALYZE_GROWTH times their count at its last VACUUM or ANALYZE (counted from ANALYZE_FROM_ROWS),
# which also invalidates every plan made for it: the next ones are made for its size. Doubling bounds how often (a
# table that grows to 1,000,000 rows is analyzed ~11 times). Live rows, not pages: a drain writes each row twice
# more and may double a table's pages without adding a row (those dead rows are VACUUM's, which records the size
# too), and a large insert still open has its pages but not yet its rows (an ANALYZE then counts none of them).
# A table never analyzed goes by its pages, which need no statistics to be counted: a new store's first burst is
# seen at once, not when its connections next send their counts.
ANALYZED_TABLES = (*CHURNED_TABLES, "tasks_archive")
ANALYZE_GROWTH = 2
ANALYZE_FROM_ROWS = 500
ANALYZE_FROM_PAGES = 10  # the least the planner assumes of a table never analyzed
# Single creates sent together carry at most this many rows in one statement (see backends/_coalesce.py).
COALESCE_MAX_ROWS = 500

_NOW_FROM_PARAM_OR_DB = "coalesce(%(now)s::timestamptz, now())"
# Every decision reads timestamps back in UTC; appended after the user's own ``options=`` so that it wins.
_SESSION_OPTIONS = "-c TimeZone=UTC"
# A server that is starting, stopping or full may accept a retry; any other refusal (FATAL: role or database
# does not exist, password authentication failed, no pg_hba.conf entry) or a missing password will not.
_TRANSIENT_REFUSALS = ("starting up", "shutting down", "in recovery", "too many clients", "connection slots")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _permanent(exc: psycopg.OperationalError) -> bool:
    text = str(exc)
    if "fe_sendauth" in text:
        return True
    return "FATAL:" in text and not any(phrase in text for phrase in _TRANSIENT_REFUSALS)


def _parse_conninfo(conninfo: str) -> dict[str, Any]:
    """libpq's own reading of the URL (every form it accepts); its complaint, if any, as a ConfigError."""
    try:
        return psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        message = " ".join(str(exc).split())
        raise errors.ConfigError(f"invalid PostgreSQL URL: {scrub(message, conninfo)}") from None


def _check_joinable(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Refuse a caller's connection whose transaction the tasks could not share."""
    if conn.closed:
        raise errors.ConfigError("conn= is closed")
    status = conn.info.transaction_status
    if status == TransactionStatus.INERROR:
        raise errors.ConfigError("conn= is in a failed transaction (an earlier statement failed): roll it back first")
    if status == TransactionStatus.IDLE and conn.autocommit:
        raise errors.ConfigError(
            "conn= is in autocommit mode with no transaction open, so the tasks could not roll back with "
            "anything: enqueue inside `with conn.transaction():`, or turn autocommit off"
        )


# A statement of queries.sql with the schema filled in (see ``self.q``).
Query = bytes


async def _on_caller(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], query: Query, params: Any = None
) -> list[Any]:
    """One statement on the caller's connection, sync or async; its rows, if it returns any."""
    if isinstance(conn, psycopg.AsyncConnection):
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description is not None else []
    sync_cur = conn.execute(query, params)
    return sync_cur.fetchall() if sync_cur.description is not None else []


# One statement run in a transaction that is already open: the driver's own connection or the caller's (conn=).
_Run = Callable[[Query, Any], Awaitable[list[Any]]]
# A batch larger than this goes by COPY (``_insert_copied``), its rows made in chunks of this many as the ones before
# are sent, so the client and the server work at once. The rounds of a unique batch past its first attempt go in
# INSERT statements of this many rows, pipelined: large enough that a statement's fixed cost (its plan, the seq
# announcement, the count trigger) stays small per row.
_INSERT_CHUNK = 1000
# A batch of this many unique keys or more takes all of the keys' 64 locks (see lock_all_unique_keys).
_LOCK_ALL_FROM = 512
# A unique create retries its insert when the holder it conflicted with ended before it could be read back.
_UNIQUE_ROUNDS = 5
# A claim past key limits scans again past the keys it found full, at most this many times.
_CLAIM_ROUNDS = 4
# After a one-statement claim met a limited key, claims take the limit-aware path for this long (seconds).
_LIMITED_HINT_FOR = 1.0


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def _server_down(exc: BaseException) -> bool:
    """Whether a failed statement failed for want of the server (every row would), not for a row's values."""
    cause = exc.__cause__
    if isinstance(exc, errors.BackendUnavailable) and isinstance(cause, psycopg.Error):
        return isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError)
    return isinstance(exc, errors.BackendUnavailable)


def _runner(conn: psycopg.AsyncConnection[Any]) -> _Run:
    async def run(query: Query, params: Any = None) -> list[Any]:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description is not None else []

    return run


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("taskstore.backends.postgres").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_[a-z0-9_]+\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


def _changed(rows: Sequence[Any], step: Callable[..., Task | None]) -> list[tuple[Task, Task]]:
    """``step(task, now=…)`` over rows locked with the database's time as their last column: what it changed."""
    changes = []
    for row in rows:
        task = task_from_row(row)
        changed = step(task, now=row[-1].astimezone(UTC))
        if changed is not None:
            changes.append((task, changed))
    return changes


class DatabaseClock:
    """The database's clock as seen from here: the local clock plus an offset measured at connect.

    Decisions inside SQL use ``now()`` itself; this serves the few computed in Python (archive
    cutoffs, recurring slots), so that they agree with the database rather than with this machine.
    """

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class PostgresDriver:
    def __init__(
        self,
        conninfo: str,
        clock: Clock | None,
        *,
        schema: str = "taskstore",
        pool_min: int = 2,
        pool_max: int = 10,
        notify: bool = True,
        connect_timeout: float = 5.0,
        pool_timeout: float = 10.0,
        migrate: bool = True,
        create: bool = True,
        prepare_threshold: int | None = 5,
    ) -> None:
        if not isinstance(schema, str) or SCHEMA_NAME.fullmatch(schema) is None:
            raise errors.ConfigError(f"invalid schema name {schema!r}: use lower-case letters, digits and _")
        if pool_min < 1 or pool_max < pool_min:
            raise errors.ConfigError("pool sizes need 1 <= pool_min <= pool_max")
        if not math.isfinite(connect_timeout) or connect_timeout <= 0:
            raise errors.ConfigError(f"connect_timeout must be a positive number of seconds, not {connect_timeout!r}")
        if not math.isfinite(pool_timeout) or pool_timeout <= 0:
            raise errors.ConfigError(f"pool_timeout must be a positive number of seconds, not {pool_timeout!r}")
        self.conninfo = conninfo
        self.schema = schema
        self._fold_lock = f"taskstore-fold:{schema}"  # the advisory lock one folder of kept counts holds
        self._fixed = clock  # None: the database's now() decides
        self.clock: Clock = clock if clock is not None else DatabaseClock()
        self.notify = notify
        self.channel = f"taskstore_{schema}"  # new claimable work
        self.status_channel = f"taskstore_{schema}_status"  # a task or status changed (for watchers)
        self.cancel_channel = f"taskstore_{schema}_cancel"  # a claimed task's cancel was requested (for workers)
        self._pool_min, self._pool_max = pool_min, pool_max
        self._connect_timeout = connect_timeout
        # How long an operation waits for a free connection: a busy pool is backpressure, not an outage, so
        # this is not connect_timeout (with both at 5 s, a burst of enqueues queued behind a full pool failed).
        self._pool_timeout = pool_timeout
        self._create = create
        self._migrate_on_open = migrate and create
        self._pool: Connections | None = None
        self._last_used: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = weakref.WeakKeyDictionary()
        self._listener: asyncio.Task[None] | None = None
        self._listen_when_wanted: StartWhenWanted | None = None
        self._statuses_when_wanted: StartWhenWanted | None = None
        self._statuses_wanted = asyncio.Event()  # a status watch of this process waits: LISTEN to status_channel
        self._coalescer = self._new_coalescer()
        # What the last LISTEN probe found; notifications_lost is what the store's claimers read.
        self.delivery = _health.Delivery(enabled=notify)
        self.notifications_lost = False
        self._probed = asyncio.Event()  # set once the first probe has a verdict
        self._probes: dict[str, asyncio.Future[None]] = {}
        self._limited_until = 0.0  # monotonic time until which claims skip the one-statement attempt
        self.chord_args: ChordArgs = _groups.no_chord_args
        info = _parse_conninfo(conninfo)
        # libpq counts whole seconds and treats less than 2 as 2; open() enforces the exact limit itself.
        self._connect_kwargs: dict[str, Any] = {
            "options": f"{info.get('options') or ''} {_SESSION_OPTIONS}".strip(),
            "connect_timeout": max(2, math.ceil(connect_timeout)),
            # psycopg prepares a statement run this often on one connection; None never does (PgBouncer
            # before 1.21 in transaction mode, where a prepared statement lives on another server session).
            "prepare_threshold": prepare_threshold,
        }
        self._key = (
            "postgres",
            str(info.get("host", "")),
            str(info.get("port", "")),
            str(info.get("dbname", "")),
            schema,
        )
        ident = sql.Identifier(schema)
        now = sql.SQL(_NOW_FROM_PARAM_OR_DB)
        # Rendered once to bytes: psycopg renders a ``sql.Composed`` again on every execute (13-16 µs for a
        # claim or an insert, measured), while a bytes query is looked up in its cache of converted queries.
        self.q: dict[str, Query] = {
            name: sql.SQL(text).format(schema=ident, now=now).as_bytes(None) for name, text in (_RAW | _HEALTH).items()
        }

    @property
    def wake_key(self) -> Hashable:
        return self._key

    # -- connections ----------------------------------------------------------------------------

    def _new_coalescer(self) -> Coalescer:
        # At most a quarter of the pool's connections carry coalesced inserts at once: fewer, larger statements,
        # and connections left for claims and completions when a worker shares this pool.
        return Coalescer(self._send_batch, max_rows=COALESCE_MAX_ROWS, flights=max(1, self._pool_max // 4))

    async def open(self) -> None:
        self._coalescer = self._new_coalescer()  # a store closed may be opened again
        self._probed = asyncio.Event()  # of this loop: a store may be opened again on another
        await self._first_connection()
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self.conninfo,
            min_size=self._pool_min,
            max_size=self._pool_max,
            kwargs={"autocommit": True, **self._connect_kwargs},
            check=self._check_connection,
            open=False,
            timeout=self._pool_timeout,
            name=f"taskstore-{self.schema}",
        )
        try:
            await pool.open(wait=True, timeout=self._connect_timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            await pool.close()
            raise errors.BackendUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        self._pool = Connections(pool, timeout=self._pool_timeout, pool_max=self._pool_max, probe=self._try_connect)
        try:
            if self._migrate_on_open:
                await self.migrate()
            elif not self._create and not (await self._fetchone("store_exists", schema=self.schema))[0]:
                raise errors.ConfigError(f"no taskstore store in schema {self.schema!r} of this database")
            await self._measure_clock()
        except BaseException:
            await self.close()
            raise
        if self.notify:
            # LISTEN once a waiter of this process needs other processes' wake-ups (a blocked claim, a status
            # watch, a worker's cancel watch): a process that only enqueues opens no connection for it and is
            # not sent every other enqueue's NOTIFY (0.15 ms of CPU each, measured: a fifth of a single create).
            self._listen_when_wanted = StartWhenWanted(
                (self._key, ("status", self._key), cancel_key(self._key)), self._start_listener
            )
            # The status channel too only once a status watch waits here: a worker's process was sent a
            # notification for every completion batch, its own and every other worker's.
            self._statuses_when_wanted = StartWhenWanted((("status", self._key),), self._statuses_wanted.set)

    def _start_listener(self) -> None:
        if self._listener is None and self._pool is not None:
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="taskstore-listen")

    async def _first_connection(self) -> None:
        """Connect once before the pool does, so that a failure is reported with its cause, in one line.

        The pool would retry any failure, logging each, until its timeout, then say only that it timed out.
        Here a refusal no retry can change fails at once; a server that is down or starting is retried quietly
        until ``connect_timeout``.
        """
        deadline = time.monotonic() + self._connect_timeout
        pause = 0.1
        while True:
            left = deadline - time.monotonic()
            try:
                conn = await asyncio.wait_for(
                    psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, **self._connect_kwargs),
                    max(left, 0.01),
                )
            except TimeoutError:
                raise errors.BackendUnavailable(
                    f"cannot connect to PostgreSQL: no answer within {self._connect_timeout:g}s (connect_timeout)"
                ) from None
            except psycopg.OperationalError as exc:
                if _permanent(exc):
                    raise errors.ConfigError(f"PostgreSQL refused the connection: {_one_line(exc)}") from None
                if time.monotonic() + pause >= deadline:
                    raise errors.BackendUnavailable(f"cannot connect to PostgreSQL: {_one_line(exc)}") from None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
            else:
                await conn.close()
                return

    async def _try_connect(self) -> str | None:
        """One connection attempt, bounded by connect_timeout: None if it connected, else the reason, in one line."""
        try:
            conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, **self._connect_kwargs),
                self._connect_timeout,
            )
        except TimeoutError:
            return f"no answer within {self._connect_timeout:g}s (connect_timeout)"
        except psycopg.Error as exc:
            return f"cannot connect: {scrub(_one_line(exc), self.conninfo)}"
        await conn.close()
        return None

    async def close(self) -> None:
        for when in (self._listen_when_wanted, self._statuses_when_wanted):
            if when is not None:
                when.close()
        await self._coalescer.close()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            while not listener.done():
                # Again and again: a cancel that lands as the pool hands the probe a connection is swallowed
                # (asyncio.wait_for in Python 3.11), and the listener would then wait a minute for its next probe.
                listener.cancel()
                await asyncio.wait([listener], timeout=0.2)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                listener.result()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            raise errors.BackendUnavailable("the store is closed")
        try:
            async with self._pool.connection() as conn:  # a busy pool is waited for: see _waiting.py
                try:
                    yield conn
                finally:
                    self._last_used[conn] = time.monotonic()
        except errors.TaskstoreError:
            raise
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise errors.BackendUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
        except psycopg.Error as exc:
            raise errors.BackendUnavailable(f"PostgreSQL error: {exc}") from exc

    async def _check_connection(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if time.monotonic() - self._last_used.get(conn, 0.0) > CHECK_IF_IDLE_FOR:
            await AsyncConnectionPool.check_connection(conn)

    def _params(self, **params: Any) -> dict[str, Any]:
        params["now"] = self._fixed.now() if self._fixed is not None else None
        return params

    async def _fetchall(self, name: str, **params: Any) -> list[Any]:
        async with self._conn() as conn:
            cur = await conn.execute(self.q[name], self._params(**params))
            return await cur.fetchall()

    async def _fetchone(self, name: str, **params: Any) -> Any:
        async with self._conn() as conn:
            cur = await conn.execute(self.q[name], self._params(**params))
            return await cur.fetchone()

    async def _execute(self, name: str, **params: Any) -> int:
        async with self._conn() as conn:
            cur = await conn.execute(self.q[name], self._params(**params))
            return cur.rowcount

    async def migrate(self) -> int:
        """Apply the migrations this schema lacks; returns how many. Safe from many processes at once."""
        ident = sql.Identifier(self.schema)
        applied_now = 0
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"taskstore-migrate:{self.schema}",))
            await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.schema_migrations "
                    "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(ident)
            )
            cur = await conn.execute(sql.SQL("SELECT version FROM {}.schema_migrations").format(ident))
            done = {row[0] for row in await cur.fetchall()}
            for version, script in _migrations():
                if version in done:
                    continue
                await conn.execute(sql.SQL(script).format(schema=ident))
                await conn.execute(
                    sql.SQL("INSERT INTO {}.schema_migrations (version) VALUES (%s)").format(ident), (version,)
                )
                applied_now += 1
        return applied_now

    async def _measure_clock(self) -> None:
        if not isinstance(self.clock, DatabaseClock):
            return
        before = datetime.now(UTC)
        row = await self._fetchone("current_time")
        after = datetime.now(UTC)
        self.clock.offset = row[0] - (before + (after - before) / 2)

    async def _listen(self) -> None:
        """Wake this process's blocked claimers on NOTIFY; reconnect (and re-poll) when the link drops.

        A reader task dispatches the notifications while this one probes that they arrive at all (see
        ``_probe``): a LISTEN through a pooler in transaction mode succeeds and then hears nothing.
        """
        pause = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, **self._connect_kwargs
                ) as conn:
                    statuses = self._statuses_wanted.is_set()
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    if statuses:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.status_channel)))
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.cancel_channel)))
                    pause = 0.1
                    for key in (self._key, ("status", self._key), cancel_key(self._key)):
                        HUB.notify(key)  # what was sent while we were away is found by a read
                    reader = asyncio.get_running_loop().create_task(self._read_notes(conn), name="taskstore-notes")
                    wanted = asyncio.ensure_future(self._statuses_wanted.wait())
                    try:
                        while not reader.done():
                            await self._probe(reader)
                            if not reader.done():
                                await asyncio.wait(
                                    [reader] if statuses else [reader, wanted],
                                    timeout=PROBE_EVERY,
                                    return_when=asyncio.FIRST_COMPLETED,
                                )
                            if not statuses and wanted.done():
                                break  # a status watch now waits: listen again, to the status channel too
                    finally:
                        wanted.cancel()
                        reader.cancel()
                        with contextlib.suppress(BaseException):
                            await reader
                    if not reader.cancelled():
                        reader.result()  # the reader's error (a lost connection) is handled below
                    if not statuses and self._statuses_wanted.is_set():
                        continue  # at once, on a new connection
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                log.warning("LISTEN on %s lost (%s); reconnecting in %.1fs", self.channel, exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    async def _read_notes(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for note in conn.notifies():
            self._heard(note.channel, note.payload)

    def _heard(self, channel: str, payload: str) -> None:
        if payload.startswith(_PROBE_PREFIX):  # a probe: ours comes back; other processes' wake nobody
            arrived = self._probes.pop(payload, None)
            if arrived is not None and not arrived.done():
                arrived.set_result(None)
        elif channel == self.status_channel:
            HUB.notify(("status", self._key))
        elif channel == self.cancel_channel:
            HUB.notify(cancel_key(self._key))
        else:
            HUB.notify(self._key)

    async def _probe(self, reader: asyncio.Task[None]) -> None:
        """Send a NOTIFY through the pool and judge LISTEN by whether it reaches ``reader`` in time.

        No verdict when the pool cannot reach the server, or the listening connection drops meanwhile.
        """
        token = _PROBE_PREFIX + secrets.token_hex(8)
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._probes[token] = arrived
        started = time.monotonic()
        try:
            try:
                await self._execute("notify_probe", channel=self.channel, payload=token)
            except errors.BackendUnavailable:
                return
            await asyncio.wait([arrived, reader], timeout=PROBE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            if not arrived.done() and reader.done():
                return
            self._judge(lost=not arrived.done(), latency=time.monotonic() - started)
        finally:
            self._probes.pop(token, None)
            arrived.cancel()

    def _judge(self, *, lost: bool, latency: float) -> None:
        was = self.delivery
        self.delivery = _health.Delivery(checked=True, lost=lost, latency=None if lost else latency)
        self.notifications_lost = lost
        self._probed.set()
        if lost and not was.lost:
            log.warning(
                "LISTEN on %s hears nothing: a NOTIFY sent through the pool did not come back within %gs. Is the "
                "URL a pooler in transaction mode (PgBouncer pool_mode=transaction), where LISTEN does not stick "
                "to a server session? Claimers now poll every %gs instead. Use session mode, or a URL straight to "
                "PostgreSQL (notify=false silences this)",
                self.channel,
                PROBE_TIMEOUT,
                LOST_WAKEUPS_POLL,
            )
        elif was.lost and not lost:
            log.info("LISTEN on %s hears notifications again: claimers wake on them", self.channel)

    # -- health -----------------------------------------------------------------------------------

    async def health(self, thresholds: Thresholds) -> HealthReport:
        """The server, the schema's tables and what holds back vacuum (``taskstore doctor``; see ``_health``)."""
        if self.notify and not self._probed.is_set():  # just opened: the first probe's verdict is due
            if self._listen_when_wanted is not None:
                self._listen_when_wanted.want()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._probed.wait(), PROBE_TIMEOUT + self._connect_timeout)
        async with self._conn() as conn:

            async def rows(name: str) -> list[Any]:
                return await (await conn.execute(self.q[name], {"schema": self.schema})).fetchall()

            server = (await rows("health_server"))[0]
            (migration,) = (await rows("health_migration"))[0]
            horizon = await rows("health_horizon")
            tables = await rows("health_tables")
            indexes = await rows("health_indexes")
        findings = _health.server_findings(server, migration, _migrations()[-1][0], thresholds)
        findings.append(_health.delivery_finding(self.delivery, LOST_WAKEUPS_POLL))
        findings += _health.horizon_findings(horizon, thresholds)
        for table in tables:
            findings += _health.table_findings(table, indexes, thresholds)
        return HealthReport("postgresql", tuple(findings))

    async def _announce(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self.notify:
            await conn.execute(self.q["notify"], {"channel": self.channel})

    async def _announce_change(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Tell other processes' status watchers that something changed (delivered at commit)."""
        if self.notify:
            await conn.execute(self.q["notify"], {"channel": self.status_channel})

    # -- outbox ---------------------------------------------------------------------------------

    def _insert_params(self, rows: Sequence[NewRow], now: datetime | None = None) -> dict[str, Any]:
        """The insert's parameters; ``now`` stamps the rows with a time already read in this transaction.

        A row is as long as its options need (see ``_insert_rows``): most tasks set none, and a shorter row is
        less to build, encode and parse.
        """
        batch: list[list[Any]] = []
        append, b64, default_policy = batch.append, _b64, DEFAULT_POLICY
        for r in rows:
            n = r.new
            row: list[Any] = [
                r.id,
                n.queue,
                n.kind,
                b64(r.args),
                n.priority,
                DEFAULT_MAX_ATTEMPTS if n.max_attempts is None else n.max_attempts,
                DEFAULT_PROCESSING_TIMEOUT if n.processing_timeout is None else n.processing_timeout,
            ]
            retry = n.retry
            more = (
                n.run_at is not None
                or n.context is not None
                or n.reference_id is not None
                or (retry is not None and retry is not default_policy)
                or n.recurring_id is not None
                or n.group_id is not None
                or n.concurrency_key is not None
                or n.expires_at is not None
            )
            if n.unique_key is not None or more:
                row += (n.unique_key, hold_text(n.unique_hold), n.unique_for)
            if more:
                row += (
                    None if n.run_at is None else n.run_at.isoformat(),
                    None if n.context is None else dict(n.context),
                    n.reference_id,
                    None if retry is None or retry is default_policy else retry.to_spec(),
                    n.recurring_id,
                    n.group_id,
                    n.concurrency_key,
                    None if n.expires_at is None else n.expires_at.isoformat(),
                )
            append(row)
        channel = self.channel if self.notify else ""
        params = self._params(rows=json.dumps(batch, separators=(",", ":")), channel=channel)
        if now is not None:
            params["now"] = now
        return params

    def _created(self, rows: Sequence[NewRow], returned: Sequence[Any]) -> list[Task]:
        if len({r[2] for r in returned}) == 1:  # one statement's rows: one created_at (its clock.now)
            seq_of = {r[1]: r[0] for r in returned}
            now = returned[0][2].astimezone(UTC)
            news = [row.new for row in rows]
            return transitions.create_all(news, [row.id for row in rows], [seq_of[row.id] for row in rows], now)
        by_id = {r[1]: (r[0], r[2]) for r in returned}
        tasks = []
        for row in rows:
            seq, created_at = by_id[row.id]
            now = created_at.astimezone(UTC)
            tasks.append(transitions.create(row.new, task_id=row.id, now=now, args=row.new.args, seq=seq))
        return tasks

    async def insert(self, rows: Sequence[NewRow], conn: Join | None = None) -> list[Task]:
        _no_repeated_id(rows, set())
        unique = any(row.new.unique_key is not None for row in rows)
        if conn is not None:
            return await self._insert_joined(rows, conn.raw, unique)
        if len(rows) == 1 and not unique:
            # A single create goes with the others queued meanwhile (.._coalesce); a unique one keeps its own
            # transaction (its key's holder is read back in it), and a batch is all-or-nothing on its own.
            return [await self._coalescer.insert(rows[0])]
        return await self._insert_own(rows, unique)

    async def _send_batch(self, rows: Sequence[NewRow]) -> list[Task | BaseException]:
        """Single creates sent together, each answered as it would have been alone.

        A taken id skips its row (``ON CONFLICT (id) DO NOTHING``): that caller gets ``AlreadyExists``, the
        others their tasks. Any other error of the statement (a value the server refuses: a user's CHECK or
        trigger) could be any row's, so the batch is sent again in two halves, and so on: the row at fault ends
        alone with its own error, and one such row among 500 costs about 18 statements, not 500. The halves go
        one after the other, so seq still follows the batch's order. A lost server fails the whole batch (raised).
        """
        if len(rows) == 1:
            return [await self._send_alone(rows[0])]
        try:
            async with self._conn() as c:
                returned = await (
                    await c.execute(self.q["insert_tasks_skip_taken"], self._insert_params(rows))
                ).fetchall()
        except errors.BackendUnavailable as exc:
            if _server_down(exc):
                raise
            half = len(rows) // 2
            return [*await self._send_batch(rows[:half]), *await self._send_batch(rows[half:])]
        inserted = {r[1] for r in returned}
        went_in = [row for row in rows if row.id in inserted]
        created = iter(self._created(went_in, returned))
        return [next(created) if row.id in inserted else errors.AlreadyExists(row.id) for row in rows]

    async def _send_alone(self, row: NewRow) -> Task | BaseException:
        try:
            return (await self._insert_own([row], False))[0]
        except errors.TaskstoreError as exc:
            return exc

    async def _insert_own(self, rows: Sequence[NewRow], unique: bool) -> list[Task]:
        """Insert on a connection of the pool, in one statement (unique tasks: in one transaction)."""
        try:
            if unique:
                async with self._conn() as c, c.transaction():
                    return await self._insert_unique(_runner(c), rows, piped=c)
            if len(rows) <= _INSERT_CHUNK:
                async with self._conn() as c:  # one statement: atomic without a transaction block
                    returned = await (await c.execute(self.q["insert_tasks"], self._insert_params(rows))).fetchall()
                    return self._created(rows, returned)
            async with self._conn() as c, c.transaction():
                return await self._insert_copied(c, _chunks(rows), len(rows))
        except errors.BackendUnavailable as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise errors.AlreadyExists(await self._first_taken([r.id for r in rows])) from exc
            raise

    @property
    def insert_chunk(self) -> int:
        """A batch larger than this comes to ``insert_chunked`` in chunks of this many rows."""
        return _INSERT_CHUNK

    async def insert_chunked(self, news: Sequence[NewTask], chunks: Iterable[Sequence[NewRow]]) -> list[Task]:
        """``insert`` of a batch outside any caller's transaction, made chunk by chunk.

        Each chunk is taken from ``chunks`` only once the one before is on its way to the server, so the store
        validates and encodes a chunk while the server inserts the one before (validating all 10,000 rows of a
        batch first left the server idle for a fifth of the batch's time). Whatever taking a chunk raises (a
        payload that does not encode, an id repeated in the batch) ends the transaction: nothing is inserted.
        ``news`` are the batch's tasks, whose unique keys are locked before the first chunk is taken.
        """
        ids: list[str] = []
        keys = [(new.queue, new.unique_key) for new in news]

        def checked() -> Iterator[Sequence[NewRow]]:
            seen: set[str] = set()
            for chunk in chunks:
                _no_repeated_id(chunk, seen)
                ids.extend(row.id for row in chunk)
                yield chunk

        try:
            async with self._conn() as c, c.transaction():
                if any(key is not None for _, key in keys):
                    return await self._insert_unique_chunks(_runner(c), keys, checked(), piped=c)
                return await self._insert_copied(c, checked(), len(keys))
        except errors.BackendUnavailable as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise errors.AlreadyExists(await self._first_taken(ids)) from exc
            raise

    async def _insert_copied(
        self, conn: psycopg.AsyncConnection[Any], chunks: Iterable[Sequence[NewRow]], count: int
    ) -> list[Task]:
        """A large batch of ``count`` rows, given in chunks, by one binary COPY in the open transaction.

        COPY skips what an INSERT of a JSON batch costs the server per row (parsing the JSON, projecting each
        row, inserting the heap tuples one by one): 10,000 tasks took the server ~11 µs each that way. The rows
        go as they are encoded, so the server stores one chunk while this process encodes the next. Their seqs
        are taken first, in the batch's order, after the announcement every insert makes (``_announce_seqs``), and
        the transaction's clock with them: every column is then known here, and the tasks are built from the
        rows as written. A row's own options (run_at, unique_for, context, ...) are written as ``_insert_rows``
        makes them; nothing else writes tasks this way.
        """
        got = await (await conn.execute(self.q["allocate_seqs"], self._params(n=count), binary=True)).fetchall()
        now = _utc(got[0][0])
        seqs = [r[1] for r in got]
        created: list[Task] = []
        async with conn.cursor().copy(self.q["copy_tasks"]) as copy:
            copy.set_types(_COPY_TYPES)
            write = copy.write_row
            for chunk in chunks:
                chunk_seqs = seqs[len(created) : len(created) + len(chunk)]
                for row, seq in zip(chunk, chunk_seqs, strict=True):
                    await write(_copy_row(row, seq, now))
                # Built while the server stores what was sent (COPY's end waits for all of it).
                created += transitions.create_all([r.new for r in chunk], [r.id for r in chunk], chunk_seqs, now)
        if len(created) != count:
            raise AssertionError(f"a batch of {count} tasks gave {len(created)} rows")  # the driver's own promise
        await self._announce(conn)  # delivered at commit, as the INSERT's pg_notify is
        return created

    async def _send_piped(
        self, conn: psycopg.AsyncConnection[Any], query: Query, rows: Sequence[NewRow], now: datetime | None
    ) -> list[Any]:
        """The rows ``query`` returns for ``rows`` sent in chunks of ``_INSERT_CHUNK``, in one pipeline."""
        returned: list[Any] = []
        async with contextlib.aclosing(self._piped(conn, query, rows, now)) as chunks:
            async for _, chunk_rows in chunks:
                returned += chunk_rows
        return returned

    async def _piped(
        self, conn: psycopg.AsyncConnection[Any], query: Query, rows: Sequence[NewRow], now: datetime | None
    ) -> AsyncGenerator[tuple[Sequence[NewRow], list[Any]], None]:
        """Each chunk of ``rows`` with what ``query`` returned for it: every chunk sent first, in one pipeline."""
        sent = []
        async with conn.pipeline():
            for start in range(0, len(rows), _INSERT_CHUNK):
                chunk = rows[start : start + _INSERT_CHUNK]
                cur = conn.cursor()
                await cur.execute(query, self._insert_params(chunk, now))
                sent.append((chunk, cur))
            for chunk, cur in sent:
                yield chunk, await cur.fetchall()

    async def _insert_unique(
        self,
        run: _Run,
        rows: Sequence[NewRow],
        now: datetime | None = None,
        *,
        piped: psycopg.AsyncConnection[Any] | None = None,
    ) -> list[Task]:
        """Insert a batch with unique tasks in the transaction ``run`` executes in (see ``Outbox.insert``).

        ``INSERT … ON CONFLICT DO NOTHING`` on the partial unique index decides which rows go in; for the
        rest, holders past ``unique_for`` are released and the others read back. A row whose holder was
        released, or ended before it could be read, is inserted again, a bounded number of times.
        ``piped``: the connection ``run`` runs on, for a large first round to go in pipelined chunks.
        """
        keys = [(row.new.queue, row.new.unique_key) for row in rows]
        return await self._insert_unique_chunks(run, keys, _chunks(rows), now, piped=piped)

    async def _insert_unique_chunks(
        self,
        run: _Run,
        keys: Sequence[tuple[str, str | None]],
        chunks: Iterable[Sequence[NewRow]],
        now: datetime | None = None,
        *,
        piped: psycopg.AsyncConnection[Any] | None = None,
    ) -> list[Task]:
        """``_insert_unique`` of a batch given as each row's (queue, unique_key) and its rows in chunks, which are
        taken only as the first attempt sends them (see ``insert_chunked``), or all at once when it is not made."""
        first: dict[tuple[str, str], int] = {}  # a key's first row in the batch; later rows get its task
        pending: list[int] = []
        for index, (queue, key) in enumerate(keys):
            if key is not None:
                if (queue, key) in first:
                    continue
                first[(queue, key)] = index
            pending.append(index)
        params = self._params()
        if now is not None:
            params["now"] = now
        if len(first) >= _LOCK_ALL_FROM:
            await run(self.q["lock_all_unique_keys"], params)
        elif len(first) > 1:
            await run(self.q["lock_unique_keys"], {**params, "keys": json.dumps([list(k) for k in first])})
        rows: list[NewRow] = []
        remaining = iter(chunks)

        def taken() -> Iterator[Sequence[NewRow]]:
            for chunk in remaining:
                rows.extend(chunk)
                yield chunk

        if piped is not None and now is None and len(pending) == len(keys) > _INSERT_CHUNK:
            # A large batch of distinct keys, which are mostly new: tried first as the plain insert, in a savepoint,
            # which skips the unique index's check before each row's insert (ON CONFLICT's speculative insertion
            # doubles the server's work per row). A key or an id already taken undoes the attempt, and the batch
            # goes the way below (the keys' locks, taken above, are still held: no other batch takes one meanwhile).
            with contextlib.suppress(psycopg.errors.UniqueViolation):
                async with piped.transaction():
                    return await self._insert_copied(piped, taken(), len(keys))
        for _ in taken():  # the rows the attempt did not take (all of them, when it was not made)
            pass
        result: dict[int, Task] = {}
        for _ in range(_UNIQUE_ROUNDS):
            batch = [rows[i] for i in pending]
            if piped is not None and len(batch) > _INSERT_CHUNK:
                returned = await self._send_piped(piped, self.q["insert_unique_tasks"], batch, now)
            else:
                returned = await run(self.q["insert_unique_tasks"], self._insert_params(batch, now))
            inserted = {r[1] for r in returned}
            went_in = [i for i in pending if rows[i].id in inserted]
            for i, task in zip(went_in, self._created([rows[i] for i in went_in], returned), strict=True):
                result[i] = task
            pending = [i for i in pending if rows[i].id not in inserted]
            if not pending:
                break
            held = json.dumps([[rows[i].new.queue, rows[i].new.unique_key] for i in pending])
            # Holders past unique_for give the key up; their rows go in on the next round.
            released = {(r[0], r[1]) for r in await run(self.q["release_lapsed_holders"], {**params, "keys": held})}
            holders = await run(self.q["unique_holders"], self._params(keys=held))
            by_key = {(t.queue, t.unique_key): t for t in map(task_from_row, holders)}
            for i in pending:
                held_key = (rows[i].new.queue, rows[i].new.unique_key)
                if held_key not in released and held_key in by_key:
                    result[i] = by_key[held_key]
            pending = [i for i in pending if i not in result]
            if not pending:
                break
        else:
            raise errors.BackendUnavailable("unique tasks: the key's holder kept changing while creating; try again")
        out = []
        for index, row in enumerate(rows):
            if index not in result:  # a repeated key of the batch: its first row's task
                key = row.new.unique_key
                assert key is not None
                result[index] = result[first[(row.new.queue, key)]]
            out.append(result[index])
        return out

    async def _first_taken(self, ids: list[str]) -> str:
        found = await self._fetchall("existing_ids", ids=ids)
        return str(found[0][0]) if found else "?"

    async def _insert_joined(self, rows: Sequence[NewRow], conn: Any, unique: bool) -> list[Task]:
        """Insert inside the caller's transaction, which only the caller ends.

        When the caller has not begun yet, the savepoint is the transaction's first statement and
        psycopg sends its own BEGIN (with the connection's isolation level) before it, as it would
        before the caller's first statement. (psycopg's ``conn.transaction()`` would commit there.)
        The savepoint keeps a failed batch from poisoning the caller's transaction.
        """
        if not isinstance(conn, psycopg.Connection | psycopg.AsyncConnection):
            raise errors.ConfigError(f"conn= must be a psycopg connection for this store, got {type(conn).__name__}")
        _check_joinable(conn)

        async def run(query: Query, params: Any = None) -> list[Any]:
            return await _on_caller(conn, query, params)

        try:
            await _on_caller(conn, self.q["join_savepoint"])
            try:
                if unique:
                    created = await self._insert_unique(run, rows)
                else:
                    returned = await _on_caller(conn, self.q["insert_tasks"], self._insert_params(rows))
                    created = self._created(rows, returned)
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    await _on_caller(conn, self.q["join_rollback"])
                    await _on_caller(conn, self.q["join_release"])
                raise
            await _on_caller(conn, self.q["join_release"])
        except psycopg.errors.UniqueViolation as exc:
            # Read on the caller's connection: the id may be taken by a row only its transaction sees.
            taken = await _on_caller(conn, self.q["existing_ids"], self._params(ids=[r.id for r in rows]))
            raise errors.AlreadyExists(str(taken[0][0]) if taken else "?") from exc
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
            where = f"(no schema {self.schema!r} with its tables)"
            raise errors.ConfigError(f"conn= is not connected to this store's database {where}") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise errors.BackendUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
        except psycopg.Error as exc:
            raise errors.BackendUnavailable(f"PostgreSQL error in the caller's transaction: {exc}") from exc
        return created

    async def get(self, task_id: str, *, archived: bool = False) -> Task:
        row = await self._fetchone("get_archived" if archived else "get_task", id=task_id)
        if row is None:
            raise errors.NotFound(task_id, "archived task" if archived else "task")
        return task_from_row(row)

    async def list_tasks(self, query: ListQuery) -> list[Task]:
        # One queue and one kind (the dashboard's filter) has its own statement and index: see list_kind_asc.
        by_kind = query.kind is not None and query.queue is not None and not query.archived
        prefix = "list_kind_" if by_kind else "list_archived_" if query.archived else "list_"
        rows = await self._fetchall(
            prefix + ("desc" if query.descending else "asc"),
            state=None if query.state is None else query.state.value,
            queue=query.queue,
            kind=query.kind,
            ready=query.ready_as_of,
            after=query.after_seq,
            limit=query.limit,
        )
        return [task_from_row(r) for r in rows]

    async def count(self, state: State | None, queue: str | None, archived: bool) -> int:
        row = await self._fetchone(
            "count_archived" if archived else "count", state=None if state is None else state.value, queue=queue
        )
        return int(row[0])

    async def finished_counts(self, since: datetime, bucket: float) -> list[tuple[int, State, int]]:
        rows = await self._fetchall("finished_counts", since=since, bucket=bucket)
        return [(int(slot), State(state), int(n)) for slot, state, n in rows]

    async def dead_summaries(self, limit: int) -> list[DeadSummary]:
        rows = await self._fetchall("dead_summaries", limit=limit, chars=DEAD_MESSAGE_CHARS)
        return [dead_summary(row, _utc) for row in rows]

    async def vacuum(self) -> list[str]:
        """VACUUM (and ANALYZE) each churning table whose dead rows passed ``VACUUM_DEAD_ROWS`` plus
        ``VACUUM_DEAD_SHARE`` of its live ones, whatever autovacuum does: with autovacuum off, or behind (its
        defaults wait for 20% of a table dead, and a queue table's dead rows are most of its pages), a queue
        table would otherwise grow without bound. ``SKIP_LOCKED``: a table another VACUUM holds is skipped."""
        async with self._conn() as conn:
            rows = await (
                await conn.execute(self.q["churned_tables"], {"schema": self.schema, "tables": list(CHURNED_TABLES)})
            ).fetchall()
            chosen = [name for name, live, dead in rows if dead > VACUUM_DEAD_ROWS + VACUUM_DEAD_SHARE * live]
            return await self._each_table(conn, "VACUUM", sql.SQL("VACUUM (SKIP_LOCKED, ANALYZE) {}"), chosen)

    async def analyze_grown(self) -> list[str]:
        """ANALYZE each table whose live rows have grown to ``ANALYZE_GROWTH`` times their count at its last VACUUM or
        ANALYZE, so that the plans prepared statements keep are made again for its size (see ``ANALYZE_GROWTH``)."""
        async with self._conn() as conn:
            rows = await (
                await conn.execute(self.q["table_sizes"], {"schema": self.schema, "tables": list(ANALYZED_TABLES)})
            ).fetchall()
            grow = ANALYZE_GROWTH
            chosen = [
                name
                for name, live, known_live, pages in rows
                if live >= grow * max(known_live, ANALYZE_FROM_ROWS)
                or (known_live < 0 and pages >= grow * ANALYZE_FROM_PAGES)
            ]
            return await self._each_table(conn, "ANALYZE", sql.SQL("ANALYZE (SKIP_LOCKED) {}"), chosen)

    async def _each_table(
        self, conn: psycopg.AsyncConnection[Any], verb: str, command: sql.SQL, names: Sequence[str]
    ) -> list[str]:
        """``command`` (VACUUM or ANALYZE, ``{}`` for the table) on each of the schema's ``names``: those it ran on.
        A table another VACUUM or ANALYZE holds is skipped (``SKIP_LOCKED``), one this role may not touch is logged."""
        done = []
        for name in sorted(names):
            table = sql.Identifier(self.schema, name)
            try:
                await conn.execute(command.format(table))
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise  # the server went away: BackendUnavailable, from _conn
            except psycopg.Error as exc:  # not this role's to vacuum, say: the others still are
                log.warning("could not %s %s.%s: %s", verb, self.schema, name, _one_line(exc))
                continue
            done.append(name)
        return done

    async def fold_counts(self, keep_since: datetime) -> int:
        async with self._conn() as conn:
            folded = await (await conn.execute(self.q["fold_counts"], {"lock": self._fold_lock})).fetchone()
            purged = await conn.execute(self.q["purge_finished_minutes"], {"before": keep_since})
        return int(folded[0] if folded else 0) + max(purged.rowcount, 0)

    async def outstanding_count(self, recurring_id: str) -> int:
        return int((await self._fetchone("outstanding", id=recurring_id))[0])

    # -- claims ---------------------------------------------------------------------------------

    async def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, token: Callable[[], str], recover: bool = False
    ) -> list[Task]:
        """One statement while no candidate's key has a limit; lease tokens come from the database (gen_random_uuid).

        The one statement claims nothing when a candidate's key has a limit, and then says so (a row of NULLs):
        the claim runs again in a transaction that locks the keys' limit rows (``_claim_limited``). Right
        after that happened, claims go there directly for a moment rather than pay for both.
        """
        distinct = list(dict.fromkeys(queues))
        if recover:
            await self._recover(distinct, limit)
        if time.monotonic() >= self._limited_until:
            if not distinct:
                rows = await self._fetchall("claim_any", worker=worker_id, limit=limit)
            elif len(distinct) == 1:
                rows = await self._fetchall("claim_queue", worker=worker_id, limit=limit, queue=distinct[0])
            else:
                rows = await self._fetchall("claim_queues", worker=worker_id, limit=limit, queues=distinct)
            if not rows:
                return []  # nothing claimable
            if rows[0][0] is None:  # held back by a key's limit
                rows = await self._claim_limited(worker_id, distinct, limit)
        else:
            rows = await self._claim_limited(worker_id, distinct, limit)
        claimed = [task_from_row(r) for r in rows]
        claimed.sort(key=transitions.claim_order)
        return claimed

    async def _claim_limited(self, worker_id: str, queues: list[str], want: int) -> list[Any]:
        """A claim past per-key limits (SPEC §9), in one transaction; returns the claimed rows.

        Candidates are read in claim order and locked (SKIP LOCKED); their keys' limit rows are locked,
        then the keys' running tasks counted, so two claimers never both take a key's last slot;
        ``gates.pick`` chooses; the chosen are claimed and the buckets drawn on written back. When keys
        turned out full and the scan was full, it scans again past them (bounded), so a hot key never
        hides the other keys' tasks.
        """
        async with self._conn() as conn, conn.transaction():
            run = _runner(conn)
            gates: dict[str, KeyGate] = {}
            known: set[str] = set()  # keys whose limit row this claim has looked at
            full: set[str] = set()
            chosen: list[int] = []
            now: datetime | None = None
            limited = False
            for round_ in range(_CLAIM_ROUNDS):
                scan = want - len(chosen)
                found = await run(*self._candidates(queues, scan, full, chosen, screen=round_ > 0))
                new_keys = sorted({r[1] for r in found if r[1] is not None and r[1] not in known})
                if new_keys:
                    locked = await run(
                        self.q["lock_limits" if round_ == 0 else "lock_limits_skip_locked"], {"keys": new_keys}
                    )
                    known.update(new_keys)
                    held = [r for r in locked if r[6]]
                    full.update(r[0] for r in locked if not r[6])  # another claimer holds it: full for this one
                    if held:
                        limited = True
                        counts = await run(self.q["running_counts"], self._params(keys=[r[0] for r in held]))
                        running = {c[0]: int(c[1]) for c in counts}
                        now = counts[0][2].astimezone(UTC)
                        for r in held:
                            gates[r[0]] = gate_from_row(r, running[r[0]])
                # A key another claimer holds is passed over; every other candidate goes to gates.pick.
                open_ = [i for i, r in enumerate(found) if r[1] is None or r[1] in gates or r[1] not in full]
                keys = [found[i][1] if found[i][1] in gates else None for i in open_]
                picked, newly_full = pick(keys, gates, now or datetime.now(UTC), scan)
                chosen.extend(found[open_[i]][0] for i in picked)
                full.update(newly_full)
                if len(found) < scan or len(chosen) >= want:
                    break
            if limited:
                self._limited_until = time.monotonic() + _LIMITED_HINT_FOR
            if not chosen:
                return []
            return await run(self.q["claim_seqs"], self._claim_seqs_params(worker_id, chosen, gates, now))

    def _candidates(
        self, queues: list[str], limit: int, full: set[str], taken: list[int], *, screen: bool
    ) -> tuple[Query, dict[str, Any]]:
        params = self._params(limit=limit, full=sorted(full), taken=taken, screen=screen)
        if not queues:
            return self.q["claim_candidates_any"], params
        if len(queues) == 1:
            return self.q["claim_candidates_queue"], {**params, "queue": queues[0]}
        return self.q["claim_candidates_queues"], {**params, "queues": queues}

    def _claim_seqs_params(
        self, worker_id: str, seqs: list[int], gates: dict[str, KeyGate], now: datetime | None
    ) -> dict[str, Any]:
        buckets = [[k, g.tokens, g.refilled_at.isoformat()] for k, g in gates.items() if g.drawn > 0]
        params = self._params(worker=worker_id, seqs=seqs, buckets=json.dumps(buckets))
        if now is not None:
            params["now"] = now
        return params

    async def claim_task(self, task_id: str, worker_id: str, ttl: float | None, token: str) -> Task | None:
        """Claim one task by id, through the same gates as a claim: paused queue, expiry, its key's limit."""
        async with self._conn() as conn, conn.transaction():
            run = _runner(conn)
            rows = await run(self.q["lock_tasks"], self._params(ids=[task_id]))
            if not rows:
                raise errors.NotFound(task_id)
            task, now = task_from_row(rows[0]), rows[0][-1].astimezone(UTC)
            if (await run(self.q["queue_paused"], {"name": task.queue}))[0][0]:
                return None
            gate, now = await self._lock_gate(run, task.concurrency_key, now)
            changed = transitions.take_over(task, worker_id=worker_id, token=token, now=now, lease=ttl)
            if changed is None:
                return None
            if gate is not None and changed.state is State.CLAIMED:
                if task.state is State.CLAIMED:
                    gate.running -= 1  # its own expired lease is among the key's running tasks
                if not gate.admits(now):
                    return None
                gate.take(now)
                if gate.drawn:
                    await run(self.q["claim_seqs"], self._claim_seqs_params(worker_id, [], {gate.limit.key: gate}, now))
            await self._write_back(conn, [(task, changed)])
            await self._settle(conn, _groups.ended_groups([(task, changed)]), now)
        return changed if changed.state is State.CLAIMED else None

    async def _lock_gate(self, run: _Run, key: str | None, now: datetime) -> tuple[KeyGate | None, datetime]:
        """The key's gate, its limit row locked and its running tasks counted after; and the time then."""
        if key is None:
            return None, now
        locked = await run(self.q["lock_limit"], {"key": key})
        if not locked:
            return None, now
        counts = await run(self.q["running_counts"], self._params(keys=[key]))
        return gate_from_row(locked[0], int(counts[0][1])), counts[0][2].astimezone(UTC)

    async def find_available(self, queues: Sequence[str], limit: int) -> list[Task]:
        """What a claim would take now, read only: the same gates, nothing locked, no tokens drawn."""
        distinct = list(dict.fromkeys(queues))
        async with self._conn() as conn:
            run = _runner(conn)
            gates: dict[str, KeyGate] = {}
            known: set[str] = set()
            full: set[str] = set()
            chosen: list[Task] = []
            now = self.clock.now()
            for _ in range(_CLAIM_ROUNDS):
                scan = limit - len(chosen)
                params = self._params(limit=scan, full=sorted(full), taken=[t.seq for t in chosen], screen=True)
                if distinct:
                    params["queues"] = distinct
                found = [
                    task_from_row(r)
                    for r in await run(self.q["available_" + ("queues" if distinct else "any")], params)
                ]
                new_keys = sorted({t.concurrency_key for t in found if t.concurrency_key is not None} - known)
                if new_keys:
                    known.update(new_keys)
                    for r in await run(self.q["limit_gates"], self._params(keys=new_keys)):
                        gates[r[0]] = gate_from_row(r, int(r[6]))
                        now = r[7].astimezone(UTC)
                keys = [t.concurrency_key if t.concurrency_key in gates else None for t in found]
                picked, newly_full = pick(keys, gates, now, scan)
                chosen.extend(found[i] for i in picked)
                full.update(newly_full)
                if len(found) < scan or len(chosen) >= limit:
                    break
        chosen.sort(key=transitions.claim_order)
        return chosen

    async def has_claimable(self, queues: Sequence[str]) -> bool:
        if queues:
            row = await self._fetchone("any_claimable_in_queues", queues=list(queues))
        else:
            row = await self._fetchone("any_claimable")
        return bool(row[0])

    async def cancel_requested_among(self, task_ids: Sequence[str]) -> set[str]:
        return {r[0] for r in await self._fetchall("cancel_requested_among", ids=list(task_ids))}

    # -- transitions ----------------------------------------------------------------------------

    async def _write_back(self, conn: psycopg.AsyncConnection[Any], changes: Sequence[tuple[Task, Task]]) -> None:
        groups: dict[str, list[tuple[Any, ...]]] = {}
        for old, new in changes:
            name, params = write_statement(old, new)
            groups.setdefault(name, []).append(params)
        for name, params_list in groups.items():
            async with conn.cursor() as cur:
                await cur.executemany(self.q[name], params_list)
                if cur.rowcount != len(params_list):
                    raise errors.BackendUnavailable("a compare-and-set lost its row inside a locked transaction")
        now = changes[0][1].updated_at if changes else None
        if now is not None and any(t.state in CLAIMABLE_STATES and t.run_at <= now for _, t in changes):
            await self._announce(conn)  # delivered at commit: other processes' claimers wake
        if changes:
            await self._announce_change(conn)

    async def apply(self, changes: Sequence[tuple[str, Change]]) -> list[Outcome]:
        if (
            len(changes) > 1
            and all(type(change) is Completion for _, change in changes)
            and len({task_id for task_id, _ in changes}) == len(changes)  # a repeated id takes the general path
        ):
            completed = await self._complete(cast(Sequence[tuple[str, Completion]], changes))
            return [o for o in completed if o is not None]
        return await self._apply_locked(changes)

    async def _apply_locked(self, changes: Sequence[tuple[str, Change]]) -> list[Outcome]:
        """Decide on the rows locked ``FOR UPDATE``, write back, and settle the groups of members ended."""
        ids = list(dict.fromkeys(task_id for task_id, _ in changes))
        async with self._conn() as conn, conn.transaction():
            rows = await (await conn.execute(self.q["lock_tasks"], self._params(ids=ids))).fetchall()
            current = {r[1]: task_from_row(r) for r in rows}
            now = rows[0][-1].astimezone(UTC) if rows else self.clock.now()
            original = dict(current)
            outcomes = apply_in_order(current, changes, now)
            written = [(original[i], t) for i, t in current.items() if t is not original[i]]
            await self._write_back(conn, written)
            await self._settle(conn, _groups.ended_groups(written), now)
            if self.notify and any(new.cancel_requested and not old.cancel_requested for old, new in written):
                # One per transaction, delivered at commit: the worker holding the task checks it at once.
                await conn.execute(self.q["notify"], {"channel": self.cancel_channel})
        return outcomes

    async def _complete(
        self, changes: Sequence[tuple[str, Completion]], returning: bool = True
    ) -> list[Outcome | None]:
        """``mark_done_many`` as one fenced statement; refused items are read back to say why.

        Without ``returning`` only the ids come back: accepted items are ``None``.
        """
        channel = self.status_channel if self.notify else ""
        rows = await self._fetchall(
            "complete_many" if returning else "complete_many_ids", **_batch_params(changes), status_channel=channel
        )
        done: dict[str, Outcome | None] = (
            {r[1]: task_from_row(r) for r in rows} if returning else {r[0]: None for r in rows}
        )
        missed = [(task_id, c) for task_id, c in changes if task_id not in done]
        if missed:
            done.update(await self._complete_members(missed, returning))
        outcomes: list[Outcome | None] = []
        for task_id, completion in changes:
            if task_id in done:
                outcomes.append(done[task_id])
                continue
            try:
                task = await self.get(task_id)
                transitions.check_lease(task, completion.lease)
                outcomes.append(errors.NotClaimed(task_id, "the lease changed while completing"))
            except errors.TaskstoreError as exc:
                outcomes.append(exc)
        return outcomes

    async def _complete_members(
        self, changes: Sequence[tuple[str, Completion]], returning: bool
    ) -> dict[str, Outcome | None]:
        """Complete the group members of a batch, fenced as ever, and settle their groups in the same transaction."""
        params = self._params(**_batch_params(changes), status_channel=self.status_channel if self.notify else "")
        async with self._conn() as conn, conn.transaction():
            rows = await (await conn.execute(self.q["complete_members"], params)).fetchall()
            if not rows:
                return {}
            tasks = [task_from_row(r) for r in rows]
            await self._settle(
                conn, sorted({t.group_id for t in tasks if t.group_id is not None}), rows[0][-2].astimezone(UTC)
            )
        return {t.id: t if returning else None for t in tasks}

    async def acknowledge(self, completions: Sequence[Completion]) -> list[errors.TaskstoreError | None]:
        outcomes = await self._complete([(c.lease.task_id, c) for c in completions], returning=False)
        return [o if isinstance(o, errors.TaskstoreError) else None for o in outcomes]

    # -- maintenance ----------------------------------------------------------------------------

    async def reap(self, limit: int) -> int:
        """Timed-out leases (``transitions.reap``) and waiting tasks past ``expires_at`` (``transitions.expire``),
        up to ``limit`` of each, in one transaction that settles their groups."""
        async with self._conn() as conn, conn.transaction():
            rows = await (await conn.execute(self.q["lock_timed_out"], self._params(limit=limit))).fetchall()
            expired = await (await conn.execute(self.q["lock_expired"], self._params(limit=limit))).fetchall()
            reaped = _changed(rows, transitions.reap) + _changed(expired, transitions.expire)
            await self._write_changes(conn, reaped)
        return len(reaped)

    async def _recover(self, queues: list[str], limit: int) -> None:
        """A claim's recovery: the timed-out leases of its queues reaped, in claim order, in a transaction of
        their own just before the claim (which then takes them, at once unless their policy says otherwise)."""
        async with self._conn() as conn, conn.transaction():
            if queues:
                query, params = self.q["lock_lost_leases_in_queues"], self._params(limit=limit, queues=queues)
            else:
                query, params = self.q["lock_lost_leases"], self._params(limit=limit)
            await self._write_changes(
                conn, _changed(await (await conn.execute(query, params)).fetchall(), transitions.reap)
            )

    async def _write_changes(self, conn: psycopg.AsyncConnection[Any], changes: list[tuple[Task, Task]]) -> None:
        if changes:
            await self._write_back(conn, changes)
            await self._settle(conn, _groups.ended_groups(changes), changes[0][1].updated_at)

    async def lease_expiry(self, queues: Sequence[str]) -> datetime | None:
        if queues:
            rows = await self._fetchall("lease_expiry_in_queues", queues=list(dict.fromkeys(queues)))
        else:
            rows = await self._fetchall("lease_expiry")
        return None if not rows or rows[0][0] is None else rows[0][0].astimezone(UTC)

    async def archive(self, before: datetime, limit: int) -> int:
        return await self._execute("archive", before=before, limit=limit)

    async def archive_ids(self, ids: Sequence[str]) -> int:
        return await self._execute("archive_ids", ids=list(ids))

    # -- recurring schedules --------------------------------------------------------------------

    async def put_recurring(self, row: RecurringRow) -> RecurringRow:
        stored = await self._fetchone(
            "put_recurring",
            id=row.id,
            schedule=row.schedule,
            template=row.template,
            args=row.args,
            skip=row.skip_if_outstanding,
            next_at=row.next_at,
            owner=row.owner,
        )
        return _recurring_row(stored)

    async def delete_recurring(self, recurring_id: str) -> bool:
        return await self._execute("delete_recurring", id=recurring_id) > 0

    async def list_recurring(self) -> list[RecurringRow]:
        return [_recurring_row(r) for r in await self._fetchall("list_recurring")]

    async def advance_recurring(self, recurring_id: str, expected: datetime, next_at: datetime) -> bool:
        return await self._execute("advance_recurring", id=recurring_id, expected=expected, next_at=next_at) == 1

    # -- status-only records --------------------------------------------------------------------

    async def put_status(self, row: StatusRow) -> StatusRow:
        queue = row.meta.get("queue")
        async with self._conn() as conn:
            cur = await conn.execute(
                self.q["put_status"],
                self._params(
                    id=row.id,
                    state=row.state,
                    payload=json.dumps(row.payload),
                    error=None if row.error is None else json.dumps(row.error),
                    attempt=row.attempt,
                    meta=json.dumps(row.meta),
                    queue=queue if isinstance(queue, str) else None,
                    at=row.updated_at,
                    expires_at=row.expires_at,
                ),
            )
            stored = await cur.fetchone()
            await self._announce_change(conn)
        return _status(stored)

    async def get_status(self, status_id: str) -> StatusRow | None:
        row = await self._fetchone("get_status", id=status_id)
        return None if row is None else _status(row)

    async def expire_status(self, status_id: str, expires_at: datetime) -> None:
        await self._execute("expire_status", id=status_id, expires_at=expires_at)

    async def list_statuses(
        self, state: str | None, queue: str | None, before: tuple[datetime, str] | None, limit: int
    ) -> list[StatusRow]:
        rows = await self._fetchall(
            "list_statuses",
            state=state,
            queue=queue,
            limit=limit,
            before_at=None if before is None else before[0],
            before_id=None if before is None else before[1],
        )
        return [_status(r) for r in rows]

    async def change_marker(self) -> Hashable | None:
        return None  # watchers poll the status itself (a primary-key read)

    async def purge_statuses(self) -> int:
        return await self._execute("purge_statuses")

    # -- groups and chords ----------------------------------------------------------------------

    async def _members(self, conn: psycopg.AsyncConnection[Any], groups: Sequence[GroupRow]) -> list[GroupRow]:
        """The groups with their member tasks, read for all of them at once."""
        ids = [g.id for g in groups]
        live = await (await conn.execute(self.q["group_tasks"], {"ids": ids})).fetchall()
        archived = await (await conn.execute(self.q["group_tasks_archived"], {"ids": ids})).fetchall()
        by_group: dict[str, tuple[list[Task], list[Task]]] = {i: ([], []) for i in ids}
        for rows, side in ((live, 0), (archived, 1)):
            for r in rows:
                task = task_from_row(r)
                by_group[cast(str, task.group_id)][side].append(task)
        return [dataclasses.replace(g, members=_groups.in_order(g, *by_group[g.id])) for g in groups]

    async def _settle(self, conn: psycopg.AsyncConnection[Any], group_ids: Sequence[str], now: datetime) -> None:
        """Settle the groups of members just ended, in their transaction (``_groups.settle``).

        The group rows are locked (in id order) before the members are read, so of two transactions
        ending a group's last two members the second waits for the first and then sees its commit: one
        of them fires. A batch settles all its groups in a handful of statements, whatever their number.
        """
        if not group_ids:
            return
        locked = await (await conn.execute(self.q["lock_groups"], {"ids": list(group_ids)})).fetchall()
        if not locked:
            return
        settled = [
            _groups.settle(g, now, self.chord_args) for g in await self._members(conn, list(map(_group, locked)))
        ]
        changes = [s for s in settled if s is not None]
        if not changes:
            return
        async with conn.cursor() as cur:
            await cur.executemany(self.q["settle_group"], [_settle_params(s.group, now) for s in changes])
        callbacks = [s.callback for s in changes if s.callback is not None]
        if callbacks:
            taken = await (await conn.execute(self.q["existing_ids"], {"ids": [c.id for c in callbacks]})).fetchall()
            fresh = [c for c in callbacks if c.id not in {r[0] for r in taken}]
            if any(c.new.unique_key is not None for c in fresh):
                await self._insert_unique(_runner(conn), fresh, now)  # a held key: the holder stands for it
            elif fresh:
                # Stamped with the time that ended the last member, so the callback is never older than it.
                await conn.execute(self.q["insert_tasks"], self._insert_params(fresh, now))

    async def insert_group(self, group: GroupRow, rows: Sequence[NewRow]) -> list[Task]:
        chord = group.callback
        params = self._params(
            id=group.id,
            expected=group.expected,
            meta=json.dumps(group.meta),
            expires_at=group.expires_at,
            member_ids=None if group.member_ids is None else json.dumps(list(group.member_ids)),
            callback_id=None if chord is None else chord.id,
            callback_template=None if chord is None else chord.template,
            callback_args=None if chord is None else chord.args,
            ttl=group.ttl,
            chain_links=None if group.links is None else _groups.links_json(group.links),
        )
        try:
            async with self._conn() as conn, conn.transaction():
                await conn.execute(self.q["insert_group"], params)
                if any(r.new.unique_key is not None for r in rows):
                    created = await self._insert_unique(_runner(conn), rows)
                    held = [t.id for t, r in zip(created, rows, strict=True) if t.id != r.id]
                    if held:
                        # A member that is another task would make the group wait on a task not in it.
                        raise errors.InvalidTask(f"a group member's unique_key is held by task {held[0]}")
                    return created
                returned = await (await conn.execute(self.q["insert_tasks"], self._insert_params(rows))).fetchall()
        except errors.BackendUnavailable as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                if "groups_pkey" in str(exc.__cause__):
                    raise errors.AlreadyExists(group.id) from exc
                raise errors.AlreadyExists(await self._first_taken([r.id for r in rows])) from exc
            raise
        return self._created(rows, returned)

    async def put_group(self, group_id: str, expected: int, meta: dict[str, Any], expires_at: datetime) -> GroupRow:
        ttl = (expires_at - self.clock.now()).total_seconds()
        async with self._conn() as conn:
            params = self._params(id=group_id, expected=expected, meta=json.dumps(meta), expires_at=expires_at, ttl=ttl)
            row = await (await conn.execute(self.q["put_group"], params)).fetchone()
            return (await self._members(conn, [_group(row)]))[0]

    async def add_group_result(self, group_id: str, member_id: str, status: dict[str, Any]) -> GroupRow | None:
        row = await self._fetchone("add_group_result", id=group_id, member=member_id, status=json.dumps(status))
        return None if row is None else _group(row)

    async def get_group(self, group_id: str) -> GroupRow | None:
        async with self._conn() as conn:
            row = await (await conn.execute(self.q["get_group"], self._params(id=group_id))).fetchone()
            return None if row is None else (await self._members(conn, [_group(row)]))[0]

    async def claim_chord(self, group_id: str, callback_id: str | None, dispatched_at: datetime) -> bool:
        return await self._execute("claim_chord", id=group_id, callback=callback_id, dispatched_at=dispatched_at) == 1

    async def purge_groups(self) -> int:
        return await self._execute("purge_groups")

    # -- worker heartbeats ----------------------------------------------------------------------

    # -- flow control (SPEC §9) -----------------------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        channel = self.channel if self.notify and not paused else ""
        await self._execute("set_paused", queue=queue, paused=paused, channel=channel)

    async def paused_queues(self) -> set[str]:
        return {r[0] for r in await self._fetchall("paused_queues")}

    async def queue_rows(self) -> list[QueueRow]:
        async with self._conn() as conn:
            # Folding first keeps the deltas a reader adds up few even when no worker's maintenance runs.
            await conn.execute(self.q["fold_counts"], {"lock": self._fold_lock})
            counted = await (await conn.execute(self.q["queue_counts"])).fetchall()
            records = await (await conn.execute(self.q["queue_records"])).fetchall()
            paused = {r[0]: bool(r[1]) for r in records}
            counts: dict[str, dict[State, int]] = {name: {} for name in paused}
            for queue, state, n in counted:
                counts.setdefault(queue, {})[State(state)] = int(n)
            waiting = sorted(q for q, c in counts.items() if c.get(State.QUEUED) or c.get(State.FAILED))
            ready = await (await conn.execute(self.q["oldest_ready"], self._params(queues=waiting))).fetchall()
        oldest = {queue: at.astimezone(UTC) for queue, at in ready if at is not None}
        return [
            QueueRow(name=name, paused=paused.get(name, False), counts=counts[name], oldest_ready_at=oldest.get(name))
            for name in sorted(counts)
        ]

    async def put_limit(self, limit: Limit) -> None:
        """Set under the row's lock, the bucket carried over by ``gates.reset_gate`` at the time read after it."""
        async with self._conn() as conn, conn.transaction():
            run = _runner(conn)
            locked = await run(self.q["lock_limit"], {"key": limit.key})
            now = (await run(self.q["time_after_locks"], self._params()))[0][0].astimezone(UTC)
            gate = reset_gate(gate_from_row(locked[0], 0), limit, now) if locked else new_gate(limit, now)
            await run(
                self.q["put_limit"],
                {
                    "key": limit.key,
                    "concurrency": limit.concurrency,
                    "rate": limit.rate,
                    "per": limit.per,
                    "tokens": gate.tokens,
                    "refilled_at": gate.refilled_at,
                    "channel": self.channel if self.notify else "",
                },
            )

    async def delete_limit(self, key: str) -> bool:
        return await self._execute("delete_limit", key=key, channel=self.channel if self.notify else "") > 0

    async def list_limits(self) -> list[Limit]:
        return [limit_from_row(r) for r in await self._fetchall("list_limits")]

    async def key_gate(self, key: str) -> KeyGate | None:
        rows = await self._fetchall("limit_gates", keys=[key])
        return None if not rows else gate_from_row(rows[0], int(rows[0][6]))

    async def claimed_with_key(self, key: str, limit: int) -> list[Task]:
        return [task_from_row(r) for r in await self._fetchall("claimed_with_key", key=key, limit=limit)]

    async def put_heartbeat(self, heartbeat: WorkerHeartbeat) -> WorkerHeartbeat:
        row = await self._fetchone(
            "put_heartbeat",
            worker_id=heartbeat.worker_id,
            queues=json.dumps(list(heartbeat.queues)),
            inflight=heartbeat.inflight,
            host=heartbeat.host,
            pid=heartbeat.pid,
            version=heartbeat.version,
            started_at=heartbeat.started_at,
            extras=None if heartbeat.extras is None else json.dumps(dict(heartbeat.extras)),
        )
        return WorkerHeartbeat(**{**_heartbeat_fields(heartbeat), "timestamp": row[0].astimezone(UTC)})

    async def get_heartbeat(self, worker_id: str, since: datetime) -> WorkerHeartbeat | None:
        row = await self._fetchone("get_heartbeat", worker_id=worker_id, since=since)
        return None if row is None else _heartbeat(row)

    async def list_heartbeats(self, since: datetime) -> list[WorkerHeartbeat]:
        return [_heartbeat(r) for r in await self._fetchall("list_heartbeats", since=since)]

    async def purge_heartbeats(self, before: datetime) -> int:
        return await self._execute("purge_heartbeats", before=before)


def _batch_params(changes: Sequence[tuple[str, Completion]]) -> dict[str, list[Any]]:
    """A batch of completions as the parallel arrays _complete_batch unnests."""
    leases = [c.lease for _, c in changes]
    return {
        "ids": [lease.task_id for lease in leases],
        "tokens": [lease.token for lease in leases],
        "workers": [lease.worker_id for lease in leases],
        "values": [c.value for _, c in changes],
    }


# The columns a COPY of new tasks writes (``copy_tasks``), and their types; the rest take their defaults.
_COPY_TYPES = (
    "int8", "text", "text", "text", "bytea", "int4", "int4", "float8", "text", "text", "timestamptz", "timestamptz",
    "jsonb", "text", "jsonb", "text", "text", "text", "timestamptz", "int4", "text", "timestamptz", "timestamptz",
    "timestamptz", "int4",
)  # fmt: skip


def _copy_row(row: NewRow, seq: int, now: datetime) -> tuple[Any, ...]:
    """A new task's row for ``copy_tasks``: what ``_insert_rows`` stores, ``now`` being the transaction's clock."""
    n = row.new
    retry = n.retry
    return (
        seq,
        row.id,
        n.queue,
        n.kind,
        row.args,
        n.priority,
        DEFAULT_MAX_ATTEMPTS if n.max_attempts is None else n.max_attempts,
        DEFAULT_PROCESSING_TIMEOUT if n.processing_timeout is None else n.processing_timeout,
        n.unique_key,
        None if n.unique_key is None else hold_text(n.unique_hold),
        None if n.unique_for is None else now + transitions.as_timedelta(n.unique_for),
        now if n.run_at is None else n.run_at,
        None if n.context is None else dict(n.context),
        n.reference_id,
        None if retry is None or retry is DEFAULT_POLICY else retry.to_spec(),
        n.recurring_id,
        n.group_id,
        n.concurrency_key,
        n.expires_at,
        0,
        "queued",
        now,
        now,
        now,
        1,
    )


def _no_repeated_id(rows: Sequence[NewRow], seen: set[str]) -> None:
    """A batch names each id once (``seen``: the ids of its rows before these)."""
    for row in rows:
        if row.id in seen:
            raise errors.AlreadyExists(row.id)
        seen.add(row.id)


def _chunks(rows: Sequence[NewRow]) -> Iterator[Sequence[NewRow]]:
    return (rows[start : start + _INSERT_CHUNK] for start in range(0, len(rows), _INSERT_CHUNK))


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _recurring_row(r: Any) -> RecurringRow:
    return recurring_from_row(r, _utc, bytes)


def _status(r: Any) -> StatusRow:
    return status_from_row(r, _utc, same)


def _group(r: Any) -> GroupRow:
    return group_from_row(r, _utc, same, bytes)


def _settle_params(g: GroupRow, now: datetime) -> dict[str, Any]:
    return {
        "id": g.id,
        "expires_at": g.expires_at,
        "at": now,
        "claimed": g.chord_claimed,
        "callback": g.chord_callback_id,
        "dispatched_at": g.chord_dispatched_at,
    }


def _heartbeat_fields(h: WorkerHeartbeat) -> dict[str, Any]:
    return {
        "worker_id": h.worker_id,
        "queues": tuple(h.queues),
        "inflight": h.inflight,
        "host": h.host,
        "pid": h.pid,
        "version": h.version,
        "started_at": h.started_at,
        "extras": h.extras,
    }


def _heartbeat(r: Any) -> WorkerHeartbeat:
    return heartbeat_from_row(r, _utc, same)
