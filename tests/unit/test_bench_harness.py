"""The benchmark harness's own pieces that decide what a published figure means (not a benchmark: no timing).

The shared counter a worker process's handlers report through (bench/peers/_spans.py), and the report's account
of how each system ran (bench/report.py): entry point, version, settings, the ANALYZE step, and the figures
without it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "peers"))

import _spans  # noqa: E402
from bench import harness, report  # noqa: E402
from bench.systems import SYSTEMS  # noqa: E402


def test_a_worker_process_counts_and_times_what_its_handlers_ran(tmp_path: Path) -> None:
    path = tmp_path / "spans"
    _spans.create(path, capacity=100)
    writer = _spans.Spans(path)  # the worker's side
    reader = _spans.Spans(path)  # the benchmark's side
    handlers = _spans.handlers(writer)

    async def work() -> None:
        await handlers["noop"](0.0)
        await handlers["sleep"](1.0)
        await handlers["timed"](0.0)  # scheduled at the epoch: started very late
        await handlers["keyed"](3.0, 7)

    asyncio.run(work())
    writer.close()
    done, first, last, overlaps = reader.header()
    assert done == 4
    assert first is not None
    assert last is not None
    assert last > first
    assert overlaps == 0
    (delay,) = reader.delays()
    assert delay > 1e9  # seconds since 1970: the timed record holds its schedule and its start
    assert [key for key, _, _ in reader.records()] == [7]  # only the keyed task left a span
    reader.close()


def document(**plan: Any) -> dict[str, Any]:
    drain = {
        "rate": 5000.0,
        "done": 1000,
        "worker_cpu_s": 0.1,
        "server_cpu_s": 0.1,
        "settings": "pgq run pgqueuer_app:create --batch-size 10 --max-concurrent-tasks 100",
        "analyze_s": 0.25,
        "unanalyzed": {"rate": 1234.0, "done": 1000},
    }
    return {
        "info": {
            "date": "2026-12-03 08:00 UTC",
            "mode": "quick",
            "scenarios": ["drain"],
            "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 1.0, "os": "os", "python": "3.11"},
            "plan": {
                "enqueue": 10,
                "drain": 1000,
                "sleep": {},
                "rates": [],
                "seconds": 1,
                "wait": 1,
                "backlog_big": 100,
                "backlog_small": 10,
                "backlog_drain": 10,
                "cap": 8,
                **plan,
            },
            "versions": {"pgqueuer": "1.6.0"},
            "servers": {"postgres": "PostgreSQL 15"},
            "analyze": {"postgres": "VACUUM ANALYZE of the run's database, before the worker starts"},
            "elapsed_s": 60,
        },
        "results": {"pgqueuer": {"drain": drain}},
    }


def test_the_report_says_how_each_system_ran_and_what_ran_after_its_fill() -> None:
    text = report.markdown(document(unanalyzed=True))
    (line,) = [line for line in text.splitlines() if line.startswith("- pgqueuer (PostgreSQL) 1.6.0: worker: ")]
    assert "pgq run pgqueuer_app:create --batch-size 10 --max-concurrent-tasks 100" in line
    assert "After each fill: VACUUM ANALYZE of the run's database" in line
    assert "0.2 s after the drain fill" in line
    (row,) = [line for line in text.splitlines() if "without the ANALYZE (tasks/s)" in line]
    assert row.startswith("| drain 1,000 no-op, without the ANALYZE (tasks/s) | 1,234 |")


def test_the_report_has_no_unanalyzed_rows_unless_they_ran() -> None:
    assert "without the ANALYZE (tasks/s)" not in report.markdown(document())


def test_the_report_says_how_long_a_commit_took_around_the_run() -> None:
    doc = document()
    doc["info"]["commit_ms_at_start"] = {"postgres": 0.94}
    doc["info"]["commit_ms_at_end"] = {"postgres": 1.5}
    (line,) = [line for line in report.markdown(doc).splitlines() if line.startswith("PostgreSQL commit")]
    assert "0.94 ms at the start, 1.50 ms at the end" in line
    assert "PostgreSQL commit" not in report.markdown(document())  # not measured: not claimed


def test_the_report_says_how_many_cores_a_drain_kept_busy_and_gives_it_no_ratio() -> None:
    doc = document()
    doc["info"]["versions"]["taskstore-postgres"] = "0.1.0"
    doc["results"]["taskstore-postgres"] = {
        "drain": {
            "rate": 8000.0,
            "done": 1000,
            "worker_cpu_s": 0.1,
            "server_cpu_s": 0.1,
            "settings": "taskstore worker",
        }
    }
    (row,) = [line for line in report.markdown(doc).splitlines() if line.startswith("| cores busy during the drain")]
    # 0.2 CPU s per 1,000 tasks: at 8,000 tasks/s 1.60 cores, at pgqueuer's 5,000 tasks/s 1.00; neither is better
    assert row.split("|")[2:] == [" 1.60 ", " 1.00 ", "  ", "  ", ""]


def test_drain_rounds_take_turns_and_keep_each_systems_median(monkeypatch: Any) -> None:
    taken: list[tuple[str, str]] = []
    rates = iter([100.0, 50.0, 300.0, 70.0, 200.0, 60.0])  # taskstore's rounds 100, 300, 200; pgqueuer's 50, 70, 60

    def work(system: Any, backend: Any, tag: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        taken.append((system.key, tag))
        return {"rate": next(rates), "done": 1000}

    monkeypatch.setattr(harness, "work", work)
    systems = [s for s in SYSTEMS if s.key in ("taskstore-postgres", "pgqueuer")]
    results: dict[str, dict[str, dict[str, Any]]] = {"taskstore-postgres": {}, "pgqueuer": {}}
    plan = harness.dataclasses.replace(harness.QUICK, drain_rounds=3)
    harness.run_drain_rounds(systems, {"postgres": object()}, plan, results)  # type: ignore[dict-item]
    assert taken == [
        ("taskstore-postgres", "round1"), ("pgqueuer", "round1"),
        ("taskstore-postgres", "round2"), ("pgqueuer", "round2"),
        ("taskstore-postgres", "round3"), ("pgqueuer", "round3"),
    ]  # fmt: skip
    assert results["taskstore-postgres"]["drain_rounds"]["rate"] == 200.0
    assert results["pgqueuer"]["drain_rounds"] == {"rate": 60.0, "rates": [50.0, 70.0, 60.0], "capped": False}


def test_the_report_gives_the_rounds_median_its_own_row_and_lists_every_round() -> None:
    doc = document(drain_rounds=3)
    doc["info"]["versions"]["taskstore-postgres"] = "0.1.0"
    doc["results"]["taskstore-postgres"] = {"drain_rounds": {"rate": 200.0, "rates": [100.0, 300.0, 200.0]}}
    doc["results"]["pgqueuer"]["drain_rounds"] = {"rate": 60.0, "rates": [50.0, 70.0, 60.0]}
    text = report.markdown(doc)
    (row,) = [line for line in text.splitlines() if "median of 3 rounds taken in turn" in line]
    assert row.split("|")[2:5] == [" 200 ", " 60 ", " 3.33x "]
    (note,) = [line for line in text.splitlines() if line.startswith("- Drain rounds:")]
    assert "taskstore (PostgreSQL) 100, 300, 200; pgqueuer (PostgreSQL) 50, 70, 60." in note
    assert "median of" not in report.markdown(document())  # no rounds ran: no row
