"""The Markdown table and the PNG chart of one run, from the figures the harness wrote to JSON.

``python -m bench.report bench/results/<stem>.json`` redraws both from a saved run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.systems import BACKEND_NAMES, SYSTEMS

Results = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Row:
    label: str
    scenario: str  # the run a cell comes from, and its marks (capped, lower bound, failed)
    metric: str | Callable[[dict[str, Any]], float | None]  # a key of that run's figures, or derived from them
    higher_is_better: bool | None  # None: a figure that explains others, no better or worse (no ratio)
    fmt: str = "{:,.0f}"
    chart: str | None = None  # panel title when the row is one of the charted figures

    def value(self, r: Results) -> float | None:
        res = r.get(self.scenario, {})
        v = self.metric(res) if callable(self.metric) else res.get(self.metric)
        return float(v) if isinstance(v, int | float) and v > 0 else None


def cpu_per_1000(drain: dict[str, Any]) -> float | None:
    if not drain.get("done") or "server_cpu_s" not in drain:
        return None
    return float((drain["worker_cpu_s"] + drain["server_cpu_s"]) / drain["done"] * 1000)


def cores_busy(drain: dict[str, Any]) -> float | None:
    """CPU seconds of the worker and the database per second of the drain: how much of the machine a system used.
    On a machine of N cores no system drains faster than N over its CPU seconds per task."""
    per_task = cpu_per_1000(drain)
    rate = drain.get("rate")
    return None if per_task is None or not isinstance(rate, int | float) else per_task / 1000 * rate


def unanalyzed_rate(res: dict[str, Any]) -> float | None:
    """The drain's twin run without the ANALYZE after its fill (``--unanalyzed``)."""
    raw = res.get("unanalyzed") or {}
    rate = raw.get("rate")
    return float(rate) if isinstance(rate, int | float) and "error" not in raw else None


def size_mb(drain: dict[str, Any]) -> float | None:
    size = drain.get("size_bytes")
    return size / 1e6 if isinstance(size, int) else None


# The rows each scenario of the harness (its --scenarios names) fills.
SCENARIO_OF = {
    "enqueue": "enqueue",
    "drain": "drain",
    "drain_rounds": "drain",
    "backlog_small": "backlog",
    "backlog_big": "backlog",
    "drain_keyed": "limited",
    "drain_limited": "limited",
    "enqueue_plain": "unique",
    "enqueue_unique": "unique",
    "http_drain": "http",
    "http_drain2": "http",
    "http_enqueue": "http",
}


