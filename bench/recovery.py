"""Recovery: how soon the work of a crashed or frozen worker runs again (issue 17).

    python -m bench --systems taskstore-sqlite,taskstore-postgres,pgqueuer,procrastinate --scenarios recovery
    python -m bench.recovery [--systems ...] [--modes kill,stop] [--loads backlog,paced] [--runs 2] [--tasks 2000]
                             [--out STEM]

(the second form from inside bench/.venvs/taskstore, which the first one creates). For each system, load and
mode, in a fresh store: ``--tasks`` tasks, each sleeping a duration drawn uniformly from 0-500 ms (seeded: every
system gets the same list), are enqueued, either all before the workers start (load ``backlog``, the workload of
issue 17: 2,000 tasks are 40 s of work for the 12 slots) or by a producer process, 24 a second, while they run
(load ``paced``: about half of what the slots can run, so no backlog forms and a re-run waits only for the
recovery mechanism); 3 workers are started as users start them (each system's own command line, concurrency 4
each, in a process group of its own); once the first task has started:

- mode ``kill``: every 2 s the oldest worker's group is sent SIGKILL and a replacement is started at once, so 3
  keep running;
- mode ``stop``: every 5 s a worker not already stopped (in turn: the one stopped longest ago) is sent SIGSTOP,
  and SIGCONT 6 s (3 leases) later; no replacement (two are stopped at once for one second in five).

This goes on until every task is done in the store, or ``--cap`` seconds (170) have passed; then every worker
is sent SIGCONT, SIGTERM, and SIGKILL 10 s later if it is still there. Every system gets the same lease, 2 s,
in whatever form its mechanism has (bench/peers/recovery_*.py say which setting and which doc page).

The handlers append a line at each start and end (bench/peers/_recovery_log.py); the driver records each signal
it sends; afterwards it reads from the store which tasks are done, when each completion was written, and (for
taskstore) each attempt's timed-out lease. From these, per run:

- **lost attempts**: an attempt followed by another start of its task, whose worker was killed or stopped
  between the attempt's start and that next start (or: stopped when the attempt was claimed, its handler
  starting only after the SIGCONT; the time then counts from the stop). For each: *signal -> next start* and
  *lease expiry -> next start*. Expiry is exact for taskstore (the ``timed_out`` failure of that attempt holds
  its ``times_out_at``); for the peers it is the last heartbeat of the job the driver saw (sampled every 0.25 s
  from the queue's table: pgqueuer's job ``heartbeat``, procrastinate's worker ``last_heartbeat``) plus the
  lease. Figures are p50/p99/max by nearest rank, and the count.
- **unexplained re-runs**: an attempt followed by another start with no kill or stop of its worker between them
  (also counted: how many of them happened while another worker was stopped).
- **lost tasks**: not done in the store at the end (must be 0).
- **stale writes accepted**: a done task whose newest attempt was still running (or never ended) when the
  completion was written: an older attempt's late completion won (must be 0). For taskstore also: the
  result's attempt number (the handler returns it) is not the newest attempt's.
- **runs of done tasks**: attempts that started after their task's completion had been written (a worker
  that claimed the task just before a SIGSTOP starting it after the SIGCONT, say); not counted as recoveries.
- **stopped attempts that finished**: attempts of a stopped worker that ended by themselves after SIGCONT and
  were not run again (a stop shorter than what recovery takes is no loss).

Clocks: handlers and the driver use this machine's wall clock; taskstore's times are its store's clock (the
SQLite worker's process clock, PostgreSQL's ``now()``) on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
RESULTS = HERE / "results"
sys.path.insert(0, str(PEERS))  # _recovery_log.ENV

from _recovery_log import ENV as LOG_ENV  # noqa: E402

from bench.systems import SYSTEMS, System  # noqa: E402

MODES = ("kill", "stop")
LOADS = ("backlog", "paced")
PACED_RATE = 24.0  # tasks/s: half of what 3 workers x 4 slots of 250 ms on average can run, so no backlog forms


@dataclass(frozen=True)
class Params:
    tasks: int = 2_000
    max_duration: float = 0.5
    seed: int = 17
    workers: int = 3
    concurrency: int = 4
    lease: float = 2.0
    kill_every: float = 2.0
    stop_every: float = 5.0
    stop_for: float = 6.0  # 3 leases
    cap: float = 170.0  # seconds from the first start: with start-up and teardown, under 3 minutes a run
    rate: float = 0.0  # tasks enqueued a second while the workers run; 0: all enqueued before (a backlog)
    sample_every: float = 0.25  # the peers' heartbeats


@dataclass
class Spec:
    """How one system runs in this scenario."""

    script: str  # bench/peers/recovery_<script>.py
    cli: str  # the worker's command line, in the system's venv
    args: Callable[[str, Params], list[str]]  # its arguments, given the store's URL
    settings: str  # what the report says it was given
    heartbeat_sql: str | None = None  # (job id, heartbeat) of running jobs: the peers' lease, sampled


def taskstore_args(url: str, p: Params) -> list[str]:
    app = "recovery_taskstore:app"
    return ["worker", app, "--url", url, "--queue", "recovery", "--concurrency", str(p.concurrency)]


def pgqueuer_args(url: str, p: Params) -> list[str]:
    batch = max(1, p.concurrency // 2)  # pgqueuer refuses a cap below twice the batch
    return [
        "run", "recovery_pgqueuer:create", "--heartbeat-timeout", f"{p.lease:g}",
        "--max-concurrent-tasks", str(p.concurrency), "--batch-size", str(batch),
    ]  # fmt: skip


def procrastinate_args(url: str, p: Params) -> list[str]:
    return ["--app=recovery_procrastinate.app", "worker", "--queues", "recovery", "--concurrency", str(p.concurrency)]


TASKSTORE = Spec(
    "taskstore",
    "taskstore",
    taskstore_args,
    "taskstore worker recovery_taskstore:app --queue recovery --concurrency 4 (CLI defaults otherwise: "
    "reaper every 5 s in each worker, prefetch 0, log level info); lease: the task's processing_timeout=2 "
    "(@app.task and NewTask), renewed by the worker every lease/3; default retry policy and 10 attempts",
)
SPECS: dict[str, Spec] = {
    "taskstore-sqlite": TASKSTORE,
    "taskstore-postgres": TASKSTORE,
    "pgqueuer": Spec(
        "pgqueuer",
        "pgq",
        pgqueuer_args,
        "pgq run recovery_pgqueuer:create --heartbeat-timeout 2 --max-concurrent-tasks 4 --batch-size 2 "
        "(docs/guides/heartbeat.md: stale picked jobs are re-picked by the next dequeue, heartbeats every "
        "timeout/2; CLI defaults otherwise: --dequeue-timeout 30)",
        "SELECT id, heartbeat FROM pgqueuer WHERE status = 'picked' AND entrypoint = 'work'",
    ),
    "procrastinate": Spec(
        "procrastinate",
        "procrastinate",
        procrastinate_args,
        "procrastinate --app=recovery_procrastinate.app worker --queues recovery --concurrency 4; "
        "docs/howto/production/retry_stalled_jobs.md's periodic task (get_stalled_jobs + retry_job) every second "
        "with seconds_since_heartbeat=2, worker_defaults update_heartbeat_interval=0.667 s and "
        "stalled_worker_timeout=2 s (the page's example: every 10 minutes, 30 s)",
        "SELECT j.id, w.last_heartbeat FROM procrastinate_jobs j JOIN procrastinate_workers w ON w.id = j.worker_id "
        "WHERE j.status = 'doing' AND j.task_name = 'work'",
    ),
}


def durations(p: Params) -> list[float]:
    rng = random.Random(p.seed)
    return [round(rng.uniform(0.0, p.max_duration), 4) for _ in range(p.tasks)]


# -- the workers ----------------------------------------------------------------------------------------------


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    started: float
    stopped_until: float | None = None  # SIGCONT is due then
    last_stopped: float = 0.0

    @property
    def pgid(self) -> int:
        return self.proc.pid  # its own session: the group's id is its pid


@dataclass
class Fleet:
    """The run's workers: started in sessions of their own so a signal reaches whatever they fork."""

    cmd: list[str]
    env: dict[str, str]
    log: Path
    workers: list[Worker] = field(default_factory=list)
    gone: list[Worker] = field(default_factory=list)
    signals: list[tuple[int, str, float]] = field(default_factory=list)  # (pgid, SIGKILL|SIGSTOP|SIGCONT, time)

    def start(self) -> None:
        self.workers.append(Worker(spawn(self.cmd, self.env, self.log), time.time()))

    def send(self, worker: Worker, sig: signal.Signals) -> None:
        self.signals.append((worker.pgid, sig.name, time.time()))  # before the signal: its effect follows
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pgid, sig)

    def kill_oldest(self) -> None:
        worker = self.workers.pop(0)
        self.send(worker, signal.SIGKILL)
        worker.proc.wait()
        self.gone.append(worker)
        self.start()  # at once: 3 keep running

    def stop_oldest(self, stop_for: float) -> None:
        # In turn: the running worker stopped longest ago (or never), so each of the 3 gets its share.
        running = [w for w in self.workers if w.stopped_until is None]
        if running:
            worker = min(running, key=lambda w: w.last_stopped)
            self.send(worker, signal.SIGSTOP)
            worker.last_stopped = time.time()
            worker.stopped_until = worker.last_stopped + stop_for

    def resume_due(self, now: float) -> None:
        for worker in self.workers:
            if worker.stopped_until is not None and worker.stopped_until <= now:
                self.send(worker, signal.SIGCONT)
                worker.stopped_until = None

    def dead(self) -> list[str]:
        """Workers that exited by themselves (a bad flag, an import error): the run cannot go on without them."""
        out = []
        for worker in self.workers:
            if worker.proc.poll() is not None:
                out.append(f"worker {worker.pgid} exited {worker.proc.returncode}")
        return out

    def close(self) -> None:
        """Every worker ends: resumed, asked to stop, and killed with its whole group if it has not in 10 s."""
        everyone = self.workers + self.gone
        for worker in self.workers:
            if worker.stopped_until is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pgid, signal.SIGCONT)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pgid, signal.SIGTERM)
        deadline = time.time() + 10
        for worker in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(max(0.1, deadline - time.time()))
        for worker in everyone:  # a group's other processes too, whether or not its leader is gone
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(5)

    def tail(self) -> str:
        return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-5:])


