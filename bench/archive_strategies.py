"""Keeping the archive small on PostgreSQL: batched DELETE purge vs time partitions dropped whole.

    python bench/archive_strategies.py [--postgres URL] [--rate 1000] [--seconds 150] [--archive-after 10]
                                       [--keep 60] [--slot 10] [--rounds 1] [--only batch|partitions]

The same sustained workload for each strategy, on a scratch schema the store's own migrations made: ``--rate``
tasks finish a second (inserted as done, so every statement's count triggers fire as in the store), the
archiver moves those finished ``--archive-after`` seconds ago with the store's own ``archive`` statement (DELETE
... RETURNING into the archive, ``--batch`` rows at a time) once a second, and the archive keeps ``--keep``
seconds of them:

- batch: today's archive table; the purge deletes expired rows in batches (along an index on archived_at that
  this strategy needs and pays for) and the archive is vacuumed by the store's rule (dead rows past 5,000 + 10%);
- partitions: the archive partitioned by archived_at in ``--slot``-second ranges (hours or days in real use,
  compressed here); the purge drops the partitions whose whole range expired, the archiver creates the next.

Both vacuum ``tasks`` by the store's rule. Measured on the archiver's own backend (a second connection feeds):
server CPU (its process's utime+stime from /proc: the server is on this machine), WAL bytes of its statements
(EXPLAIN (ANALYZE, WAL) of each DML, VACUUM VERBOSE's WAL usage, pg_current_wal_insert_lsn around each DDL: the
server is shared, so a cluster-wide LSN difference would count the other sessions' WAL), and every ``--sample``
seconds the sizes and dead rows of tasks and the archive. Then the reads of the archive (get by id, a page
newest first) by the same CPU measure.

A second part (``--reads 0,8,31,168``) reads an archive spread over that many partitions (a lookup by id has no
partition key: it probes each one). A third (``--tasks-partitioned N``) answers whether the tasks table itself
should be partitioned so finished rows are dropped rather than deleted: the cost of finishing a task when that
moves its row between partitions, against the in-place update of today, what a partitioned table does to the
unique id, and the claim's plan. A fourth (``--renewals N``) counts how many lease renewals are HOT updates, today
and with a fillfactor and the lease index keyed on claimed_at instead of times_out_at.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

import taskstore
from taskstore.backends.postgres.driver import _RAW

TICKS = os.sysconf("SC_CLK_TCK")
VACUUM_DEAD_ROWS, VACUUM_DEAD_SHARE = 5_000, 0.1  # the store's rule (backends/postgres CHURNED_TABLES)
_WAL_LINE = re.compile(r"WAL usage: \d+ records, \d+ full page images, (\d+) bytes")

FEED = """
INSERT INTO {s}.tasks (id, queue, kind, args, priority, run_at, max_attempts, attempts, processing_timeout, state,
                       created_at, updated_at, last_enqueued_at, version, finished_at, result_value)
SELECT md5(random()::text), 'bench', 'job', convert_to(repeat('x', 120), 'UTF8'), 0, now(), 1, 1, 60, 'done',
       now(), now(), now(), 3, now(), convert_to('null', 'UTF8')
  FROM generate_series(1, %(n)s)
"""
PURGE_BATCH = """
DELETE FROM {s}.tasks_archive WHERE seq IN (
    SELECT seq FROM {s}.tasks_archive WHERE archived_at < %(before)s ORDER BY archived_at LIMIT %(limit)s)
RETURNING seq
"""


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115 - read at once
    return (int(fields[11]) + int(fields[12])) / TICKS


def _walk(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _walk(child)


@dataclass
class Meter:
    """What the archiver's backend spent, by kind of work."""

    cpu: dict[str, float] = field(default_factory=dict)
    wal: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, cpu: float, wal: int, rows: int = 0) -> None:
        self.cpu[kind] = self.cpu.get(kind, 0.0) + cpu
        self.wal[kind] = self.wal.get(kind, 0) + wal
        self.rows[kind] = self.rows.get(kind, 0) + rows


