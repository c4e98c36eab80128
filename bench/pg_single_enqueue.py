"""Single enqueues on PostgreSQL, open loop: one process calls ``create`` N times a second, each its own asyncio task.

    python -m bench.pg_single_enqueue [--rate 2000 --rate 500] [--seconds 10] [--postgres URL]
                                      [--concurrency C --prefetch P]

Issue 15 item 4. The producer fires ``store.create(touch.new_task(sent))`` (one task per call) at a fixed rate
without waiting for earlier calls (open loop: a slow call does not slow the sending), while a worker started as
users start it, ``taskstore worker bench.pg_single_enqueue:app`` (the CLI's defaults: concurrency 10, no prefetch;
``--concurrency``/``--prefetch`` pass on), drains them. Each
handler writes how long its task took from the enqueue call to its start; both processes read
``time.monotonic()``, one clock for every process on Linux. Each rate runs on a fresh schema (bench/local_pg.py).
Printed per rate: tasks sent, errors (by message), starts/s, creates per insert statement, the enqueue call's
p50/p99, enqueue→start p50/p99, and how late the producer fired (its p99 lag: a producer that cannot keep up
is not an open loop). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import taskstore
from taskstore import App

from .local_pg import pg_schema

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "pg-single"

app = App(name="pg_single_enqueue")
_out: IO[str] | None = None


@app.task(queue=QUEUE, kind="bench.pg_single", max_attempts=1)
async def touch(sent: float) -> None:
    """The worker's side: one line per task, ``<monotonic start> <seconds since the enqueue call>``."""
    global _out  # one file per worker process, opened at its first task
    now = time.monotonic()
    if _out is None:
        _out = open(os.environ["PG_SINGLE_OUT"], "a", buffering=1, encoding="ascii")  # noqa: SIM115, ASYNC230 - once
    _out.write(f"{now!r} {now - sent!r}\n")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_worker(url: str, out: str, options: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PG_SINGLE_OUT": out, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    cmd = [sys.executable, "-m", "taskstore", "worker", "bench.pg_single_enqueue:app", "--url", url]
    cmd += ["--log-level", "warning", "--no-maintenance", *options]
    return subprocess.Popen(cmd, env=env, cwd=ROOT)


def read_starts(path: str) -> list[tuple[float, float]]:
    with open(path, encoding="ascii") as f:
        return [(float(a), float(b)) for a, b in (line.split() for line in f if line.count(" ") == 1)]


async def produce(url: str, rate: float, seconds: float, out: str, options: list[str]) -> dict[str, Any]:
    store = taskstore.open(url)
    await store.connect()  # open (and migrate) before the worker starts and the clock runs
    worker = start_worker(url, out, options)
    try:
        # The worker is up once a first task has started.
        await store.create(touch.new_task(time.monotonic()))
        deadline = time.monotonic() + 30
        while not read_starts(out):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the worker did not start a task within 30 s")
            await asyncio.sleep(0.05)
        warm = len(read_starts(out))

        calls: list[float] = []
        lags: list[float] = []
        errors: collections.Counter[str] = collections.Counter()
        pending: set[asyncio.Task[None]] = set()

        async def one() -> None:
            began = time.monotonic()
            try:
                await store.create(touch.new_task(began))
            except Exception as exc:  # counted, not raised: the producer goes on as an application would
                errors[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1
            else:
                calls.append(time.monotonic() - began)

        n = int(rate * seconds)
        t0 = time.monotonic()
        for i in range(n):
            due = t0 + i / rate
            now = time.monotonic()
            if due > now + 0.0005:
                await asyncio.sleep(due - now)
                now = time.monotonic()
            lags.append(now - due)
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
        sent_for = time.monotonic() - t0
        await asyncio.gather(*pending)
        called_for = time.monotonic() - t0
        ok = len(calls)
        deadline = time.monotonic() + 60
        while len(read_starts(out)) < warm + ok and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        starts = read_starts(out)[warm:]
        coalescer = getattr(store._driver, "_coalescer", None)  # absent before single creates coalesced
        per_insert = coalescer.rows / max(coalescer.batches, 1) if coalescer is not None else 1.0
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        await store.close()
    last_start = max((s for s, _ in starts), default=t0)
    return {
        "sent": n,
        "sent_for": sent_for,
        "called_for": called_for,
        "ok": ok,
        "errors": errors,
        "started": len(starts),
        "starts_per_s": len(starts) / max(last_start - t0, 1e-9),
        "call": calls,
        "e2s": [d for _, d in starts],
        "lag": lags,
        "per_insert": per_insert,
    }


def report(rate: float, r: dict[str, Any]) -> None:
    ms = 1000.0
    print(
        f"rate {rate:g}/s: sent {r['sent']} in {r['sent_for']:.2f} s (all calls back after {r['called_for']:.2f} s), "
        f"ok {r['ok']}, errors {sum(r['errors'].values())}, started {r['started']}, "
        f"starts/s {r['starts_per_s']:.0f}, creates per insert statement {r['per_insert']:.1f}"
    )
    print(
        f"  enqueue call ms p50 {pct(r['call'], 0.5) * ms:.2f} p99 {pct(r['call'], 0.99) * ms:.2f} "
        f"max {max(r['call'], default=float('nan')) * ms:.1f} | "
        f"enqueue->start ms p50 {pct(r['e2s'], 0.5) * ms:.2f} p99 {pct(r['e2s'], 0.99) * ms:.2f} "
        f"max {max(r['e2s'], default=float('nan')) * ms:.1f} | "
        f"producer lag ms p99 {pct(r['lag'], 0.99) * ms:.2f} mean {statistics.fmean(r['lag']) * ms:.2f}"
    )
    for message, count in r["errors"].most_common(3):
        print(f"  {count} x {message}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, action="append", help="enqueues a second (repeatable)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--postgres", default=os.environ.get("TASKSTORE_BENCH_POSTGRES_URL"))
    parser.add_argument("--concurrency", type=int, help="the worker's --concurrency (default: the CLI's)")
    parser.add_argument("--prefetch", type=int, help="the worker's --prefetch (default: the CLI's)")
    args = parser.parse_args()
    options = [] if args.concurrency is None else ["--concurrency", str(args.concurrency)]
    options += [] if args.prefetch is None else ["--prefetch", str(args.prefetch)]
    print(f"worker: taskstore worker {' '.join(options) or '(defaults)'}")
    print(f"taskstore from {Path(taskstore.__file__).parent}; load {os.getloadavg()[0]:.2f}")
    for rate in args.rate or [2000.0, 500.0]:
        with pg_schema(args.postgres, "bench_single") as url:
            if url is None:
                return
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "starts.txt")
                Path(out).touch()
                report(rate, asyncio.run(produce(url, rate, args.seconds, out, options)))


if __name__ == "__main__":
    main()