# -- what the store says ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    done: set[int]  # tasks done in the store
    completed_at: dict[int, float]  # when each done task's completion was written (unix time)
    states: dict[str, int]  # tasks by state, for the report
    expiry: dict[tuple[int, int], float] = field(default_factory=dict)  # taskstore: (task, attempt) -> times_out_at
    result_attempt: dict[int, int] = field(default_factory=dict)  # taskstore: the attempt the result came from


class Store:
    """Reads one system's store from the driver's process (the harness's venv: taskstore and psycopg)."""

    def __init__(self, key: str, url: str) -> None:
        self.key = key
        self.url = url
        self.ts: Any = None
        self.pg: Any = None

    async def open(self) -> None:
        if self.key.startswith("taskstore"):
            import taskstore

            self.ts = await taskstore.open(self.url).__aenter__()
        else:
            import psycopg

            self.pg = await psycopg.AsyncConnection.connect(self.url, autocommit=True)

    async def close(self) -> None:
        if self.ts is not None:
            await self.ts.__aexit__(None, None, None)
        if self.pg is not None:
            await self.pg.close()

    async def done_count(self) -> int:
        if self.ts is not None:
            from taskstore import State

            return await self.ts.count(state=State.DONE, queue="recovery")
        if self.key == "pgqueuer":
            # A finished job leaves the queue table; 'work' rows still there are not done.
            sql = "SELECT count(DISTINCT job_id) FROM pgqueuer_log WHERE status = 'successful' AND entrypoint = 'work'"
        else:
            sql = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'work' AND status = 'succeeded'"
        cur = await self.pg.execute(sql)
        return int((await cur.fetchone())[0])

    async def heartbeats(self, sql: str) -> list[tuple[Any, float]]:
        cur = await self.pg.execute(sql)
        return [(str(job), hb.timestamp()) for job, hb in await cur.fetchall()]

    async def outcome(self, n: int) -> Outcome:
        if self.ts is not None:
            return await self.taskstore_outcome()
        if self.key == "pgqueuer":
            return await self.pgqueuer_outcome(n)
        return await self.procrastinate_outcome()

    async def taskstore_outcome(self) -> Outcome:
        from taskstore import State

        out = Outcome(set(), {}, {})
        cursor = None
        while True:
            page = await self.ts.list(queue="recovery", cursor=cursor, limit=500)
            for task in page.items:
                i = int(task.id[1:])
                out.states[task.state.value] = out.states.get(task.state.value, 0) + 1
                if task.state is State.DONE:
                    out.done.add(i)
                    if task.finished_at is not None:
                        out.completed_at[i] = task.finished_at.timestamp()
                    if task.result is not None and isinstance(task.result.value, dict):
                        out.result_attempt[i] = int(task.result.value["attempt"])
                for entry in task.failures:
                    if entry.failure.type == "timed_out":
                        m = re.search(r"timed out at (\S+)$", entry.failure.message)
                        if m:
                            out.expiry[(i, entry.attempt)] = datetime.datetime.fromisoformat(m.group(1)).timestamp()
            cursor = page.next_cursor
            if cursor is None:
                return out

    async def pgqueuer_outcome(self, n: int) -> Outcome:
        # The job's number is in its payload; a done job's row is gone, so its number comes from the handler's
        # log (job id -> task), given afterwards by ``analyse``. Here: by job id.
        out = Outcome(set(), {}, {})
        cur = await self.pg.execute(
            "SELECT job_id, min(created) FROM pgqueuer_log WHERE status = 'successful' AND entrypoint = 'work' "
            "GROUP BY job_id"
        )
        for job, at in await cur.fetchall():
            out.completed_at[-int(job)] = at.timestamp()  # negative: a job id, mapped to its task later
        cur = await self.pg.execute("SELECT status, count(*) FROM pgqueuer WHERE entrypoint = 'work' GROUP BY status")
        for status, count in await cur.fetchall():
            out.states[str(status)] = int(count)
        out.states["done"] = len(out.completed_at)
        return out

    async def procrastinate_outcome(self) -> Outcome:
        out = Outcome(set(), {}, {})
        cur = await self.pg.execute(
            "SELECT j.id, (j.args->>'n')::int, j.status, min(e.at) FROM procrastinate_jobs j "
            "LEFT JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'succeeded' "
            "WHERE j.task_name = 'work' GROUP BY j.id"
        )
        for _job, i, status, at in await cur.fetchall():
            out.states[str(status)] = out.states.get(str(status), 0) + 1
            if status == "succeeded":
                out.done.add(i)
                if at is not None:
                    out.completed_at[i] = at.timestamp()
        return out


