"""``taskstore doctor`` for people: a health report as two tables and the advice worth reading.

The store-wide findings (server, schema, NOTIFY, the xmin horizon) are one row each; the per-table ones
are gathered into one row per table. Every finding that is not ``ok`` is repeated below with its advice.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._render import printable
from .health import Finding, HealthReport, Level, value_text

_STYLE = {Level.OK: "green", Level.WARN: "yellow", Level.BAD: "bold red"}
# The per-table findings shown as columns, in this order, under these headings.
_COLUMNS = {
    "table_bytes": "size",
    "index_bytes": "indexes",
    "live_tuples": "live",
    "dead_tuples": "dead",
    "autovacuum_lag": "vacuum due",
    "seconds_since_vacuum": "last vacuum",
    "table_bloat": "bloat",
    "index_bloat": "index bloat",
}


def _cell(finding: Finding | None) -> Text:
    if finding is None:
        return Text("")
    text = value_text(finding)
    if finding.name == "autovacuum_lag" and isinstance(finding.value, float | int):
        text = f"{finding.value * 100:.0f}%"  # of the trigger: past 100% autovacuum is due
    elif finding.name == "seconds_since_vacuum" and finding.value is not None:
        text += " ago"
    return Text(printable(text), style=_STYLE[finding.level] if finding.level is not Level.OK else "")


def render(report: HealthReport, console: Console) -> None:
    store_wide = [f for f in report.findings if f.table is None]
    per_table: dict[str, dict[str, Finding]] = {}
    for f in report.findings:
        if f.table is not None:
            per_table.setdefault(f.table, {})[f.name] = f

    checks = Table(title=f"{report.backend} store", title_justify="left", header_style="bold")
    for column in ("check", "value", "level", "note"):
        checks.add_column(column, overflow="fold", no_wrap=column in {"check", "level"})
    for f in store_wide:
        checks.add_row(f.name, _cell(f), Text(f.level.label, style=_STYLE[f.level]), Text(printable(f.advice)))
    console.print(checks)

    if per_table:
        present = [name for name in _COLUMNS if any(name in found for found in per_table.values())]
        tables = Table(title="tables", title_justify="left", header_style="bold")
        tables.add_column("table", no_wrap=True)
        for name in present:
            tables.add_column(_COLUMNS[name], justify="right", no_wrap=True)
        tables.add_column("level", no_wrap=True)
        for table, found in per_table.items():
            level = max((f.level for f in found.values()), default=Level.OK)
            tables.add_row(
                Text(printable(table)),
                *(_cell(found.get(name)) for name in present),
                Text(level.label, style=_STYLE[level]),
            )
        console.print(tables)

    worth_reading = [f for f in report.findings if f.level is not Level.OK]
    for f in worth_reading:
        where = f"{f.table}: " if f.table is not None else ""
        console.print(
            Text.assemble((f.level.label, _STYLE[f.level]), f" {where}{f.name}: ", printable(f.advice)),
            highlight=False,
        )
    if not worth_reading:
        console.print(Text("all ok", style="green"))