class Archiver:
    """One connection doing what the store's maintenance would, measured."""

    def __init__(self, url: str, schema: str, strategy: str, opts: argparse.Namespace) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.pid = self.conn.info.backend_pid
        self.schema, self.strategy, self.opts = schema, strategy, opts
        self.s = sql.Identifier(schema)
        self.meter = Meter()
        self.notices: list[str] = []
        self.conn.add_notice_handler(lambda d: self.notices.append(d.message_primary or ""))
        self.archive_q = sql.SQL(_RAW["archive"]).format(schema=self.s, now=sql.SQL("now()"))
        self.slots_made: set[int] = set()

    def explained(self, kind: str, query: sql.Composable, params: dict[str, Any], rows_of: str) -> int:
        """Run ``query`` under EXPLAIN (ANALYZE, WAL); count its WAL and CPU; return the rows ``rows_of`` made."""
        before = cpu_seconds(self.pid)
        explain = sql.SQL("EXPLAIN (ANALYZE, WAL, TIMING OFF, FORMAT JSON) ") + query
        (doc,) = self.conn.execute(explain, params).fetchone()  # type: ignore[misc]
        plan = (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]
        rows = sum(n["Actual Rows"] for n in _walk(plan) if n.get("Operation") == rows_of)
        self.meter.add(kind, cpu_seconds(self.pid) - before, int(plan.get("WAL Bytes", 0)), rows)
        return int(rows)

    def ddl(self, kind: str, statement: sql.Composable) -> None:
        before = cpu_seconds(self.pid)
        (lsn0,) = self.conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()  # type: ignore[misc]
        self.conn.execute(statement)
        (wal,) = self.conn.execute("SELECT pg_current_wal_insert_lsn() - %s::pg_lsn", (lsn0,)).fetchone()  # type: ignore[misc]
        self.meter.add(kind, cpu_seconds(self.pid) - before, int(wal), 1)

    def archive(self) -> None:
        before = datetime.now(UTC) - timedelta(seconds=self.opts.archive_after)
        params = {"before": before, "limit": self.opts.batch, "now": None}
        while self.explained("archive", self.archive_q, params, "Delete") == self.opts.batch:
            pass

    def purge(self) -> None:
        before = datetime.now(UTC) - timedelta(seconds=self.opts.keep)
        if self.strategy == "batch":
            q = sql.SQL(PURGE_BATCH).format(s=self.s)
            while self.explained("purge", q, {"before": before, "limit": self.opts.batch}, "Delete") == self.opts.batch:
                pass
            return
        self.make_slots()
        cutoff = int(before.timestamp()) // self.opts.slot
        for slot in sorted(self.slots_made):
            if slot < cutoff:  # the whole range [slot, slot + 1) slots is older than the cutoff
                self.ddl("purge", sql.SQL("DROP TABLE {}").format(self.part(slot)))
                self.slots_made.discard(slot)

    def part(self, slot: int) -> sql.Identifier:
        return sql.Identifier(self.schema, f"tasks_archive_{slot}")

    def make_slots(self) -> None:
        """The partitions for now and the next two slots (the maintenance loop runs far more often than that)."""
        now = int(time.time()) // self.opts.slot
        for slot in range(now - 1, now + 3):
            if slot in self.slots_made:
                continue
            lo = datetime.fromtimestamp(slot * self.opts.slot, UTC)
            hi = datetime.fromtimestamp((slot + 1) * self.opts.slot, UTC)
            statement = sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF {}.tasks_archive FOR VALUES FROM ({}) TO ({})"
            )
            self.ddl("partition", statement.format(self.part(slot), self.s, sql.Literal(lo), sql.Literal(hi)))
            self.slots_made.add(slot)

    def vacuum(self) -> None:
        tables = ["tasks"] + (["tasks_archive"] if self.strategy == "batch" else [])
        for name in tables:
            row = self.conn.execute(
                "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s",
                (self.schema, name),
            ).fetchone()
            assert row is not None
            live, dead = row
            if dead <= VACUUM_DEAD_ROWS + VACUUM_DEAD_SHARE * live:
                continue
            self.notices.clear()
            before = cpu_seconds(self.pid)
            self.conn.execute(sql.SQL("VACUUM (VERBOSE, ANALYZE) {}.{}").format(self.s, sql.Identifier(name)))
            wal = sum(int(m.group(1)) for n in self.notices for m in [_WAL_LINE.search(n)] if m)
            self.meter.add(f"vacuum {name}", cpu_seconds(self.pid) - before, wal, 1)