# -- one run ---------------------------------------------------------------------------------------------------


def python_of(system: System) -> str:
    return system.python


def cli_of(system: System, spec: Spec) -> str:
    return str(Path(python_of(system)).parent / spec.cli)


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A process in a session of its own (so its whole group can be signalled), its output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=PEERS, env=env, stdout=out, stderr=out, start_new_session=True)


async def run_one(system: System, url: str, mode: str, p: Params) -> dict[str, Any]:
    spec = SPECS[system.key]
    work = tempfile.TemporaryDirectory(prefix="bench-recovery-")
    log = Path(work.name) / "handlers.log"
    log.touch()
    env = {
        **os.environ,
        LOG_ENV: str(log),
        "BENCH_URL": url,
        "BENCH_RECOVERY_LEASE": f"{p.lease:g}",
        "PYTHONPATH": str(PEERS),
    }
    ds = durations(p)
    script = [python_of(system), str(PEERS / f"recovery_{spec.script}.py"), "enqueue", url]
    # A backlog: every task enqueued before the workers start. Paced: the schema only, and a producer process
    # enqueues the tasks at ``p.rate`` while the workers run.
    first = {"durations": [] if p.rate else ds, "install": True}
    enqueue = await asyncio.to_thread(
        subprocess.run, [*script, json.dumps(first)], cwd=PEERS, env=env, capture_output=True, text=True, timeout=300
    )
    if enqueue.returncode != 0:
        return {"error": "enqueue failed: " + " | ".join(enqueue.stderr.strip().splitlines()[-3:])}
    producer: subprocess.Popen[bytes] | None = None
    store = Store(system.key, url)
    await store.open()
    fleet = Fleet([cli_of(system, spec), *spec.args(url, p)], env, Path(work.name) / "workers.log")
    samples: dict[str, set[float]] = {}
    error = None
    try:
        for _ in range(p.workers):
            fleet.start()
        if p.rate:
            paced = json.dumps({"durations": ds, "rate": p.rate, "install": False})
            producer = spawn([*script, paced], env, Path(work.name) / "producer.log")
        # The chaos starts with the work: a worker's start-up (imports, connections) is not what is measured.
        deadline = time.time() + 60
        while log.stat().st_size == 0:
            if fleet.dead() or time.time() > deadline:
                raise RuntimeError(f"no task started: {'; '.join(fleet.dead())} {fleet.tail()}")
            await asyncio.sleep(0.05)
        t0 = time.time()
        next_signal = t0 + (p.kill_every if mode == "kill" else p.stop_every)
        next_poll = next_sample = t0
        done = 0
        while time.time() < t0 + p.cap:
            now = time.time()
            fleet.resume_due(now)
            if now >= next_signal:
                if mode == "kill":
                    fleet.kill_oldest()
                    next_signal += p.kill_every
                else:
                    fleet.stop_oldest(p.stop_for)
                    next_signal += p.stop_every
            if spec.heartbeat_sql and now >= next_sample:
                for job, hb in await store.heartbeats(spec.heartbeat_sql):
                    samples.setdefault(job, set()).add(hb)
                next_sample = now + p.sample_every
            if now >= next_poll:
                done = await store.done_count()
                if done >= p.tasks:
                    break
                if fleet.dead():
                    raise RuntimeError(f"{'; '.join(fleet.dead())}: {fleet.tail()}")
                next_poll = now + 0.5
            await asyncio.sleep(0.05)
        elapsed = time.time() - t0
    except RuntimeError as exc:
        error = str(exc)
        elapsed = 0.0
    finally:
        fleet.close()
        if producer is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(producer.pid, signal.SIGKILL)
            producer.wait()
    try:
        outcome = await store.outcome(p.tasks)
    finally:
        await store.close()
    result = analyse(log.read_text(), fleet.signals, outcome, samples, p)
    result.update(
        mode=mode,
        load=f"paced {p.rate:g}/s" if p.rate else "backlog",
        elapsed_s=round(elapsed, 1),
        capped=elapsed >= p.cap,
        workers_started=len(fleet.workers) + len(fleet.gone),
        settings=spec.settings,
    )
    result["signal_log"] = [[pgid, name, round(at, 3)] for pgid, name, at in fleet.signals]
    if error:
        result["error"] = error
    if os.environ.get("BENCH_RECOVERY_KEEP"):  # to look into a run's handler log and worker output afterwards
        keep = Path(os.environ["BENCH_RECOVERY_KEEP"]) / f"{system.key}-{mode}-{int(time.time())}"
        keep.mkdir(parents=True, exist_ok=True)
        for name in ("handlers.log", "workers.log", "producer.log"):
            with contextlib.suppress(FileNotFoundError):
                (keep / name).write_bytes((Path(work.name) / name).read_bytes())
        (keep / "outcome.json").write_text(json.dumps({k: repr(v) for k, v in outcome.__dict__.items()}))
    work.cleanup()
    return result


