"""Where a PostgreSQL drain spends its time: per statement, the server's CPU and the round trips, per task.

    python3 -m bench.pg_drain_profile [--tasks 30000] [--concurrency 100] [--prefetch 500] [--cprofile] [--explain]

Fills a fresh schema with no-op tasks (then ANALYZE, as the harness does), and drains them with a Worker run in
this process as ``taskstore worker --concurrency C --prefetch P`` runs it (maintenance on). Every statement the
worker's store sends is timed by name: its backend's CPU, read from /proc/<pid>/schedstat (nanoseconds) just
before and after it (a backend serves only its own connection, so the difference is that statement's), and
the count (one round trip each). Printed per statement: calls, tasks per call, server µs per task drained,
round trips per 1,000 tasks. Then the totals: server CPU of every backend of this process, this process's CPU
(the worker's, the statement bookkeeping included: compare the client figure with --no-trace too), per task.
Last, the cores: how much of the machine stayed idle over the drain, and how long the worker and its backends
waited, runnable, for a core (/proc/<pid>/schedstat), in cores: both high at once means a bursty drain.

``--cli`` drains with ``taskstore worker taskstore_app:app --concurrency C --prefetch P --log-level warning`` in a
process of its own instead (as bench/peers/taskstore_bench.py runs it), ``--py-spy FILE`` under ``py-spy record``
(raw output): then only the totals, the worker process's CPU and the server's for that process's backends.

``--cprofile`` prints the worker's hottest functions by CPU time (not wall: the machine is shared);
``--explain`` prints EXPLAIN (ANALYZE, BUFFERS) of one claim
of 100 and of their completion, as the driver binds them (triggers' time included), on a filled queue.
PostgreSQL must be local (the server's CPU is read from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import io
import os
import pstats
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import taskstore
from taskstore import NewTask

from .local_pg import pg_schema


def backend_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def runqueue_ns(pid: int) -> int:
    """Nanoseconds this process (its main thread) or backend has waited, runnable, for a core."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])


