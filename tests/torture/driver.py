"""The torture driver: real ``taskstore worker`` processes under load, and faults thrown at them.

For a bounded time it enqueues a mix of tasks (``Mix``) and, at random moments, SIGKILLs a worker
(and starts a replacement), SIGSTOPs one past its lease then SIGCONTs it (its late writes must be
refused), and on PostgreSQL terminates every session and restarts the server when the test owns it.
Then it lets the workers settle, reads every task, stops the workers with SIGTERM and hands the
store's view, the handlers' write-ahead log and its own fault record to ``checker.check``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import taskstore
from taskstore import NewTask, State, Task, errors

from . import workload
from .checker import ChordExpect, Expect, Fault, Final, Report, check, read_wal

ROOT = Path(__file__).resolve().parents[2]
STOP_FOR = 2 * workload.LEASE  # a stopped worker wakes up after its leases have been reaped and taken over
GRACE = 5.0

DONE = Expect(frozenset({"done"}))
FEATURES = frozenset({"exit", "sync_hang", "nul", "chord_faults", "chains"})
"""Scenarios on top of the base load, each one a way issue 10 (§1, §2) found to wedge a worker or lose
work. All run by default; ``--torture-features`` names a subset (to tell which one breaks a change):

- ``exit``: handlers that call ``sys.exit`` or raise ``KeyboardInterrupt`` (the worker died or hung);
- ``sync_hang``: a sync handler past its timeout (it kept its worker slot, and its thread kept the
  worker from exiting on SIGTERM);
- ``nul``: failure text with a NUL byte and a lone surrogate, which PostgreSQL cannot store as is;
- ``chord_faults``: PostgreSQL sessions cut while chord members complete (a member's group result was
  lost with its session, and the callback never came). Without it the database faults wait until
  every chord has fired; worker kills and stops hit the chords either way.
- ``chains``: chains of links, each link's result threaded into the next, checked as chords are: the
  last link ``done`` with every link's value in order (each link is expected ``done``, so a link
  created twice, or never, is caught as unexpected or lost).
"""


@dataclass(frozen=True)
class Config:
    backend: str
    seconds: float = 20.0  # how long faults are thrown
    settle: float = 60.0  # after that, how long every task has to finish
    workers: int = 3
    concurrency: int = 8
    wave_every: float = 0.5
    wave_size: int = 30  # enough to keep every worker busy, so a fault always hits running tasks
    fault_every: tuple[float, float] = (0.5, 1.5)
    seed: int = field(default_factory=lambda: random.randrange(1 << 30))
    features: frozenset[str] = frozenset()
    chords: int = 8
    chord_size: int = 6
    chains: int = 4
    chain_length: int = 5


class Workers:
    """The worker processes: started through the real CLI, each logging to its own file."""

    def __init__(self, url: str, workdir: Path, concurrency: int) -> None:
        self.url = url
        self.workdir = workdir
        self.concurrency = concurrency
        self.live: list[subprocess.Popen[bytes]] = []
        self.all: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()
        self.stopped: set[int] = set()

    def start(self) -> subprocess.Popen[bytes]:
        n = len(self.all)
        with open(self.workdir / f"worker-{n}.log", "wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "taskstore",
                    "worker",
                    "tests.torture.workload:app",
                    "--url",
                    self.url,
                    "--queue",
                    workload.QUEUE,
                    "--concurrency",
                    str(self.concurrency),
                    "--grace",
                    f"{GRACE:g}s",
                    "--reap-every",
                    "0.5s",
                    "--worker-id",
                    f"torture-{n}",
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TORTURE_WAL_DIR": str(self.workdir)},
            )
        self.live.append(proc)
        self.all.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.kill()
        proc.wait()
        self.killed.add(proc.pid)
        self.live.remove(proc)
        self.stopped.discard(proc.pid)

    def crashed(self) -> list[subprocess.Popen[bytes]]:
        """Workers that exited on their own: a worker must never die on a task's behalf."""
        gone = [p for p in self.live if p.poll() is not None]
        for proc in gone:
            self.live.remove(proc)
        return gone

    def terminate_all(self, timeout: float) -> int:
        """SIGTERM every live worker; returns how many did not exit within ``timeout`` (then killed)."""
        for proc in self.live:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        deadline = time.monotonic() + timeout
        hung = 0
        for proc in self.live:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                hung += 1
                proc.kill()
                proc.wait()
        self.live.clear()
        return hung

    def kill_all(self) -> None:
        for proc in self.all:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for n, proc in enumerate(self.all):
            text = (self.workdir / f"worker-{n}.log").read_text(errors="replace").splitlines()
            interesting = [t for t in text if "Traceback" in t or " ERROR " in t or " CRITICAL " in t]
            if interesting:
                out.append(f"worker-{n} (pid {proc.pid}, rc {proc.returncode}): " + " | ".join(interesting[-lines:]))
        return "\n".join(out)