# -- the figures ----------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    task: int
    attempt: int
    pgid: int
    start: float
    job: str
    end: float | None = None


def parse(text: str) -> dict[int, list[Attempt]]:
    by_task: dict[int, list[Attempt]] = {}
    open_: dict[tuple[int, int, str], Attempt] = {}  # (task, pgid, job) -> its running attempt
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 6:
            continue  # a line cut by the end of a run (cannot happen with O_APPEND writes, but cheap to allow)
        kind, task, attempt, pgid, at, job = parts
        key = (int(task), int(pgid), job)
        if kind == "S":
            a = Attempt(int(task), int(attempt), int(pgid), float(at), job)
            by_task.setdefault(a.task, []).append(a)
            open_[key] = a
        elif key in open_:
            open_.pop(key).end = float(at)
    for attempts in by_task.values():
        attempts.sort(key=lambda a: a.start)
    return by_task


CLAIM_TO_START = 0.5  # seconds: a worker resumed by SIGCONT starts the handlers of what it had claimed within this


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50": round(nearest_rank(values, 0.5), 2),
        "p99": round(nearest_rank(values, 0.99), 2),
        "max": round(max(values), 2),
    }


def analyse(
    text: str,
    signals: list[tuple[int, str, float]],
    outcome: Outcome,
    samples: dict[str, set[float]],
    p: Params,
) -> dict[str, Any]:
    by_task = parse(text)
    # pgqueuer's completions are by job id (its done rows are gone): map them to tasks through the handlers' log.
    job_task = {a.job: a.task for attempts in by_task.values() for a in attempts}
    for key in [k for k in outcome.completed_at if k < 0]:
        at = outcome.completed_at.pop(key)
        task = job_task.get(str(-key))
        if task is not None:
            outcome.completed_at[task] = at
            outcome.done.add(task)
    hits: dict[int, list[float]] = {}  # pgid -> times it was killed or stopped
    stops: dict[int, list[tuple[float, float]]] = {}  # pgid -> (SIGSTOP, SIGCONT) intervals
    for pgid, name, at in signals:
        if name in ("SIGKILL", "SIGSTOP"):
            hits.setdefault(pgid, []).append(at)
        if name == "SIGSTOP":
            stops.setdefault(pgid, []).append((at, math.inf))
        elif name == "SIGCONT" and stops.get(pgid):
            stops[pgid][-1] = (stops[pgid][-1][0], at)
    to_start: list[float] = []
    expiry_to_start: list[float] = []
    no_expiry = 0
    unexplained: list[int] = []
    while_stopped = 0  # unexplained, while another worker was stopped (one holding SQLite's write lock, say)
    late_start = 0
    survived = 0
    for task, attempts in by_task.items():
        for i, a in enumerate(attempts):
            nxt = attempts[i + 1] if i + 1 < len(attempts) else None
            hit = [t for t in hits.get(a.pgid, []) if t >= a.start and (nxt is None or t <= nxt.start)]
            if nxt is None:
                # The newest attempt: hit while running, and it ended by itself after the signal (a stop).
                if hit and a.end is not None and a.end > hit[0]:
                    survived += 1
                continue
            completed = outcome.completed_at.get(task)
            if completed is not None and nxt.start > completed:
                # The next start came after the task's completion was written: not a recovery but a run of a
                # done task (a worker that had claimed it just before a stop, starting it after SIGCONT).
                continue
            if not hit:
                # Claimed just before a SIGSTOP, its handler started only after the SIGCONT (its lease having
                # run out meanwhile): the stop explains it, and the time counts from the stop.
                hit = [stop for stop, cont in stops.get(a.pgid, []) if stop <= a.start <= cont + CLAIM_TO_START]
                late_start += bool(hit)
            if not hit:
                unexplained.append(task)
                others = [s for iv in stops.values() for s in iv if s[0] <= nxt.start and s[1] >= a.start]
                while_stopped += bool(others)
                continue
            to_start.append(nxt.start - hit[0])
            expiry = lease_expiry(a, nxt, outcome, samples, p)
            if expiry is None:
                no_expiry += 1
            else:
                expiry_to_start.append(nxt.start - expiry)
    # When the last task to start for the first time did: from then on the queue held only re-runs. A re-run
    # started after it waited behind the backlog (a retry ordered after every task enqueued before it), not
    # only for its lease and the reaper.
    drained = max((attempts[0].start for attempts in by_task.values()), default=0.0)
    after_drain = sum(1 for attempts in by_task.values() for a in attempts[1:] if a.start >= drained)
    stale = []
    for task in outcome.done:
        attempts = by_task.get(task, [])
        if not attempts:
            continue
        newest = attempts[-1]
        completed = outcome.completed_at.get(task)
        # The newest attempt had started when the completion was written and was still running: the completion
        # was an older attempt's. (One that started after it is a run of a done task, counted apart.)
        late = (
            completed is not None
            and newest.start < completed
            and (newest.end is None or newest.end > completed + 0.001)
        )
        # The result must be the newest attempt's by number, not by start: a worker stopped just after it claimed
        # an attempt starts that older attempt after its SIGCONT, once the task is done (a run of a done task,
        # its completion refused), and that start is the last one in the log.
        latest = max((a.attempt for a in attempts if a.attempt), default=0)
        wrong = task in outcome.result_attempt and latest and outcome.result_attempt[task] != latest
        if late or wrong:
            stale.append(task)
    never = [i for i in range(p.tasks) if i not in by_task]
    lost = [i for i in range(p.tasks) if i not in outcome.done]
    return {
        "signal_to_start_s": summary(to_start),
        "expiry_to_start_s": summary(expiry_to_start),
        "lost_attempts": len(to_start),
        "reruns_after_backlog_drained": after_drain,
        "no_expiry_found": no_expiry,
        "started_after_sigcont": late_start,
        "unexplained_reruns": len(unexplained),
        "unexplained_while_another_stopped": while_stopped,
        "unexplained_examples": sorted(set(unexplained))[:10],
        "lost_tasks": len(lost),
        "lost_examples": lost[:10],
        "never_started": len(never),
        "stale_writes_accepted": len(stale),
        "stale_examples": sorted(stale)[:10],
        "stopped_attempts_finished": survived,
        "runs_after_done": sum(
            1
            for task, attempts in by_task.items()
            for a in attempts
            if task in outcome.completed_at and a.start > outcome.completed_at[task]
        ),
        "starts": sum(len(a) for a in by_task.values()),
        "states": outcome.states,
        "signals": {name: sum(1 for _, n, _ in signals if n == name) for name in ("SIGKILL", "SIGSTOP", "SIGCONT")},
    }


