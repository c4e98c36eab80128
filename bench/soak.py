"""A soak: tasks in and out at a steady rate for many minutes, with archiving on; do drain, latency and size stay flat?

    python -m bench soak [--minutes 30] [--rate 1000] [--archive-after 30s] [--sample 10] [--sqlite]
                         [--postgres URL] [--out bench/results/soak-DATE]

One ``taskstore worker`` process, run as users run it (``taskstore worker taskstore_app:app --url URL --queue
bench --concurrency 50 --prefetch 50 --archive-after 30s``, its maintenance on: it reaps, archives and folds the
kept counts), drains what one producer process (this one) enqueues open loop at ``--rate`` single creates a
second (``store.create``, one per task, as a web app would). Every ``--sample`` seconds it records:

- drain: tasks started per second over the sample;
- enqueue->start p50 / p99 of the tasks started in the sample (the handler notes its start, peers/_spans.py);
- PostgreSQL: the size of ``tasks`` (heap and indexes apart), of ``tasks_archive`` and of the kept-count tables,
  and ``tasks``' dead tuples and its autovacuum count (pg_stat_user_tables); SQLite: the file and its WAL;
- errors of the producer, and how far it fell behind its schedule.

It writes ``<out>.csv`` and ``<out>.png`` (one panel per figure over time) and prints a line per sample and a
verdict: each figure's last fifth against its second fifth (the first is warm-up). A queue table that bloats, an
index that only grows, a drain that sags or a tail that climbs shows there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import taskstore
from taskstore import NewTask

from . import local_pg
from .peers import _spans

PEERS = Path(__file__).resolve().parent / "peers"
RESULTS = Path(__file__).resolve().parent / "results"

_PG_SIZES = """
SELECT pg_relation_size(%(t)s::regclass), pg_indexes_size(%(t)s::regclass),
       pg_total_relation_size(%(a)s::regclass),
       pg_total_relation_size(%(c)s::regclass) + pg_total_relation_size(%(d)s::regclass)
         + pg_total_relation_size(%(m)s::regclass),
       coalesce(s.n_dead_tup, 0), coalesce(s.n_live_tup, 0), coalesce(s.autovacuum_count, 0)
  FROM pg_stat_user_tables AS s WHERE s.relid = %(t)s::regclass
"""


@contextlib.contextmanager
def worker(url: str, spans: Path, archive_after: str) -> Iterator[subprocess.Popen[bytes]]:
    cli = Path(sys.executable).parent / "taskstore"
    cmd = [str(cli), "worker", "taskstore_app:app", "--url", url, "--queue", "bench", "--concurrency", "50"]
    cmd += ["--prefetch", "50", "--archive-after", archive_after, "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=PEERS, env={**os.environ, _spans.ENV: str(spans)})
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Starts:
    """The handlers' start records, read incrementally (the file only grows)."""

    def __init__(self, spans: _spans.Spans) -> None:
        self.spans = spans
        self.read = 0

    def new_delays(self) -> list[float]:
        done = min(self.spans.header()[0], self.spans._capacity)
        out = []
        for i in range(self.read, done):
            at = _spans.HEADER.size + _spans.RECORD.size * i
            key, scheduled, started = _spans.RECORD.unpack_from(self.spans._map, at)
            if key == _spans.TIMED:
                out.append(started - scheduled)
        self.read = done
        return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def file_sizes(path: Path) -> dict[str, float]:
    wal = Path(f"{path}-wal")
    return {"file_mb": path.stat().st_size / 2**20, "wal_mb": (wal.stat().st_size if wal.exists() else 0) / 2**20}


class Sizes:
    """Reads the store's sizes on one connection of its own, kept open (a soak must not fail for want of a new
    connection on a busy server); a sample that cannot be read repeats the last one and is counted."""

    def __init__(self, url: str, sqlite_path: Path | None) -> None:
        self.url, self.sqlite_path = url, sqlite_path
        self.conn: Any = None
        self.last: dict[str, float] = {}
        self.missed = 0

    async def read(self) -> dict[str, float]:
        if self.sqlite_path is not None:
            return file_sizes(self.sqlite_path)
        try:
            self.last = await self._read_pg()
        except Exception as exc:
            self.missed += 1
            print(f"  (sample of sizes missed: {exc})", flush=True)
            if self.conn is not None:
                with contextlib.suppress(Exception):
                    await self.conn.close()
                self.conn = None
        return dict(self.last)

    async def _read_pg(self) -> dict[str, float]:
        from urllib.parse import parse_qs, urlsplit, urlunsplit

        import psycopg

        parts = urlsplit(self.url)
        schema = parse_qs(parts.query)["schema"][0]
        names = {k: f'"{schema}".{t}' for k, t in (("t", "tasks"), ("a", "tasks_archive"), ("c", "queue_counts"),
                                                  ("d", "count_deltas"), ("m", "finished_minutes"))}  # fmt: skip
        if self.conn is None:
            plain = urlunsplit(parts._replace(query=""))
            self.conn = await psycopg.AsyncConnection.connect(plain, autocommit=True)
        row = await (await self.conn.execute(_PG_SIZES, names)).fetchone()
        assert row is not None
        heap, index, archive, kept, dead, live, autovacuums = row
        return {
            "tasks_heap_mb": heap / 2**20,
            "tasks_index_mb": index / 2**20,
            "archive_mb": archive / 2**20,
            "kept_counts_kb": kept / 1024,
            "dead_tuples": float(dead),
            "live_tuples": float(live),
            "autovacuums": float(autovacuums),
        }

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


