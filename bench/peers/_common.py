"""The scenario runner every system's script shares; each script supplies only an adapter for its system.

A script runs one scenario against one fresh database and prints one JSON object on its last line:

    python <system>_bench.py SCENARIO URL '{"n": 10000, ...}'

Scenarios: ``enqueue`` (timed bulk enqueue of no-op tasks), ``enqueue_unique`` (the same, each task with a
distinct deduplication key), ``fill`` (untimed bulk enqueue of one kind), ``work`` (run the system's real worker
until ``n`` handlers have finished or ``cap`` seconds pass), ``latency`` (a worker here, a producer process
enqueuing one task at a time on an open-loop schedule) and ``produce`` (that producer). Scripts import nothing
from the harness, so each peer runs in its own venv with only its own packages and psutil.

Three handler kinds exist in every system: ``noop`` (returns), ``sleep`` (sleeps 1 ms: ``asyncio.sleep`` in
async systems, ``time.sleep`` in thread or process workers) and ``timed`` (its payload is the wall-clock time
the task was scheduled to be enqueued; the handler records how late it started). Two more kinds are for flow
control: ``keyed`` (no-op tasks spread over ``KEYS`` concurrency keys, no limit) and ``limited`` (the same tasks,
each key limited to one running at a time with the system's per-key feature); their handler yields to the event
loop once between its start and its end, so two tasks of one key running at once would be seen overlapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _spans
import psutil

CHUNK = 10_000  # bulk enqueues go in calls of this many, for every system
KEYS = 1_000  # concurrency keys the keyed and limited drains spread their tasks over


def key_of(i: int) -> int:
    """The key of task ``i``: scattered (a multiplicative hash), the same for every system and every run."""
    return (i * 2654435761 + 12345) % 2**32 % KEYS


def unique_key_of(i: int) -> str:
    return f"job-{i}"


class Counter:
    """What handlers report to. In-process by default; a system whose workers are processes supplies its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done = 0
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.delays: list[float] = []
        self.spans: list[tuple[int, float, float]] = []  # keyed kinds: (key, start, end) of each task
        self.running: dict[int, int] = {}
        self.overlaps_seen = 0  # a task started while another of its key was running in this process

    def start(self) -> None:
        if self.first_start is None:
            with self._lock:
                if self.first_start is None:
                    self.first_start = time.perf_counter()

    def finish(self) -> None:
        with self._lock:
            self.done += 1
            self.last_end = time.perf_counter()

    def timed(self, scheduled: float) -> None:
        delay = time.time() - scheduled
        with self._lock:
            self.delays.append(delay)
            self.done += 1

    def key_started(self, key: int) -> float:
        self.start()
        with self._lock:
            running = self.running.get(key, 0) + 1
            self.running[key] = running
            if running > 1:
                self.overlaps_seen += 1
        return time.perf_counter()

    def key_finished(self, key: int, started: float) -> None:
        ended = time.perf_counter()
        with self._lock:
            self.running[key] -= 1
            self.spans.append((key, started, ended))
            self.done += 1
            self.last_end = ended

    # A process-based counter overrides these to read what its worker processes wrote.
    def read(self) -> tuple[int, float | None, float | None, list[float]]:
        return self.done, self.first_start, self.last_end, self.delays

    def read_spans(self) -> tuple[list[tuple[int, float, float]], int]:
        return list(self.spans), self.overlaps_seen

    def read_delays(self) -> list[float]:
        """How late each timed task started (read once, at the end of a latency run)."""
        return self.read()[3]


COUNTER = Counter()


class SpanCounter(Counter):
    """What a worker process's handlers wrote to a memory-mapped file (_spans.py)."""

    def __init__(self, spans: _spans.Spans) -> None:
        super().__init__()
        self.spans_file = spans

    def read(self) -> tuple[int, float | None, float | None, list[float]]:
        # Called every few milliseconds while a drain runs: the header only (scanning the records here took a
        # core of the 2-core machine away from the worker being timed).
        done, first, last, _ = self.spans_file.header()
        return done, first, last, []

    def read_delays(self) -> list[float]:
        return self.spans_file.delays()

    def read_spans(self) -> tuple[list[tuple[int, float, float]], int]:
        return self.spans_file.records(), self.spans_file.header()[3]