class Postgres:
    """What the driver may do to PostgreSQL: cut every session, and restart a server it owns."""

    def __init__(self, admin_url: str, restart: Callable[[], None] | None = None) -> None:
        self.admin_url = admin_url  # a connection to the tasks' database, outside the store
        self.restart = restart

    def terminate_sessions(self) -> int:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as admin:
            row = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        return int(row[0]) if row else 0


class GarbageCodec:
    """Writes payloads no JSON decoder reads: the worker must dead-letter them, not crash."""

    name = "garbage"

    def encode(self, value: Any) -> bytes:
        return b"\xff\xfe not json"

    def decode(self, data: bytes) -> Any:
        return data


class Mix:
    """The load: ids, what each task should end as, and the chords to check."""

    def __init__(self, rng: random.Random, features: frozenset[str]) -> None:
        self.rng = rng
        self.features = features
        self.expected: dict[str, Expect] = {}
        self.chords: list[ChordExpect] = []
        self._ids = itertools.count()

    def _add(self, new: NewTask, expect: Expect) -> NewTask:
        assert new.id is not None
        self.expected[new.id] = expect
        return new

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def wave(self, size: int) -> list[NewTask]:
        """A batch of ordinary and misbehaving tasks, each with the end it must reach."""
        r = self.rng
        out: list[NewTask] = []
        for _ in range(size):
            roll = r.random()
            if roll < 0.50:
                out.append(self._add(workload.work.options(id=self._id("work")).new_task(r.randint(5, 60)), DONE))
            elif roll < 0.62:
                # Long enough that a stopped worker's run and its rescuer's overlap: a stale write's chance.
                # A thread that is stopped mid-sleep returns as soon as it resumes, often before the
                # worker's heart-beat finds the lease lost, so its completion reaches the store.
                fn = self.rng.choice([workload.work, workload.work_sync])
                out.append(self._add(fn.options(id=self._id("slow")).new_task(r.randint(500, 2500)), DONE))
            elif roll < 0.75:
                new = workload.work_sync.options(id=self._id("sync")).new_task(r.randint(5, 60))
                out.append(self._add(new, DONE))
            elif roll < 0.85:
                new = workload.flaky.options(id=self._id("flaky")).new_task(r.randint(2, 3))
                out.append(self._add(new, DONE))
            elif roll < 0.90:
                dead = Expect(frozenset({"dead"}), frozenset({"ValueError", "timed_out"}))
                out.append(self._add(workload.doomed.options(id=self._id("doomed")).new_task(), dead))
            elif roll < 0.95:
                new = workload.hang.options(id=self._id("hang")).new_task(4.0)
                out.append(self._add(new, Expect(DONE.states, first_attempt_times_out=True)))
            else:
                out.extend(self._misbehaving())
        return out

    def _misbehaving(self) -> list[NewTask]:
        out = []
        if "exit" in self.features:
            out.append(self._add(workload.exits.options(id=self._id("exit")).new_task(3), DONE))
            out.append(self._add(workload.interrupts.options(id=self._id("interrupt")).new_task(), DONE))
        if "sync_hang" in self.features:
            # Still asleep when the workers get SIGTERM: they must exit within the grace all the same.
            new = workload.sync_hang.options(id=self._id("synchang")).new_task(120.0)
            out.append(self._add(new, Expect(DONE.states, first_attempt_times_out=True)))
        if "nul" in self.features:
            out.append(self._add(workload.nul.options(id=self._id("nul")).new_task(), DONE))
        return out

    def bad_tasks(self, count: int) -> tuple[list[NewTask], list[NewTask]]:
        """Tasks no handler can run: (stored with the JSON codec, stored undecodable)."""
        plain, garbage = [], []
        for _ in range(count):
            unknown = NewTask(workload.QUEUE, "torture.no_such_kind", {"args": [], "kwargs": {}}, id=self._id("bad"))
            plain.append(self._add(unknown, Expect(frozenset({"dead"}), frozenset({"UnknownTaskKind"}))))
            shape = NewTask(workload.QUEUE, "torture.work", [1, 2], id=self._id("bad"))
            plain.append(self._add(shape, Expect(frozenset({"dead"}), frozenset({"InvalidPayload"}))))
            wrong = NewTask(workload.QUEUE, "torture.work", {"args": [], "kwargs": {"nope": 1}}, id=self._id("bad"))
            plain.append(self._add(wrong, Expect(frozenset({"dead"}), frozenset({"InvalidArguments"}))))
            undecodable = NewTask(workload.QUEUE, "torture.work", {"args": [1]}, id=self._id("bad"))
            garbage.append(self._add(undecodable, Expect(frozenset({"dead"}), frozenset({"UndecodablePayload"}))))
        return plain, garbage


