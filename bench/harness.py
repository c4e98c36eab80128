"""taskstore side by side with the established Python task queues: one run, one machine, one workload.

    python -m bench [--quick] [--systems taskstore-sqlite,huey,...] [--scenarios limited,unique]

For every system whose server can be had (PostgreSQL and Redis are found or started as the tests do; a system
whose server cannot be had is skipped with the reason), each scenario runs in a fresh store, one system at a
time, each peer in its own virtual environment:

1. bulk enqueue of no-op tasks with the system's fastest API;
2. drain of no-op tasks through the system's real worker (CPU of the worker and the database, and the store's
   size afterwards, are read around this run);
3. 1 ms tasks at concurrency 10 and 100, against the ideal of concurrency / 1 ms;
4. open-loop load at 500 and 2,000 tasks/s from a producer process: p50/p99 enqueue-to-start latency;
5. drain throughput with a large backlog waiting, against the same drain with a small one;
6. flow control, for the systems that have the feature (the others show why not): a drain of no-op tasks spread
   over 1,000 concurrency keys each limited to one running at a time, against the same tasks unlimited (and a
   check that no two tasks of one key ever overlapped); bulk enqueue with a distinct deduplication key per task,
   against the plain bulk enqueue.

7. HTTP (taskstore on PostgreSQL only): a drain by 4 worker processes that use only the HTTP API against one
   ``taskstore serve``, and the p50/p99 of ``POST /api/v1/tasks`` under an open-loop 500 requests/s
   (bench/http_bench.py).

Each worker on PostgreSQL runs as its users run it: its own command line (``taskstore worker``, ``pgq run``,
``procrastinate worker``) in one process of its own, with that system's documented defaults except the
concurrency, which every system gets alike (see each adapter's docstring for the doc pages). After each fill, the
run's database gets the VACUUM ANALYZE autovacuum would soon run (``Backend.analyze``); ``--unanalyzed`` also times
each no-op drain (drain, backlog) without it, in a fresh database of its own. Before the first system and after the
last, the harness times a one-row commit on PostgreSQL (``Backend.commit_ms``) and the report prints it: a system
that commits per small batch drains at a rate that follows the disk's flush time, so a rerun elsewhere can tell
whether its ratios moved with the machine (bench/pgqueuer_check.py runs pgqueuer's drain outside the harness too).

8. recovery (taskstore and the peers with a lease-like mechanism: pgqueuer, procrastinate): 3 workers of one
   system, one SIGKILLed every 2 s (or SIGSTOPped for 6 s every 5 s), and how soon the lost work runs again
   (bench/recovery.py). It writes bench/results/recovery-<date>.md/.json of its own.

``--drain-rounds N`` runs the no-op drain N times more after every system's scenarios, the systems taking turns,
and reports each one's median in a row of its own: the ratio a rerun on a drifting machine gives again.

``--scenarios`` picks some of: enqueue, drain, sleep, latency, backlog, limited, unique, http, recovery (default:
all).

Results: bench/results/<date>[-quick].md (table with taskstore's ratio to the best peer), .png (chart) and
.json (every figure). Not a test: it prints figures for a person to read.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import report
from bench.servers import Backend, open_backends
from bench.systems import SYSTEMS, System, prepare, version_of

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Plan:
    enqueue: int
    drain: int
    sleep: dict[int, int]  # concurrency -> tasks
    rates: tuple[int, ...]
    seconds: float
    wait: float  # after the producer stops, how long stragglers may take
    backlog_big: int
    backlog_small: int
    backlog_drain: int
    cap: float  # a worker run stops here even if it has not finished (rate over what it did)
    limited: int = 0  # tasks of the limited drain (and of its unlimited twin)
    keys: int = 1_000  # concurrency keys they spread over (must match KEYS in bench/peers/_common.py)
    unique: int = 0  # tasks of the unique bulk enqueue (and of its plain twin)
    repeat: int = 1  # each flow-control pair runs this many times; the best run of each is kept
    http: int = 0  # tasks drained through taskstore serve by the HTTP workers
    http_rate: int = 500  # POST /api/v1/tasks per second, open loop
    http_seconds: float = 10.0  # for this long
    unanalyzed: bool = False  # also run the drains without the ANALYZE after the fill, and report that figure
    drain_rounds: int = 0  # after every system's scenarios, the no-op drain this many times more, systems in turn


FULL = Plan(
    100_000,
    50_000,
    {10: 20_000, 100: 50_000},
    (500, 2_000),
    10,
    15,
    1_000_000,
    10_000,
    10_000,
    120,
    50_000,
    1_000,
    100_000,
    http=100_000,
)
QUICK = Plan(
    10_000, 5_000, {10: 2_000, 100: 5_000}, (500, 2_000), 2, 3, 50_000, 5_000, 5_000, 8, 5_000, 1_000, 10_000,
    http=20_000, http_seconds=3.0,
)  # fmt: skip
SCENARIOS = ("enqueue", "drain", "sleep", "latency", "backlog", "limited", "unique", "http", "recovery")


def child(system: System, scenario: str, url: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [system.python, str(system.path), scenario, url, json.dumps(params)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"{scenario} ran past {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"error": f"{scenario} exited {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_s"] = time.perf_counter() - started  # the whole child run, start-up included
    return result


def work(
    system: System,
    backend: Backend,
    tag: str,
    kind: str,
    fill: int,
    n: int,
    concurrency: int | None,
    cap: float,
    analyze: bool = True,
    twin: bool = False,
) -> dict[str, Any]:
    """Fill a fresh store, ANALYZE it (see ``Backend.analyze``), then time the worker; the database's CPU is read
    around the worker's run only. ``twin``: then the same again without the ANALYZE, its figures under
    ``unanalyzed``."""
    url = backend.fresh(f"{system.key}-{tag}")
    started = time.perf_counter()
    filled = child(system, "fill", url, {"kind": kind, "n": fill}, timeout=3600)
    if "error" in filled or "skipped" in filled:
        return filled
    fill_s = time.perf_counter() - started
    analyze_s = None
    if analyze and backend.analyze_step is not None:
        backend.analyze(url)
        analyze_s = time.perf_counter() - started - fill_s
    cpu0 = backend.server_cpu()
    result = child(system, "work", url, {"kind": kind, "n": n, "concurrency": concurrency, "cap": cap}, cap + 120)
    cpu1 = backend.server_cpu()
    result["fill_s"] = fill_s
    if analyze_s is not None:
        result["analyze_s"] = analyze_s
    if cpu0 is not None and cpu1 is not None:
        result["server_cpu_s"] = cpu1 - cpu0
    if "error" not in result and "skipped" not in result:
        result["size_bytes"] = backend.size(url)
    if twin and analyze_s is not None:
        result["unanalyzed"] = work(system, backend, f"{tag}-raw", kind, fill, n, concurrency, cap, analyze=False)
    return result


def run_system(system: System, backend: Backend, plan: Plan, scenarios: set[str]) -> dict[str, dict[str, Any]]:
    r: dict[str, dict[str, Any]] = {}

    def show(name: str, text: str) -> None:
        res = r[name]
        try:
            line = res.get("error") or res.get("skipped") or text.format(**res)
        except (KeyError, ValueError):  # a figure the text wants is missing (its twin run failed)
            line = json.dumps(res)
        print(f"  {name:<14} {line}{'  (stopped at the cap)' if res.get('capped') else ''}", flush=True)

    if "enqueue" in scenarios:
        r["enqueue"] = child(system, "enqueue", backend.fresh(f"{system.key}-enqueue"), {"n": plan.enqueue}, 1800)
        show("enqueue", "{rate:,.0f} tasks/s")
    if "drain" in scenarios:
        r["drain"] = work(
            system, backend, "drain", "noop", plan.drain, plan.drain, None, plan.cap, twin=plan.unanalyzed
        )
        show("drain", "{rate:,.0f} tasks/s, worker CPU {worker_cpu_s:.1f} s, " + "{settings}" + unanalyzed(r["drain"]))
    if "sleep" in scenarios:
        run_sleep(system, backend, plan, r, show)
    if "latency" in scenarios:
        run_latency(system, backend, plan, r, show)
    if "backlog" in scenarios:
        run_backlog(system, backend, plan, r, show)
    if "limited" in scenarios:
        run_limited(system, backend, plan, r, show)
    if "unique" in scenarios:
        run_unique(system, backend, plan, r, show)
    if "http" in scenarios and system.key == "taskstore-postgres":
        run_http(system, backend, plan, r, show)
    return r


Show = Callable[[str, str], None]


def unanalyzed(result: dict[str, Any]) -> str:
    """The un-analyzed twin's rate, for the progress line (braces doubled: the line is a format string)."""
    raw = result.get("unanalyzed")
    if raw is None:
        return ""
    text = raw.get("error") or raw.get("skipped") or f"{raw.get('rate', 0):,.0f} tasks/s"
    return f"; without the ANALYZE: {text}".replace("{", "{{").replace("}", "}}")