def prepare(url: str, schema: str, strategy: str) -> None:
    """The store's schema, then for ``partitions`` its archive rebuilt partitioned by archived_at."""

    async def migrate() -> None:
        async with taskstore.open(f"{url}{'&' if '?' in url else '?'}schema={schema}"):
            pass

    import asyncio

    asyncio.run(migrate())
    s = sql.Identifier(schema)
    with psycopg.connect(url, autocommit=True) as conn:
        if strategy == "batch":
            conn.execute(sql.SQL("CREATE INDEX tasks_archive_at ON {}.tasks_archive (archived_at)").format(s))
            return
        # A partitioned table's unique keys must include the partition key: (seq, archived_at).
        conn.execute(sql.SQL("DROP VIEW {}.tasks_archive_json").format(s))
        conn.execute(sql.SQL("ALTER TABLE {}.tasks_archive RENAME TO tasks_archive_old").format(s))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {s}.tasks_archive (LIKE {s}.tasks_archive_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                " PARTITION BY RANGE (archived_at)"
            ).format(s=s)
        )
        conn.execute(sql.SQL("DROP TABLE {}.tasks_archive_old").format(s))
        conn.execute(sql.SQL("ALTER TABLE {}.tasks_archive ADD PRIMARY KEY (seq, archived_at)").format(s))
        conn.execute(sql.SQL("CREATE INDEX tasks_archive_id_seq ON {}.tasks_archive (id, seq)").format(s))
        conn.execute(
            sql.SQL(
                "CREATE INDEX tasks_archive_group ON {}.tasks_archive (group_id) WHERE group_id IS NOT NULL"
            ).format(s)
        )


SIZES = """
SELECT (SELECT coalesce(sum(pg_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(s)s AND c.relkind = 'r' AND c.relname = 'tasks'),
       (SELECT coalesce(sum(pg_indexes_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(s)s AND c.relkind = 'r' AND c.relname = 'tasks'),
       (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(s)s AND c.relkind = 'r' AND c.relname LIKE 'tasks\\_archive%%'),
       (SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE schemaname = %(s)s AND relname = 'tasks'),
       (SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables
         WHERE schemaname = %(s)s AND relname LIKE 'tasks\\_archive%%'),
       (SELECT coalesce(sum(n_live_tup), 0) FROM pg_stat_user_tables
         WHERE schemaname = %(s)s AND relname LIKE 'tasks\\_archive%%')
"""


def run(url: str, strategy: str, opts: argparse.Namespace) -> dict[str, Any]:
    schema = f"bench_arch_{strategy[:5]}_{random.randrange(16**6):06x}"
    prepare(url, schema, strategy)
    s = sql.Identifier(schema)
    feeder = psycopg.connect(url, autocommit=True)
    arch = Archiver(url, schema, strategy, opts)
    if strategy == "partitions":
        arch.make_slots()
    samples: list[tuple[float, ...]] = []
    try:
        feed_q = sql.SQL(FEED).format(s=s)
        t0 = time.monotonic()
        fed = 0
        next_archive = next_vacuum = next_sample = t0
        while (now := time.monotonic()) < t0 + opts.seconds:
            due = int((now - t0) * opts.rate) - fed
            if due > 0:
                feeder.execute(feed_q, {"n": due})
                fed += due
            if now >= next_archive:
                arch.archive()
                arch.purge()
                next_archive = now + opts.archive_every
            if now >= next_vacuum:
                arch.vacuum()
                next_vacuum = now + 5.0
            if now >= next_sample:
                row = arch.conn.execute(SIZES, {"s": schema}).fetchone()
                assert row is not None
                samples.append((now - t0, *(float(v) for v in row)))
                heap, idx = row[0] / 2**20, row[1] / 2**20
                print(
                    f"  {strategy:<10} {now - t0:5.0f}s tasks heap {heap:6.1f} MB idx {idx:6.1f} MB"
                    f" dead {row[3]:7,}  archive {row[2] / 2**20:6.1f} MB live {row[5]:8,} dead {row[4]:7,}"
                    f"  archiver cpu {sum(arch.meter.cpu.values()):6.2f} s",
                    flush=True,
                )
                next_sample = now + opts.sample
            time.sleep(0.05)
        reads = measure_reads(arch, schema)
    finally:
        feeder.close()
        arch.conn.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))
    return {"strategy": strategy, "fed": fed, "meter": arch.meter, "samples": samples, "reads": reads}


