"""The findings of ``taskstore doctor`` on PostgreSQL, from the rows of ``health.sql``.

Pure: rows in, ``Finding`` values out, so the judgements are testable without a server. Bloat is a catalog
estimate (see ``health.sql``): trustworthy only after ANALYZE, and only to tell a table of twice its size
from a healthy one, which is what a queue table needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...health import Finding, Level, Thresholds, graded, size_text

MIN_SERVER_VERSION = 130000  # the README's promise: PostgreSQL 13 or newer


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the LISTEN probe found: None while none has come back yet; else the latency in seconds, or lost."""

    checked: bool = False
    lost: bool = False
    latency: float | None = None
    enabled: bool = True


def table_findings(row: Sequence[Any], indexes: Sequence[Sequence[Any]], t: Thresholds) -> list[Finding]:
    (name, table_bytes, heap_bytes, index_bytes, live, dead, since_vacuum, since_analyze, trigger,
     autovacuum_on, expected_heap) = row  # fmt: skip
    found = [
        Finding("table_bytes", int(table_bytes), table=name, unit="bytes", advice="size on disk, TOAST included"),
        Finding("index_bytes", int(index_bytes), table=name, unit="bytes", advice="all its indexes"),
        Finding("live_tuples", int(live), table=name, unit="rows", advice="estimated by the statistics collector"),
    ]
    found.append(_dead(name, int(live), int(dead)))
    found.append(_lag(name, int(dead), float(trigger), bool(autovacuum_on), since_vacuum, t))
    found.append(
        Finding(
            "seconds_since_vacuum",
            None if since_vacuum is None else float(since_vacuum),
            table=name,
            unit="seconds",
            advice="never vacuumed since the statistics were reset"
            if since_vacuum is None
            else "by autovacuum or VACUUM",
        )
    )
    found.append(
        Finding(
            "seconds_since_analyze",
            None if since_analyze is None else float(since_analyze),
            table=name,
            unit="seconds",
            advice="never analyzed: the planner guesses, and bloat cannot be estimated; run ANALYZE"
            if since_analyze is None
            else "by autovacuum or ANALYZE",
        )
    )
    found.append(_bloat("table_bloat", name, int(heap_bytes), expected_heap, t, "VACUUM FULL or pg_repack"))
    mine = [(idx, int(size), expected) for (table, idx, size, expected) in indexes if table == name]
    known = [(idx, size, exp) for idx, size, exp in mine if exp is not None]
    if known:
        total = sum(size for _, size, _ in known)
        worst_index = max(known, key=lambda k: k[1] - float(k[2]))[0]
        found.append(
            _bloat(
                "index_bloat", name, total, sum(float(exp) for _, _, exp in known), t,
                f"REINDEX INDEX CONCURRENTLY, starting with {worst_index}",
            )
        )  # fmt: skip
    return found


def _dead(name: str, live: int, dead: int) -> Finding:
    ratio = dead / (live + dead) if live + dead else 0.0
    return Finding(
        "dead_tuples",
        dead,
        Level.OK,
        f"{ratio * 100:.0f}% of the table's rows are dead, waiting for a vacuum",
        table=name,
        unit="rows",
    )


def _lag(name: str, dead: int, trigger: float, autovacuum_on: bool, since: Any, t: Thresholds) -> Finding:
    """Dead tuples over the autovacuum trigger: past 1 a vacuum is due; how far past says how far behind."""
    lag = dead / trigger if trigger > 0 else 0.0
    level = graded(lag, t.lag_warn, t.lag_bad)
    if lag >= 1 and not autovacuum_on:
        level = Level.BAD
        advice = (
            f"{dead:,} dead tuples and autovacuum is off for this table or server: VACUUM it, and turn autovacuum on"
        )
    elif level is Level.OK:
        advice = f"autovacuum vacuums it at {trigger:,.0f} dead tuples"
    else:
        advice = (
            f"{dead:,} dead tuples, {lag:.1f}x the {trigger:,.0f} at which autovacuum vacuums it: autovacuum is "
            "behind (busy workers, a held xmin horizon, or throttling); lower autovacuum_vacuum_scale_factor and "
            "raise autovacuum_vacuum_cost_limit for this table"
        )
    return Finding("autovacuum_lag", round(lag, 3), level, advice, table=name, unit="ratio_of_trigger")


