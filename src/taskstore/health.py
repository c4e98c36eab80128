"""The store's health, as ``taskstore doctor`` reports it and ``taskstore serve`` exports it.

A driver gathers a ``HealthReport``: a tuple of ``Finding`` values, each a figure (a table's size, its dead
tuples, the age of the oldest transaction holding back vacuum, the share of the NOTIFY queue in use, ...)
with a level and one sentence of advice. Levels are decided here from ``Thresholds`` (pure functions of the
figures), so every backend judges alike and a test can lower a threshold instead of waiting an hour.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class Level(enum.IntEnum):
    """How a figure looks: ``ok``; ``warn`` (watch it, act soon); ``bad`` (act now: ``doctor`` exits 1)."""

    OK = 0
    WARN = 1
    BAD = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Finding:
    """One figure of a store's health.

    ``name`` is stable and metric-friendly (``dead_tuples``); ``table`` names the table it is about (None:
    the whole store or server); ``value`` is a number, or text for what is not one (a version, a mode), or
    None when unknown; ``unit`` says what the number counts (``bytes``, ``seconds``, ``ratio``, ``rows``,
    ``xids``, ...; empty for text); ``advice`` is one sentence for a person.
    """

    name: str
    value: float | int | str | None
    level: Level = Level.OK
    advice: str = ""
    table: str | None = None
    unit: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "table": self.table,
            "value": self.value,
            "unit": self.unit,
            "level": self.level.label,
            "advice": self.advice,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every finding of one look at a store, in the order gathered."""

    backend: str
    findings: tuple[Finding, ...]

    @property
    def level(self) -> Level:
        return max((f.level for f in self.findings), default=Level.OK)

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "level": self.level.label,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where a figure turns ``warn`` and ``bad``; the defaults suit a queue under steady load.

    - ``autovacuum_lag``: a table's dead tuples over its autovacuum trigger (threshold + scale factor x rows).
      Past 1 autovacuum is due; past ``lag_warn`` it is falling behind, past ``lag_bad`` it is not keeping up.
    - ``horizon_*_seconds``: how long one transaction (or prepared transaction, or replication slot) may hold
      back the xmin horizon: while it does, no dead tuple newer than it can be removed by any vacuum.
    - ``notify_queue_*``: the share of PostgreSQL's NOTIFY queue in use (at 1.0 every NOTIFY fails).
    - ``bloat_*``: the share of a table or index estimated to be free or dead space, for one of at least
      ``bloat_min_bytes`` (small tables are all overhead and cheap to scan).
    - ``wal_*_bytes``: an SQLite WAL file this large means checkpoints cannot keep up (a long reader).
    """

    lag_warn: float = 2.0
    lag_bad: float = 10.0
    horizon_warn_seconds: float = 300.0
    horizon_bad_seconds: float = 3600.0
    notify_queue_warn: float = 0.05
    notify_queue_bad: float = 0.5
    bloat_warn: float = 0.5
    bloat_bad: float = 0.8
    bloat_min_bytes: int = 64 * 1024 * 1024
    wal_warn_bytes: int = 64 * 1024 * 1024
    wal_bad_bytes: int = 1024 * 1024 * 1024


DEFAULT_THRESHOLDS = Thresholds()


def graded(value: float | None, warn: float, bad: float) -> Level:
    """The level of a figure that is worse the higher it is (None: unknown, not alarming)."""
    if value is None:
        return Level.OK
    if value >= bad:
        return Level.BAD
    if value >= warn:
        return Level.WARN
    return Level.OK


def worst(findings: Iterable[Finding]) -> Level:
    return max((f.level for f in findings), default=Level.OK)


def size_text(n: float) -> str:
    """Bytes for a person: 812 B, 4.0 KiB, 12.3 MiB, 1.2 GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def value_text(finding: Finding) -> str:
    """A finding's value as a table cell: sizes in KiB/MiB, ratios in percent, seconds as durations."""
    v = finding.value
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if finding.unit == "bytes":
        return size_text(v)
    if finding.unit == "ratio":
        return f"{v * 100:.1f}%"
    if finding.unit == "seconds":
        return f"{v:.1f}s" if v < 60 else _duration(v)
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.2f}"
    return f"{int(v):,}"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    for size, unit, smaller, small_unit in ((86400, "d", 3600, "h"), (3600, "h", 60, "m"), (60, "m", 1, "s")):
        if whole >= size:
            return f"{whole // size}{unit} {whole % size // smaller}{small_unit}"
    return f"{whole}s"  # pragma: no cover - only called from 60 s up


def memory_report() -> HealthReport:
    return HealthReport(
        "memory",
        (Finding("store", "in memory", Level.OK, "memory:// keeps nothing on disk: there is nothing to check"),),
    )
