"""The Redis backend: ``redis://host:port/db`` (``rediss://`` for TLS), redis-py's asyncio client, Redis 7.

Writes
------
Every write is decided in Python by the pure transitions (``transitions``, ``gates``, ``_groups.settle``), on
the tasks as read, and applied by ``commit.lua`` as ONE compare-and-set on the server: the script first checks
that what the decision read is still there (each task's ``v``ersion, which every write bumps; a unique key's
holder; a group's stored JSON; a gate's bucket and running count), then writes the tasks and every index in the
same script, or writes nothing and says which guard failed; the driver then reads again and decides again. A
batch (``apply``, ``reap``, the archive) is one script call, all of its changes or none.

The two writes a busy queue makes per task skip the read-decide-commit round trips, as ``claim.lua`` does:
``complete.lua`` (the worker's ``acknowledge``) checks each lease (state, worker, token) and writes
``transitions.mark_done``'s outcome in one call, leaving what it refuses or what ends a group member to the
general path; ``insert.lua`` (creates, unique ones too while their keys have no holder: a held key goes the
general path, which decides whether the holder still holds it) reads the time and the seqs itself and writes
what ``_plan_insert`` would. Single creates are coalesced (``backends/_coalesce.py``). The tests hold each fast path's
writes equal to the general path's.

Claims are ``claim.lua``: it moves the tasks that came due from each queue's delayed set to its ready set,
merges the ready sets in claim order (``transitions.claim_order``), skips paused queues, expired tasks and keys
whose limit (``gates``: concurrency and token bucket, kept in ``gate:<key>``) does not admit one more, and
writes the leases, all in one script. Timed-out leases (``claim(recover=True)``, ``reap``) are reaped through
``commit.lua`` first, as the retry policy that decides a reaped task's backoff lives in Python.

The store's clock is the server's ``TIME``: the claim script reads it itself, and Python-side decisions read it
(one round trip) unless a clock was injected (tests), which then decides everywhere, as on PostgreSQL.

Wake-ups: every write bumps ``<prefix>changes`` (the ``change_marker`` watchers compare) and publishes ONE
message. One that makes work claimable (``w``) or requests the cancel of a claimed task (``c``) goes on
``<prefix>events``; every write is also a status change, so a write that is nothing more (a claim, most
completions) publishes ``s`` on ``<prefix>statuses`` instead. One message per write, not one per meaning: every
subscriber parses every message it is sent, and a create that sent two cost each process two. A store subscribes
once a waiter of its process needs other processes' wake-ups, to ``events`` for claims and cancel checks, and to
``statuses`` too once a status watch waits: a worker's process is not sent every claim and completion.

Key layout (``<P>`` is the prefix, ``taskstore:`` unless the URL says ``?prefix=...``)
-------------------------------------------------------------------------------------
- ``<P>meta``: hash, the layout version; its presence says a store exists here (``create=False``).
- ``<P>t:<id>``: hash, a live task (fields in ``_rows.FIELDS``; ``om``: its ready-set member).
- ``<P>a:<id>``: hash, an archived task; ``<P>archived``: zset of archived ids by seq.
- ``<P>seq``: counter of enqueue order. ``<P>ids``: zset of live ids by seq. ``<P>s:<state>``: zset of the
  live ids in that state by seq (``<P>s:dead`` serves ``dead_summaries``).
- ``<P>queues``: set of queue names ever used. ``<P>count:<queue>``: hash state -> live tasks.
- ``<P>ready:<queue>``: zset of due waiting tasks, score ``-priority``, member ``om`` (run_at, seq, id fixed
  width: claim order). ``<P>delayed:<queue>``: zset of waiting tasks by run_at (us), moved to ready when due.
- ``<P>leases:<queue>``: zset of claimed ids by lease end (us). ``<P>expiring``: zset of waiting tasks with
  an ``expires_at``, by it. ``<P>fin``: zset of finished ids by finished_at (the archiver's index).
- ``<P>unique``: hash ``queue NUL key`` -> the id of the task that took the key (it holds it while
  ``transitions.holds_key`` says so). ``<P>paused``: hash queue -> 1/0.
- ``<P>gate:<key>``: hash, a key's limit (c, r, per) and bucket (tok, at); ``<P>limits``: set of limited keys;
  ``<P>kr:<key>``: set of claimed ids of that concurrency key (its running count).
- ``<P>gm:<group>``: set of member ids of a group; ``<P>groups``: hash id -> group JSON.
  ``<P>rec:<recurring id>``: set of live task ids of a schedule; ``<P>recurring``: hash id -> schedule JSON.
- ``<P>status``: hash id -> status-only record JSON; ``<P>hb``: hash worker id -> heartbeat JSON;
  ``<P>finished``: hash ``minute_us:state`` -> finishes in that minute; ``<P>changes``: write counter.
- Channels ``<P>events`` and ``<P>statuses`` (see "Wake-ups").
Scripts name keys they compute from the prefix, so this backend needs one Redis server (not Redis Cluster).

Durability
----------
Redis keeps this in memory; what survives a crash is what its persistence wrote. Run it with
``appendonly yes``: with ``appendfsync everysec`` (the default once AOF is on) the append-only file is fsynced
once a second, so a power loss or kernel crash loses up to about one second of acknowledged writes (a crash of
the Redis process alone loses none: the OS has the writes). ``appendfsync always`` fsyncs before each reply
(nothing acknowledged is lost, at a large cost in throughput); ``appendfsync no`` leaves it to the OS (tens
of seconds). With RDB snapshots only, everything since the last snapshot is lost. Set ``maxmemory-policy
noeviction``: an evicting policy deletes tasks. ``taskstore doctor`` reports these settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, ParamSpec, TypeVar

from ... import errors, gates, transitions
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
from ...health import Finding, HealthReport, Level, Thresholds
from ...model import DEAD_MESSAGE_CHARS, DeadSummary, Limit, NewTask, State, Task, WorkerHeartbeat
from .. import _groups
from .._coalesce import Coalescer
from . import _rows
from ._rows import FIELDS, decode_packed, decode_task, encode_task, from_us, order_member, to_us

log = logging.getLogger("taskstore.redis")

LAYOUT = 1
_WAITING = frozenset({State.QUEUED, State.FAILED})
_OUTSTANDING = frozenset({State.QUEUED, State.FAILED, State.CLAIMED})
_T = TypeVar("_T")
EPOCH_TIME = from_us(0)  # what ``_load`` passes on as the time it did not read
# Single creates sent together (backends/_coalesce.py): at most this many rows in one commit, and this many
# commits on their way at once (each holds one connection of the pool for two round trips).
COALESCE_MAX_ROWS = 500
# The hash fields insert.lua fills in itself (from the server's time and the seqs it takes).
_SCRIPT_FIELDS = ("seq", "created", "updated", "enq", "run", "om", "until")
COALESCE_FLIGHTS = 2
# How the store's connections treat a slow or a silent server (options the URL sets win: redis-py reads them last).
# No read timeout: a reply is waited for as long as the server works on the command. Every transition is one
# script, and a create_many is one script however many tasks it holds (100,000: ~3 s of the server's time here).
# redis-py 8 gives up on a reply after 5 s, and the caller then got an error for tasks the server went on to
# commit. A server that went silent (a lost network, not a restart or a crash, which reset the connection at once)
# is found by TCP keepalive instead: probes from 30 s of silence, 5 s apart, dead after 3 unanswered. redis-py 5-7
# sent none by default.
_SOCKET_OPTIONS: dict[str, Any] = {
    "socket_timeout": None,
    "socket_keepalive": True,
    "socket_keepalive_options": {
        getattr(socket, name): value
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
        if hasattr(socket, name)
    },
}


class _Conflict(Exception):
    """A guard of ``commit.lua`` failed: what a decision read has changed; read and decide again."""


class ServerClock:
    """The server's clock as seen from here: the local clock plus the offset to Redis ``TIME`` measured at open.

    Decisions on the server (claims) and in the driver read ``TIME`` itself; this serves the store's own reads
    of ``driver.clock`` (archive cutoffs, recurring slots), so that they agree with the server.
    """

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def _script(name: str) -> str:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return text.replace("--[[FIELDS]]", ", ".join(f"'{f}'" for f in FIELDS))


def _expected(value: str | bytes | int | None) -> bytes:
    if value is None:
        return b"0"
    if isinstance(value, bytes):
        return b"1" + value
    return b"1" + str(value).encode()


class Tx:
    """The guards and writes of one ``commit.lua`` call (see the script for what each means)."""

    __slots__ = ("cancel", "guards", "ops", "wake")

    def __init__(self) -> None:
        self.guards: list[Any] = []
        self.ops: list[Any] = []
        self.wake = False
        self.cancel = False

    def expect(self, key: str, field: str, value: str | bytes | int | None) -> None:
        self.guards += ("h", key, field, _expected(value))

    def expect_count(self, key: str, count: int) -> None:
        self.guards += ("c", key, "", str(count))

    def op(self, *args: Any) -> None:
        self.ops += args

    def hset(self, key: str, fields: dict[str, Any]) -> None:
        self.ops += ("hset", key, len(fields))
        for name, value in fields.items():
            self.ops += (name, value)

    def argv(self) -> list[Any]:
        return [len(self.guards) // 4, *self.guards, *self.ops]


def _slot(task: NewTask | Task) -> str | None:
    """The field of ``<P>unique`` that a task's unique key takes (None without a key)."""
    return None if task.unique_key is None else f"{task.queue}\x00{task.unique_key}"


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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisDriver:
    notifications_lost = False

    def __init__(self, url: str, clock: Clock | None, *, prefix: str = "taskstore:", create: bool = True) -> None:
        if not isinstance(prefix, str) or not prefix or any(c.isspace() or c == "\x00" for c in prefix):
            raise errors.ConfigError(f"invalid key prefix {prefix!r}: a non-empty name without spaces")
        self.url = url
        self.prefix = prefix
        self._fixed = clock  # None: the server's TIME decides
        self.clock: Clock = clock if clock is not None else ServerClock()
        self._create = create
        self._key = ("redis", url, prefix)
        self._client: Any = None
        self._commit_script: Any = None
        self._claim_script: Any = None
        self._complete_script: Any = None
        self._insert_script: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._listen_when_wanted: StartWhenWanted | None = None
        self._statuses_when_wanted: StartWhenWanted | None = None
        self._statuses_wanted = asyncio.Event()  # a status watch of this process waits: hear <prefix>statuses
        self._nudge: asyncio.Task[None] | None = None  # see _want_statuses
        self._coalescer = Coalescer(self._send_batch, max_rows=COALESCE_MAX_ROWS, flights=COALESCE_FLIGHTS)
        self.chord_args: ChordArgs = _groups.no_chord_args
        p = prefix
        self.k_meta, self.k_seq, self.k_ids, self.k_archived = p + "meta", p + "seq", p + "ids", p + "archived"
        self.k_queues, self.k_paused, self.k_unique, self.k_expiring = (
            p + "queues",
            p + "paused",
            p + "unique",
            p + "expiring",
        )
        self.k_fin, self.k_limits, self.k_groups, self.k_recurring = (
            p + "fin",
            p + "limits",
            p + "groups",
            p + "recurring",
        )
        self.k_status, self.k_hb, self.k_finished, self.k_changes = (
            p + "status",
            p + "hb",
            p + "finished",
            p + "changes",
        )
        self.ch_events = p + "events"
        self.ch_statuses = p + "statuses"

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def wake_key(self) -> Hashable:
        return self._key

    @property
    def _r(self) -> Any:
        if self._client is None:
            raise errors.BackendUnavailable("the Redis store is not open")
        return self._client

    async def open(self) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise errors.ConfigError("redis:// needs redis-py: pip install 'taskstore[redis]'") from exc
        try:
            # A pool that waits for a free connection: redis-py's default one raises "Too many connections" past
            # its 100, which a burst of concurrent calls (an open-loop producer's creates) reaches.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, decode_responses=False, max_connections=100, **_SOCKET_OPTIONS
            )
            pool.connection_class = _packed_by_hiredis(pool.connection_class)
            for name in ("socket_timeout", "socket_connect_timeout"):
                seconds = pool.connection_kwargs.get(name)
                if seconds is not None and not seconds > 0:  # 0, negative, NaN: taken, then every call "times out"
                    raise errors.ConfigError(f"{name} must be a positive number of seconds, not {seconds}")
            client = aioredis.Redis.from_pool(pool)
        except (ValueError, TypeError) as exc:
            raise errors.ConfigError(f"bad Redis URL or option: {exc}") from exc
        try:
            await client.ping()
            if self._create:
                await client.hsetnx(self.k_meta, "layout", LAYOUT)
            elif not await client.exists(self.k_meta):
                raise errors.ConfigError(f"no taskstore store under prefix {self.prefix!r} in this Redis database")
            if isinstance(self.clock, ServerClock):
                before = datetime.now(UTC)
                sec, usec = await client.time()
                after = datetime.now(UTC)
                self.clock.offset = from_us(int(sec) * 1_000_000 + int(usec)) - (before + (after - before) / 2)
        except errors.TaskstoreError:
            await client.aclose()
            raise
        except Exception as exc:
            await client.aclose()
            raise _open_error(exc) from exc
        self._client = client
        self._coalescer = Coalescer(self._send_batch, max_rows=COALESCE_MAX_ROWS, flights=COALESCE_FLIGHTS)
        self._commit_script = client.register_script(_script("commit.lua"))
        self._claim_script = client.register_script(_script("claim.lua"))
        self._complete_script = client.register_script(_script("complete.lua"))
        self._insert_script = client.register_script(_script("insert.lua"))
        # Subscribed once a waiter of this process needs other processes' wake-ups (a blocked claim, a status
        # watch, a worker's cancel watch), as PostgreSQL's LISTEN: a process that only enqueues was sent every
        # write's message, its own and the workers' claims and completions included, and parsed each in Python.
        self._listen_when_wanted = StartWhenWanted(
            (self._key, ("status", self._key), cancel_key(self._key)), self._start_listener
        )
        self._statuses_when_wanted = StartWhenWanted((("status", self._key),), self._want_statuses)

    def _start_listener(self) -> None:
        if self._listener is None and self._client is not None:
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="taskstore-redis-listen")

    def _want_statuses(self) -> None:
        """A status watch waits here: the subscription takes ``statuses`` too.

        The listener subscribes to it between two messages, so one is sent: an empty message on ``events``,
        once per process, which other processes take for a status change (their watchers look again).
        """
        self._statuses_wanted.set()
        if self._client is not None:
            self._nudge = asyncio.get_running_loop().create_task(self._nudge_listener())

    async def _nudge_listener(self) -> None:
        with contextlib.suppress(Exception):  # a server gone away: the listener resubscribes to both anyway
            await self._r.publish(self.ch_events, b"")

    async def close(self) -> None:
        for when in (self._listen_when_wanted, self._statuses_when_wanted):
            if when is not None:
                when.close()
        self._listen_when_wanted = self._statuses_when_wanted = None
        nudge, self._nudge = self._nudge, None
        if nudge is not None and not nudge.done():
            nudge.cancel()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            while not listener.done():
                # Again and again: a cancel that lands while redis-py connects is swallowed (asyncio.wait_for in
                # Python 3.11), and the listener would then go on listening.
                listener.cancel()
                await asyncio.wait([listener], timeout=0.2)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                listener.result()
        if self._client is not None:
            await self._coalescer.close()  # the creates on their way are written and answered first
            client, self._client = self._client, None
            await client.aclose()

    async def _listen(self) -> None:
        """Turn the store's channels into this process's wake-ups; resubscribe when the link drops."""
        pause = 0.1
        while True:
            pubsub = self._r.pubsub()
            try:
                statuses = self._statuses_wanted.is_set()
                await pubsub.subscribe(*((self.ch_events, self.ch_statuses) if statuses else (self.ch_events,)))
                # Whatever was published while unsubscribed is lost: look again once.
                self._heard_all()
                pause = 0.1
                while True:
                    if not statuses and self._statuses_wanted.is_set():  # see _want_statuses
                        statuses = True
                        await pubsub.subscribe(self.ch_statuses)
                        HUB.notify(("status", self._key))  # what was published before is lost: look again
                    message = await pubsub.get_message(timeout=None)
                    if message is None or message.get("type") != "message":
                        continue
                    # Every write is a status change; its letters say what else it may mean (see "Wake-ups").
                    data = message["data"]
                    HUB.notify(("status", self._key))
                    if b"w" in data:
                        HUB.notify(self._key)
                    if b"c" in data:
                        HUB.notify(cancel_key(self._key))
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except Exception as exc:
                log.warning("Redis subscription lost (%s); resubscribing in %.1fs", exc, pause)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _heard_all(self) -> None:
        HUB.notify(self._key)
        HUB.notify(("status", self._key))
        HUB.notify(cancel_key(self._key))

    async def health(self, thresholds: Thresholds) -> HealthReport:
        info = await self._r.info()
        findings = [Finding("redis_version", _text(info.get("redis_version", "")), advice="the server's version")]
        aof = int(info.get("aof_enabled", 0))
        fsync: str | None = None
        policy: str | None = None
        with contextlib.suppress(Exception):  # CONFIG may be disabled (managed Redis)
            fsync = _text((await self._r.config_get("appendfsync")).get(b"appendfsync", b""))
            policy = _text((await self._r.config_get("maxmemory-policy")).get(b"maxmemory-policy", b""))
        findings.append(
            Finding(
                "appendonly",
                "yes" if aof else "no",
                Level.OK if aof else Level.WARN,
                "AOF on: committed tasks survive a restart"
                if aof
                else "AOF off: a crash loses every write since the last RDB snapshot (set appendonly yes)",
            )
        )
        if fsync is not None:
            findings.append(
                Finding(
                    "appendfsync",
                    fsync,
                    Level.OK if fsync in {"always", "everysec"} else Level.WARN,
                    "everysec: up to ~1 s of writes lost on power loss; always: none; no: up to tens of seconds",
                )
            )
        if policy is not None:
            findings.append(
                Finding(
                    "maxmemory_policy",
                    policy,
                    Level.OK if policy == "noeviction" else Level.BAD,
                    "noeviction: a full server refuses writes" if policy == "noeviction" else "evicts keys: tasks lost",
                )
            )
        findings.append(Finding("used_memory", int(info.get("used_memory", 0)), unit="bytes", advice="the server's"))
        return HealthReport("redis", tuple(findings))

    # -- machinery ------------------------------------------------------------------------------

    async def _now(self) -> datetime:
        if self._fixed is not None:
            return self._fixed.now()
        sec, usec = await self._r.time()
        return from_us(int(sec) * 1_000_000 + int(usec))

    def _now_arg(self) -> str:
        return "" if self._fixed is None else str(to_us(self._fixed.now()))

    async def _commit(self, tx: Tx) -> None:
        if not tx.ops:
            return
        if tx.wake or tx.cancel:
            channel, message = self.ch_events, ("w" if tx.wake else "") + ("c" if tx.cancel else "")
        else:
            channel, message = self.ch_statuses, "s"
        tx.op("incr", self.k_changes, "pub", channel, message)
        failed = await self._commit_script(keys=[], args=tx.argv())
        if failed:
            raise _Conflict(failed)

    async def _retrying(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Run read-decide-commit until its commit finds what it read unchanged."""
        tries = 0
        while True:
            try:
                return await attempt()
            except _Conflict:
                tries += 1
                if tries > 2:  # contended: step aside a little, longer each time
                    await asyncio.sleep(random.uniform(0, min(0.0005 * tries, 0.05)))

    def _tkey(self, task_id: str) -> str:
        return f"{self.prefix}t:{task_id}"

    def _akey(self, task_id: str) -> str:
        return f"{self.prefix}a:{task_id}"

    async def _load(self, ids: Iterable[str], *, archived: bool = False) -> dict[str, Task]:
        return (await self._load_at(ids, archived=archived, clock=False))[1]

    async def _load_at(
        self, ids: Iterable[str], *, archived: bool = False, clock: bool = True
    ) -> tuple[datetime, dict[str, Task]]:
        """The store's time and these tasks (those that exist), in one round trip: the write paths' read."""
        wanted = list(dict.fromkeys(ids))
        server_time = clock and self._fixed is None
        if not wanted and not server_time:
            return (self._fixed.now() if self._fixed is not None else EPOCH_TIME), {}
        pipe = self._r.pipeline(transaction=False)
        if server_time:
            pipe.time()
        for task_id in wanted:
            pipe.hmget(self._akey(task_id) if archived else self._tkey(task_id), FIELDS)
        answers = await pipe.execute()
        if server_time:
            sec, usec = answers.pop(0)
            now = from_us(int(sec) * 1_000_000 + int(usec))
        else:
            now = self._fixed.now() if self._fixed is not None else EPOCH_TIME
        found: dict[str, Task] = {}
        for task_id, raw in zip(wanted, answers, strict=True):
            task = decode_task(raw)
            if task is not None:
                found[task_id] = task
        return now, found

    def _unindex(self, tx: Tx, t: Task) -> None:
        p, q = self.prefix, t.queue
        tx.op("zrem", p + "ids", t.id, "zrem", f"{p}s:{t.state.value}", t.id)
        tx.op("hincr", f"{p}count:{q}", t.state.value, -1)
        if t.state in _WAITING:
            tx.op("zrem", f"{p}ready:{q}", order_member(t), "zrem", f"{p}delayed:{q}", t.id)
            if t.expires_at is not None:
                tx.op("zrem", self.k_expiring, t.id)
        elif t.state is State.CLAIMED:
            tx.op("zrem", f"{p}leases:{q}", t.id)
            if t.concurrency_key is not None:
                tx.op("srem", f"{p}kr:{t.concurrency_key}", t.id)
        else:
            tx.op("zrem", self.k_fin, t.id)

    def _index(self, tx: Tx, t: Task, now: datetime) -> None:
        p, q = self.prefix, t.queue
        tx.op("zadd", p + "ids", t.seq, t.id, "zadd", f"{p}s:{t.state.value}", t.seq, t.id)
        tx.op("hincr", f"{p}count:{q}", t.state.value, 1, "sadd", self.k_queues, q)
        if t.state in _WAITING:
            if t.run_at <= now:
                tx.op("zadd", f"{p}ready:{q}", -t.priority, order_member(t))
            else:
                tx.op("zadd", f"{p}delayed:{q}", to_us(t.run_at), t.id)
            if t.expires_at is not None:
                tx.op("zadd", self.k_expiring, to_us(t.expires_at), t.id)
        elif t.state is State.CLAIMED:
            assert t.claim is not None
            tx.op("zadd", f"{p}leases:{q}", to_us(t.claim.times_out_at), t.id)
            if t.concurrency_key is not None:
                tx.op("sadd", f"{p}kr:{t.concurrency_key}", t.id)
        else:
            tx.op("zadd", self.k_fin, to_us(t.finished_at or t.updated_at), t.id)

    def _write(self, tx: Tx, old: Task | None, new: Task, now: datetime, args: bytes | None = None) -> None:
        """Write ``new`` over ``old`` (None: insert), guarded by the version ``old`` had, with every index."""
        key = self._tkey(new.id)
        tx.expect(key, "v", None if old is None else old.version)
        if old is not None:
            self._unindex(tx, old)
        tx.op("del", key)
        tx.hset(key, encode_task(new, new.args if old is not None else args))
        self._index(tx, new, now)
        if new.state.is_terminal and new.finished_at is not None and (old is None or not old.state.is_terminal):
            minute = new.finished_at.replace(second=0, microsecond=0)
            tx.op("hincr", self.k_finished, f"{to_us(minute)}:{new.state.value}", 1)
        if new.state in _WAITING and (old is None or old.state not in _WAITING or old.run_at != new.run_at):
            tx.wake = True
        if old is not None and old.state is State.CLAIMED and new.state is not State.CLAIMED:
            tx.wake = True  # a key's concurrency slot came free
        if new.state is State.CLAIMED and new.cancel_requested and (old is None or not old.cancel_requested):
            tx.cancel = True

    # -- outbox ---------------------------------------------------------------------------------

    async def insert(self, rows: Sequence[NewRow], conn: Join | None = None) -> list[Task]:
        if conn is not None:
            raise errors.ConfigError(
                "a redis:// store cannot join a database transaction (conn=): create the tasks after it commits"
            )
        if not rows:
            return []

        if len(rows) == 1 and rows[0].new.unique_key is None:
            # A single create goes with the others queued meanwhile (.._coalesce): an open-loop producer's
            # creates then share round trips and connections instead of each taking its own.
            return [await self._coalescer.insert(rows[0])]
        return await self._insert(rows)

    async def _insert(self, rows: Sequence[NewRow]) -> list[Task]:
        slots = [_slot(row.new) for row in rows]
        keyed = [slot for slot in slots if slot is not None]
        if len(set(keyed)) == len(keyed) and (not keyed or len({row.id for row in rows}) == len(rows)):
            # No two rows of one key: insert.lua takes them, unless a key has a holder (whether it still holds the
            # key is decided in Python, below). A batch with keys and two rows of one id goes below as well: there a
            # row whose key is held is answered by the holder before its id is looked at.
            inserted = await self._insert_scripted(rows, slots)
            if inserted is not None:
                return inserted

        async def attempt() -> list[Task]:
            tx = Tx()
            _, inserted = await self._plan_insert(tx, rows, None)
            await self._commit(tx)
            return inserted

        return await self._retrying(attempt)

    async def _insert_scripted(self, rows: Sequence[NewRow], slots: Sequence[str | None]) -> list[Task] | None:
        """One ``insert.lua`` call, which reads the time and the seqs itself and writes what ``_plan_insert`` and
        ``_write`` would (the tests hold the two alike), so a create costs one round trip instead of two; the
        tasks given back are ``transitions.create_all``'s for that time and those seqs. ``slots``: each row's
        unique slot (``_slot``), no two alike. None when a slot has a holder: nothing was written."""
        ids = [row.id for row in rows]
        if len(set(ids)) < len(ids):  # the second of two rows with one id is refused, as _plan_insert refuses it
            raise errors.AlreadyExists(next(i for n, i in enumerate(ids) if i in ids[:n]))
        news = [row.new for row in rows]
        # Every field but the time's and the seq's, from the task transitions.create makes: the script fills those.
        drafts = transitions.create_all(news, ids, [0] * len(rows), EPOCH_TIME)
        args: list[Any] = [self._now_arg(), self.prefix, len(rows)]
        for row, draft, slot in zip(rows, drafts, slots, strict=True):
            fields = encode_task(draft, row.args)
            for name in _SCRIPT_FIELDS:
                fields.pop(name, None)
            new = row.new
            args += (
                row.id,
                new.queue,
                new.priority,
                "" if new.run_at is None else to_us(new.run_at),
                "" if new.expires_at is None else to_us(new.expires_at),
                new.group_id or "",
                new.recurring_id or "",
                slot or "",
                # The draft's hold ends unique_for after EPOCH_TIME (0): that is unique_for in microseconds.
                "" if draft.unique_until is None else to_us(draft.unique_until),
                len(fields),
            )
            for pair in fields.items():
                args += pair
        answer = await self._insert_script(keys=[], args=args)
        first, last = int(answer[0]), int(answer[1])
        if first == -1:
            raise errors.AlreadyExists(rows[last - 1].id)
        if first == -2:
            return None
        return transitions.create_all(news, ids, range(last - len(rows) + 1, last + 1), from_us(first))

    async def _send_batch(self, rows: Sequence[NewRow]) -> list[Task | BaseException]:
        """Single creates sent together (one read, one commit), each answered as it would have been alone: when
        the batch meets an error of its own (an id taken), each row is sent again alone for its own answer. A lost
        server fails the whole batch (raised)."""
        try:
            return [*await self._insert(rows)]
        except errors.BackendUnavailable:
            raise
        except errors.TaskstoreError as exc:
            if len(rows) == 1:
                return [exc]
        answers: list[Task | BaseException] = []
        for row in rows:
            try:
                answers += await self._insert([row])
            except errors.BackendUnavailable:
                raise
            except errors.TaskstoreError as exc:
                answers.append(exc)
        return answers

    async def _plan_insert(self, tx: Tx, rows: Sequence[NewRow], now: datetime | None) -> tuple[datetime, list[Task]]:
        """The writes of an all-or-nothing insert (see ``Outbox.insert``), guarded; the store's time (read here,
        with the rest, when ``now`` is None) and the tasks it gives back. Everything it reads is one pipeline:
        the time, the seqs, whether the ids are taken, the unique keys' holders."""
        read_time = now is None and self._fixed is None
        slots = sorted({slot for slot in map(_slot, (r.new for r in rows)) if slot is not None})
        pipe = self._r.pipeline(transaction=False)
        if read_time:
            pipe.time()
        pipe.incrby(self.k_seq, len(rows))
        for row in rows:
            pipe.exists(self._tkey(row.id))
        for slot in slots:
            pipe.hget(self.k_unique, slot)
        answers = await pipe.execute()
        if read_time:
            sec, usec = answers.pop(0)
            now = from_us(int(sec) * 1_000_000 + int(usec))
        elif now is None:
            assert self._fixed is not None
            now = self._fixed.now()
        end = int(answers.pop(0))
        seqs = range(end - len(rows) + 1, end + 1)
        exists = answers[: len(rows)]
        holder_ids = {
            slot: None if v is None else v.decode() for slot, v in zip(slots, answers[len(rows) :], strict=True)
        }
        stored = await self._load(i for i in holder_ids.values() if i is not None)
        for slot, holder_id in holder_ids.items():
            tx.expect(self.k_unique, slot, holder_id)
        holders: dict[str, Task | None] = {}
        for slot, holder_id in holder_ids.items():
            task = None if holder_id is None else stored.get(holder_id)
            if task is not None and task.unique_hold is not None and task.state in task.unique_hold:
                holders[slot] = task
            else:
                holders[slot] = None
        seen: set[str] = set()
        batch: dict[str, int] = {}
        held: dict[int, Task] = {}
        releases: list[Task] = []
        for index, row in enumerate(rows):
            row_slot = _slot(row.new)
            if row_slot is not None:
                if row_slot in batch:
                    continue
                holder = holders[row_slot]
                if holder is not None and transitions.holds_key(holder, now):
                    held[index] = holder
                    tx.expect(self._tkey(holder.id), "v", holder.version)
                    continue
                if holder is not None:
                    releases.append(holder)
                batch[row_slot] = index
            if exists[index] or row.id in seen:
                raise errors.AlreadyExists(row.id)
            seen.add(row.id)
        for holder in releases:
            self._write(tx, holder, transitions.release_key(holder, now), now)
        result: list[Task] = []
        for index, row in enumerate(rows):
            if index in held:
                result.append(held[index])
                continue
            new = row.new
            key_slot = _slot(new)
            first = None if key_slot is None else batch[key_slot]
            if first is not None and first != index:
                result.append(result[first])
                continue
            task = transitions.create(new, task_id=row.id, now=now, args=new.args, seq=seqs[index])
            self._write(tx, None, task, now, args=row.args)
            if key_slot is not None:
                tx.hset(self.k_unique, {key_slot: task.id})
            if task.group_id is not None:
                tx.op("sadd", f"{self.prefix}gm:{task.group_id}", task.id)
            if task.recurring_id is not None:
                tx.op("sadd", f"{self.prefix}rec:{task.recurring_id}", task.id)
            result.append(task)
        return now, result

    async def get(self, task_id: str, *, archived: bool = False) -> Task:
        found = await self._load([task_id], archived=archived)
        task = found.get(task_id)
        if task is None:
            raise errors.NotFound(task_id, "archived task") if archived else errors.NotFound(task_id)
        return task

    async def _scan(self, query: ListQuery, limit: int | None) -> list[Task]:
        """Tasks matching ``query`` in seq order (descending if asked), up to ``limit``, read in pages."""
        if query.archived:
            source = self.k_archived
        elif query.state is not None:
            source = f"{self.prefix}s:{query.state.value}"
        else:
            source = self.k_ids
        bound = query.after_seq
        out: list[Task] = []
        page = 200 if limit is None else max(min(limit * 2, 1000), 50)
        while limit is None or len(out) < limit:
            if query.descending:
                hi = "+inf" if bound is None else f"({bound}"
                ids = await self._r.zrevrangebyscore(source, hi, "-inf", start=0, num=page, withscores=True)
            else:
                lo = "-inf" if bound is None else f"({bound}"
                ids = await self._r.zrangebyscore(source, lo, "+inf", start=0, num=page, withscores=True)
            if not ids:
                break
            bound = int(ids[-1][1])
            found = await self._load((m.decode() for m, _ in ids), archived=query.archived)
            for member, _ in ids:
                task = found.get(member.decode())
                if task is None or not self._matches(task, query):
                    continue
                out.append(task)
                if limit is not None and len(out) >= limit:
                    break
            if len(ids) < page:
                break
        return out

    @staticmethod
    def _matches(task: Task, query: ListQuery) -> bool:
        return (
            (query.state is None or task.state is query.state)
            and (query.queue is None or task.queue == query.queue)
            and (query.kind is None or task.kind == query.kind)
            and (query.ready_as_of is None or task.run_at <= query.ready_as_of)
        )

    async def list_tasks(self, query: ListQuery) -> list[Task]:
        if query.limit <= 0:
            return []
        return await self._scan(query, query.limit)

    async def count(self, state: State | None, queue: str | None, archived: bool) -> int:
        if archived:
            return len(await self._scan(ListQuery(state=state, queue=queue, archived=True), None))
        if queue is not None:
            counts = await self._r.hgetall(f"{self.prefix}count:{queue}")
            if state is not None:
                return max(int(counts.get(state.value.encode(), 0)), 0)
            return sum(max(int(v), 0) for v in counts.values())
        if state is not None:
            return int(await self._r.zcard(f"{self.prefix}s:{state.value}"))
        return int(await self._r.zcard(self.k_ids))

    async def finished_counts(self, since: datetime, bucket: float) -> list[tuple[int, State, int]]:
        counts: dict[tuple[int, State], int] = {}
        for field, n in (await self._r.hgetall(self.k_finished)).items():
            minute_text, _, state = field.decode().partition(":")
            minute = from_us(int(minute_text))
            if minute >= since:
                key = (int((minute - since).total_seconds() // bucket), State(state))
                counts[key] = counts.get(key, 0) + int(n)
        return [(slot, state, n) for (slot, state), n in counts.items()]

    async def dead_summaries(self, limit: int) -> list[DeadSummary]:
        if limit <= 0:
            return []
        ids = [m.decode() for m in await self._r.zrevrange(f"{self.prefix}s:dead", 0, limit - 1)]
        found = await self._load(ids)
        return [_summary(found[i]) for i in ids if i in found and found[i].state is State.DEAD]

    async def vacuum(self) -> list[str]:
        return []

    async def analyze_grown(self) -> list[str]:
        return []

    async def fold_counts(self, keep_since: datetime) -> int:
        old = [
            field
            for field in await self._r.hkeys(self.k_finished)
            if from_us(int(field.decode().partition(":")[0])) < keep_since
        ]
        if old:
            await self._r.hdel(self.k_finished, *old)
        return len(old)

    async def outstanding_count(self, recurring_id: str) -> int:
        ids = [m.decode() for m in await self._r.smembers(f"{self.prefix}rec:{recurring_id}")]
        states = await self._states(ids)
        return sum(1 for s in states.values() if s in _OUTSTANDING)

    async def _states(self, ids: Sequence[str]) -> dict[str, State]:
        pipe = self._r.pipeline(transaction=False)
        for task_id in ids:
            pipe.hget(self._tkey(task_id), "state")
        return {i: State(s.decode()) for i, s in zip(ids, await pipe.execute(), strict=True) if s is not None}

    # -- claims ---------------------------------------------------------------------------------

    async def _queues(self, queues: Sequence[str]) -> list[str]:
        if queues:
            return list(queues)
        return sorted(m.decode() for m in await self._r.smembers(self.k_queues))

    async def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, token: Callable[[], str], recover: bool = False
    ) -> list[Task]:
        if limit <= 0:
            return []
        if recover:
            await self._recover(queues, limit)
        args = [self._now_arg(), limit, worker_id, self.prefix, "claim", len(queues), *queues, token()]
        rows = await self._claim_script(keys=[], args=args)
        claimed = [decode_packed(r) for r in rows]
        return [t for t in claimed if t is not None]

    async def _recover(self, queues: Sequence[str], limit: int) -> None:
        """Reap the timed-out leases of ``queues`` (up to ``limit``, in claim order) before a claim."""

        async def attempt() -> None:
            now = await self._now()
            pipe = self._r.pipeline(transaction=False)
            for q in await self._queues(queues):
                pipe.zrangebyscore(f"{self.prefix}leases:{q}", "-inf", to_us(now), start=0, num=limit)
            ids = [m.decode() for found in await pipe.execute() for m in found]
            if not ids:
                return
            lost = [t for t in (await self._load(ids)).values() if transitions.is_timed_out(t, now)]
            changes: list[tuple[Task, Task]] = []
            for task in sorted(lost, key=transitions.claim_order)[:limit]:
                changed = transitions.reap(task, now=now)
                if changed is not None:
                    changes.append((task, changed))
            await self._write_all(changes, now)

        await self._retrying(attempt)

    async def _write_all(self, changes: list[tuple[Task, Task]], now: datetime) -> None:
        if not changes:
            return
        tx = Tx()
        for old, new in changes:
            self._write(tx, old, new, now)
        await self._settle(tx, changes, now)
        await self._commit(tx)

    async def lease_expiry(self, queues: Sequence[str]) -> datetime | None:
        pipe = self._r.pipeline(transaction=False)
        for q in await self._queues(queues):
            pipe.zrange(f"{self.prefix}leases:{q}", 0, 0, withscores=True)
        ends = [int(found[0][1]) for found in await pipe.execute() if found]
        return from_us(min(ends)) if ends else None

    async def claim_task(self, task_id: str, worker_id: str, ttl: float | None, token: str) -> Task | None:
        async def attempt() -> Task | None:
            now, found = await self._load_at([task_id])
            task = found.get(task_id)
            if task is None:
                raise errors.NotFound(task_id)
            changed = transitions.take_over(task, worker_id=worker_id, token=token, now=now, lease=ttl)
            if changed is None:
                return None
            tx = Tx()
            if changed.state is State.CLAIMED:
                paused = await self._r.hget(self.k_paused, task.queue)
                tx.expect(self.k_paused, task.queue, paused)
                if paused == b"1":
                    return None
                key = task.concurrency_key
                if key is not None:
                    gate_key = f"{self.prefix}gate:{key}"
                    raw = await self._r.hmget(gate_key, "c", "r", "per", "tok", "at")
                    if raw[2] is not None:
                        members = {m.decode() for m in await self._r.smembers(f"{self.prefix}kr:{key}")}
                        tx.expect_count(f"{self.prefix}kr:{key}", len(members))
                        tx.expect(gate_key, "tok", raw[3])
                        tx.expect(gate_key, "at", raw[4])
                        gate = self._gate(key, raw, len(members - {task.id}), now)
                        if not gate.admits(now):
                            return None
                        gate.take(now)
                        if gate.drawn:
                            tx.hset(gate_key, {"tok": repr(gate.tokens), "at": to_us(gate.refilled_at)})
            self._write(tx, task, changed, now)
            await self._settle(tx, [(task, changed)], now)
            await self._commit(tx)
            return changed if changed.state is State.CLAIMED else None

        return await self._retrying(attempt)

    @staticmethod
    def _gate(key: str, raw: Sequence[Any], running: int, now: datetime) -> KeyGate:
        limit = _rows.limit_from(key, raw[:3])
        tokens = float(raw[3]) if raw[3] is not None else float(limit.rate or 0)
        at = from_us(int(raw[4])) if raw[4] is not None else now
        return KeyGate(limit=limit, running=running, tokens=tokens, refilled_at=at)

    async def find_available(self, queues: Sequence[str], limit: int) -> list[Task]:
        if limit <= 0:
            return []
        args = [self._now_arg(), limit, "", self.prefix, "find", len(queues), *queues]
        rows = await self._claim_script(keys=[], args=args)
        found = [decode_packed(r) for r in rows]
        return [t for t in found if t is not None]

    async def has_claimable(self, queues: Sequence[str]) -> bool:
        args = [self._now_arg(), 1, "", self.prefix, "any", len(queues), *queues]
        return bool(await self._claim_script(keys=[], args=args))

    async def cancel_requested_among(self, task_ids: Sequence[str]) -> set[str]:
        pipe = self._r.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hmget(self._tkey(task_id), "state", "creq")
        return {
            i
            for i, (state, creq) in zip(task_ids, await pipe.execute(), strict=True)
            if state == b"claimed" and creq == b"1"
        }

    # -- transitions ----------------------------------------------------------------------------

    async def apply(self, changes: Sequence[tuple[str, Change]]) -> list[Outcome]:
        async def attempt() -> list[Outcome]:
            now, current = await self._load_at(task_id for task_id, _ in changes)
            before = dict(current)
            outcomes = apply_in_order(current, changes, now)
            written = [(old, current[i]) for i, old in before.items() if current[i] is not old]
            await self._write_all(written, now)
            return outcomes

        return await self._retrying(attempt)

    async def acknowledge(self, completions: Sequence[Completion]) -> list[errors.TaskstoreError | None]:
        """One ``complete.lua`` call: it fences and writes every completion whose lease still holds, on the
        server, so the common case costs one round trip and no task read or decoded here; the rest (refused, or
        members of a group) go through ``apply``, which decides their outcomes exactly as for any change."""
        if not completions:
            return []
        args: list[Any] = [self._now_arg(), self.prefix]
        for c in completions:
            lease = c.lease
            args += (lease.task_id, lease.worker_id, lease.token, b"0" if c.value is None else b"1" + c.value)
        left = await self._complete_script(keys=[], args=args)
        acks: list[errors.TaskstoreError | None] = [None] * len(completions)
        if left:
            rest = [completions[int(k) - 1] for k in left]
            outcomes = await self.apply([(c.lease.task_id, c) for c in rest])
            for k, outcome in zip(left, outcomes, strict=True):
                acks[int(k) - 1] = outcome if isinstance(outcome, errors.TaskstoreError) else None
        return acks

    # -- groups (settling) ----------------------------------------------------------------------

    async def _members(self, group: GroupRow, written: dict[str, Task]) -> tuple[GroupRow, list[Task], int]:
        """The group with its member tasks, those this write changes as written; the live ones read; how many
        ids the group's member set held (a group made with ``put_group`` gains members as tasks name it)."""
        if group.member_ids is not None:
            ids = list(group.member_ids)
        else:
            ids = sorted(m.decode() for m in await self._r.smembers(f"{self.prefix}gm:{group.id}"))
        read = await self._load(i for i in ids if i not in written)
        live = [t for t in (written.get(i) or read.get(i) for i in ids) if t is not None and t.group_id == group.id]
        archived = [t for t in (await self._load(ids, archived=True)).values() if t.group_id == group.id]
        members = _groups.in_order(group, live, archived)
        read_live = [t for t in read.values() if t.group_id == group.id]
        return dataclasses.replace(group, members=members), read_live, len(ids)

    async def _settle(self, tx: Tx, changes: Sequence[tuple[Task, Task]], now: datetime) -> None:
        """Settle the groups of members this write ends, in the same commit (see ``_groups.settle``)."""
        ended = _groups.ended_groups(changes)
        if not ended:
            return
        written = {new.id: new for _, new in changes}
        for group_id in ended:
            raw = await self._r.hget(self.k_groups, group_id)
            if raw is None:
                continue
            group, read, known = await self._members(_rows.group_from(raw), written)
            settled = _groups.settle(group, now, self.chord_args)
            if settled is None:
                # Unfinished members decided this: one finishing meanwhile must make this write decide again.
                for task in read:
                    tx.expect(self._tkey(task.id), "v", task.version)
                continue
            tx.expect(self.k_groups, group_id, raw)
            if group.member_ids is None:  # members join by naming the group: one joining meanwhile is news
                tx.expect_count(f"{self.prefix}gm:{group_id}", known)
            for task in read:
                tx.expect(self._tkey(task.id), "v", task.version)
            tx.hset(self.k_groups, {group_id: _rows.group_json(settled.group)})
            callback = settled.callback
            # A callback already there (live) is not inserted again; ``_plan_insert`` guards its absence.
            if (
                callback is not None
                and callback.id not in written
                and not await self._r.exists(self._tkey(callback.id))
            ):
                await self._plan_insert(tx, [callback], now)

    # -- maintenance ----------------------------------------------------------------------------

    async def reap(self, limit: int) -> int:
        async def attempt() -> int:
            now = await self._now()
            pipe = self._r.pipeline(transaction=False)
            for q in await self._queues(()):
                pipe.zrangebyscore(f"{self.prefix}leases:{q}", "-inf", to_us(now), start=0, num=limit)
            pipe.zrangebyscore(self.k_expiring, "-inf", to_us(now), start=0, num=limit)
            found = await pipe.execute()
            leased = [m.decode() for ids in found[:-1] for m in ids]
            expiring = [m.decode() for m in found[-1]]
            tasks = await self._load([*leased, *expiring])
            changes: list[tuple[Task, Task]] = []
            done: set[str] = set()
            for step, ids in ((transitions.reap, leased), (transitions.expire, expiring)):
                for task_id in sorted(ids, key=lambda i: tasks[i].seq if i in tasks else 0):
                    task = tasks.get(task_id)
                    if task is None or task_id in done or len(changes) >= limit:
                        continue
                    changed = step(task, now=now)
                    if changed is not None:
                        changes.append((task, changed))
                        done.add(task_id)
            await self._write_all(changes, now)
            return len(changes)

        return await self._retrying(attempt)

    async def archive(self, before: datetime, limit: int) -> int:
        async def attempt() -> int:
            ids = [m.decode() for m in await self._r.zrangebyscore(self.k_fin, "-inf", to_us(before), 0, limit)]
            tasks = await self._load(ids)
            moving = [
                t
                for t in tasks.values()
                if t.state.is_terminal and t.finished_at is not None and t.finished_at <= before
            ]
            return await self._move_to_archive(moving)

        return await self._retrying(attempt)

    async def archive_ids(self, ids: Sequence[str]) -> int:
        async def attempt() -> int:
            tasks = await self._load(ids)
            return await self._move_to_archive([t for t in tasks.values() if t.state.is_terminal])

        return await self._retrying(attempt)

    async def _move_to_archive(self, moving: list[Task]) -> int:
        if not moving:
            return 0
        tx = Tx()
        for t in moving:
            key = self._tkey(t.id)
            tx.expect(key, "v", t.version)
            self._unindex(tx, t)
            tx.op("del", key, "del", self._akey(t.id))
            tx.hset(self._akey(t.id), encode_task(t, t.args))
            tx.op("zadd", self.k_archived, t.seq, t.id)
            if t.recurring_id is not None:
                tx.op("srem", f"{self.prefix}rec:{t.recurring_id}", t.id)
            if t.unique_key is not None:
                tx.op("hdelif", self.k_unique, _slot(t), t.id)
        await self._commit(tx)
        return len(moving)

    # -- recurring schedules --------------------------------------------------------------------

    async def put_recurring(self, row: RecurringRow) -> RecurringRow:
        async def attempt() -> RecurringRow:
            raw = await self._r.hget(self.k_recurring, row.id)
            stored = row
            if raw is not None:
                old = _rows.recurring_from(raw)
                if old.schedule == row.schedule:
                    stored = dataclasses.replace(row, next_at=old.next_at)
            tx = Tx()
            tx.expect(self.k_recurring, row.id, raw)
            tx.hset(self.k_recurring, {row.id: _rows.recurring_json(stored)})
            await self._commit(tx)
            return stored

        return await self._retrying(attempt)

    async def delete_recurring(self, recurring_id: str) -> bool:
        return bool(await self._r.hdel(self.k_recurring, recurring_id))

    async def list_recurring(self) -> list[RecurringRow]:
        rows = [_rows.recurring_from(v) for v in await self._r.hvals(self.k_recurring)]
        return sorted(rows, key=lambda r: r.id)

    async def advance_recurring(self, recurring_id: str, expected: datetime, next_at: datetime) -> bool:
        async def attempt() -> bool:
            raw = await self._r.hget(self.k_recurring, recurring_id)
            if raw is None:
                return False
            row = _rows.recurring_from(raw)
            if row.next_at != expected:
                return False
            tx = Tx()
            tx.expect(self.k_recurring, recurring_id, raw)
            tx.hset(self.k_recurring, {recurring_id: _rows.recurring_json(dataclasses.replace(row, next_at=next_at))})
            await self._commit(tx)
            return True

        return await self._retrying(attempt)

    # -- status-only records --------------------------------------------------------------------

    async def _live_status(self, status_id: str, now: datetime) -> tuple[bytes | None, StatusRow | None]:
        raw = await self._r.hget(self.k_status, status_id)
        if raw is None:
            return None, None
        row = _rows.status_from(raw)
        return raw, (row if row.expires_at > now else None)

    async def put_status(self, row: StatusRow) -> StatusRow:
        async def attempt() -> StatusRow:
            now = await self._now()
            raw, old = await self._live_status(row.id, now)
            stored = row
            if old is not None:
                stored = dataclasses.replace(row, created_at=old.created_at)
            tx = Tx()
            tx.expect(self.k_status, row.id, raw)
            tx.hset(self.k_status, {row.id: _rows.status_json(stored)})
            await self._commit(tx)
            return stored

        return await self._retrying(attempt)

    async def get_status(self, status_id: str) -> StatusRow | None:
        return (await self._live_status(status_id, await self._now()))[1]

    async def expire_status(self, status_id: str, expires_at: datetime) -> None:
        async def attempt() -> None:
            raw, row = await self._live_status(status_id, await self._now())
            if row is None:
                return
            tx = Tx()
            tx.expect(self.k_status, status_id, raw)
            tx.hset(self.k_status, {status_id: _rows.status_json(dataclasses.replace(row, expires_at=expires_at))})
            await self._commit(tx)

        await self._retrying(attempt)

    async def list_statuses(
        self, state: str | None, queue: str | None, before: tuple[datetime, str] | None, limit: int
    ) -> list[StatusRow]:
        now = await self._now()
        rows = [
            r
            for r in map(_rows.status_from, await self._r.hvals(self.k_status))
            if r.expires_at > now
            and (state is None or r.state == state)
            and (queue is None or r.meta.get("queue") == queue)
            and (before is None or (r.created_at, r.id) < before)
        ]
        return sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)[:limit]

    async def purge_statuses(self) -> int:
        async def attempt() -> int:
            now = await self._now()
            tx = Tx()
            gone = 0
            for field, raw in (await self._r.hgetall(self.k_status)).items():
                if _rows.status_from(raw).expires_at <= now:
                    tx.expect(self.k_status, field.decode(), raw)
                    tx.op("hdel", self.k_status, field)
                    gone += 1
            await self._commit(tx)
            return gone

        return await self._retrying(attempt)

    async def change_marker(self) -> Hashable | None:
        value = await self._r.get(self.k_changes)
        return None if value is None else int(value)

    # -- groups and chords ----------------------------------------------------------------------

    async def _live_group(self, group_id: str, now: datetime) -> tuple[bytes | None, GroupRow | None]:
        """The stored JSON and the group with its members; the group is None once it is gone for good."""
        raw = await self._r.hget(self.k_groups, group_id)
        if raw is None:
            return None, None
        group, _, _ = await self._members(_rows.group_from(raw), {})
        if group.expires_at > now or any(not t.state.is_terminal for t in group.members):
            return raw, group
        return raw, None

    async def insert_group(self, group: GroupRow, rows: Sequence[NewRow]) -> list[Task]:
        async def attempt() -> list[Task]:
            if await self._r.hexists(self.k_groups, group.id):
                raise errors.AlreadyExists(group.id)
            now = await self._now()
            tx = Tx()
            tx.expect(self.k_groups, group.id, None)
            created = (await self._plan_insert(tx, rows, now))[1] if rows else []
            stored = dataclasses.replace(group, created_at=now, updated_at=now, members=())
            tx.hset(self.k_groups, {group.id: _rows.group_json(stored)})
            await self._commit(tx)
            return created

        return await self._retrying(attempt)

    async def put_group(self, group_id: str, expected: int, meta: dict[str, Any], expires_at: datetime) -> GroupRow:
        async def attempt() -> GroupRow:
            now = await self._now()
            raw, old = await self._live_group(group_id, now)
            created = old.created_at if old is not None else now
            row = _groups.initial_group(group_id, expected, meta, created, now, expires_at)
            tx = Tx()
            tx.expect(self.k_groups, group_id, raw)
            tx.hset(self.k_groups, {group_id: _rows.group_json(row)})
            await self._commit(tx)
            return (await self._members(row, {}))[0]

        return await self._retrying(attempt)

    async def add_group_result(self, group_id: str, member_id: str, status: dict[str, Any]) -> GroupRow | None:
        async def attempt() -> GroupRow | None:
            now = await self._now()
            raw, group = await self._live_group(group_id, now)
            if group is None:
                return None
            row = dataclasses.replace(group, results={**group.results, member_id: status}, updated_at=now)
            tx = Tx()
            tx.expect(self.k_groups, group_id, raw)
            tx.hset(self.k_groups, {group_id: _rows.group_json(row)})
            await self._commit(tx)
            return row

        return await self._retrying(attempt)

    async def get_group(self, group_id: str) -> GroupRow | None:
        return (await self._live_group(group_id, await self._now()))[1]

    async def claim_chord(self, group_id: str, callback_id: str | None, dispatched_at: datetime) -> bool:
        async def attempt() -> bool:
            now = await self._now()
            raw, group = await self._live_group(group_id, now)
            if group is None or group.chord_claimed:
                return False
            row = dataclasses.replace(
                group,
                chord_claimed=True,
                chord_callback_id=callback_id,
                chord_dispatched_at=dispatched_at,
                updated_at=now,
                members=(),
            )
            tx = Tx()
            tx.expect(self.k_groups, group_id, raw)
            tx.hset(self.k_groups, {group_id: _rows.group_json(row)})
            await self._commit(tx)
            return True

        return await self._retrying(attempt)

    async def purge_groups(self) -> int:
        now = await self._now()
        gone = 0
        for field in await self._r.hkeys(self.k_groups):
            group_id = field.decode()

            async def attempt(group_id: str = group_id) -> int:
                raw, group = await self._live_group(group_id, now)
                if raw is None or group is not None:
                    return 0
                tx = Tx()
                tx.expect(self.k_groups, group_id, raw)
                tx.op("hdel", self.k_groups, group_id, "del", f"{self.prefix}gm:{group_id}")
                await self._commit(tx)
                return 1

            gone += await self._retrying(attempt)
        return gone

    # -- flow control (SPEC §9) -----------------------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        tx = Tx()
        tx.hset(self.k_paused, {queue: "1" if paused else "0"})
        tx.wake = not paused
        await self._commit(tx)

    async def paused_queues(self) -> set[str]:
        return {q.decode() for q, v in (await self._r.hgetall(self.k_paused)).items() if v == b"1"}

    async def queue_rows(self) -> list[QueueRow]:
        now = await self._now()
        paused = {q.decode(): v == b"1" for q, v in (await self._r.hgetall(self.k_paused)).items()}
        names = sorted({m.decode() for m in await self._r.smembers(self.k_queues)} | set(paused))
        pipe = self._r.pipeline(transaction=False)
        for q in names:
            pipe.hgetall(f"{self.prefix}count:{q}")
            pipe.zrange(f"{self.prefix}ready:{q}", 0, -1)
            pipe.zrangebyscore(f"{self.prefix}delayed:{q}", "-inf", to_us(now))
        found = await pipe.execute()
        rows: list[QueueRow] = []
        for n, q in enumerate(names):
            raw_counts, ready, due = found[3 * n : 3 * n + 3]
            counts = {State(s.decode()): int(c) for s, c in raw_counts.items() if int(c) > 0}
            if not counts and q not in paused:
                continue
            ids = [m.decode()[_rows.RUN_DIGITS + _rows.SEQ_DIGITS :] for m in ready] + [m.decode() for m in due]
            waiting = [t for t in (await self._load(ids)).values() if transitions.is_claimable(t, now) and t.queue == q]
            oldest = min((t.run_at for t in waiting), default=None)
            rows.append(QueueRow(name=q, paused=paused.get(q, False), counts=counts, oldest_ready_at=oldest))
        return rows

    async def put_limit(self, limit: Limit) -> None:
        async def attempt() -> None:
            now = await self._now()
            key = f"{self.prefix}gate:{limit.key}"
            raw = await self._r.hmget(key, "c", "r", "per", "tok", "at")
            if raw[2] is None:
                gate = gates.new_gate(limit, now)
            else:
                gate = gates.reset_gate(self._gate(limit.key, raw, 0, now), limit, now)
            tx = Tx()
            tx.expect(key, "tok", raw[3])
            tx.expect(key, "at", raw[4])
            tx.op("del", key)
            tx.hset(key, {**_rows.limit_fields(limit), "tok": repr(gate.tokens), "at": to_us(gate.refilled_at)})
            tx.op("sadd", self.k_limits, limit.key)
            tx.wake = True
            await self._commit(tx)

        await self._retrying(attempt)

    async def delete_limit(self, key: str) -> bool:
        tx = Tx()
        removed = bool(await self._r.srem(self.k_limits, key))
        tx.op("del", f"{self.prefix}gate:{key}")
        tx.wake = True
        await self._commit(tx)
        return removed

    async def list_limits(self) -> list[Limit]:
        keys = sorted(m.decode() for m in await self._r.smembers(self.k_limits))
        pipe = self._r.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(f"{self.prefix}gate:{key}", "c", "r", "per")
        return [
            _rows.limit_from(k, raw) for k, raw in zip(keys, await pipe.execute(), strict=True) if raw[2] is not None
        ]

    async def key_gate(self, key: str) -> KeyGate | None:
        raw = await self._r.hmget(f"{self.prefix}gate:{key}", "c", "r", "per", "tok", "at")
        if raw[2] is None:
            return None
        running = int(await self._r.scard(f"{self.prefix}kr:{key}"))
        return self._gate(key, raw, running, await self._now())

    async def claimed_with_key(self, key: str, limit: int) -> list[Task]:
        ids = [m.decode() for m in await self._r.smembers(f"{self.prefix}kr:{key}")]
        held = [t for t in (await self._load(ids)).values() if t.state is State.CLAIMED and t.concurrency_key == key]
        return sorted(held, key=lambda t: t.seq)[:limit]

    # -- worker heartbeats ----------------------------------------------------------------------

    async def put_heartbeat(self, heartbeat: WorkerHeartbeat) -> WorkerHeartbeat:
        stamped = dataclasses.replace(heartbeat, timestamp=await self._now())
        await self._r.hset(self.k_hb, heartbeat.worker_id, _rows.heartbeat_json(stamped))
        return stamped

    async def get_heartbeat(self, worker_id: str, since: datetime) -> WorkerHeartbeat | None:
        raw = await self._r.hget(self.k_hb, worker_id)
        if raw is None:
            return None
        found = _rows.heartbeat_from(raw)
        return found if found.timestamp is not None and found.timestamp >= since else None

    async def list_heartbeats(self, since: datetime) -> list[WorkerHeartbeat]:
        live = [
            h
            for h in map(_rows.heartbeat_from, await self._r.hvals(self.k_hb))
            if h.timestamp is not None and h.timestamp >= since
        ]
        return sorted(live, key=lambda h: h.worker_id)

    async def purge_heartbeats(self, before: datetime) -> int:
        old = [
            field
            for field, raw in (await self._r.hgetall(self.k_hb)).items()
            if (hb := _rows.heartbeat_from(raw)).timestamp is None or hb.timestamp < before
        ]
        if old:
            await self._r.hdel(self.k_hb, *old)
        return len(old)