def measure_reads(arch: Archiver, schema: str) -> dict[str, float]:
    """CPU per read of the archive as the store reads it: get by id, and the newest page of a listing."""
    s = sql.Identifier(schema)
    ids = [r[0] for r in arch.conn.execute(sql.SQL("SELECT id FROM {}.tasks_archive LIMIT 2000").format(s))]
    picks = random.sample(ids, min(300, len(ids)))
    # The store never analyzes the archive itself (autovacuum is off here): give both strategies statistics.
    arch.conn.execute(sql.SQL("ANALYZE {}.tasks_archive").format(s))
    get = sql.SQL(_RAW["get_archived"]).format(schema=s, now=sql.SQL("now()"))
    page = sql.SQL(_RAW["list_archived_desc"]).format(schema=s, now=sql.SQL("now()"))
    filt = {"state": None, "queue": None, "kind": None, "ready": None, "after": None, "limit": 50}
    out = {}
    for name, query, runs in (("get", get, [{"id": i} for i in picks]), ("page", page, [filt] * 100)):
        for params in runs[:20]:  # warm: plans cached on the connection, pages in shared buffers
            arch.conn.execute(query, params, prepare=True).fetchall()
        before = cpu_seconds(arch.pid)
        for params in runs:
            arch.conn.execute(query, params, prepare=True).fetchall()
        out[name] = (cpu_seconds(arch.pid) - before) / len(runs) * 1e6
    return out


def report(result: dict[str, Any]) -> list[str]:
    meter: Meter = result["meter"]
    moved = meter.rows.get("archive", 0)
    lines = [f"{result['strategy']}: fed {result['fed']:,}, archived {moved:,}, purged rows/partitions "
             f"{meter.rows.get('purge', 0):,}"]  # fmt: skip
    per = max(moved, 1)
    for kind in sorted(meter.cpu):
        lines.append(
            f"  {kind:<16} cpu {meter.cpu[kind]:7.2f} s = {meter.cpu[kind] / per * 1e6:7.1f} us/task   "
            f"WAL {meter.wal[kind] / 2**20:8.1f} MB = {meter.wal[kind] / per:7.1f} B/task   (n {meter.rows[kind]:,})"
        )
    total_cpu, total_wal = sum(meter.cpu.values()), sum(meter.wal.values())
    lines.append(f"  {'total':<16} cpu {total_cpu:7.2f} s = {total_cpu / per * 1e6:7.1f} us/task   "
                 f"WAL {total_wal / 2**20:8.1f} MB = {total_wal / per:7.1f} B/task")  # fmt: skip
    steady = [r for r in result["samples"] if r[0] > result["samples"][-1][0] / 2]
    if steady:
        tasks_mb = [(r[1] + r[2]) / 2**20 for r in steady]
        archive_mb = [r[3] / 2**20 for r in steady]
        lines.append(
            f"  second half: tasks heap+idx {statistics.fmean(tasks_mb):.1f} MB (max {max(tasks_mb):.1f}), archive"
            f" {statistics.fmean(archive_mb):.1f} MB (max {max(archive_mb):.1f}), archive dead rows max"
            f" {max(r[5] for r in steady):,.0f}, tasks dead rows max {max(r[4] for r in steady):,.0f}"
        )
    reads = result["reads"]
    lines.append(f"  reads: get by id {reads['get']:.0f} us cpu, newest page of 50 {reads['page']:.0f} us cpu")
    return lines


# -- part 2: reads of an archive split into many partitions -----------------------------------------------------