async def _retrying(what: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    """Call ``what`` until the store answers (the driver's own sessions are cut too)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await what()
        except errors.BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _create(store: taskstore.Store, news: Sequence[NewTask]) -> None:
    async def once() -> None:
        # A batch whose commit landed but whose reply was lost comes back as AlreadyExists: it is in.
        with contextlib.suppress(errors.AlreadyExists):
            await store.create_many(news)

    await _retrying(once)


async def _enqueue_chords(url: str, mix: Mix, count: int, size: int, chains: int, length: int) -> None:
    workload.app.url = url
    try:
        for c in range(count):
            members = [workload.member.s(i, mix.rng.randint(5, 80)) for i in range(size)]
            handle = await workload.app.chord(members, workload.chord_total.s(tag=f"c{c}")).enqueue()
            mix.chords.append(ChordExpect(f"c{c}", handle.callback, [i * 10 for i in range(size)]))
            for member_id in handle.members:
                mix.expected[member_id] = DONE
            mix.expected[handle.callback] = DONE
        if "chains" in mix.features:
            await _enqueue_chains(mix, chains, length)
    finally:
        await workload.app.aclose()
        workload.app._store = None
        workload.app.url = None


async def _enqueue_chains(mix: Mix, count: int, length: int) -> None:
    for c in range(count):
        links = [workload.chain_start.s(mix.rng.randint(5, 80))]
        links += [workload.chain_link.s(i, mix.rng.randint(5, 80)) for i in range(1, length)]
        handle = await workload.app.chain(*links).enqueue()
        mix.chords.append(ChordExpect(f"chain{c}", handle.links[-1], [i * 10 for i in range(length)]))
        for link_id in handle.links:
            mix.expected[link_id] = DONE


async def _read_all(store: taskstore.Store) -> dict[str, Final]:
    finals: dict[str, Final] = {}
    cursor = None
    while True:
        page = await _retrying(functools.partial(store.list, cursor=cursor, limit=1000))
        for task in page.items:
            finals[task.id] = _final(task)
        cursor = page.next_cursor
        if cursor is None:
            return finals


def _final(task: Task) -> Final:
    failure = task.result.failure if task.result is not None else None
    return Final(
        id=task.id,
        kind=task.kind,
        state=task.state.value,
        attempts=task.attempts,
        max_attempts=task.max_attempts,
        value=task.result.value if task.result is not None else None,
        failure_type=failure.type if failure is not None else None,
        failure_message=failure.message if failure is not None else None,
    )


class Driver:
    def __init__(self, config: Config, url: str, workdir: Path, postgres: Postgres | None = None) -> None:
        self.config = config
        self.url = url
        self.workdir = workdir
        self.postgres = postgres
        self.rng = random.Random(config.seed)
        self.mix = Mix(random.Random(config.seed + 1), config.features)
        self.workers = Workers(url, workdir, config.concurrency)
        self.faults: list[Fault] = []
        self.crashes: list[str] = []
        self.start_failures = 0
        self._stops: set[asyncio.Task[None]] = set()
        self._tried: set[str] = set()
        self._chords_pending: list[ChordExpect] = []

    async def run(self) -> Report:
        try:
            return await self._run()
        finally:
            for stop in self._stops:
                stop.cancel()
            self.workers.kill_all()

    async def _run(self) -> Report:
        cfg = self.config
        async with taskstore.open(self.url) as store:
            await _enqueue_chords(self.url, self.mix, cfg.chords, cfg.chord_size, cfg.chains, cfg.chain_length)
            plain, garbage = self.mix.bad_tasks(3)
            await _create(store, plain + self.mix.wave(200))
            async with taskstore.open(self.url, codec=GarbageCodec()) as raw:
                await raw.create_many(garbage)
            for _ in range(cfg.workers):
                self.workers.start()
            self._chords_pending = list(self.mix.chords)
            await self._until_working()
            await self._chaos(store)
            await self._settle(store)
            finals = await _read_all(store)
        hung = self.workers.terminate_all(GRACE + 10.0)
        with open(self.workdir / "faults.jsonl", "w") as out:  # for a post-mortem next to the WAL
            out.writelines(json.dumps(dataclasses.asdict(f)) + "\n" for f in self.faults)
        runs, _ = read_wal(self.workdir)
        report = check(
            finals, self.mix.expected, runs, self.faults, self.mix.chords, workers_stuck=hung, crashes=self.crashes
        )
        report.start_failures = self.start_failures
        return report

    async def _until_working(self, timeout: float = 60.0) -> None:
        """Faults start once every first worker has run a task (imports take seconds under load)."""
        deadline = time.monotonic() + timeout
        while len(self._working(self.workers.live)) < len(self.workers.live) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def _chaos(self, store: taskstore.Store) -> None:
        cfg = self.config
        end = time.monotonic() + cfg.seconds
        next_wave = next_fault = time.monotonic()
        while (now := time.monotonic()) < end:
            if now >= next_wave:
                # Keep the workers busy but the queue short: a reaped task goes behind the backlog, and
                # behind a long one its stopped worker would wake up before anyone took it over.
                backlog = await _retrying(functools.partial(store.count, state=State.QUEUED))
                if backlog < cfg.workers * cfg.concurrency:
                    await _create(store, self.mix.wave(cfg.wave_size))
                next_wave = now + cfg.wave_every
            if now >= next_fault:
                await self._fault(store)
                next_fault = now + self.rng.uniform(*cfg.fault_every)
            self._replace_crashed()
            await asyncio.sleep(0.05)

    def _replace_crashed(self) -> None:
        for proc in self.workers.crashed():
            if proc.returncode == 1 and not self._working([proc]):
                # It could not open the store (started while the database was down or its sessions cut)
                # and said so: a worker that fails fast at start is not one that died on a task.
                self.start_failures += 1
            else:
                self.crashes.append(f"worker pid {proc.pid} exited on its own with code {proc.returncode}")
            self.workers.start()

    async def _fault(self, store: taskstore.Store) -> None:
        # Stops weigh double: a stale write needs a stopped worker, and a killed one takes seconds to replace.
        choices = ["kill", "stop", "stop"]
        if self.postgres is not None and ("chord_faults" in self.config.features or await self._chords_fired(store)):
            choices += ["pg_terminate"]
            if self.postgres.restart is not None and sum(f.kind == "pg_restart" for f in self.faults) < 2:
                choices += ["pg_restart"]
        running = self._working([p for p in self.workers.live if p.pid not in self.workers.stopped])
        # Every kind once first, in a random order, so that even a short run throws each of them.
        unused = sorted(set(choices) - {f.kind for f in self.faults} - self._tried)
        kind = self.rng.choice(unused or choices)
        self._tried.add(kind)
        if kind == "kill" and running:
            victim = self._victim(running)
            at = time.time()
            self.workers.kill(victim)
            self.faults.append(Fault("kill", at, at, victim.pid))
            self.workers.start()
        elif kind == "stop" and len(running) > 1:  # someone must be left to reap and take over
            victim = self._victim(running)
            self.workers.stopped.add(victim.pid)
            stop = asyncio.get_running_loop().create_task(self._stop(victim))
            self._stops.add(stop)
            stop.add_done_callback(self._stops.discard)
        elif kind == "pg_terminate" and self.postgres is not None:
            at = time.time()
            await asyncio.to_thread(self.postgres.terminate_sessions)
            # Writes that failed on a cut session are retried; a lease may run out meanwhile.
            self.faults.append(Fault("pg_terminate", at, time.time() + workload.LEASE))
        elif kind == "pg_restart" and self.postgres is not None and self.postgres.restart is not None:
            at = time.time()
            await asyncio.to_thread(self.postgres.restart)
            self.faults.append(Fault("pg_restart", at, time.time() + 2 * workload.LEASE))

    async def _chords_fired(self, store: taskstore.Store) -> bool:
        if not self._chords_pending:
            return True
        for chord in list(self._chords_pending):
            with contextlib.suppress(errors.NotFound):
                if (await _retrying(functools.partial(store.get, chord.callback_id))).state is State.DONE:
                    self._chords_pending.remove(chord)
        return not self._chords_pending

    def _victim(self, running: Sequence[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        """A worker in the middle of a long task if there is one, else one that has run something.

        Stopped mid-run, a worker resumes with a result in hand for a task another worker now holds:
        the stale write the fencing must refuse. A worker still starting up is never chosen: on a
        loaded machine that takes seconds, and faults on it would test nothing.
        """
        busy = [p for p in running if self._runs_slow_task(p.pid)]
        return self.rng.choice(busy or self._working(running))

    def _working(self, procs: Sequence[subprocess.Popen[bytes]]) -> list[subprocess.Popen[bytes]]:
        return [p for p in procs if (self.workdir / f"wal-{p.pid}.jsonl").exists()]

    def _runs_slow_task(self, pid: int) -> bool:
        path = self.workdir / f"wal-{pid}.jsonl"
        if not path.exists():
            return False
        open_runs: set[str] = set()
        for raw in path.read_bytes().splitlines():
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if line["id"].startswith("slow-"):
                    (open_runs.add if line["ev"] == "start" else open_runs.discard)(line["token"])
        return bool(open_runs)

    async def _stop(self, victim: subprocess.Popen[bytes]) -> None:
        at = time.time()
        victim.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(STOP_FOR)
        finally:
            if victim.poll() is None:
                victim.send_signal(signal.SIGCONT)
            self.workers.stopped.discard(victim.pid)
            # Its reach: a handler that logs its start just after SIGCONT may hold a claim taken before
            # SIGSTOP, long expired; a lease after the resume, its run is no longer the stop's doing.
            # On SQLite the stopped process may hold the one write lock: every worker's writes wait,
            # lease renewals too, so the stop reaches every process.
            shared = self.config.backend == "sqlite"
            self.faults.append(Fault("stop", at, time.time() + workload.LEASE, victim.pid, shared))

    async def _settle(self, store: taskstore.Store) -> None:
        """Faults stop; give every task the settle time to reach its end."""
        while self._stops:
            await asyncio.wait(set(self._stops))
        while len(self.workers.live) < self.config.workers:
            self.workers.start()
        deadline = time.monotonic() + self.config.settle
        while time.monotonic() < deadline:
            self._replace_crashed()
            waiting = 0
            for state in (State.QUEUED, State.FAILED, State.CLAIMED):
                waiting += await _retrying(functools.partial(store.count, state=state))
            if waiting == 0:
                return
            await asyncio.sleep(0.2)