async def produce(store: taskstore.Store, rate: float, seconds: float, stats: dict[str, float]) -> None:
    """Open loop: task i is sent at t0 + i/rate whether or not the earlier creates have returned."""
    t0 = time.perf_counter()
    total = int(rate * seconds)
    pending: set[asyncio.Task[Any]] = set()

    async def send() -> None:
        try:
            await store.create(NewTask("bench", "timed", {"args": [time.time()], "kwargs": {}}))
        except taskstore.errors.TaskstoreError:
            stats["errors"] += 1

    for i in range(total):
        lag = time.perf_counter() - (t0 + i / rate)
        if lag < 0:
            await asyncio.sleep(-lag)
        stats["lag_s"] = max(stats["lag_s"], time.perf_counter() - (t0 + i / rate))
        task = asyncio.create_task(send())
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


async def soak(url: str, sqlite_path: Path | None, opts: argparse.Namespace) -> list[dict[str, float]]:
    seconds = opts.minutes * 60
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        spans_path = Path(tmp) / "spans"
        _spans.create(spans_path, int(opts.rate * seconds * 1.1) + 1000)
        spans = _spans.Spans(spans_path)
        starts = Starts(spans)
        async with taskstore.open(url) as store:
            await store.create(NewTask("bench", "noop", {"args": [0.0], "kwargs": {}}))  # the worker's first
            with worker(url, spans_path, opts.archive_after):
                while spans.header()[0] < 1:
                    await asyncio.sleep(0.1)
                starts.new_delays()
                sizer = Sizes(url, sqlite_path)
                stats = {"errors": 0.0, "lag_s": 0.0}
                producer = asyncio.create_task(produce(store, opts.rate, seconds, stats))
                began = last = time.perf_counter()
                done_before = spans.header()[0]
                while not producer.done() or time.perf_counter() - last < opts.sample:
                    await asyncio.sleep(max(0.0, last + opts.sample - time.perf_counter()))
                    now = time.perf_counter()
                    delays = starts.new_delays()
                    done = spans.header()[0]
                    row = {
                        "minute": (now - began) / 60,
                        "drain_per_s": (done - done_before) / (now - last),
                        "p50_ms": pct(delays, 0.5) * 1000,
                        "p99_ms": pct(delays, 0.99) * 1000,
                        "errors": stats["errors"],
                        "producer_lag_s": stats["lag_s"],
                        **await sizer.read(),
                    }
                    rows.append(row)
                    print("  " + "  ".join(f"{k} {v:,.1f}" for k, v in row.items()), flush=True)
                    done_before, last = done, now
                    if producer.done() and done - 1 >= int(opts.rate * seconds):
                        break
                await producer
                await sizer.close()
        spans.close()
    return rows


def verdict(rows: list[dict[str, float]]) -> list[str]:
    if len(rows) < 5:
        return ["too few samples for a verdict"]
    fifth = len(rows) // 5
    early, late = rows[fifth : 2 * fifth], rows[-fifth:]
    lines = []
    for key in rows[0]:
        if key in ("minute", "errors", "producer_lag_s", "autovacuums"):
            continue
        a = statistics.fmean(r[key] for r in early)
        b = statistics.fmean(r[key] for r in late)
        change = (b - a) / a * 100 if a else float("nan")
        lines.append(f"{key:<16} second fifth {a:12,.1f}   last fifth {b:12,.1f}   change {change:+7.1f}%")
    lines.append(f"producer errors {rows[-1]['errors']:.0f}, most behind schedule {rows[-1]['producer_lag_s']:.2f} s")
    return lines


def plot(rows: list[dict[str, float]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in rows[0] if k not in ("minute", "errors", "producer_lag_s", "live_tuples", "autovacuums")]
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 1.9 * len(keys)), sharex=True)
    minutes = [r["minute"] for r in rows]
    for ax, key in zip(axes, keys, strict=True):
        ax.plot(minutes, [r[key] for r in rows])
        ax.set_ylabel(key, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--archive-after", default="30s")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--sqlite", action="store_true", help="soak SQLite instead of PostgreSQL")
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--out", type=Path, default=None)
    opts = parser.parse_args()
    day = datetime.date.today().isoformat()
    stem = opts.out or RESULTS / f"soak-{'sqlite' if opts.sqlite else 'postgres'}-{day}"
    title = (
        f"taskstore soak, {'SQLite' if opts.sqlite else 'PostgreSQL'}: {opts.rate:g} tasks/s in and out for "
        f"{opts.minutes:g} min, archive after {opts.archive_after} (load at start {os.getloadavg()[0]:.1f})"
    )
    print(title, flush=True)
    if opts.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "soak.db"
            rows = await soak(f"sqlite:///{path}", path, opts)
    else:
        with local_pg.pg_schema(opts.postgres, "bench_soak") as url:
            if url is None:
                return
            rows = await soak(url, None, opts)
    write(stem, title, rows)


def write(stem: Path, title: str, rows: list[dict[str, float]]) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    with Path(f"{stem}.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, title, Path(f"{stem}.png"))
    lines = verdict(rows)
    print("\n".join(lines))
    Path(f"{stem}.txt").write_text(title + "\n" + "\n".join(lines) + "\n")
    print(f"written: {stem}.csv, {stem}.png, {stem}.txt")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
