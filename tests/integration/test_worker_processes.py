"""Real worker processes on one SQLite file: crashes, stalls, signals and schedules.

These start ``taskstore worker`` as subprocesses and act on them with signals, the way an
operator or a crash would. Nothing here measures speed; every wait is bounded and polls state.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import taskstore
from taskstore import State

from .workload import slow, slow_sync, step

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Workers:
    """Starts and tracks worker processes; kills whatever is left at the end of a test.

    Their output goes to files, not pipes: a pipe nobody reads fills up (64 KiB) under a busy log and
    blocks the worker in a write, with a transaction open, until the test gives up on it.
    """

    def __init__(self, url: str, log: Path, target: str = "tests.integration.workload:app") -> None:
        self.url = url
        self.log = log
        self.target = target  # the App the workers run, as MODULE:APP
        self.procs: list[subprocess.Popen[str]] = []
        self._stderr: dict[int, Path] = {}

    def start(
        self,
        *queues: str,
        concurrency: int = 10,
        grace: str = "30s",
        env: dict[str, str] | None = None,
        worker_id: str | None = None,
    ) -> subprocess.Popen[str]:
        args = [
            sys.executable,
            "-m",
            "taskstore",
            "worker",
            self.target,
            "--url",
            self.url,
            "--concurrency",
            str(concurrency),
            "--grace",
            grace,
            "--reap-every",
            "0.5s",
            "--log-level",
            "info",
        ]
        for q in queues:
            args += ["--queue", q]
        if worker_id:
            args += ["--worker-id", worker_id]
        err_path = self.log.with_name(f"{self.log.stem}.worker{len(self.procs)}.err")
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                args,
                cwd=ROOT,
                text=True,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "WORKLOAD_LOG": str(self.log), **(env or {})},
            )
        self.procs.append(proc)
        self._stderr[proc.pid] = err_path
        return proc

    def stderr(self, proc: subprocess.Popen[str]) -> str:
        """What the worker wrote to stderr so far (all of it once it has exited)."""
        return self._stderr[proc.pid].read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with_signal(proc, signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def executions(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


def with_signal(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)


def stop_outside_a_write(proc: subprocess.Popen[str], url: str) -> None:
    """SIGSTOP ``proc`` at a moment it holds no SQLite write lock.

    A process stopped inside a write transaction keeps the file's write lock until it runs again, and every
    other writer waits for it (SQLite's locks belong to the process). A worker writes several times a second
    (lease renewals, reaps), so a stop lands inside one now and then: then it is let go and stopped again.
    PostgreSQL needs none of this: the server finishes a statement whose client stopped.
    """
    if not url.startswith("sqlite:///"):
        proc.send_signal(signal.SIGSTOP)
        return
    probe = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.2, isolation_level=None)
    try:
        for _ in range(100):
            proc.send_signal(signal.SIGSTOP)
            try:
                probe.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # locked: the stop came inside a write
                proc.send_signal(signal.SIGCONT)
                time.sleep(0.01)
                continue
            probe.execute("ROLLBACK")
            return
        raise AssertionError("the worker held the write lock at every one of 100 stops")
    finally:
        probe.close()


@pytest.fixture
def workers(url: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(url, tmp_path / "executions.jsonl")
    yield pool
    pool.stop_all()


async def wait_until(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_worker_killed_mid_run_loses_nothing(url: str, workers: Workers) -> None:
    # Three workers on SQLite (one machine); eight on PostgreSQL (as across machines).
    pool = 8 if url.startswith("postgresql") else 3

    async def scenario() -> None:
        async with taskstore.open(url) as store:
            news = [step.options(id=f"s{i}").new_task(i, doomed=(i % 97 == 0)) for i in range(2000)]
            await store.create_many(news)
            victim = workers.start("work", concurrency=20)

            async def victim_working() -> bool:
                return any(r["pid"] == victim.pid for r in workers.executions())

            # The others start once the victim runs: under CPU load a worker takes seconds to start,
            # and the others could otherwise finish a third of the tasks before it ran any.
            await wait_until(victim_working, 60, "the first worker to run a task")
            for _ in range(pool - 1):
                workers.start("work", concurrency=20)

            async def a_third_done() -> bool:
                return await store.count(state=State.DONE) >= 600

            await wait_until(a_third_done, 60, "a third of the tasks to finish")
            victim.kill()  # SIGKILL: no chance to release or complete anything
            victim.wait()
            workers.start("work", concurrency=20)

            async def all_finished() -> bool:
                return await store.count(state=State.DONE) + await store.count(state=State.DEAD) == 2000

            await wait_until(all_finished, 120, "every task to finish")
            tasks = {t.id: t for t in (await store.list(limit=5000)).items}
        workers.stop_all()
        assert len(tasks) == 2000
        runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in workers.executions():
            runs[line["id"]].append(line)
        for i in range(2000):
            task, seen = tasks[f"s{i}"], runs[f"s{i}"]
            doomed = i % 97 == 0
            assert task.state is (State.DEAD if doomed else State.DONE), task
            assert task.attempts <= task.max_attempts
            assert len(seen) <= task.attempts, (task, seen)
            if not doomed:
                # More than one run only when an earlier run's lease expired: it was the killed worker's.
                assert all(r["pid"] == victim.pid for r in seen[:-1]), seen
                assert task.result is not None
                assert task.result.value["pid"] == seen[-1]["pid"]
                assert task.result.value["pid"] != victim.pid or len(seen) == 1
        assert any(r["pid"] == victim.pid for r in workers.executions())

    run(scenario())


@pytest.mark.parametrize("handler", [slow, slow_sync], ids=["async", "sync"])
def test_a_stalled_worker_cannot_overwrite_the_result(url: str, workers: Workers, handler: Any) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            (task,) = await store.create_many([handler.options(id="stall").new_task(2.5)])
            stalled = workers.start("slow", concurrency=1, worker_id="stalled")

            async def claimed() -> bool:
                return (await store.get(task.id)).state is State.CLAIMED

            await wait_until(claimed, 30, "the first worker to claim the task")
            stop_outside_a_write(stalled, url)  # it can neither run nor renew its 1 s lease
            await asyncio.sleep(1.5)
            assert await store.reap() == 1
            rescuer = workers.start("slow", concurrency=1, worker_id="rescuer")

            async def claimed_by_rescuer() -> bool:
                t = await store.get(task.id)
                return t.claim is not None and t.claim.worker_id == "rescuer"

            await wait_until(claimed_by_rescuer, 30, "the second worker to take the task over")
            stalled.send_signal(signal.SIGCONT)  # wakes up believing it still holds the task

            async def done() -> bool:
                return (await store.get(task.id)).state is State.DONE

            await wait_until(done, 30, "the task to be done")
            await asyncio.sleep(3.0)  # time for the stalled worker's late outcome, which must be refused
            final = await store.get(task.id)
        workers.stop_all()
        stalled_err = workers.stderr(stalled)
        assert final.result is not None
        assert final.result.value == {"pid": rescuer.pid}
        assert final.attempts == 2
        assert "lease lost" in stalled_err or "completion refused" in stalled_err, stalled_err

    run(scenario())


def test_sigterm_finishes_running_tasks_and_exits_zero(url: str, workers: Workers) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            await store.create_many([slow.options(id=f"t{i}").new_task(0.6) for i in range(12)])
            proc = workers.start("slow", concurrency=3, grace="10s")

            async def running() -> bool:
                return await store.count(state=State.CLAIMED) == 3

            await wait_until(running, 30, "three running tasks")
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
            err = workers.stderr(proc)
            elapsed = time.monotonic() - start
            assert proc.returncode == 0, err
            assert elapsed < 10
            counts = {s: await store.count(state=s) for s in State}
            assert counts[State.CLAIMED] == 0
            assert counts[State.DONE] >= 3
            assert counts[State.DONE] + counts[State.QUEUED] == 12

    run(scenario())


def test_sigterm_past_the_grace_releases_unfinished_tasks(url: str, workers: Workers) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            await store.create_many([slow.options(id=f"t{i}").new_task(30.0) for i in range(4)])
            proc = workers.start("slow", concurrency=4, grace="1s")

            async def running() -> bool:
                return await store.count(state=State.CLAIMED) == 4

            await wait_until(running, 30, "four running tasks")
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
            assert proc.returncode == 0
            assert time.monotonic() - start < 6
            released = await store.claim("next-worker", ["slow"], limit=10)  # claimable at once
            assert len(released) == 4
            assert all(t.attempts == 1 for t in released)  # the release spent no attempt

    run(scenario())


def test_a_second_signal_stops_at_once(url: str, workers: Workers) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            await store.create_many([slow.options(id=f"t{i}").new_task(30.0) for i in range(2)])
            proc = workers.start("slow", concurrency=2, grace="60s")

            async def running() -> bool:
                return await store.count(state=State.CLAIMED) == 2

            await wait_until(running, 30, "two running tasks")
            start = time.monotonic()
            proc.send_signal(signal.SIGINT)
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=15)
            assert time.monotonic() - start < 10
            assert await store.count(state=State.QUEUED) == 2

    run(scenario())


def test_recurring_with_three_workers_fires_once_per_slot(url: str, workers: Workers) -> None:
    async def scenario() -> None:
        env = {"WORKLOAD_RECURRING": "1"}
        for _ in range(3):
            workers.start("cron", concurrency=2, env=env)

        async def some_slots_ran() -> bool:
            return len({r["id"] for r in workers.executions() if r["kind"] == "tick"}) >= 4

        # Counted from the first tick, not from the start: under CPU load workers take seconds to start.
        await wait_until(some_slots_ran, 60, "four ticks")
        workers.stop_all()
        async with taskstore.open(url) as store:
            ticks = [t for t in (await store.list(limit=1000)).items if t.recurring_id == "tick-every-second"]
        slots = Counter(t.run_at for t in ticks)
        assert len(slots) >= 4, slots
        assert all(n == 1 for n in slots.values()), slots
        ran = Counter(r["id"] for r in workers.executions() if r["kind"] == "tick")
        assert all(n == 1 for n in ran.values()), ran
        assert all(t.state is State.DONE for t in ticks if t.id in ran)

    run(scenario())