def lease_expiry(a: Attempt, nxt: Attempt, outcome: Outcome, samples: dict[str, set[float]], p: Params) -> float | None:
    """When attempt ``a``'s lease ran out: taskstore's recorded ``times_out_at``; for a peer, the newest heartbeat
    seen for the job that was already stale (older than the lease) when the next attempt started, plus the
    lease (a heartbeat written by the next attempt's pick is never that old)."""
    if (a.task, a.attempt) in outcome.expiry:
        return outcome.expiry[(a.task, a.attempt)]
    seen = [hb for hb in samples.get(a.job, ()) if hb + p.lease <= nxt.start]
    return max(seen) + p.lease if seen else None


# -- many runs, and the report ---------------------------------------------------------------------------------


def run_all(
    systems: list[System], backends: dict[str, Any], modes: list[str], loads: list[str], runs: int, p: Params
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Each (system, load, mode) ``runs`` times, one run at a time, the systems in turn within each round (so a
    burst of other work on the shared machine does not land on one system's runs only)."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for round_ in range(runs):
        for system in systems:
            if system.key not in SPECS:
                results.setdefault(system.key, {})["skipped"] = [{"skipped": "no recovery adapter (not compared)"}]
                continue
            backend = backends.get(system.backend)
            if backend is None:
                continue
            for load in loads:
                params = dataclasses.replace(p, rate=(p.rate or PACED_RATE) if load == "paced" else 0.0)
                for mode in modes:
                    url = backend.fresh(f"recovery-{system.key}-{mode}")
                    before = os.getloadavg()[0]
                    res = asyncio.run(run_one(system, url, mode, params))
                    res["run"] = round_ + 1
                    res["load_at_start"] = round(before, 2)
                    results.setdefault(system.key, {}).setdefault(f"{mode}, {load}", []).append(res)
                    print(
                        f"  {system.label} {mode}, {res.get('load', load)}, run {round_ + 1}: {line(res)}", flush=True
                    )
    return results


def fmt(s: dict[str, Any]) -> str:
    return "–" if not s.get("count") else f"{s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f} ({s['count']})"


def reruns(res: dict[str, Any]) -> str:
    n, during = res["unexplained_reruns"], res.get("unexplained_while_another_stopped", 0)
    return f"{n} ({during} while another worker was stopped)" if during else str(n)


def line(res: dict[str, Any]) -> str:
    if "skipped" in res:
        return res["skipped"]
    text = (
        f"signal->start {fmt(res['signal_to_start_s'])}; expiry->start {fmt(res['expiry_to_start_s'])}; "
        f"lost tasks {res['lost_tasks']}, unexplained re-runs {reruns(res)}, "
        f"stale writes {res['stale_writes_accepted']}; {res['elapsed_s']} s"
    )
    return text + (f"; ERROR {res['error']}" if "error" in res else "") + (" (capped)" if res.get("capped") else "")


def markdown(document: dict[str, Any]) -> str:
    info, results = document["info"], document["results"]
    p = info["params"]
    out = [
        f"# Recovery benchmark, {info['date']}",
        "",
        f"{info['machine']}; load at start {info['load_at_start']}, at end {info['load_at_end']}.",
        f"Code: {info['commit']}.",
        "",
        f"{p['tasks']:,} tasks of 0-{p['max_duration'] * 1000:.0f} ms (seed {p['seed']}), {p['workers']} workers "
        f"of concurrency {p['concurrency']}, lease {p['lease']:g} s. Mode kill: SIGKILL to the oldest worker every "
        f"{p['kill_every']:g} s, replaced at once. Mode stop: SIGSTOP to a running worker (in turn) every "
        f"{p['stop_every']:g} s, SIGCONT {p['stop_for']:g} s later. Load *backlog*: every task enqueued before "
        f"the workers start (what issue 17 describes); *paced*: enqueued {PACED_RATE:g} a second while they run "
        f"(about half of what the 12 slots can run, so no backlog forms). Cap {p['cap']:g} s a run.",
        "",
        "Times in seconds, p50 / p99 / max (count), nearest rank. *signal->start*: from the SIGKILL/SIGSTOP of the "
        "worker holding an attempt to the task's next start. *expiry->start*: from that attempt's lease expiry "
        "to the next start (taskstore: the timed-out failure's times_out_at; peers: last heartbeat seen + lease).",
        "",
        "| system | mode, load | run | signal->start | expiry->start | lost tasks | unexplained re-runs | stale writes "
        "accepted | runs of done tasks | stopped attempts that finished | run s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, modes in results.items():
        for mode, runs in modes.items():
            for res in runs:
                if "skipped" in res:
                    out.append(f"| {key} | – | – | {res['skipped']} | | | | | | | | |")
                    continue
                err = f" **{res['error']}**" if "error" in res else ""
                capped = " (capped)" if res.get("capped") else ""
                out.append(
                    f"| {key} | {mode} | {res['run']} | {fmt(res['signal_to_start_s'])} | "
                    f"{fmt(res['expiry_to_start_s'])} | {res['lost_tasks']} | {reruns(res)} | "
                    f"{res['stale_writes_accepted']} | {res.get('runs_after_done', '–')} | "
                    f"{res['stopped_attempts_finished']} | "
                    f"{res['elapsed_s']}{capped}{err} | {res['load_at_start']} |"
                )
    out += ["", "What each system was given:", ""]
    for key in results:
        if key in SPECS:
            out.append(f"- **{key}**: {SPECS[key].settings}")
    out.append("")
    return "\n".join(out)


def write(document: dict[str, Any], stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(document, indent=1) + "\n")
    Path(f"{stem}.md").write_text(markdown(document))


def machine() -> str:
    from bench.harness import machine as describe

    m = describe()
    return f"{m['host']}: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}"


def commit() -> str:
    git = ["git", "-C", str(HERE.parent), "log", "-1", "--format=%h %s"]
    return subprocess.run(git, capture_output=True, text=True).stdout.strip()[:100]


def run(
    systems: list[System], modes: list[str], runs: int, p: Params, stem: Path | None, loads: list[str] | None = None
) -> Path:
    from bench.servers import open_backends
    from bench.systems import prepare

    prepare([s for s in systems if s.key in SPECS])  # the peers' venvs, made once

    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "commit": commit(),
        "params": p.__dict__,
        "modes": modes,
        "loads": loads or list(LOADS),
        "runs": runs,
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    with open_backends({s.backend for s in systems if s.key in SPECS}) as (backends, missing):
        info["missing"] = missing
        results = run_all(systems, backends, modes, loads or list(LOADS), runs, p)
    info["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    stem = stem or RESULTS / f"recovery-{datetime.date.today().isoformat()}"
    document = {"info": info, "results": results}
    write(document, stem)
    print(markdown(document))
    return stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(SPECS), help="comma-separated keys")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--loads", default=",".join(LOADS), help="backlog (all enqueued first), paced, or both")
    parser.add_argument("--runs", type=int, default=2, help="each (system, mode, load) this many times")
    parser.add_argument("--tasks", type=int, default=Params.tasks)
    parser.add_argument("--cap", type=float, default=Params.cap)
    parser.add_argument("--out", type=Path, default=None, help="file stem for .md/.json")
    opts = parser.parse_args()
    keys = [k.strip() for k in opts.systems.split(",") if k.strip()]
    systems = [s for s in SYSTEMS if s.key in keys]
    modes = [m.strip() for m in opts.modes.split(",") if m.strip()]
    if set(modes) - set(MODES):
        parser.error(f"modes: {', '.join(MODES)}")
    loads = [x.strip() for x in opts.loads.split(",") if x.strip()]
    if set(loads) - set(LOADS):
        parser.error(f"loads: {', '.join(LOADS)}")
    run(systems, modes, opts.runs, Params(tasks=opts.tasks, cap=opts.cap), opts.out, loads)


if __name__ == "__main__":
    main()