def rows(plan: dict[str, Any], scenarios: list[str] | None = None) -> list[Row]:
    big = f"{plan['backlog_big']:,} waiting"
    raw = bool(plan.get("unanalyzed"))  # each no-op drain also ran without the ANALYZE after its fill
    out = [
        Row(f"bulk enqueue {plan['enqueue']:,} (tasks/s)", "enqueue", "rate", True, chart="bulk enqueue, tasks/s"),
        Row(f"drain {plan['drain']:,} no-op (tasks/s)", "drain", "rate", True, chart="drain, tasks/s"),
    ]
    if plan.get("drain_rounds"):
        label = f"drain {plan['drain']:,} no-op, median of {plan['drain_rounds']} rounds taken in turn (tasks/s)"
        out.append(Row(label, "drain_rounds", "rate", True))
    if raw:
        out.append(Row(f"drain {plan['drain']:,} no-op, without the ANALYZE (tasks/s)", "drain", unanalyzed_rate, True))
    out += sleep_latency_rows(plan)
    out += [
        Row(f"drain with {plan['backlog_small']:,} waiting (tasks/s)", "backlog_small", "rate", True),
        Row(f"drain with {big} (tasks/s)", "backlog_big", "rate", True, chart=f"drain with {big}, tasks/s"),
    ]
    if raw:
        out += [
            Row(
                f"drain with {plan['backlog_small']:,} waiting, without the ANALYZE (tasks/s)",
                "backlog_small",
                unanalyzed_rate,
                True,
            ),
            Row(f"drain with {big}, without the ANALYZE (tasks/s)", "backlog_big", unanalyzed_rate, True),
        ]
    out += [
        Row("CPU s per 1,000 tasks, worker + database", "drain", cpu_per_1000, False, "{:,.2f}", "CPU s per 1,000"),
        Row("cores busy during the drain, worker + database", "drain", cores_busy, None, "{:,.2f}"),
        Row(f"store size after the drain of {plan['drain']:,} (MB)", "drain", size_mb, False, "{:,.1f}"),
    ]
    if plan.get("limited"):
        n, keys = plan["limited"], plan["keys"]
        out += [
            Row(f"drain {n:,} no-op over {keys:,} keys, unlimited (tasks/s)", "drain_keyed", "rate", True),
            Row(
                f"drain {n:,} no-op over {keys:,} keys, each limited to 1 (tasks/s)",
                "drain_limited",
                "rate",
                True,
                chart="drain, 1,000 keys limited to 1, tasks/s",
            ),
            Row("limited drain / unlimited (aim ≥ 0.50)", "drain_limited", "vs_unlimited", True, "{:.2f}"),
        ]
    if plan.get("unique"):
        n = plan["unique"]
        out += [
            Row(f"bulk enqueue {n:,}, plain (tasks/s)", "enqueue_plain", "rate", True),
            Row(
                f"bulk enqueue {n:,}, a unique key each (tasks/s)",
                "enqueue_unique",
                "rate",
                True,
                chart="bulk enqueue, unique key each, tasks/s",
            ),
            Row("unique enqueue / plain (aim ≥ 0.80)", "enqueue_unique", "vs_plain", True, "{:.2f}"),
        ]
    if plan.get("http"):
        rate = plan.get("http_rate", 500)
        out += [
            Row(
                f"HTTP drain {plan['http']:,} no-op: 4 worker processes, one taskstore serve (tasks/s; aim ≥ 5,000)",
                "http_drain",
                "rate",
                True,
                chart="HTTP drain, 4 workers, one server, tasks/s",
            ),
            Row(
                f"HTTP drain {plan['http']:,} no-op: the same, taskstore serve --workers 2 (tasks/s)",
                "http_drain2",
                "rate",
                True,
            ),
            Row(f"POST /api/v1/tasks p50 at {rate:,}/s, open loop (ms)", "http_enqueue", "p50_ms", False, "{:,.1f}"),
            Row(f"POST /api/v1/tasks p99 at {rate:,}/s, open loop (ms)", "http_enqueue", "p99_ms", False, "{:,.1f}"),
        ]
    if scenarios is not None:
        out = [row for row in out if scenario_name(row.scenario) in scenarios]
    return out


def scenario_name(run: str) -> str:
    """The --scenarios name a run belongs to (sleep10 -> sleep, latency500 -> latency)."""
    return SCENARIO_OF.get(run) or run.rstrip("0123456789")


def sleep_latency_rows(plan: dict[str, Any]) -> list[Row]:
    out = []
    for c in plan["sleep"]:
        label = f"1 ms tasks, concurrency {c} (tasks/s; ideal {int(c) * 1000:,})"
        chart = f"1 ms tasks at concurrency {c}, tasks/s" if int(c) == 100 else None
        out.append(Row(label, f"sleep{c}", "rate", True, chart=chart))
    for rate in plan["rates"]:
        for q in ("p50", "p99"):
            chart = f"{q} latency at {rate:,}/s, ms" if q == "p99" and rate == max(plan["rates"]) else None
            out.append(Row(f"latency {q} at {rate:,}/s (ms)", f"latency{rate}", f"{q}_ms", False, "{:,.1f}", chart))
    return out


def ratio(ours: list[float | None], theirs: list[float | None], higher_is_better: bool | None) -> str:
    if higher_is_better is None:
        return ""
    a = [v for v in ours if v is not None]
    b = [v for v in theirs if v is not None]
    if not a or not b:
        return ""
    mine, best = (max(a), max(b)) if higher_is_better else (min(a), min(b))
    return f"{(mine / best if higher_is_better else best / mine):.2f}x"


def cell(row: Row, r: Results) -> str:
    value = row.value(r)
    res = r.get(row.scenario, {})
    if "error" in res:  # a run that failed its own check (the limited drain's overlaps) shows no figure
        return "failed"
    if value is None:
        return "skipped" if "skipped" in res else "—"
    text = row.fmt.format(value)
    if res.get("capped"):
        text += "*"
    if res.get("started", 0) < res.get("expected", 0):
        text = "≥" + text
    return text


