"""What OpenTelemetry costs: worker µs per no-op task and bulk enqueue tasks/s, in three set-ups.

    python -m bench.otel_overhead [--tasks 20000] [--batch 1000] [--rounds 3] [--url memory://]

- ``off``: ``TASKSTORE_OTEL=0``, as when ``opentelemetry-api`` is not installed (one global read per call);
- ``api``: the API installed, no SDK configured (the API's default provider, which records nothing);
- ``sdk``: the SDK's ``TracerProvider`` set globally, each span exported synchronously to an in-memory
  exporter (``SimpleSpanProcessor``: the export on the task's path);
- ``sdk-batch``: the same with a ``BatchSpanProcessor``, as production set-ups have (export in a thread).

Times are CPU time of the process (all its threads), and wall clock for the worker: on a shared machine the
wall clock says more about the neighbours. Enqueue runs inside a producer span in every set-up (so with the
SDK each task gets a ``traceparent``). Each set-up runs in a process of its own (a global tracer provider is
set once per process), ``--repeat`` times in turn; each prints the best of ``--rounds``. The per-call figures
(timeit, best of 5) are the tracing code's own cost and the least noisy. Not a test: figures for a person.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

MODES = ("off", "api", "sdk", "sdk-batch")


def configure(mode: str) -> tuple[Any, Any] | None:
    """The producer's tracer for ``mode`` (set up before taskstore reads anything)."""
    if mode == "off":
        os.environ["TASKSTORE_OTEL"] = "0"
    from opentelemetry import trace

    if mode.startswith("sdk"):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        exporter = InMemorySpanExporter()
        if mode == "sdk":
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:  # room for every span of a round: a full queue would drop some
            provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1_000_000))
        trace.set_tracer_provider(provider)
        return provider, exporter
    return None


async def measure(url: str, tasks: int, batch: int) -> tuple[float, float, float]:
    """Enqueue tasks/s (CPU time of this process), then worker µs/task (wall clock and CPU time)."""
    from opentelemetry import trace

    from taskstore import App, Worker

    app = App(url)

    @app.task(queue="bench", kind="bench.noop")
    async def noop(i: int) -> None:
        return None

    store = await app.store()
    news = [noop.new_task(i) for i in range(tasks)]
    tracer = trace.get_tracer("bench")
    c0 = time.process_time()
    with tracer.start_as_current_span("producer"):
        for start in range(0, tasks, batch):
            await store.create_many(news[start : start + batch])
    enqueue_rate = tasks / (time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    async with Worker(app, ["bench"], 100, maintenance=False) as worker:
        while worker.stats.succeeded < tasks:
            await asyncio.sleep(0.005)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    await app.aclose()
    return enqueue_rate, elapsed / tasks * 1e6, cpu / tasks * 1e6


def per_call(mode: str) -> str:
    """The tracing code's own cost per call, in µs (best of 5 timeit runs): less noisy than end to end."""
    import timeit

    from opentelemetry import trace

    from taskstore import NewTask, _otel

    def best(fn: Callable[[], object], number: int = 20_000) -> float:
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

    parts = [f"tracer() {best(_otel.Tracing().tracer):.2f}", f"carrier() {best(_otel.carrier):.2f}"]
    with trace.get_tracer("bench").start_as_current_span("producer"):
        parts.append(f"carrier() in a span {best(_otel.carrier):.2f}")
        fields = _otel.carrier()
    if fields is not None:
        new = NewTask("bench", "bench.noop", {"args": [1], "kwargs": {}})
        parts.append(f"traced() {best(lambda: _otel.traced(new, fields)):.2f}")
    tracer = _otel.Tracing().tracer()
    if tracer is not None and fields is not None:
        from datetime import UTC, datetime

        from taskstore import transitions

        task = transitions.create(_otel.traced(new, fields), task_id="t", now=datetime.now(UTC), args=None)

        def attempt() -> None:
            span, token = _otel.start_attempt(tracer, task)
            _otel.end_attempt(span, token, "done", None, None)

        parts.append(f"span start+end {best(attempt, 5000):.2f}")
    return ", ".join(parts)


def child(mode: str, url: str, tasks: int, batch: int, rounds: int) -> None:
    sdk = configure(mode)
    print(f"{mode:>9}: per call (µs): {per_call(mode)}")
    if sdk is not None:
        sdk[1].clear()
    best_rate, best_wall, best_cpu = 0.0, float("inf"), float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            round_url = url if url.startswith("memory") else f"sqlite:///{tmp}/r{i}.db"
            rate, wall, cpu = asyncio.run(measure(round_url, tasks, batch))
            best_rate, best_wall, best_cpu = max(best_rate, rate), min(best_wall, wall), min(best_cpu, cpu)
            if sdk is not None:
                provider, exporter = sdk
                provider.force_flush()
                spans = len(exporter.get_finished_spans())
                assert spans >= tasks, f"expected a span per task, got {spans}"
                exporter.clear()
    print(
        f"{mode:>9}: enqueue {best_rate:>9,.0f} tasks/s of CPU (batches of {batch}); "
        f"worker {best_wall:6.1f} µs/task wall clock, {best_cpu:6.1f} µs/task of CPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default="memory://", help="memory:// or sqlite (a fresh file per round)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"some of {','.join(MODES)}")
    parser.add_argument("--repeat", type=int, default=1, help="run the set-ups in turn this many times")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # the child process's set-up
    args = parser.parse_args()
    if args.mode:
        child(args.mode, args.url, args.tasks, args.batch, args.rounds)
        return
    import taskstore

    print(f"taskstore {taskstore.__version__}, Python {platform.python_version()}, {os.cpu_count()} cores, {args.url}")
    for mode in args.modes.split(",") * args.repeat:
        argv = [sys.executable, "-m", "bench.otel_overhead", "--mode", mode, "--url", args.url]
        argv += ["--tasks", str(args.tasks), "--batch", str(args.batch), "--rounds", str(args.rounds)]
        subprocess.run(argv, check=True)


if __name__ == "__main__":
    main()
