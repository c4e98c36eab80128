"""``taskstore doctor`` and ``Store.health()`` against real stores: the figures are there and plausible, and
they turn bad when the store is in trouble (dead tuples autovacuum is not removing, a transaction holding
back the xmin horizon, a WAL past its bound)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import taskstore
from taskstore import NewTask
from taskstore.backends.postgres.driver import _migrations
from taskstore.backends.sqlite import SCHEMA_VERSION
from taskstore.health import Finding, HealthReport, Level, Thresholds
from taskstore.web import create_app

from ..postgres_server import new_schema, with_schema
from ..web.test_metrics import asgi_get, samples

ROOT = Path(__file__).resolve().parents[2]


def doctor(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskstore", "doctor", "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ},
    )


def by_name(findings: list[dict[str, Any]], name: str, table: str | None = None) -> dict[str, Any]:
    (one,) = [f for f in findings if f["name"] == name and f["table"] == table]
    return one


def finding(report: HealthReport, name: str, table: str | None = None) -> Finding:
    (one,) = [f for f in report.findings if f.name == name and f.table == table]
    return one


# -- SQLite ----------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sqlite_doctor_reports_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    async with taskstore.open(url) as store:
        await store.create_many([NewTask("q", "k", {"pad": "x" * 500}) for _ in range(300)])
    proc = doctor(url, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["backend"] == "sqlite"
    found = report["findings"]
    assert by_name(found, "journal_mode")["value"] == "wal"
    assert by_name(found, "schema_version")["value"] == SCHEMA_VERSION
    assert by_name(found, "file_bytes")["value"] >= 150_000  # 300 rows of 500 bytes
    assert by_name(found, "page_size")["value"] in {1024, 2048, 4096, 8192, 16384, 32768, 65536}
    assert by_name(found, "table_bytes", "tasks")["value"] >= 150_000
    assert by_name(found, "index_bytes", "tasks")["value"] > 0
    assert 0 <= by_name(found, "freelist_ratio")["value"] < 1
    text = doctor(url)
    assert text.returncode == 0, text.stderr
    assert "tasks" in text.stdout
    assert "journal_mode" in text.stdout


@pytest.mark.asyncio
async def test_sqlite_wal_past_its_bound_is_bad(tmp_path: Path) -> None:
    async with taskstore.open(f"sqlite:///{tmp_path / 'w.db'}") as store:
        await store.create_many([NewTask("q", "k") for _ in range(100)])
        report = await store.health(Thresholds(wal_warn_bytes=1, wal_bad_bytes=2))
        wal = finding(report, "wal_bytes")
        assert isinstance(wal.value, int)
        assert wal.value > 0
        assert wal.level is Level.BAD
        assert report.level is Level.BAD
        assert finding(await store.health(), "wal_bytes").level is Level.OK


def test_doctor_on_memory_says_there_is_nothing_to_check() -> None:
    proc = doctor("memory://", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "nothing to check" in json.loads(proc.stdout)["findings"][0]["advice"]


def test_doctor_creates_no_store(tmp_path: Path) -> None:
    proc = doctor(f"sqlite:///{tmp_path / 'none.db'}")
    assert proc.returncode == 1
    assert "no taskstore store" in proc.stderr
    assert not (tmp_path / "none.db").exists()


@pytest.mark.asyncio
async def test_serve_exports_the_health_as_gauges(tmp_path: Path) -> None:
    async with taskstore.open(f"sqlite:///{tmp_path / 'm.db'}") as store:
        await store.create(NewTask("q", "k"))
        app = create_app(store)
        got = samples((await asgi_get(app, "/metrics"))[2].decode())
        assert got[("taskstore_health_file_bytes", ())] > 0
        assert got[("taskstore_health_table_bytes", (("table", "tasks"),))] > 0
        assert got[("taskstore_health_level", (("check", "journal_mode"), ("table", "")))] == 0


# -- PostgreSQL ------------------------------------------------------------------------------------------


@pytest.fixture
def pg_url(postgres_db: str) -> str:
    return with_schema(postgres_db, new_schema())


def _schema(url: str) -> str:
    return url.rpartition("schema=")[2]


@pytest.mark.asyncio
async def test_postgres_doctor_reports_tables_server_and_notify(pg_url: str) -> None:
    async with taskstore.open(pg_url) as store:
        await store.create_many([NewTask("q", "k", {"n": n}) for n in range(200)])
    proc = doctor(pg_url, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["backend"] == "postgresql"
    found = report["findings"]
    assert by_name(found, "schema_version")["value"] == _migrations()[-1][0]
    assert by_name(found, "schema_version")["level"] == "ok"
    assert str(by_name(found, "server_version")["value"])[:2].isdigit()
    assert 0 <= by_name(found, "notification_queue_usage")["value"] < 0.05
    notify = by_name(found, "notify_latency")
    assert notify["level"] == "ok"
    assert 0 < notify["value"] < 2
    assert by_name(found, "xmin_horizon_age")["level"] == "ok"
    tables = {f["table"] for f in found if f["table"] is not None}
    assert {"tasks", "tasks_archive", "statuses", "groups", "queues", "limits", "recurring"} <= tables
    assert by_name(found, "table_bytes", "tasks")["value"] >= 8192
    assert by_name(found, "index_bytes", "tasks")["value"] >= 8192
    for f in found:
        assert f["level"] in {"ok", "warn", "bad"}
        assert f["advice"]
    text = doctor(pg_url)
    assert text.returncode == 0, text.stderr
    assert "tasks_archive" in text.stdout
    assert "xmin_horizon_age" in text.stdout


def _flush_stats(conn: psycopg.Connection[Any]) -> None:
    """Make this session's table statistics visible now (they are flushed up to 10 s late otherwise)."""
    if conn.info.server_version >= 150000:
        conn.execute("SELECT pg_stat_force_next_flush()")