def markdown(document: dict[str, Any], chart: str | None = None) -> str:
    info, results = document["info"], document["results"]
    systems = [s for s in SYSTEMS if s.key in results]
    ts = [s.key for s in systems if s.is_taskstore]
    peers_on = {b: [s.key for s in systems if s.backend == b and not s.is_taskstore] for b in BACKEND_NAMES}
    ts_on = {b: [s.key for s in systems if s.backend == b and s.is_taskstore] for b in BACKEND_NAMES}
    groups = [
        ("SQLite", ts_on["sqlite"], peers_on["sqlite"]),
        ("PostgreSQL", ts_on["postgres"], peers_on["postgres"]),
        # taskstore on Redis when it ran (like for like); else taskstore's best backend, as before it existed.
        ("vs Redis peers", ts_on["redis"] or ts, peers_on["redis"]),
        ("overall", ts, [k for k in results if k not in ts]),
    ]
    groups = [g for g in groups if g[1] and g[2]]
    m = info["machine"]
    lines = [
        f"# taskstore and its peers — {info['date']} ({info['mode']} run)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, Python {m['python']}.",
        "Servers: " + "; ".join(f"{v}" for v in info["servers"].values()) + ".",
        "Versions: " + ", ".join(f"{s.label.split(' (')[0]} {info['versions'][s.key]}" for s in systems) + ".",
    ]
    if "load_at_start" in info:
        start, end = info["load_at_start"], info["load_at_end"]
        lines.append(
            f"Load average (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in start)} at the start, "
            f"{', '.join(f'{v:.1f}' for v in end)} at the end."
        )
    for name, ms in info.get("commit_ms_at_start", {}).items():
        end_ms = info.get("commit_ms_at_end", {}).get(name)
        lines.append(
            f"{BACKEND_NAMES[name]} commit (one-row INSERT in its own transaction, median of 50): {ms:.2f} ms at the "
            f"start, {'?' if end_ms is None else f'{end_ms:.2f}'} ms at the end. A system that commits per small "
            "batch drains at a rate that follows this figure (pgqueuer commits twice per dequeued batch); reruns on "
            "a machine whose disk flushes faster or slower move its ratios."
        )
    for name, why in info.get("missing", {}).items():
        lines.append(f"Skipped every system on {BACKEND_NAMES[name]}: {why}.")
    lines += [
        "",
        "| scenario | " + " | ".join([s.label for s in systems] + [g[0] for g in groups]) + " |",
        "|---|" + "---:|" * (len(systems) + len(groups)),
    ]
    scenarios = info.get("scenarios")
    for row in rows(info["plan"], scenarios):
        cells = [cell(row, results[s.key]) for s in systems]
        ratios = [
            ratio([row.value(results[k]) for k in mine], [row.value(results[k]) for k in theirs], row.higher_is_better)
            for _, mine, theirs in groups
        ]
        lines.append(f"| {row.label} | " + " | ".join(cells + ratios) + " |")
    lines += [
        "",
        "Ratio columns: taskstore's figure over the best peer's on the same backend (for the Redis peers,",
        "taskstore on Redis when it ran, else its best backend; for 'overall', its best backend), turned so",
        "that above 1.00x means taskstore is better: faster, less late, less CPU, smaller.",
        "",
        f"- `*`: the run stopped at its cap of {info['plan']['cap']:.0f} s; the rate is over the tasks it finished.",
    ]
    # A run from before --scenarios ran them all, but the flow-control ones only if its plan has their sizes.
    ran = set(scenarios) if scenarios is not None else {"enqueue", "drain", "sleep", "latency", "backlog"}
    if "latency" in ran:
        lines += [
            f"- `≥`: some tasks had not started {info['plan']['wait']:.0f} s after the last enqueue; they count as",
            "  that late, so the figure is a lower bound.",
            "- Latency runs from each task's scheduled enqueue time (open loop: the producer, in another process,",
            "  does not wait for one enqueue before the next) to the start of its handler.",
        ]
    if ran & {"drain", "backlog"} and "postgres" in info.get("analyze", {}):
        lines += [
            "- PostgreSQL: each store is a fresh database; after its fill, the harness runs VACUUM ANALYZE on it, as",
            "  autovacuum would soon after a large load (a drain timed against plans for an empty table measures",
            "  the planner's guess, not the system). Rows 'without the ANALYZE' (`--unanalyzed`) time the same drain",
            "  in another fresh database right after its fill.",
            "- Every PostgreSQL system's worker, and taskstore's on SQLite, runs through its own command line in one",
            "  process of its own, at the same concurrency (below); their handlers report through shared memory.",
        ]
    if "drain" in ran:
        lines += [
            "- CPU: the worker process (and its children) plus the database server's processes, during the drain;",
            "  for SQLite the database runs inside the worker's process. Cores busy: those CPU seconds per second",
            f"  of the drain. On {m['cores']} cores no system drains faster than {m['cores']} over its CPU s per task:",
            "  a system that already keeps every core busy gains on another only by costing less CPU per task.",
            "- Store size: the queue's tables and indexes (PostgreSQL), the file and its WAL (SQLite), Redis's used",
            "  memory over an empty server; each system keeps finished tasks by its own default (taskstore keeps",
            "  them until archived).",
        ]
    rounds = {
        s.label: r["drain_rounds"]["rates"] for s in systems if "rates" in (r := results[s.key]).get("drain_rounds", {})
    }
    if rounds:
        lines.append(
            f"- Drain rounds: after every system's scenarios, the no-op drain {info['plan']['drain_rounds']} times"
            " more, the systems taking turns, each in a fresh store; the row is each system's median. Every round's"
            " rate: "
            + "; ".join(f"{label} " + ", ".join(f"{v:,.0f}" for v in rates) for label, rates in rounds.items())
            + "."
        )
    if any("drain_limited" in r for r in results.values()):
        lines += [
            f"- Limited drain: {info['plan']['limited']:,} no-op tasks, each with one of {info['plan']['keys']:,} keys"
            " (scattered, the same for every",
            "  system), each key limited to one running at a time with the system's own feature; the unlimited row",
            "  drains the same tasks without the limit, through the same worker (taskstore: `taskstore worker` in a",
            "  process of its own, for both). The handler records its start and end per key; `failed` means two",
            "  tasks of one key overlapped. `skipped`: the system has no such feature (why, below).",
        ]
    if info["plan"].get("repeat", 1) > 1 and any(
        "drain_limited" in r or "enqueue_unique" in r for r in results.values()
    ):
        lines += [
            f"- Flow-control rows: each pair ran {info['plan']['repeat']} times, alternating which went first; the",
            "  best run of each is shown (every run's rate is in the JSON), so that other work on the machine",
            "  weighs less; a run that failed the overlap check is shown over any good one. A pair with a run",
            "  over a minute long (or stopped at the cap) ran once.",
        ]
    if any("enqueue_unique" in r for r in results.values()):
        lines += [
            f"- Unique enqueue: {info['plan']['unique']:,} tasks each with a distinct deduplication key (none is a",
            "  duplicate: the row measures what the check costs), through the API named below; the plain row is the",
            "  same enqueue without keys, run right after.",
        ]
    if any("http_drain" in r for r in results.values()):
        lines += [
            "- HTTP rows (taskstore on PostgreSQL only; the peers have no HTTP API): `taskstore serve` started with",
            "  the CLI and a worker-role token, one process (the next row: `--workers 2`); 4 `bench/http_worker.py`",
            "  processes (stdlib `http.client`, no taskstore import) claim 50 at a time with `block_for` and finish",
            "  each batch with one `POST /api/v1/completions`; the rate runs from the first claim that returned",
            "  tasks to the last completion. The POST /api/v1/tasks latency runs from each request's slot (open",
            "  loop, one producer process, a thread pool of kept-alive connections, one server process) to its",
            "  answer.",
        ]
    lines.append("")
    lines += systems_section(info, results)
    for title, run in (
        ("Settings (limited drain)", "drain_limited"),
        ("Unique enqueue (API)", "enqueue_unique"),
        ("HTTP drain", "http_drain"),
    ):
        if not any(run in results[s.key] for s in systems):
            continue
        lines += [f"{title}:", ""]
        for s in systems:
            if run not in results[s.key]:
                continue  # a scenario only some systems run (HTTP)
            res = results[s.key].get(run, {})
            text = res.get("settings") or res.get("error") or res.get("skipped")
            if "error" in res and res.get("settings"):
                text = f"{res['settings']} — FAILED: {res['error']}"
            lines.append(f"- {s.label}: {text}")
        lines.append("")
    if lines[-1] == "":
        lines.pop()  # the sizes below start with their own blank line
    plan = info["plan"]
    sizes = {
        "enqueue": f"enqueue {plan['enqueue']:,}",
        "drain": f"drain {plan['drain']:,}",
        "sleep": "1 ms tasks " + ", ".join(f"{n:,} at concurrency {c}" for c, n in plan["sleep"].items()),
        "latency": f"latency over {plan['seconds']:g} s at each rate, worker concurrency 100",
        "backlog": f"backlog drain of {plan['backlog_drain']:,} with {plan['backlog_small']:,} and with "
        f"{plan['backlog_big']:,} waiting",
        "limited": f"limited drain {plan.get('limited', 0):,} over {plan.get('keys', 0):,} keys",
        "unique": f"unique enqueue {plan.get('unique', 0):,}",
        "http": f"HTTP drain {plan.get('http', 0):,}, POST /api/v1/tasks for {plan.get('http_seconds', 0):g} s",
    }
    lines += [
        "",
        "Sizes: " + "; ".join(text for name, text in sizes.items() if name in ran and plan.get(name) != 0) + ".",
        f"Whole run: {info['elapsed_s'] / 60:.1f} minutes.",
    ]
    if chart:
        lines += ["", f"![main figures]({chart})"]
    return "\n".join(lines) + "\n"