def _bloat(name: str, table: str, actual: int, expected: Any, t: Thresholds, fix: str) -> Finding:
    if expected is None or actual <= 0:
        return Finding(name, None, Level.OK, "unknown until the table is analyzed", table=table, unit="ratio")
    share = max(0.0, 1.0 - float(expected) / actual)
    level = graded(share, t.bloat_warn, t.bloat_bad) if actual >= t.bloat_min_bytes else Level.OK
    wasted = share * actual
    advice = f"about {size_text(wasted)} of {size_text(actual)} is free or dead space (catalog estimate)"
    if level is not Level.OK:
        advice += f": a plain VACUUM reuses it; to give it back, {fix}"
    return Finding(name, round(share, 3), level, advice, table=table, unit="ratio")


def horizon_findings(rows: Sequence[Sequence[Any]], t: Thresholds) -> list[Finding]:
    """The oldest holder of the xmin horizon, by age, and any inactive replication slot holding it."""
    timed = [r for r in rows if r[2] is not None]
    found: list[Finding] = []
    if not timed:
        found.append(
            Finding("xmin_horizon_age", 0.0, Level.OK, "no other transaction holds back vacuum", unit="seconds")
        )
    else:
        kind, who, seconds, xids, _ = max(timed, key=lambda r: float(r[2]))
        level = graded(float(seconds), t.horizon_warn_seconds, t.horizon_bad_seconds)
        advice = f"the oldest is {who}, {xids or 0:,} transactions behind"
        if level is not Level.OK:
            fix = (
                "COMMIT or ROLLBACK it, or pg_terminate_backend() it; set idle_in_transaction_session_timeout"
                if kind == "session"
                else "COMMIT PREPARED or ROLLBACK PREPARED it"
            )
            advice += f": until it ends no vacuum removes a dead tuple newer than it. {fix}"
        found.append(Finding("xmin_horizon_age", float(seconds), level, advice, unit="seconds"))
        found.append(Finding("xmin_horizon_xids", int(xids or 0), Level.OK, f"held by {who}", unit="xids"))
    for kind, who, _, xids, active in rows:
        if kind == "slot" and not active:
            found.append(
                Finding(
                    "replication_slot_xids",
                    int(xids or 0),
                    Level.BAD,
                    f"inactive {who} holds back the xmin horizon: drop it if its consumer is gone",
                    unit="xids",
                )
            )
    return found


def server_findings(row: Sequence[Any], migration: int | None, latest: int, t: Thresholds) -> list[Finding]:
    version, version_num, queue_usage, autovacuum = row
    found = [
        Finding(
            "server_version",
            str(version).split()[0],
            Level.OK if int(version_num) >= MIN_SERVER_VERSION else Level.WARN,
            "taskstore is tested on PostgreSQL 13 and newer",
        ),
        Finding(
            "notification_queue_usage",
            float(queue_usage),
            graded(float(queue_usage), t.notify_queue_warn, t.notify_queue_bad),
            "pg_notification_queue_usage(): a session that LISTENs but never reads (or sits in a long transaction) "
            "fills it; at 100% every NOTIFY, so every enqueue, fails",
            unit="ratio",
        ),
        Finding(
            "autovacuum",
            "on" if autovacuum else "off",
            Level.OK if autovacuum else Level.WARN,
            "the server's autovacuum setting"
            if autovacuum
            else "autovacuum is off: dead tuples of the queue's "
            "tables pile up unless something runs VACUUM; turn it on",
        ),
    ]
    if migration is None:
        level, advice = Level.BAD, "no migration applied: run taskstore migrate"
    elif migration < latest:
        level, advice = Level.WARN, f"this taskstore knows {latest}: run taskstore migrate"
    elif migration > latest:
        level, advice = Level.WARN, f"newer than this taskstore ({latest}): upgrade taskstore here"
    else:
        level, advice = Level.OK, "up to date"
    found.append(Finding("schema_version", migration, level, advice, unit="migration"))
    return found


def delivery_finding(delivery: Delivery, fallback_poll: float) -> Finding:
    if not delivery.enabled:
        return Finding(
            "notify_latency", None, Level.OK, "notify=false: claimers poll instead of listening", unit="seconds"
        )
    if not delivery.checked:
        return Finding("notify_latency", None, Level.WARN, "the LISTEN probe has not come back yet", unit="seconds")
    if delivery.lost:
        return Finding(
            "notify_latency",
            None,
            Level.WARN,
            "a NOTIFY sent to this store's channel never reached its LISTEN: a pooler in transaction mode "
            f"(PgBouncer pool_mode=transaction)? Claimers poll every {fallback_poll:g}s instead; use session "
            "mode, or a direct URL to the server",
            unit="seconds",
        )
    return Finding(
        "notify_latency", delivery.latency, Level.OK, "a probe NOTIFY reached this store's LISTEN", unit="seconds"
    )
