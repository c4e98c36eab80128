"""Bulk enqueue on PostgreSQL, as CPU per task: the client's (getrusage) and the server's (the store's backends'
``/proc/<pid>/schedstat``), besides the rate.

    python -m bench.pg_bulk_enqueue [--n 10000] [--rounds 5] [--postgres URL] [--unique] [--profile FILE]

Each round calls ``Store.create_many`` with ``--n`` no-op tasks (``--unique``: each with its own unique key, as
bench/peers does) on a fresh schema (bench/local_pg.py). The server's CPU is read from the backends serving this
store's database, so it runs in a database of its own (default ``bulk_bench``, created when missing); the
server must be on this machine. Printed per round: tasks/s, client µs/task, server µs/task. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import resource
import statistics
import time
from pathlib import Path

import psycopg
from psycopg import sql

import taskstore
from taskstore import NewTask

from .local_pg import pg_schema


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu(monitor: psycopg.Connection[tuple[int]], database: str) -> float:
    """Seconds on CPU of every backend of ``database`` but the monitor's own."""
    pids = monitor.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database]
    ).fetchall()
    total = 0
    for (pid,) in pids:
        with contextlib.suppress(OSError, ValueError):  # a backend that has just exited
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    return total / 1e9


def ensure_database(url: str, database: str) -> None:
    """Create the measuring database when missing (its own, so that its backends are only this store's)."""
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


async def one_round(url: str, monitor: psycopg.Connection[tuple[int]], database: str, n: int, unique: bool,
                    profile: cProfile.Profile | None) -> tuple[float, float, float]:  # fmt: skip
    async with taskstore.open(url) as store:
        warm = [NewTask("warm", "noop", {"args": [0.0], "kwargs": {}})] * 1
        await store.create_many(warm)
        news = [
            NewTask("bench", "noop", {"args": [float(i)], "kwargs": {}}, unique_key=f"key-{i}" if unique else None)
            for i in range(n)
        ]
        server0, client0, wall0 = server_cpu(monitor, database), client_cpu(), time.perf_counter()
        if profile is not None:
            profile.enable()
        created = await store.create_many(news)
        if profile is not None:
            profile.disable()
        wall, client, server = time.perf_counter() - wall0, client_cpu() - client0, server_cpu(monitor, database)
        assert len(created) == n
        return n / wall, client / n * 1e6, (server - server0) / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/bulk_bench")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--unique", action="store_true")
    parser.add_argument("--profile", default=None, help="write the client's cProfile of the create_many calls here")
    args = parser.parse_args()
    database = psycopg.conninfo.conninfo_to_dict(args.postgres).get("dbname", "postgres")
    ensure_database(args.postgres, str(database))
    profile = cProfile.Profile() if args.profile else None
    rates, clients, servers = [], [], []
    with psycopg.connect(args.postgres, autocommit=True) as monitor:
        for _ in range(args.rounds):
            with pg_schema(args.postgres, "bulk") as url:
                assert url is not None
                rate, client, server = await one_round(url, monitor, str(database), args.n, args.unique, profile)
            rates.append(rate)
            clients.append(client)
            servers.append(server)
            print(f"{rate:9,.0f} tasks/s  client {client:6.1f} µs/task  server {server:6.1f} µs/task", flush=True)
    print(
        f"median {statistics.median(rates):9,.0f} tasks/s  client {statistics.median(clients):6.1f} µs/task  "
        f"server {statistics.median(servers):6.1f} µs/task"
    )
    # On a shared machine, contention only ever adds: the least CPU a round took is the closest to its cost.
    print(f"best   {max(rates):9,.0f} tasks/s  client {min(clients):6.1f} µs/task  server {min(servers):6.1f} µs/task")
    if profile is not None:
        profile.dump_stats(args.profile)


if __name__ == "__main__":
    asyncio.run(main())