@pytest.mark.asyncio
async def test_dead_tuples_autovacuum_does_not_remove_are_bad(pg_url: str) -> None:
    schema = _schema(pg_url)
    async with taskstore.open(pg_url) as store:
        await store.create_many([NewTask("q", "k") for _ in range(2000)])
    with psycopg.connect(pg_url.partition("?")[0], autocommit=True) as conn:
        tasks = sql.Identifier(schema, "tasks")
        conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(tasks))
        conn.execute(sql.SQL("DELETE FROM {}").format(tasks))
        _flush_stats(conn)
    deadline = time.monotonic() + 15
    while True:
        proc = doctor(pg_url, "--json")
        found = json.loads(proc.stdout)["findings"]
        if by_name(found, "dead_tuples", "tasks")["value"] >= 2000 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert by_name(found, "dead_tuples", "tasks")["value"] >= 2000
    lag = by_name(found, "autovacuum_lag", "tasks")
    assert lag["level"] == "bad"
    assert lag["value"] >= 1
    assert proc.returncode == 1  # something is bad
    assert json.loads(proc.stdout)["level"] == "bad"


@pytest.mark.asyncio
async def test_an_open_transaction_holding_the_xmin_horizon_is_named(pg_url: str) -> None:
    quick = Thresholds(horizon_warn_seconds=0.5, horizon_bad_seconds=1.0)
    async with taskstore.open(pg_url) as store:
        with psycopg.connect(pg_url.partition("?")[0], application_name="doctor-holder") as holder:
            holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            holder.execute("SELECT 1")  # the snapshot now holds the horizon, idle in transaction
            await asyncio.sleep(1.2)
            held = finding(await store.health(quick), "xmin_horizon_age")
            assert held.level is Level.BAD
            assert isinstance(held.value, float)
            assert held.value >= 1.0
            assert "doctor-holder" in held.advice
            assert f"pid {holder.info.backend_pid}" in held.advice
            holder.rollback()
        assert finding(await store.health(quick), "xmin_horizon_age").level is Level.OK
