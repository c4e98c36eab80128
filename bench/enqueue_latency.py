"""Single enqueues at a steady rate against a ``taskstore worker`` process: enqueue-call and enqueue->start latency.

    python -m bench.enqueue_latency [--rate 500 --rate 2000] [--seconds 10] [--postgres URL | --no-sqlite]
                                    [--sqlite-options checkpoint_interval=0.1] [--redis URL]
                                    [--concurrency 10] [--prefetch 0]

For each rate, on a fresh store (a new SQLite file; with ``--postgres``, a schema of its own, see local_pg.py):
a worker is started as users run it, ``taskstore worker taskstore_app:app --url URL --queue bench`` (CLI
defaults otherwise), in a process of its own. Once it has run a first task, this process, the one producer,
enqueues ``rate x seconds`` tasks open loop: task ``i`` is sent at ``t0 + i/rate`` whether or not the earlier
ones have returned, each by one ``store.create(NewTask(...))``. The handler notes when it starts in a
memory-mapped file (peers/_spans.py); both processes read ``time.perf_counter`` (CLOCK_MONOTONIC on Linux).

- enqueue call: from the task's scheduled send time to the return of its ``create`` (a late send counts);
- enqueue->start: from the scheduled send time to the handler's start, and in four stages: the send to the
  task's ``created_at`` (the store's clock at its insert: PostgreSQL's transaction start, Redis' ``TIME``, the
  producer's clock on SQLite), to the ``create``'s return, to its claim's ``claimed_at`` (the claim's time as the
  store took it), and from that to the handler's start. The store's clocks are this machine's, read through
  ``time.time`` and moved onto ``perf_counter``'s; a stage is as exact as the two clocks agree (well under 1 ms);
- errors: ``create`` calls that raised; not started: tasks the worker had not started 30 s after the last send;
- WAL: the largest size of the SQLite ``-wal`` file seen (sampled every 20 ms);
- CPU: user + system seconds per task of this process and of the worker's, from the first send until the worker
  has started the last task (a 2-core machine cannot sustain a rate whose CPU per task sums past 2 / rate).

Not a test: it prints figures for a person to compare before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import taskstore
from bench.local_pg import pg_schema
from bench.peers import _spans
from taskstore import NewTask

PEERS = Path(__file__).resolve().parent / "peers"
SETTLE = 30.0  # how long the worker may take, after the last send, to start the last task
WARMUP_KEY = -1


@contextlib.contextmanager
def worker(url: str, spans: Path, concurrency: int | None, prefetch: int | None) -> Iterator[subprocess.Popen[bytes]]:
    cli = Path(sys.executable).parent / "taskstore"
    level = os.environ.get("BENCH_TASKSTORE_LOG_LEVEL", "warning")  # as in peers/taskstore_bench.py
    cmd = [str(cli), "worker", "taskstore_app:app", "--url", url, "--queue", "bench", "--log-level", level]
    if concurrency is not None:
        cmd += ["--concurrency", str(concurrency)]
    if prefetch is not None:
        cmd += ["--prefetch", str(prefetch)]
    # A profiler around the worker, e.g. BENCH_WORKER_WRAP="python -m cProfile -o /tmp/worker.prof".
    cmd = os.environ.get("BENCH_WORKER_WRAP", "").split() + cmd
    proc = subprocess.Popen(cmd, cwd=PEERS, env={**os.environ, "BENCH_SPANS": str(spans)})
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(label: str, ms: list[float]) -> str:
    return f"{label} p50 {pct(ms, 0.50):7.1f}  p99 {pct(ms, 0.99):7.1f}  max {pct(ms, 1.0):7.1f} ms"


async def run_once(
    url: str,
    wal: Path | None,
    rate: float,
    seconds: float,
    concurrency: int | None,
    prefetch: int | None = None,
    dump: Path | None = None,
) -> None:
    total = int(rate * seconds)
    with tempfile.TemporaryDirectory(prefix="bench-enqlat-") as tmp:
        spans_path = Path(tmp) / "spans"
        _spans.create(spans_path, capacity=total + 10)
        spans = _spans.Spans(spans_path)
        async with taskstore.open(url) as store:  # creates the schema before the worker opens the store
            with worker(url, spans_path, concurrency, prefetch) as proc:
                await store.create(NewTask("bench", "keyed", {"args": [0.0, WARMUP_KEY], "kwargs": {}}))
                deadline = time.monotonic() + 60
                while spans.header()[0] < 1:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"taskstore worker did not start (exit code {proc.poll()})")
                    await asyncio.sleep(0.01)
                sent = [0.0] * total
                returned = [0.0] * total
                failures: list[BaseException] = []
                created = [0.0] * total
                wal_max = 0

                async def one(i: int) -> None:
                    try:
                        task = await store.create(NewTask("bench", "staged", {"args": [float(i), i], "kwargs": {}}))
                    except Exception as exc:
                        failures.append(exc)
                    else:
                        returned[i] = time.perf_counter()
                        created[i] = _spans.Spans.from_wall(task.created_at.timestamp())

                def sample_wal() -> None:
                    nonlocal wal_max
                    if wal is not None:
                        with contextlib.suppress(OSError):
                            wal_max = max(wal_max, wal.stat().st_size)

                pending: set[asyncio.Task[None]] = set()
                cpu0 = (time.process_time(), cpu_seconds(proc.pid))
                t0 = time.perf_counter() + 0.05
                next_sample = 0.0
                for i in range(total):
                    sent[i] = t0 + i / rate
                    now = time.perf_counter()
                    if sent[i] > now:
                        await asyncio.sleep(sent[i] - now)
                    if now >= next_sample:
                        sample_wal()
                        next_sample = now + 0.02
                    task = asyncio.create_task(one(i))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                if pending:
                    await asyncio.wait(pending)
                deadline = time.monotonic() + SETTLE
                while spans.header()[0] < total + 1 and time.monotonic() < deadline:
                    sample_wal()
                    await asyncio.sleep(0.02)
                sample_wal()
                cpu = (time.process_time() - cpu0[0], cpu_seconds(proc.pid) - cpu0[1])
                records = [r for r in spans.records() if r[0] != WARMUP_KEY]
                started = {key: start for key, start, _ in records}
                claimed = {key: at for key, _, at in records}
        spans.close()
    if dump is not None:  # one row per task, to see when in the run the slow ones were sent
        with dump.open("w") as out:
            out.write("i,sent_s,call_ms,start_ms,sent_at\n")  # sent_at: perf_counter, to line up with other traces
            for i in range(total):
                call = f"{(returned[i] - sent[i]) * 1000:.3f}" if returned[i] else ""
                start = f"{(started[i] - sent[i]) * 1000:.3f}" if i in started else ""
                out.write(f"{i},{sent[i] - sent[0]:.4f},{call},{start},{sent[i]!r}\n")
    calls = [(returned[i] - sent[i]) * 1000 for i in range(total) if returned[i]]
    to_start = [(started[i] - sent[i]) * 1000 for i in range(total) if i in started]
    both = [i for i in range(total) if i in started and returned[i]]
    stages = {
        "send->created_at": [(created[i] - sent[i]) * 1000 for i in both],
        "created_at->return": [(returned[i] - created[i]) * 1000 for i in both],
        "created_at->claimed_at": [(claimed[i] - created[i]) * 1000 for i in both],
        "claimed_at->start": [(started[i] - claimed[i]) * 1000 for i in both],
    }
    load = os.getloadavg()[0]
    print(f"  {rate:>6g}/s x {seconds:g}s ({total} tasks), load {load:.2f}")
    print(f"    {summary('enqueue call   ', calls)}")
    print(f"    {summary('enqueue->start ', to_start)}")
    for name, ms in stages.items():
        print(f"      {summary(f'{name:<22}', ms)}")
    line = f"    errors {len(failures)}, not started {total - len(to_start)}"
    if failures:
        line += f" (first: {type(failures[0]).__name__}: {failures[0]})"
    if wal is not None:
        line += f", largest WAL {wal_max / 2**20:.1f} MiB"
    print(line)
    print(f"    CPU per task: producer {cpu[0] / total * 1e3:.2f} ms, worker {cpu[1] / total * 1e3:.2f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, action="append", help="tasks/s (repeatable; default 500 and 2000)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=None, help="the worker's --concurrency (default: CLI's)")
    parser.add_argument("--prefetch", type=int, default=None, help="the worker's --prefetch (default: CLI's)")
    parser.add_argument("--sqlite-options", default="", help="query options for the SQLite URL, e.g. busy_timeout=5")
    parser.add_argument("--no-sqlite", action="store_true", help="skip SQLite")
    parser.add_argument("--postgres", default=None, help="also measure PostgreSQL at this URL (its own schema)")
    parser.add_argument("--redis", default=None, help="also measure Redis at this URL (a key prefix of its own)")
    parser.add_argument("--dump", type=Path, default=None, help="per-task CSVs: DUMP-<backend>-<rate>.csv")
    args = parser.parse_args()
    rates = args.rate or [500.0, 2000.0]
    print(
        f"taskstore {taskstore.__version__} ({Path(taskstore.__file__).parent}), Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} cores"
    )
    if not args.no_sqlite:
        print(f"SQLite{' ?' + args.sqlite_options if args.sqlite_options else ''}:")
        for rate in rates:
            with tempfile.TemporaryDirectory(prefix="bench-enqlat-db-") as tmp:
                db = Path(tmp) / "tasks.db"
                url = f"sqlite:///{db}" + (f"?{args.sqlite_options}" if args.sqlite_options else "")
                dump = None if args.dump is None else Path(f"{args.dump}-sqlite-{rate:g}.csv")
                wal = Path(f"{db}-wal")
                asyncio.run(run_once(url, wal, rate, args.seconds, args.concurrency, args.prefetch, dump))
    if args.postgres:
        print("PostgreSQL:")
        for rate in rates:
            with pg_schema(args.postgres, "enqlat") as url:
                if url is not None:
                    dump = None if args.dump is None else Path(f"{args.dump}-postgres-{rate:g}.csv")
                    asyncio.run(run_once(url, None, rate, args.seconds, args.concurrency, args.prefetch, dump))
    if args.redis:
        print("Redis:")
        for rate in rates:
            prefix = f"enqlat{secrets.token_hex(3)}:"
            url = f"{args.redis}{'&' if '?' in args.redis else '?'}prefix={prefix}"
            dump = None if args.dump is None else Path(f"{args.dump}-redis-{rate:g}.csv")
            try:
                asyncio.run(run_once(url, None, rate, args.seconds, args.concurrency, args.prefetch, dump))
            finally:
                drop_redis_keys(args.redis, prefix)


def drop_redis_keys(url: str, prefix: str) -> None:
    import redis  # only with --redis

    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
    finally:
        client.close()


if __name__ == "__main__":
    main()