class WorkerProcess:
    """A system's worker run through its own command line, as its users run it, in a process of its own.

    Its handlers report through a memory-mapped file named by ``$BENCH_SPANS`` (``counter`` reads it); its output
    goes to a file whose last lines are shown if it exits badly. SIGTERM stops it (every CLI here takes SIGTERM as
    a graceful shutdown).
    """

    def __init__(self, cmd: list[str], cwd: str, env: dict[str, str] | None = None) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="bench-worker-")
        path = Path(self.dir.name) / "spans"
        _spans.create(path, capacity=1_000_000)
        self.counter = SpanCounter(_spans.Spans(path))
        self.log_path = Path(self.dir.name) / "worker.log"
        self.log = self.log_path.open("wb")
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env={**os.environ, **(env or {}), _spans.ENV: str(path)}, stdout=self.log, stderr=self.log
        )

    def check(self) -> None:
        """Raise if the worker has already exited (a bad flag, an import error): no need to wait for the cap."""
        if self.proc.poll() is not None:
            raise SystemExit(f"{self.cmd[0]} exited {self.proc.returncode}: {self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-5:])

    async def stop(self, ok_codes: tuple[int, ...] = (0,)) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(self.proc.wait, 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise SystemExit(f"{self.cmd[0]} did not stop within 60 s of SIGTERM: {self.tail()}") from None
        finally:
            self.log.close()
        if code not in ok_codes:
            raise SystemExit(f"{self.cmd[0]} exited {code}: {self.tail()}")


def noop_handler(payload: float) -> None:
    COUNTER.start()
    COUNTER.finish()


def sleep_handler_sync(payload: float) -> None:
    COUNTER.start()
    time.sleep(0.001)
    COUNTER.finish()


async def sleep_handler_async(payload: float) -> None:
    COUNTER.start()
    await asyncio.sleep(0.001)
    COUNTER.finish()


def timed_handler(payload: float) -> None:
    COUNTER.timed(payload)


async def keyed_handler(key: int) -> None:
    started = COUNTER.key_started(key)
    await asyncio.sleep(0)  # one turn of the loop: another task of this key running now would start here
    COUNTER.key_finished(key, started)


def overlaps(spans: list[tuple[int, float, float]]) -> int:
    """How many tasks started before the previous task of their key had ended (by handler timestamps)."""
    by_key: dict[int, list[tuple[float, float]]] = {}
    for key, start, end in spans:
        by_key.setdefault(key, []).append((start, end))
    count = 0
    for runs in by_key.values():
        runs.sort()
        latest_end = float("-inf")
        for start, end in runs:
            if start < latest_end:
                count += 1
            latest_end = max(latest_end, end)
    return count


class Adapter:
    """One system. Methods are async; a sync system wraps its calls in ``asyncio.to_thread``."""

    counter: Counter = COUNTER
    drain_concurrency = 100  # the worker's concurrency for the no-op drains, where a scenario leaves it open
    max_concurrency: int | None = None  # a system whose workers are processes draws a line here
    work_kind = ""  # the kind a ``work`` run drains, set before start_worker; each scenario has a fresh adapter

    def settings(self, concurrency: int) -> str:
        raise NotImplementedError

    async def open(self, url: str, install: bool) -> None:
        raise NotImplementedError

    async def enqueue_bulk(self, kind: str, payloads: list[float]) -> None:
        """The fastest documented way to enqueue many tasks at once."""
        raise NotImplementedError

    async def enqueue_one(self, kind: str, payload: float) -> None:
        raise NotImplementedError

    # Flow control. A system without the feature leaves its ``*_api`` None and its scenario is skipped with
    # ``*_missing`` as the reason.
    unique_api: str | None = None  # how enqueue_bulk_unique deduplicates, for the report
    unique_missing = "no deduplication on enqueue"
    limit_api: str | None = None  # how the limited kind is limited, for the report
    limit_missing = "no per-key concurrency limit"

    async def enqueue_bulk_unique(self, payloads: list[float]) -> None:
        """No-op tasks, each with the deduplication key ``unique_key_of(int(p))``, the fastest documented way."""
        raise NotImplementedError

    async def start_worker(self, concurrency: int) -> None:
        raise NotImplementedError

    def alive(self) -> None:
        """Raise if the worker has died (a worker process that exited); a worker in this process cannot."""
        return None

    def worker_cpu(self) -> float:
        """CPU seconds the worker has used so far: this process's and its children's (a worker in this process)."""
        return cpu_seconds()

    async def worker_ready(self) -> None:
        """Wait until the worker is taking tasks. A worker in this process is at once (half a second's grace); a
        worker process (see ``probe_ready``) needs its start-up (imports, connections) waited for."""
        await asyncio.sleep(0.5)

    async def stop_worker(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class CliWorker(Adapter):
    """An adapter whose worker is the system's own command line in a process of its own (``WorkerProcess``)."""

    process: WorkerProcess | None = None

    def launch(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.process = WorkerProcess(cmd, cwd=os.path.dirname(os.path.abspath(__file__)), env=env)
        self.counter = self.process.counter

    def alive(self) -> None:
        if self.process is not None:
            self.process.check()

    def worker_cpu(self) -> float:
        # The worker process and its children only: this process merely watches the shared counter.
        assert self.process is not None
        return cpu_seconds(psutil.Process(self.process.proc.pid))

    async def worker_ready(self) -> None:
        assert self.process is not None
        await probe_ready(self, self.process)

    async def stop_worker(self) -> None:
        if self.process is not None:
            await self.process.stop()
            self.process = None


def cpu_seconds(me: psutil.Process | None = None) -> float:
    """User + system CPU of a process (this one by default) and every live descendant (worker processes, a
    producer)."""
    me = me or psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def emit(**figures: Any) -> None:
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()


async def enqueue_all(adapter: Adapter, kind: str, n: int, unique: bool = False) -> None:
    for start in range(0, n, CHUNK):
        payloads = [float(i) for i in range(start, min(n, start + CHUNK))]
        if unique:
            await adapter.enqueue_bulk_unique(payloads)
        else:
            await adapter.enqueue_bulk(kind, payloads)


async def wait_until(done: Callable[[], bool], deadline: float, alive: Callable[[], None] | None = None) -> None:
    """Poll ``done`` until it holds or the deadline passes; ``alive`` raises if the worker has died meanwhile."""
    while not done() and time.perf_counter() < deadline:
        if alive is not None:
            alive()
        await asyncio.sleep(0.002)


READY_WITHIN = 60.0  # seconds a worker process may take to run its first task


async def probe_ready(adapter: Adapter, worker: WorkerProcess) -> None:
    """Enqueue one no-op task and wait until the worker process has run it: then it is up and claiming."""
    await adapter.enqueue_one("noop", 0.0)
    deadline = time.perf_counter() + READY_WITHIN
    while worker.counter.read()[0] < 1:
        worker.check()
        if time.perf_counter() > deadline:
            raise SystemExit(f"{worker.cmd[0]} ran no task within {READY_WITHIN:.0f} s: {worker.tail()}")
        await asyncio.sleep(0.01)


async def scenario_work(adapter: Adapter, kind: str, n: int, concurrency: int | None, cap: float) -> dict[str, Any]:
    concurrency = concurrency or adapter.drain_concurrency
    if adapter.max_concurrency is not None and concurrency > adapter.max_concurrency:
        return {"skipped": f"not run above {adapter.max_concurrency} worker processes on this machine"}
    adapter.work_kind = kind
    await adapter.start_worker(concurrency)
    deadline = time.perf_counter() + cap
    # CPU is counted from the first task's start: what starting the worker (and its processes) costs is not
    # charged per task.
    await wait_until(lambda: adapter.counter.read()[1] is not None, deadline, adapter.alive)
    cpu0 = adapter.worker_cpu()
    await wait_until(lambda: adapter.counter.read()[0] >= n, deadline, adapter.alive)
    done, first, last, _ = adapter.counter.read()
    cpu = adapter.worker_cpu() - cpu0
    await adapter.stop_worker()
    elapsed = (last - first) if first is not None and last is not None and last > first else 0.0
    result: dict[str, Any] = {
        "rate": done / elapsed if elapsed else 0.0,
        "done": done,
        "elapsed_s": elapsed,
        "capped": done < n,
        "worker_cpu_s": cpu,
        "settings": adapter.settings(concurrency),
    }
    if kind in {"keyed", "limited"}:
        spans, seen = adapter.counter.read_spans()
        result["overlaps"] = found = max(overlaps(spans), seen)
        result["keys"] = len({key for key, _, _ in spans})
        if kind == "limited":
            result["settings"] += f"; limit: {adapter.limit_api}"
            if found:
                result["error"] = f"{found} tasks started while another task of their key was running"
    return result


async def scenario_latency(
    adapter: Adapter, script: str, url: str, rate: float, seconds: float, concurrency: int, wait: float
) -> dict[str, Any]:
    expected = int(rate * seconds)
    concurrency = min(concurrency, adapter.max_concurrency or concurrency)
    await adapter.start_worker(concurrency)
    await adapter.worker_ready()
    base = adapter.counter.read()[0]  # tasks a readiness probe ran
    schedule_start = time.time() + 0.5  # the producer's first slot, in wall-clock time
    params = json.dumps({"rate": rate, "seconds": seconds, "at": schedule_start})
    producer = await asyncio.create_subprocess_exec(
        sys.executable, script, "produce", url, params, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await producer.communicate()
    lines = out.decode().strip().splitlines()
    enqueue_figures = json.loads(lines[-1]) if producer.returncode == 0 and lines else {"producer_failed": True}
    await wait_until(lambda: adapter.counter.read()[0] >= base + expected, time.perf_counter() + wait)
    delays = list(adapter.counter.read_delays())
    now = time.time()
    # A task that never started within the wait counts at least as late as now (so p99 is a lower bound then).
    missing = [now - (schedule_start + i / rate) for i in range(len(delays), expected)]
    await adapter.stop_worker()
    p50, p99 = quantiles_ms(delays + missing)
    return {
        "p50_ms": p50,
        "p99_ms": p99,
        "started": len(delays),
        "expected": expected,
        **enqueue_figures,
        "settings": adapter.settings(concurrency) + "; producer in another process",
    }


async def scenario_produce(adapter: Adapter, rate: float, seconds: float, at: float) -> dict[str, Any]:
    """Open loop: each enqueue starts at its slot whether or not the ones before it have returned."""
    pending: set[asyncio.Task[None]] = set()
    took: list[float] = []  # from each task's slot to its enqueue call returning

    async def enqueue(slot: float) -> None:
        await adapter.enqueue_one("timed", slot)
        took.append(time.time() - slot)

    for i in range(int(rate * seconds)):
        slot = at + i / rate
        delay = slot - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(enqueue(slot))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    p50, p99 = quantiles_ms(took)
    return {"enqueue_p50_ms": p50, "enqueue_p99_ms": p99}


def quantiles_ms(seconds: list[float]) -> tuple[float, float]:
    ms = sorted(d * 1000 for d in seconds)
    qs = statistics.quantiles(ms, n=100) if len(ms) > 1 else [ms[0] if ms else 0.0] * 99
    return qs[49], qs[98]


def run(adapter: Adapter) -> None:
    """``script SCENARIO URL PARAMS_JSON``: run one scenario and print its figures as the last line."""
    scenario, url, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    script = sys.argv[0]

    async def main() -> None:
        # The schema is installed by the run that fills a fresh store, not again by the worker's run.
        await adapter.open(url, install=scenario in {"enqueue", "enqueue_unique", "fill", "latency"})
        try:
            result: dict[str, Any]
            if scenario in {"enqueue", "enqueue_unique"}:
                unique = scenario == "enqueue_unique"
                if unique and adapter.unique_api is None:
                    result = {"skipped": adapter.unique_missing}
                else:
                    started = time.perf_counter()
                    await enqueue_all(adapter, "noop", params["n"], unique)
                    result = {"rate": params["n"] / (time.perf_counter() - started)}
                    if unique:
                        result["settings"] = adapter.unique_api
            elif scenario == "fill" and params["kind"] == "limited" and adapter.limit_api is None:
                result = {"skipped": adapter.limit_missing}
            elif scenario == "fill":
                await enqueue_all(adapter, params["kind"], params["n"])
                result = {}
            elif scenario == "work":
                result = await scenario_work(adapter, params["kind"], params["n"], params["concurrency"], params["cap"])
            elif scenario == "latency":
                result = await scenario_latency(
                    adapter, script, url, params["rate"], params["seconds"], params["concurrency"], params["wait"]
                )
            elif scenario == "produce":
                result = await scenario_produce(adapter, params["rate"], params["seconds"], params["at"])
            else:
                raise SystemExit(f"unknown scenario {scenario!r}")
        finally:
            await adapter.close()
        emit(**result)

    asyncio.run(main())


async def in_flight(call: Callable[[float], Awaitable[Any]], payloads: list[float], limit: int) -> None:
    """Many single enqueues at once, at most ``limit`` in flight: the bulk path of a system without a bulk API."""
    gate = asyncio.Semaphore(limit)

    async def one(p: float) -> None:
        async with gate:
            await call(p)

    await asyncio.gather(*(one(p) for p in payloads))