def run_sleep(system: System, backend: Backend, plan: Plan, r: dict[str, dict[str, Any]], show: Show) -> None:
    for c, n in plan.sleep.items():
        r[f"sleep{c}"] = work(system, backend, f"sleep{c}", "sleep", n, n, c, plan.cap)
        show(f"sleep{c}", f"{{rate:,.0f}} tasks/s (ideal {c * 1000:,})")


def run_latency(system: System, backend: Backend, plan: Plan, r: dict[str, dict[str, Any]], show: Show) -> None:
    for rate in plan.rates:
        url = backend.fresh(f"{system.key}-latency{rate}")
        params = {"rate": rate, "seconds": plan.seconds, "concurrency": 100, "wait": plan.wait}
        r[f"latency{rate}"] = child(system, "latency", url, params, plan.seconds + plan.wait + 120)
        show(f"latency{rate}", "p50 {p50_ms:.1f} ms, p99 {p99_ms:.1f} ms ({started:,} of {expected:,} started)")


def run_backlog(system: System, backend: Backend, plan: Plan, r: dict[str, dict[str, Any]], show: Show) -> None:
    twin = plan.unanalyzed
    r["backlog_small"] = work(
        system, backend, "backlog-small", "noop", plan.backlog_small, plan.backlog_drain, None, plan.cap, twin=twin
    )
    show("backlog_small", f"{{rate:,.0f}} tasks/s with {plan.backlog_small:,} waiting" + unanalyzed(r["backlog_small"]))
    r["backlog_big"] = work(
        system, backend, "backlog-big", "noop", plan.backlog_big, plan.backlog_drain, None, plan.cap, twin=twin
    )
    show(
        "backlog_big",
        f"{{rate:,.0f}} tasks/s with {plan.backlog_big:,} waiting (filled in {{fill_s:.0f}} s)"
        + unanalyzed(r["backlog_big"]),
    )