def reads_by_partitions(url: str, counts: list[int], rows: int) -> list[str]:
    """get by id and the newest page, on an archive of ``rows`` tasks spread over each count of partitions: a
    lookup by id has no partition key, so it probes every partition's index (hours kept a week: 168)."""
    lines = []
    for count in counts:
        schema = f"bench_arch_reads_{random.randrange(16**6):06x}"
        prepare(url, schema, "partitions" if count else "batch")
        s = sql.Identifier(schema)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                for day in range(count):
                    part = sql.Identifier(schema, f"tasks_archive_d{day}")
                    lo, hi = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day), timedelta(days=1)
                    conn.execute(
                        sql.SQL("CREATE TABLE {} PARTITION OF {}.tasks_archive FOR VALUES FROM ({}) TO ({})").format(
                            part, s, sql.Literal(lo), sql.Literal(lo + hi)
                        )
                    )
                conn.execute(sql.SQL(FEED.replace("%(n)s", str(int(rows)))).format(s=s))
                conn.execute(
                    sql.SQL(
                        "WITH moved AS (DELETE FROM {s}.tasks RETURNING *)"
                        " INSERT INTO {s}.tasks_archive SELECT moved.*, timestamptz '2026-01-01 00:00Z'"
                        " + (moved.seq % {n}) * interval '1 day' + interval '1 hour'"
                        " FROM moved"
                    ).format(s=s, n=sql.Literal(max(count, 1)))
                )
            arch = Archiver(url, schema, "partitions" if count else "batch", argparse.Namespace())
            try:
                reads = measure_reads(arch, schema)
            finally:
                arch.conn.close()
            label = f"{count} partitions" if count else "one table (today)"
            lines.append(
                f"  {label:<18}: get by id {reads['get']:6.0f} us cpu, newest page of 50 {reads['page']:6.0f} us"
            )
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))
    return lines


# -- part 3: the tasks table partitioned so that finished rows could be dropped ---------------------------------

TASKS_LIKE = """
CREATE TABLE {t} (
    seq bigint NOT NULL, id text NOT NULL, queue text NOT NULL, priority int NOT NULL, run_at timestamptz NOT NULL,
    state text NOT NULL, args bytea, worker_id text, token text, times_out_at timestamptz,
    finished_at timestamptz, result_value bytea, version int NOT NULL
) {partitioned}
"""
TASKS_INDEXES = [
    "CREATE INDEX ON {t} (queue, priority DESC, run_at, seq) WHERE state IN ('queued', 'failed')",
    "CREATE INDEX ON {t} (times_out_at) WHERE state = 'claimed'",
    "CREATE INDEX ON {t} (finished_at) WHERE finished_at IS NOT NULL",
]
FILL = """
INSERT INTO {t} SELECT i, md5(i::text), 'bench', 0, now(), 'claimed', convert_to(repeat('x', 120), 'UTF8'),
                       'w1', md5(i::text), now() + interval '60 s', NULL, NULL, 2
  FROM generate_series(%(lo)s, %(hi)s - 1) AS i
"""
FINISH = """
UPDATE {t} SET state = 'done', finished_at = now(), result_value = convert_to('null', 'UTF8'), worker_id = NULL,
               token = NULL, times_out_at = NULL, version = version + 1
 WHERE seq >= %(lo)s AND seq < %(hi)s
"""


