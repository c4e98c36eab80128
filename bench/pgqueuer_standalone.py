"""A pgqueuer drain outside the harness, run the way pgqueuer's README runs a worker: a check on bench/harness.py.

    bench/.venvs/pgqueuer/bin/python bench/pgqueuer_standalone.py [--n 20000] [--url postgresql://...]
        [-- extra pgq run flags, e.g. --batch-size 10 --max-concurrent-tasks 100]

What it does, nothing else: a fresh database; ``Queries.install()`` (what ``pgq install`` runs); N no-op jobs of
one entrypoint, ``fetch``, enqueued with ``Queries.enqueue`` lists; ``VACUUM ANALYZE``; then ``pgq run
pgqueuer_standalone:create`` in a process of its own, with the CLI's defaults unless flags are passed after
``--``. The factory is the README's Quick Start consumer (one asyncpg connection, ``PgQueuer(AsyncpgDriver(...))``,
one entrypoint) with a handler that only counts, in the worker's memory: when the N-th job has run it writes the
first start and the last end (``time.perf_counter``, CLOCK_MONOTONIC, the same clock in both processes) to a file.

Figures: the handler rate (N over first start to last end, what the harness reports) and the database rate (N
over first start to the moment ``pgqueuer`` has no row left, i.e. every job's completion is written). Runs in
pgqueuer's venv (asyncpg + pgqueuer); prints one JSON line. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

HERE = Path(__file__).resolve().parent
DONE_FILE = "PGQ_STANDALONE_DONE"  # where the worker writes "first last" once N jobs have run
N_ENV = "PGQ_STANDALONE_N"


# -- the worker's side: the README's consumer ------------------------------------------------------


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["PGQ_STANDALONE_URL"])
    pgq = PgQueuer(AsyncpgDriver(connection))
    want = int(os.environ[N_ENV])
    out = Path(os.environ[DONE_FILE])
    seen = [0, 0.0]  # jobs run, first start

    @pgq.entrypoint("fetch")
    async def fetch(job: Job) -> None:
        now = time.perf_counter()
        if not seen[0]:
            seen[1] = now
        seen[0] += 1
        if seen[0] == want:
            write(out, f"{seen[1]} {time.perf_counter()}")

    try:
        yield pgq
    finally:
        await connection.close()


# -- the driver's side -----------------------------------------------------------------------------


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def server_cpu(postmaster: psutil.Process | None) -> float:
    """CPU seconds of the server's processes (the whole cluster: other databases' work is in it too)."""
    if postmaster is None:
        return 0.0
    t = postmaster.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in postmaster.children(recursive=True):
        with suppress(psutil.Error):
            total += cpu(child)
    return total


# Small file operations, outside the coroutines (a few per run; they never wait on anything).
def write(path: Path, text: str) -> None:
    path.write_text(text)


def launch(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=HERE, env=env, stdout=out, stderr=out)


def finish(done_file: Path, log: Path) -> tuple[float, float] | list[str]:
    """The worker's (first start, last end), or the last lines of its log if it did not get there."""
    if not done_file.exists():
        return log.read_text(errors="replace").strip().splitlines()[-5:]
    first, last = map(float, done_file.read_text().split())
    done_file.unlink()
    log.unlink(missing_ok=True)
    return first, last


async def fresh(admin: str, name: str) -> str:
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # name: a constant of this script
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parts = urlsplit(admin)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--autovac", action="store_true", help="also apply pgq autovac's settings")
    parser.add_argument("--cap", type=float, default=120.0, help="give up after this many seconds")
    parser.add_argument("flags", nargs="*", help="pgq run flags (after --)")
    opts = parser.parse_args()

    url = await fresh(opts.url, "bench_pgq_standalone")
    conn = await asyncpg.connect(url)
    queries = Queries(AsyncpgDriver(conn))
    await queries.install()
    if opts.autovac:
        await queries.optimize_autovacuum()
    for start in range(0, opts.n, 10_000):
        k = min(opts.n, start + 10_000) - start
        await queries.enqueue(["fetch"] * k, [str(start + i).encode() for i in range(k)], [0] * k)
    await conn.execute("VACUUM ANALYZE")
    postmaster = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()")).parent()

    done_file = Path(f"/tmp/pgq-standalone-{os.getpid()}.done")
    env = {**os.environ, "PGQ_STANDALONE_URL": url, N_ENV: str(opts.n), DONE_FILE: str(done_file)}
    cmd = [str(Path(sys.executable).parent / "pgq"), "run", "pgqueuer_standalone:create", *opts.flags]
    log = Path(f"/tmp/pgq-standalone-{os.getpid()}.log")
    server0 = server_cpu(postmaster)
    launched = time.perf_counter()
    proc = launch(cmd, env, log)
    deadline = launched + opts.cap
    empty_at = None
    try:
        # Every 20 ms: is the queue table empty (every job finished and its completion written)?
        while time.perf_counter() < deadline and proc.poll() is None:
            left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
            if left == 0:
                empty_at = time.perf_counter()
                break
            await asyncio.sleep(0.02)
        while not os.access(done_file, os.F_OK) and time.perf_counter() < deadline and proc.poll() is None:
            await asyncio.sleep(0.02)
        worker_cpu = cpu(psutil.Process(proc.pid))
        server = server_cpu(postmaster) - server0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        await conn.close()
    ended = finish(done_file, log)
    if isinstance(ended, list):
        print(json.dumps({"error": "not all jobs ran", "log": ended}))
        return
    first, last = ended
    result = {
        "n": opts.n,
        "flags": " ".join(opts.flags) or "(defaults)",
        "handler_rate": opts.n / (last - first),
        "db_rate": opts.n / (empty_at - first) if empty_at else None,
        "startup_s": first - launched,
        # Both from the worker's launch (its start-up included) to the end; per 1,000 jobs.
        "worker_cpu_ms_per_1k": worker_cpu / opts.n * 1e6,
        "server_cpu_ms_per_1k": server / opts.n * 1e6,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