def _open_error(exc: Exception) -> errors.TaskstoreError:
    """What a failed first contact means: a refusal no retry can change is the configuration's fault (a wrong
    password, a database number the server does not have, a URL option redis-py does not know); the rest (no
    answer, a server that is starting or full) may pass."""
    from redis.exceptions import AuthenticationError, ResponseError

    if isinstance(exc, AuthenticationError | ResponseError | TypeError):
        return errors.ConfigError(f"Redis refused the connection: {exc}")
    return errors.BackendUnavailable(f"cannot reach Redis: {exc}")


_P = ParamSpec("_P")


def _packed_by_hiredis(connection_class: type[Any]) -> type[Any]:
    """``connection_class`` packing its commands with hiredis' C packer, when hiredis is installed.

    redis-py's asyncio connections pack every command in Python, argument by argument, even with hiredis (its
    sync client uses hiredis' packer): for the scripts' 10-40 arguments that was about a fifth of a create's CPU
    (``eval`` with 34 arguments: 324 -> 265 µs here). The bytes sent are the same RESP; the arguments the driver
    passes are str, bytes and int, which both packers write alike (a test sends every command through both).
    """
    try:
        import hiredis
    except ImportError:  # pragma: no cover - depends on the environment (the redis extra installs it)
        return connection_class
    if not hasattr(hiredis, "pack_command"):  # pragma: no cover - hiredis before 2.1
        return connection_class
    from redis.exceptions import DataError

    pack = hiredis.pack_command

    def pack_command(self: Any, *args: Any) -> list[bytes]:
        # As redis-py's packer: a command name of two words ("SCRIPT LOAD") goes as two arguments.
        head = args[0] if args else None
        if (isinstance(head, str) and " " in head) or (isinstance(head, bytes) and b" " in head):
            args = (*head.split(), *args[1:])
        try:
            return [pack(args)]
        except TypeError as exc:  # None, a bool: redis-py refuses them as DataError, which the driver translates
            raise DataError(f"invalid input for a Redis command: {exc}") from exc

    return type(f"HiredisPacked{connection_class.__name__}", (connection_class,), {"pack_command": pack_command})


def _translated(method: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """``method``, raising ``BackendUnavailable`` for what redis-py raises (a server gone away, a timeout, a
    refusal such as OOM): the store's callers see one exception tree whatever the backend."""

    @functools.wraps(method)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await method(*args, **kwargs)
        except errors.TaskstoreError:
            raise
        except _redis_errors() as exc:
            raise errors.BackendUnavailable(f"Redis: {exc}") from exc

    return call


def _redis_errors() -> tuple[type[Exception], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


# Every public call of the driver (open has its own verdicts, above).
for _name, _method in list(vars(RedisDriver).items()):
    if not _name.startswith("_") and _name != "open" and inspect.iscoroutinefunction(_method):
        setattr(RedisDriver, _name, _translated(_method))