class Cores:
    """How busy the machine was over a drain, and how long the worker and its backends waited for a core.

    A drain that leaves cores idle while its processes queue for one is bursty: its stages (claim, run,
    complete) crowd the cores at some moments and leave them idle at others.
    """

    def __init__(self, worker: int, backends: set[int]) -> None:
        self.worker = worker
        self.idle0, self.total0 = self.machine()
        self.waits0 = {pid: runqueue_ns(pid) for pid in {worker, *backends}}

    @staticmethod
    def machine() -> tuple[int, int]:
        """Idle (idle + iowait) and all jiffies of every core, from /proc/stat."""
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return ticks[3] + ticks[4], sum(ticks)

    def line(self, wall: float) -> str:
        idle, total = self.machine()
        waited = {}
        for pid, ns in self.waits0.items():
            with contextlib.suppress(OSError):
                waited[pid] = runqueue_ns(pid) - ns
        worker = waited.get(self.worker, 0) / 1e9 / wall
        server = sum(ns for pid, ns in waited.items() if pid != self.worker) / 1e9 / wall
        cores = os.cpu_count() or 1
        return (
            f"  cores: {(idle - self.idle0) / max(1, total - self.total0) * 100:.0f}% idle of {cores}; waiting for a"
            f" core, in cores: worker {worker:.2f}, its backends {server:.2f}"
        )


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Tracer:
    """Wraps AsyncConnection.execute and AsyncCursor.executemany: per statement name, calls, rows, server ns."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names
        self.calls: collections.Counter[str] = collections.Counter()
        self.rows: collections.Counter[str] = collections.Counter()
        self.ns: collections.Counter[str] = collections.Counter()
        self.pids: set[int] = set()
        self.on = False

    def name(self, query: Any) -> str:
        found = self.names.get(id(query))
        if found is not None:
            return found
        text = query if isinstance(query, str) else repr(query)
        return " ".join(text.split())[:50]

    def install(self) -> None:
        tracer = self
        conn_execute = psycopg.AsyncConnection.execute
        executemany = psycopg.AsyncCursor.executemany

        async def traced_execute(conn: Any, query: Any, params: Any = None, **kw: Any) -> Any:
            if not tracer.on:
                return await conn_execute(conn, query, params, **kw)
            pid = conn.pgconn.backend_pid
            tracer.pids.add(pid)
            before = backend_ns(pid)
            cur = await conn_execute(conn, query, params, **kw)
            name = tracer.name(query)
            tracer.ns[name] += backend_ns(pid) - before
            tracer.calls[name] += 1
            tracer.rows[name] += max(cur.rowcount, 0)
            return cur

        async def traced_executemany(cur: Any, query: Any, params_seq: Any, **kw: Any) -> Any:
            if not tracer.on:
                return await executemany(cur, query, params_seq, **kw)
            params_seq = list(params_seq)
            pid = cur.connection.pgconn.backend_pid
            tracer.pids.add(pid)
            before = backend_ns(pid)
            await executemany(cur, query, params_seq, **kw)
            name = tracer.name(query) + " (many)"
            tracer.ns[name] += backend_ns(pid) - before
            tracer.calls[name] += len(params_seq)  # one round trip each unless pipelined
            tracer.rows[name] += max(cur.rowcount, 0)

        psycopg.AsyncConnection.execute = traced_execute  # type: ignore[method-assign,assignment]
        psycopg.AsyncCursor.executemany = traced_executemany  # type: ignore[method-assign,assignment]

    def report(self, n: int) -> None:
        print(f"  {'statement':<26} {'calls':>7} {'rows/call':>9} {'server µs/task':>14} {'trips/1k tasks':>14}")
        for name, ns in sorted(self.ns.items(), key=lambda kv: -kv[1]):
            calls = self.calls[name]
            print(
                f"  {name[:26]:<26} {calls:>7} {self.rows[name] / calls:>9.1f} {ns / n / 1000:>14.1f}"
                f" {calls / n * 1000:>14.1f}"
            )
        total = sum(self.ns.values())
        print(f"  {'(all statements)':<26} {sum(self.calls.values()):>7} {'':>9} {total / n / 1000:>14.1f}"
              f" {sum(self.calls.values()) / n * 1000:>14.1f}")  # fmt: skip


async def explain(store: taskstore.Store, batch: int) -> None:
    driver: Any = store._driver
    pool = getattr(driver._pool, "pool", driver._pool)
    async with pool.connection() as conn:
        if os.environ.get("BENCH_PLAN_MODE"):  # e.g. force_generic_plan: the plan a prepared statement may switch to
            await conn.execute(sql.SQL("SET plan_cache_mode = {}").format(sql.Literal(os.environ["BENCH_PLAN_MODE"])))
        params = driver._params(worker="explainer", limit=batch, queue="bench")
        text = driver.q["claim_queue"].decode()
        rows = await (await conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + text, params)).fetchall()
        print("claim_queue, limit", batch)
        print("\n".join("    " + r[0] for r in rows))
        claimed = await (
            await conn.execute(
                sql.SQL("SELECT id, token, worker_id FROM {}.tasks WHERE state = 'claimed'").format(
                    sql.Identifier(driver.schema)
                )
            )
        ).fetchall()
        params = driver._params(
            ids=[i for i, _, _ in claimed],
            tokens=[t for _, t, _ in claimed],
            workers=[w for _, _, w in claimed],
            values=[None for _ in claimed],
            status_channel=driver.status_channel,
        )
        text = driver.q["complete_many_ids"].decode()
        rows = await (await conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + text, params)).fetchall()
        print("complete_many_ids,", len(claimed), "tasks")
        print("\n".join("    " + r[0] for r in rows))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--prefetch", type=int, default=None, help="the worker's prefetch (default: 5 x concurrency)")
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--no-trace", action="store_true", help="no per-statement tracing: totals only")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--cli", action="store_true", help="drain with `taskstore worker` in a process of its own")
    parser.add_argument("--worker-url-options", default="", help="with --cli: appended to the worker's URL (a=b&c=d)")
    parser.add_argument("--worker-args", default="", help="with --cli: more arguments for `taskstore worker`")
    parser.add_argument("--py-spy", default=None, help="with --cli: record the worker with py-spy into this file")
    args = parser.parse_args()
    n = args.tasks
    if args.prefetch is None:
        args.prefetch = 5 * args.concurrency  # as the harness runs it (bench/peers/taskstore_bench.py)
    print(f"taskstore from {Path(taskstore.__file__).parent}")
    with pg_schema(args.postgres, "bench_drainprof") as url:
        if url is None:
            return
        app = taskstore.App(url)
        finished = 0
        all_done = asyncio.Event()

        @app.task(queue="bench", kind="noop")
        async def noop(i: float) -> None:
            nonlocal finished
            finished += 1
            if finished >= n:
                all_done.set()

        store = await app.store()
        driver: Any = store._driver
        tracer = Tracer({id(q): name for name, q in driver.q.items()})
        tracer.install()
        for start in range(0, n, 10_000):
            await store.create_many(
                [
                    NewTask("bench", "noop", {"args": [float(i)], "kwargs": {}})
                    for i in range(start, min(n, start + 10_000))
                ]
            )
        pool = getattr(driver._pool, "pool", driver._pool)
        async with pool.connection() as conn:
            await conn.execute(sql.SQL("VACUUM ANALYZE {}.tasks").format(sql.Identifier(driver.schema)))
        if args.explain:
            await explain(store, 100)
            return
        if args.cli:
            worker_url = f"{url}&{args.worker_url_options}" if args.worker_url_options else url
            await cli_drain(
                store, worker_url, n, args.concurrency, args.prefetch, args.py_spy, args.worker_args.split()
            )
            await app.aclose()
            return
        worker = taskstore.Worker(app, ["bench"], args.concurrency, prefetch=args.prefetch)
        tracer.on = not args.no_trace
        profiler = (
            cProfile.Profile(time.process_time) if args.cprofile else None
        )  # CPU, not wall: the machine is shared
        c0, w0 = client_cpu(), time.perf_counter()
        pids0 = {pid: backend_ns(pid) for pid in await backend_pids(pool)}
        cores = Cores(os.getpid(), set(pids0))
        if profiler:
            profiler.enable()
        async with worker:
            await all_done.wait()
            # every completion written: the worker's stop flushes them
        if profiler:
            profiler.disable()
        c1, w1 = client_cpu(), time.perf_counter()
        cores_line = cores.line(w1 - w0)
        server = sum(backend_ns(pid) - ns for pid, ns in pids0.items()) / 1e9
        tracer.on = False
        done = await store.count(taskstore.State.DONE)
        print(
            f"PostgreSQL drain of {n:,} no-op tasks, concurrency {args.concurrency}, prefetch {args.prefetch}"
            f" ({done:,} done):"
        )
        if not args.no_trace:
            tracer.report(n)
        print(
            f"  totals: server {server / n * 1e6:.1f} µs/task (every backend of this process), client "
            f"{(c1 - c0) / n * 1e6:.1f} µs/task, wall {(w1 - w0) / n * 1e6:.1f} µs/task ({n / (w1 - w0):,.0f} tasks/s)"
        )
        print(cores_line)
        await app.aclose()
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
            print(out.getvalue())


def process_backends(conn_pids: set[int], ports: set[int]) -> set[int]:
    """The backends serving connections from these local ports (pg_stat_activity.client_port)."""
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres") as c:
        rows = c.execute("SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL").fetchall()
    return {pid for pid, port in rows if port in ports} - conn_pids


def process_ns(pid: int) -> int:
    """User + system CPU of a process and its threads, in nanoseconds (the worker under py-spy: its child)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