def tasks_partitioned(url: str, n: int, batch: int) -> list[str]:
    """Finishing ``n`` claimed tasks ``batch`` at a time: in place (today) vs moved to a finished partition."""
    schema = f"bench_arch_tp_{random.randrange(16**6):06x}"
    s = sql.Identifier(schema)
    lines = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
        try:
            plain, parted = sql.Identifier(schema, "plain"), sql.Identifier(schema, "parted")
            conn.execute(sql.SQL(TASKS_LIKE).format(t=plain, partitioned=sql.SQL("")))
            conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (seq), ADD UNIQUE (id)").format(plain))
            conn.execute(
                sql.SQL(TASKS_LIKE).format(
                    t=parted, partitioned=sql.SQL("PARTITION BY LIST ((state IN ('done', 'dead', 'cancelled')))")
                )
            )
            try:
                conn.execute(sql.SQL("ALTER TABLE {} ADD UNIQUE (id)").format(parted))
                lines.append("  a unique id across partitions: accepted (unexpected)")
            except psycopg.errors.FeatureNotSupported as exc:
                lines.append(f"  a unique id across partitions: refused: {exc.diag.message_primary}")
            for name, flag in (("live", "false"), ("finished", "true")):
                part = sql.Identifier(schema, f"parted_{name}")
                conn.execute(
                    sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ({})").format(part, parted, sql.SQL(flag))
                )
            # No unique key can be had on the partitioned table: plain indexes on seq and id stand in for them.
            conn.execute(sql.SQL("CREATE INDEX ON {} (seq)").format(parted))
            conn.execute(sql.SQL("CREATE INDEX ON {} (id)").format(parted))
            for t in (plain, parted):
                for index in TASKS_INDEXES:
                    conn.execute(sql.SQL(index).format(t=t))
            pid = conn.info.backend_pid
            results: dict[str, list[tuple[float, int]]] = {"plain": [], "parted": []}
            for rnd in range(2):  # interleaved: plain, parted, plain, parted
                for name, t in (("plain", plain), ("parted", parted)):
                    base = rnd * n + 1
                    conn.execute(sql.SQL(FILL).format(t=t), {"lo": base, "hi": base + n})
                    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(t))
                    cpu0, wal = cpu_seconds(pid), 0
                    explain = sql.SQL("EXPLAIN (ANALYZE, WAL, TIMING OFF, FORMAT JSON) ")
                    for lo in range(base, base + n, batch):
                        (doc,) = conn.execute(
                            explain + sql.SQL(FINISH).format(t=t), {"lo": lo, "hi": lo + batch}
                        ).fetchone()  # type: ignore[misc]
                        wal += int((doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"].get("WAL Bytes", 0))
                    results[name].append((cpu_seconds(pid) - cpu0, wal))
            for name, runs in results.items():
                cpu = statistics.fmean(c for c, _ in runs) / n * 1e6
                wal = statistics.fmean(w for _, w in runs) / n
                label = "in place (today)" if name == "plain" else "moved live -> finished partition"
                lines.append(f"  finish a task, {label:<34}: cpu {cpu:6.1f} us/task, WAL {wal:6.0f} B/task "
                             f"(runs: {', '.join(f'{c / n * 1e6:.1f}' for c, _ in runs)} us)")  # fmt: skip
            conn.execute(sql.SQL("ANALYZE {}").format(parted))
            plan = conn.execute(
                sql.SQL(
                    "EXPLAIN (COSTS OFF) SELECT seq FROM {} WHERE state IN ('queued', 'failed') AND queue = 'bench'"
                    " ORDER BY priority DESC, run_at, seq LIMIT 10 FOR UPDATE SKIP LOCKED"
                ).format(parted)
            ).fetchall()
            lines.append("  the claim on the partitioned table: " + " / ".join(r[0].strip() for r in plan))
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))
    return lines


# -- part 4: can a lease renewal be a HOT update? -------------------------------------------------------------

# What write_report (a renewal, the heartbeat's update) changes, for a batch of claimed tasks.
RENEW = """
UPDATE {s}.tasks SET times_out_at = times_out_at + interval '1 second', report_at = now(), updated_at = now(),
                     version = version + 1
 WHERE seq = ANY(%(seqs)s)
"""
RENEWAL_VARIANTS = {
    "today": [],
    "fillfactor 70": ["ALTER TABLE {s}.tasks SET (fillfactor = 70)", "VACUUM FULL {s}.tasks"],
    "fillfactor 70, lease index on claimed_at": [
        "ALTER TABLE {s}.tasks SET (fillfactor = 70)",
        "DROP INDEX {s}.tasks_lease_timeouts",
        "CREATE INDEX tasks_lease_claimed ON {s}.tasks (claimed_at) WHERE state = 'claimed'",
        "VACUUM FULL {s}.tasks",
    ],
}