def run_limited(system: System, backend: Backend, plan: Plan, r: dict[str, dict[str, Any]], show: Show) -> None:
    """The limited drain and its unlimited twin, ``plan.repeat`` times in alternating order (best of each kept).

    A system without the feature skips the limited drain, and then its twin too.
    """
    n = plan.limited

    def limited() -> dict[str, Any]:
        return work(system, backend, "limited", "limited", n, n, None, plan.cap)

    def keyed() -> dict[str, Any]:
        return work(system, backend, "keyed", "keyed", n, n, None, plan.cap)

    r["drain_limited"], r["drain_keyed"] = pairs(limited, keyed, plan.repeat)
    if r["drain_limited"].get("rate") and r["drain_keyed"].get("rate"):
        r["drain_limited"]["vs_unlimited"] = r["drain_limited"]["rate"] / r["drain_keyed"]["rate"]
    show("drain_keyed", f"{{rate:,.0f}} tasks/s over {plan.keys:,} keys, unlimited")
    show("drain_limited", "{rate:,.0f} tasks/s, each key limited to 1 ({vs_unlimited:.2f} of unlimited); {settings}")


def run_unique(system: System, backend: Backend, plan: Plan, r: dict[str, dict[str, Any]], show: Show) -> None:
    """The unique bulk enqueue and the plain one of the same size, ``plan.repeat`` times (best of each kept).

    A system without the feature skips the unique enqueue, and then the plain one too.
    """
    n = plan.unique

    def unique() -> dict[str, Any]:
        return child(system, "enqueue_unique", backend.fresh(f"{system.key}-unique"), {"n": n}, 1800)

    def plain() -> dict[str, Any]:
        return child(system, "enqueue", backend.fresh(f"{system.key}-plain"), {"n": n}, 1800)

    r["enqueue_unique"], r["enqueue_plain"] = pairs(unique, plain, plan.repeat)
    if r["enqueue_unique"].get("rate") and r["enqueue_plain"].get("rate"):
        r["enqueue_unique"]["vs_plain"] = r["enqueue_unique"]["rate"] / r["enqueue_plain"]["rate"]
    show("enqueue_plain", "{rate:,.0f} tasks/s")
    show("enqueue_unique", "{rate:,.0f} tasks/s with a unique key each ({vs_plain:.2f} of plain); {settings}")