async def cli_drain(
    store: taskstore.Store, url: str, n: int, concurrency: int, prefetch: int, spy: str | None, more: list[str]
) -> None:
    import psutil

    peers = Path(__file__).parent / "peers"
    with tempfile.TemporaryDirectory() as tmp:
        spans = Path(tmp) / "spans"
        spans.write_bytes(bytes(64))  # _spans.HEADER and no records: noop handlers only count
        cli = Path(sys.executable).parent / "taskstore"
        cmd = [str(cli), "worker", "taskstore_app:app", "--url", url, "--queue", "bench", "--concurrency",
               str(concurrency), "--prefetch", str(prefetch), "--log-level", "warning", *more]  # fmt: skip
        if spy:
            cmd = [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-r",
                "250",
                "-f",
                "raw",
                *(["--native"] if os.environ.get("BENCH_SPY_NATIVE") else []),
                "-o",
                spy,
                "--",
                *cmd,
            ]
        if os.environ.get("BENCH_WRAP"):  # e.g. "strace -f -c -o /tmp/trace": the worker under another tool
            cmd = [*os.environ["BENCH_WRAP"].split(), *cmd]
            spy = spy or "wrapped"  # the worker is the wrapper's child
        env = {**os.environ, "BENCH_SPANS": str(spans)}
        w0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=peers, env=env, stdout=subprocess.DEVNULL)
        worker = psutil.Process(proc.pid)
        if spy:
            while not worker.children():
                await asyncio.sleep(0.01)
            worker = worker.children()[0]
        ports: set[int] = set()
        backends: dict[int, int] = {}
        # Counted from the first finished task on (start-up and imports left out), by then every connection is open.
        while (first := await store.count(taskstore.State.DONE)) == 0:
            await asyncio.sleep(0.01)
        w0, cpu0 = time.perf_counter(), process_ns(worker.pid)
        with contextlib.suppress(psutil.Error):
            ports = {c.laddr.port for c in worker.net_connections(kind="tcp") if c.raddr and c.raddr.port == 5432}
        backends = {pid: backend_ns(pid) for pid in process_backends(set(), ports)}
        cores = Cores(worker.pid, set(backends))
        while (done := await store.count(taskstore.State.DONE)) < n:
            await asyncio.sleep(0.05)
        w1 = time.perf_counter()
        cores_line = cores.line(w1 - w0)
        counted = n - first
        cpu1 = process_ns(worker.pid)
        server = 0
        for pid, ns in backends.items():
            with contextlib.suppress(OSError):
                server += backend_ns(pid) - ns
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 60)
    print(
        f"PostgreSQL drain of {n:,} no-op tasks by `taskstore worker --concurrency {concurrency} --prefetch"
        f" {prefetch}` ({done:,} done, {len(backends)} backends; counted over the last {counted:,}):"
    )
    print(
        f"  totals: server {server / counted / 1000:.1f} µs/task (the worker's backends), worker"
        f" {(cpu1 - cpu0) / counted / 1000:.1f} µs/task, wall {(w1 - w0) / counted * 1e6:.1f} µs/task"
        f" ({counted / (w1 - w0):,.0f} tasks/s)"
    )
    print(cores_line)


async def backend_pids(pool: Any) -> set[int]:
    conns = [await pool.getconn() for _ in range(pool.max_size)]
    try:
        return {(await (await c.execute("SELECT pg_backend_pid()")).fetchone())[0] for c in conns}
    finally:
        for c in conns:
            await pool.putconn(c)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
