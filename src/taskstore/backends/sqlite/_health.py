"""The findings of ``taskstore doctor`` on SQLite: the file, its WAL, free pages, journal mode, schema version.

An SQLite store has no dead tuples to vacuum away in the background: deleted rows' pages go to the freelist
and are reused by later inserts; only ``VACUUM`` gives them back to the file system. What grows unseen is
the WAL, when a reader that never ends keeps checkpoints from resetting it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...health import Finding, HealthReport, Level, Thresholds, graded, size_text
from .._sql import load_queries

_Q = load_queries("taskstore.backends.sqlite", "health.sql")


def gather(conn: sqlite3.Connection, path: str, schema_version: int, t: Thresholds) -> HealthReport:
    """The file's figures, read on the driver's own connection (its thread): a few PRAGMAs, about a millisecond."""
    page_size, pages, free, journal, version, auto_vacuum = conn.execute(_Q["health_pages"]).fetchone()
    file_bytes = _size(path)
    wal_bytes = _size(path + "-wal")
    found = [
        Finding("sqlite_version", sqlite3.sqlite_version, advice="the SQLite library this process uses"),
        _schema(int(version), schema_version),
        Finding(
            "journal_mode",
            str(journal),
            Level.OK if str(journal).lower() == "wal" else Level.BAD,
            "readers run beside the writer"
            if str(journal).lower() == "wal"
            else "taskstore needs WAL: open the store with taskstore once to switch it",
        ),
        Finding("file_bytes", file_bytes, advice=f"{pages:,} pages of {page_size:,} bytes", unit="bytes"),
        Finding(
            "wal_bytes",
            wal_bytes,
            graded(wal_bytes, t.wal_warn_bytes, t.wal_bad_bytes),
            "the write-ahead log, reset by checkpoints"
            if wal_bytes < t.wal_warn_bytes
            else "the WAL outgrows its checkpoints: a reader that never ends (an open transaction in another "
            "process) keeps it from being reset; end it",
            unit="bytes",
        ),
        Finding("page_size", int(page_size), unit="bytes", advice="PRAGMA page_size"),
        _freelist(int(free), int(pages), int(page_size), int(auto_vacuum), t),
    ]
    return HealthReport("sqlite", tuple(found))


def table_sizes(path: str, busy_timeout: float) -> tuple[Finding, ...]:
    """Each table's bytes and its indexes' (dbstat), on a read-only connection of its own.

    dbstat reads every page of the file (about 0.5 s for 130 MB here): not on the driver's one thread, where
    every other call of the store would wait behind it. Empty when SQLite was built without dbstat.
    """
    try:
        conn = sqlite3.connect(f"{Path(os.path.abspath(path)).as_uri()}?mode=ro", uri=True, timeout=busy_timeout)
    except sqlite3.Error:
        return ()
    try:
        rows: Sequence[Any] = conn.execute(_Q["health_table_bytes"]).fetchall()
    except sqlite3.Error:
        return ()
    finally:
        conn.close()
    return tuple(
        Finding(
            "index_bytes" if is_index else "table_bytes",
            int(size),
            table=str(name),
            unit="bytes",
            advice="all its indexes" if is_index else "its rows (dbstat)",
        )
        for name, is_index, size in rows
    )


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _schema(version: int, latest: int) -> Finding:
    if version < latest:
        advice = f"this taskstore knows {latest}: run taskstore migrate"
        return Finding("schema_version", version, Level.WARN, advice, unit="schema")
    if version > latest:
        return Finding(
            "schema_version", version, Level.WARN, f"newer than this taskstore ({latest}): upgrade it", unit="schema"
        )
    return Finding("schema_version", version, Level.OK, "up to date", unit="schema")


def _freelist(free: int, pages: int, page_size: int, auto_vacuum: int, t: Thresholds) -> Finding:
    share = free / pages if pages else 0.0
    file_bytes = pages * page_size
    level = graded(share, t.bloat_warn, t.bloat_bad) if file_bytes >= t.bloat_min_bytes else Level.OK
    advice = f"{free:,} free pages ({size_text(free * page_size)}), reused by later writes"
    if level is not Level.OK:
        advice += (
            ": to give them back, PRAGMA incremental_vacuum"
            if auto_vacuum == 2
            else ": to give them back, VACUUM (it holds the write lock while it copies the file)"
        )
    return Finding("freelist_ratio", round(share, 4), level, advice, unit="ratio")