# The runs whose settings name a system's worker (the first one a run has), and the fills an ANALYZE followed.
WORKER_RUNS = ("drain", "backlog_small", "backlog_big", "sleep100", "sleep10", "drain_keyed", "latency500")
FILLED_RUNS = {"drain": "drain", "backlog_small": "small backlog", "backlog_big": "big backlog"}


def systems_section(info: dict[str, Any], results: dict[str, Results]) -> list[str]:
    """Per system: its version, how its worker ran (entry point, processes, concurrency, batch), the ANALYZE step."""
    analyze = info.get("analyze", {})
    lines = ["Systems (entry point and settings of the worker; what ran between each fill and the worker):", ""]
    for s in SYSTEMS:
        if s.key not in results:
            continue
        r = results[s.key]
        worker = next((r[run]["settings"] for run in WORKER_RUNS if r.get(run, {}).get("settings")), None)
        step = analyze.get(s.backend)
        if step is None:
            step = "nothing" + (
                " (no autovacuum on this backend to anticipate)"
                if "analyze" in info
                else " (a run from before the step)"
            )
        took = [
            f"{r[run]['analyze_s']:.1f} s after the {name} fill" for run, name in FILLED_RUNS.items()
            if isinstance(r.get(run, {}).get("analyze_s"), int | float)
        ]  # fmt: skip
        if took:
            step += f" ({', '.join(took)})"
        version = info["versions"].get(s.key, "?")
        lines.append(f"- {s.label} {version}: worker: {worker or 'no worker run'}. After each fill: {step}.")
    return [*lines, ""]