def run_http(system: System, backend: Backend, plan: Plan, r: dict[str, dict[str, Any]], show: Show) -> None:
    from bench import http_bench

    def fill(url: str, n: int) -> dict[str, Any]:
        return child(system, "fill", url, {"kind": "noop", "n": n}, timeout=3600)

    workers = http_bench.HTTP_WORKERS
    for run, processes in (("http_drain", 1), ("http_drain2", 2)):
        try:
            r[run] = http_bench.drain(backend, fill, plan.http, plan.cap + 60, processes)
        except Exception as exc:  # a server that would not start, a worker that crashed: shown, not fatal
            r[run] = {"error": f"{type(exc).__name__}: {exc}"}
        show(
            run,
            f"{{rate:,.0f}} tasks/s by {workers} HTTP workers, serve processes {processes}, CPU {{serve_cpu_s:.1f}} s",
        )
    try:
        r["http_enqueue"] = http_bench.enqueue_latency(backend, plan.http_rate, plan.http_seconds)
    except Exception as exc:
        r["http_enqueue"] = {"error": f"{type(exc).__name__}: {exc}"}
    show("http_enqueue", f"POST /api/v1/tasks at {plan.http_rate}/s: p50 {{p50_ms:.1f}} ms, p99 {{p99_ms:.1f}} ms")


SLOW_RUN = 60.0  # seconds: a flow-control pair with a run this long (or capped) is not repeated


