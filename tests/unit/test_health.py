"""The health report's judgements (pure), its gauges, and claimers polling by themselves when wake-ups are lost."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from taskstore import NewTask
from taskstore.backend import NewRow
from taskstore.backends.memory import MemoryDriver
from taskstore.backends.postgres import _health as pg
from taskstore.clock import SystemClock
from taskstore.health import DEFAULT_THRESHOLDS, Finding, HealthReport, Level, value_text
from taskstore.store import Store
from taskstore.web.metrics import HealthCache, _Families, health_gauges

T = DEFAULT_THRESHOLDS
MiB = 1024 * 1024


def table_row(**over: Any) -> tuple[Any, ...]:
    row = {
        "name": "tasks", "table_bytes": 10 * MiB, "heap_bytes": 8 * MiB, "index_bytes": 4 * MiB, "live": 1000,
        "dead": 0, "since_vacuum": 30.0, "since_analyze": 30.0, "trigger": 250.0, "autovacuum_on": True,
        "expected_heap": 7.5 * MiB,
    }  # fmt: skip
    row.update(over)
    return tuple(row.values())


def found(findings: list[Finding], name: str) -> Finding:
    (one,) = [f for f in findings if f.name == name]
    return one


def test_autovacuum_lag_is_judged_against_the_tables_own_trigger() -> None:
    assert found(pg.table_findings(table_row(dead=200), [], T), "autovacuum_lag").level is Level.OK
    behind = found(pg.table_findings(table_row(dead=1000), [], T), "autovacuum_lag")
    assert behind.value == 4.0
    assert behind.level is Level.WARN
    assert "behind" in behind.advice
    assert found(pg.table_findings(table_row(dead=5000), [], T), "autovacuum_lag").level is Level.BAD


def test_dead_tuples_past_the_trigger_with_autovacuum_off_are_bad() -> None:
    off = found(pg.table_findings(table_row(dead=300, autovacuum_on=False), [], T), "autovacuum_lag")
    assert off.level is Level.BAD
    assert "autovacuum is off" in off.advice
    quiet = found(pg.table_findings(table_row(dead=10, autovacuum_on=False), [], T), "autovacuum_lag")
    assert quiet.level is Level.OK


def test_bloat_is_an_estimate_that_only_matters_for_big_tables() -> None:
    big = pg.table_findings(table_row(heap_bytes=200 * MiB, expected_heap=20 * MiB), [], T)
    assert found(big, "table_bloat").value == 0.9
    assert found(big, "table_bloat").level is Level.BAD
    small = pg.table_findings(table_row(heap_bytes=2 * MiB, expected_heap=0.2 * MiB), [], T)
    assert found(small, "table_bloat").level is Level.OK
    unknown = pg.table_findings(table_row(expected_heap=None), [], T)
    assert found(unknown, "table_bloat").value is None
    indexes = [("tasks", "tasks_claim", 100 * MiB, 30.0 * MiB), ("tasks", "tasks_pkey", 10 * MiB, 9.0 * MiB)]
    index = found(pg.table_findings(table_row(), indexes, T), "index_bloat")
    assert index.level is Level.WARN  # 1 - 39/110 = 0.65 of 110 MiB
    assert "tasks_claim" in index.advice


def test_the_oldest_transaction_holding_the_horizon_is_named() -> None:
    assert found(pg.horizon_findings([], T), "xmin_horizon_age").level is Level.OK
    rows = [
        ("session", "pid 7 (psql, user a, idle in transaction)", 400.0, 12, True),
        ("session", "pid 8 (app, user a, active)", 2.0, 3, True),
    ]
    age = found(pg.horizon_findings(rows, T), "xmin_horizon_age")
    assert age.level is Level.WARN
    assert "pid 7" in age.advice
    assert "idle_in_transaction_session_timeout" in age.advice
    prepared = [("prepared", "prepared transaction x", 7200.0, 40, True)]
    assert found(pg.horizon_findings(prepared, T), "xmin_horizon_age").level is Level.BAD
    slot = [("slot", "replication slot s", None, 99, False)]
    assert found(pg.horizon_findings(slot, T), "replication_slot_xids").level is Level.BAD


def test_server_findings() -> None:
    got = pg.server_findings(("15.2 (Debian)", 150002, 0.6, True), 9, 10, T)
    assert found(got, "server_version").value == "15.2"
    assert found(got, "notification_queue_usage").level is Level.BAD
    assert found(got, "schema_version").level is Level.WARN
    assert found(got, "autovacuum").level is Level.OK
    assert found(pg.server_findings(("12.1", 120001, 0.0, False), 10, 10, T), "autovacuum").level is Level.WARN


def test_lost_notifications_are_a_warning_that_says_what_to_do() -> None:
    lost = pg.delivery_finding(pg.Delivery(checked=True, lost=True), 0.05)
    assert lost.level is Level.WARN
    assert "transaction mode" in lost.advice
    assert "session mode" in lost.advice
    assert pg.delivery_finding(pg.Delivery(checked=True, latency=0.001), 0.05).level is Level.OK
    assert pg.delivery_finding(pg.Delivery(enabled=False), 0.05).level is Level.OK


def test_report_level_json_and_values() -> None:
    report = HealthReport(
        "x",
        (
            Finding("a", 3 * MiB, unit="bytes"),
            Finding("b", 0.25, Level.WARN, "hm", table="tasks", unit="ratio"),
            Finding("c", 4000.0, unit="seconds"),
        ),
    )
    assert report.level is Level.WARN
    assert report.to_json()["findings"][1] == {
        "name": "b", "table": "tasks", "value": 0.25, "unit": "ratio", "level": "warn", "advice": "hm"
    }  # fmt: skip
    assert [value_text(f) for f in report.findings] == ["3.0 MiB", "25.0%", "1h 6m"]


def test_health_gauges_parse() -> None:
    report = HealthReport(
        "x",
        (
            Finding("dead_tuples", 12, table="tasks", unit="rows"),
            Finding("dead_tuples", 3, table="groups", unit="rows"),
            Finding("server_version", "15.2"),
            Finding("xmin_horizon_age", 400.0, Level.WARN, unit="seconds"),
        ),
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(health_gauges(report)))
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert got[("taskstore_health_dead_tuples", (("table", "tasks"),))] == 12
    assert got[("taskstore_health_xmin_horizon_age", ())] == 400
    assert got[("taskstore_health_level", (("check", "xmin_horizon_age"), ("table", "")))] == 1
    assert got[("taskstore_health_level", (("check", "server_version"), ("table", "")))] == 0
    assert not any(name == "taskstore_health_server_version" for name, _ in got)


@pytest.mark.asyncio
async def test_the_health_cache_reads_at_most_once_per_interval() -> None:
    class Counting:
        reads = 0

        async def health(self) -> HealthReport:
            self.reads += 1
            return HealthReport("x", ())

    store: Any = Counting()
    cache = HealthCache(every=0.2)
    await asyncio.gather(*(cache.report(store) for _ in range(5)))
    assert store.reads == 1
    await asyncio.sleep(0.25)
    await cache.report(store)
    assert store.reads == 2


# -- claimers poll by themselves when the driver says wake-ups are lost --------------------------------------


async def _claim_latency(lost: bool) -> float:
    """Seconds a blocked claim takes to find a task stored behind its back (no wake-up reaches it)."""
    driver = MemoryDriver(SystemClock())
    driver.notifications_lost = lost
    async with Store(driver, poll_interval=5.0) as store:

        async def behind_its_back() -> None:
            await asyncio.sleep(0.2)
            row = NewRow(NewTask("q", "k"), "t-1", b"null")
            await driver.insert([row])  # the driver itself: the store wakes nobody

        started = time.monotonic()
        sneak = asyncio.ensure_future(behind_its_back())
        got = await store.claim("w", ["q"], limit=1, block_for=3.0)
        await sneak
        assert [t.id for t in got] == ["t-1"]  # found by the poll at the end of block_for at the latest
        return time.monotonic() - started


@pytest.mark.asyncio
async def test_with_wakeups_lost_a_blocked_claim_polls_at_a_short_interval() -> None:
    assert await _claim_latency(lost=True) < 1.0
    # The same store trusting its wake-ups waits out its poll_interval (5 s) or block_for (3 s).
    assert await _claim_latency(lost=False) >= 2.9