def chart(document: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info, results = document["info"], document["results"]
    systems = [s for s in SYSTEMS if s.key in results]
    charted = [row for row in rows(info["plan"], info.get("scenarios")) if row.chart]
    if not charted:
        return  # scenarios with no charted figure: the table says it all
    colours = {"sqlite": "#4c72b0", "postgres": "#55a868", "redis": "#c44e52"}
    cols = 3
    fig, axes = plt.subplots((len(charted) + cols - 1) // cols, cols, figsize=(16, 4.2 * ((len(charted) + 2) // 3)))
    for ax, row in zip(axes.flat, charted, strict=False):
        labels = [s.label.replace(" (", "\n(") for s in systems]
        values = [row.value(results[s.key]) or 0.0 for s in systems]
        bars = ax.barh(labels, values, color=[colours[s.backend] for s in systems])
        for bar, s in zip(bars, systems, strict=True):
            if s.is_taskstore:
                bar.set_edgecolor("black")
                bar.set_linewidth(2)
        ax.set_title(row.chart + (" (higher is better)" if row.higher_is_better else " (lower is better)"), fontsize=10)
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 50:
            ax.set_xscale("log")
        ax.margins(x=0.25)
        left = ax.get_xlim()[0]
        for bar, v in zip(bars, values, strict=True):
            text = " " + row.fmt.format(v) if v else " — (not run or failed)"
            ax.text(bar.get_width() if v else left, bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=8)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(charted) :]:
        ax.axis("off")
    m = info["machine"]
    fig.suptitle(
        f"taskstore and its peers, {info['date']} ({info['mode']}): {m['cores']} cores, {m['memory_gib']} GiB, "
        f"Python {m['python']} — taskstore outlined",
        fontsize=12,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    source = Path(sys.argv[1])
    doc = json.loads(source.read_text())
    stem = source.with_suffix("")
    Path(f"{stem}.md").write_text(markdown(doc, chart=Path(f"{stem}.png").name))
    chart(doc, Path(f"{stem}.png"))
    print(Path(f"{stem}.md").read_text())