def pairs(
    feature: Callable[[], dict[str, Any]], twin: Callable[[], dict[str, Any]], repeat: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a feature's scenario and its twin without the feature ``repeat`` times, alternating which goes first
    (so neither always meets the other's leftovers), and keep each one's best run: on a shared machine the best
    of a few is the steadiest estimate of what a system can do. A failed run (the overlap check) is kept over
    any number of good ones, so best-of never hides it."""
    features: list[dict[str, Any]] = []
    twins: list[dict[str, Any]] = []
    for i in range(max(1, repeat)):
        if i and any(run.get("capped") or run.get("wall_s", 0) > SLOW_RUN for run in features + twins):
            break  # a run that long already averages over the machine's other work, and repeating it costs minutes
        if i % 2 == 0:
            features.append(feature())
            if "skipped" in features[-1]:
                return features[-1], {"skipped": features[-1]["skipped"]}
            twins.append(twin())
        else:
            twins.append(twin())
            features.append(feature())
    return best(features), best(twins)


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [run for run in runs if "error" in run]
    chosen = dict(failed[0] if failed else max(runs, key=lambda run: run.get("rate", 0.0)))
    if len(runs) > 1:
        chosen["rates"] = [run.get("rate") for run in runs]
    return chosen


def machine() -> dict[str, Any]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "host": platform.node(),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def commit_latencies(backends: dict[str, Backend]) -> dict[str, float]:
    """Each server's one-row commit time now, where it has one (see ``Backend.commit_ms``)."""
    out = {}
    for name, backend in backends.items():
        ms = backend.commit_ms()
        if ms is not None:
            out[name] = ms
    return out


def run_drain_rounds(
    systems: list[System], backends: dict[str, Backend], plan: Plan, results: dict[str, dict[str, dict[str, Any]]]
) -> None:
    """The no-op drain ``plan.drain_rounds`` times more, the systems taking turns (A, B, A, B, ...), each in a fresh
    store as ``work`` does; the median rate of each is its ``drain_rounds`` figure.

    A shared machine's speed drifts over a run by more than the systems differ (a third, seen here). The drains of
    the main run are minutes apart, one system's scenarios after another's; rounds taken in turn put every system
    under the same drift, so the ratio of their medians is what a rerun gives again.
    """
    runs: dict[str, list[dict[str, Any]]] = {}
    for n in range(1, plan.drain_rounds + 1):
        for system in systems:
            if system.backend not in backends or system.key not in results:
                continue
            res = work(system, backends[system.backend], f"round{n}", "noop", plan.drain, plan.drain, None, plan.cap)
            runs.setdefault(system.key, []).append(res)
            line = res.get("error") or res.get("skipped") or f"{res['rate']:,.0f} tasks/s"
            print(f"  drain round {n}: {system.label}: {line}", flush=True)
    for key, done in runs.items():
        rates = [r["rate"] for r in done if "rate" in r and "error" not in r]
        if not rates:
            results[key]["drain_rounds"] = {"error": next((r["error"] for r in done if "error" in r), "no rate")}
            continue
        results[key]["drain_rounds"] = {
            "rate": statistics.median(rates),
            "rates": rates,
            "capped": any(r.get("capped") for r in done),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run in under 5 minutes")
    parser.add_argument("--systems", default=",".join(s.key for s in SYSTEMS), help="comma-separated keys")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated; default: all")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="flow-control pairs: runs of each, best kept; recovery: runs of each mode (2 unless more are asked)",
    )
    parser.add_argument(
        "--unanalyzed",
        action="store_true",
        help="also run each no-op drain (drain, backlog) without the VACUUM ANALYZE after its fill, and report both",
    )
    parser.add_argument(
        "--drain-rounds",
        type=int,
        default=0,
        help="after the scenarios, the no-op drain N times more with the systems taking turns; report the medians",
    )
    parser.add_argument("--out", type=Path, default=None, help="file stem for .md/.png/.json (default: by date)")
    opts = parser.parse_args()
    scenarios = {k.strip() for k in opts.scenarios.split(",") if k.strip()}
    if scenarios - set(SCENARIOS):
        parser.error(
            f"unknown scenarios: {', '.join(sorted(scenarios - set(SCENARIOS)))}; known: {', '.join(SCENARIOS)}"
        )
    keys = [k.strip() for k in opts.systems.split(",") if k.strip()]
    unknown = set(keys) - {s.key for s in SYSTEMS}
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}; known: {', '.join(s.key for s in SYSTEMS)}")
    systems = [s for s in SYSTEMS if s.key in keys]
    if "recovery" in scenarios:
        # Its own shape (several worker processes signalled from outside, not one child per scenario) and its
        # own report: bench/recovery.py.
        from bench import recovery

        prepare([s for s in systems if s.key in recovery.SPECS])
        params = recovery.Params(tasks=500) if opts.quick else recovery.Params()
        stem = RESULTS / f"recovery-{datetime.date.today().isoformat()}-quick" if opts.quick else opts.out
        recovery.run(systems, list(recovery.MODES), 1 if opts.quick else max(2, opts.repeat), params, stem)
        scenarios.discard("recovery")
        if not scenarios:
            return
    if opts.drain_rounds < 0:
        parser.error("--drain-rounds takes 0 or more")
    plan = dataclasses.replace(
        QUICK if opts.quick else FULL,
        repeat=opts.repeat,
        unanalyzed=opts.unanalyzed,
        drain_rounds=opts.drain_rounds if "drain" in scenarios else 0,
    )
    started = time.perf_counter()
    prepare(systems)
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if opts.quick else "full",
        "scenarios": [name for name in SCENARIOS if name in scenarios],
        "machine": machine(),
        "plan": asdict(plan),
        "versions": {s.key: version_of(s) for s in systems},
        "load_at_start": os.getloadavg(),  # other work on the machine skews every figure: say how much there was
    }
    m = info["machine"]
    print(f"{m['host']}: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}", flush=True)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with open_backends({s.backend for s in systems}) as (backends, missing):
        info["servers"] = {name: f"{b.version}, {b.where}" for name, b in backends.items()}
        info["analyze"] = {name: b.analyze_step for name, b in backends.items()}
        info["missing"] = missing
        info["commit_ms_at_start"] = commit_latencies(backends)
        for name, why in missing.items():
            print(f"skipping every system on {name}: {why}", flush=True)
        for name, where in info["servers"].items():
            print(f"{name}: {where}", flush=True)
        for system in systems:
            if system.backend not in backends:
                continue
            print(f"{system.label} {info['versions'][system.key]}:", flush=True)
            results[system.key] = run_system(system, backends[system.backend], plan, scenarios)
        if plan.drain_rounds:
            print(f"drain rounds ({plan.drain_rounds}, systems in turn):", flush=True)
            run_drain_rounds(systems, backends, plan, results)
        info["commit_ms_at_end"] = commit_latencies(backends)
    info["elapsed_s"] = time.perf_counter() - started
    info["load_at_end"] = os.getloadavg()
    stem = opts.out or RESULTS / (datetime.date.today().isoformat() + ("-quick" if opts.quick else ""))
    stem.parent.mkdir(parents=True, exist_ok=True)
    document = {"info": info, "results": results}
    Path(f"{stem}.json").write_text(json.dumps(document, indent=1) + "\n")
    table = report.markdown(document, chart=Path(f"{stem}.png").name)
    Path(f"{stem}.md").write_text(table)
    report.chart(document, Path(f"{stem}.png"))
    print()
    print(table)
    print(f"written: {stem}.md, {stem}.png, {stem}.json ({info['elapsed_s']:.0f} s in all)", file=sys.stderr)


if __name__ == "__main__":
    main()