def lease_renewals(url: str, n: int, rounds: int = 3) -> list[str]:
    """n claimed tasks renewed ``rounds`` times each, 50 a statement: how many updates were HOT, CPU and WAL each.
    A HOT update writes no index entry; it needs no indexed column changed (times_out_at is one, by the lease
    index the reaper walks) and room on the row's page (fillfactor)."""
    lines = []
    for label, steps in RENEWAL_VARIANTS.items():
        schema = f"bench_arch_hot_{random.randrange(16**6):06x}"
        s = sql.Identifier(schema)

        async def fill(schema: str) -> None:
            async with taskstore.open(f"{url}{'&' if '?' in url else '?'}schema={schema}") as store:
                await store.create_many(taskstore.NewTask("q", "k", {"i": i}) for i in range(n))
                while await store.claim("w", limit=500):
                    pass

        import asyncio

        asyncio.run(fill(schema))
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                for step in steps:
                    conn.execute(sql.SQL(step).format(s=s))
                conn.execute(sql.SQL("VACUUM ANALYZE {}.tasks").format(s))
                seqs = [r[0] for r in conn.execute(sql.SQL("SELECT seq FROM {}.tasks ORDER BY seq").format(s))]
                stats = sql.SQL(
                    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = {}::regclass"
                ).format(sql.Literal(f"{schema}.tasks"))
                upd0, hot0 = conn.execute(stats).fetchone()  # type: ignore[misc]
                pid, cpu0, wal = conn.info.backend_pid, cpu_seconds(conn.info.backend_pid), 0
                explain = sql.SQL("EXPLAIN (ANALYZE, WAL, TIMING OFF, FORMAT JSON) ") + sql.SQL(RENEW).format(s=s)
                for _ in range(rounds):  # each its own transaction, as renewals are: pruning frees their pages
                    for i in range(0, len(seqs), 50):
                        (doc,) = conn.execute(explain, {"seqs": seqs[i : i + 50]}).fetchone()  # type: ignore[misc]
                        wal += int((doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]["WAL Bytes"])
                cpu = cpu_seconds(pid) - cpu0
                conn.execute("SELECT pg_stat_force_next_flush()")
                time.sleep(0.5)
                upd1, hot1 = conn.execute(stats).fetchone()  # type: ignore[misc]
                upd, hot = upd1 - upd0, hot1 - hot0
            lines.append(f"  {label:<40}: HOT {hot:,} of {upd:,} renewals, cpu {cpu / upd * 1e6:5.1f} us, "
                         f"WAL {wal / upd:4.0f} B a renewal")  # fmt: skip
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))
    return lines


@contextmanager
def _timed(label: str) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    print(f"({label}: {time.monotonic() - t0:.0f} s wall, load {os.getloadavg()[0]:.1f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rate", type=int, default=1000, help="tasks finishing a second")
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--archive-after", type=float, default=10.0)
    parser.add_argument("--keep", type=float, default=60.0, help="seconds the archive keeps a task")
    parser.add_argument("--slot", type=int, default=10, help="seconds of archived_at per partition")
    parser.add_argument("--archive-every", type=float, default=1.0, help="seconds between archiver rounds")
    parser.add_argument("--batch", type=int, default=1000, help="rows per archive / purge statement")
    parser.add_argument("--sample", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1, help="batch, partitions, batch, partitions, ...")
    parser.add_argument("--only", choices=("batch", "partitions"), default=None)
    parser.add_argument("--reads", default="", help="part 2: partition counts to read across, e.g. 0,8,31,168")
    parser.add_argument("--renewals", type=int, default=0, metavar="N", help="part 4: HOT renewals of N claimed")
    parser.add_argument("--tasks-partitioned", type=int, default=0, metavar="N", help="part 2 with N tasks")
    opts = parser.parse_args()
    print(f"archive strategies: {opts.rate} tasks/s for {opts.seconds:g} s, archived after {opts.archive_after:g} s, "
          f"kept {opts.keep:g} s, partitions of {opts.slot} s, batches of {opts.batch}")  # fmt: skip
    out: list[str] = []
    strategies = [opts.only] if opts.only else ["batch", "partitions"]
    for rnd in range(opts.rounds):
        for strategy in strategies:
            with _timed(f"{strategy} round {rnd + 1}"):
                out += report(run(opts.postgres, strategy, opts))
    if opts.reads:
        out.append("reads of an archive of 60,000 tasks by number of partitions (0: not partitioned):")
        out += reads_by_partitions(opts.postgres, [int(c) for c in opts.reads.split(",")], 60_000)
    if opts.tasks_partitioned:
        out.append(f"tasks table partitioned by finished or not ({opts.tasks_partitioned:,} tasks, batches of 50):")
        out += tasks_partitioned(opts.postgres, opts.tasks_partitioned, 50)
    if opts.renewals:
        out.append(f"lease renewals of {opts.renewals:,} claimed tasks (3 each, 50 a statement):")
        out += lease_renewals(opts.postgres, opts.renewals)
    print("\n".join(out))


if __name__ == "__main__":
    main()
