"""Prometheus metrics: counters and histograms fed by a store observer, gauges read from the store per scrape.

``TaskMetrics`` is an observer (``taskstore._observe``) holding the counters and histograms in a registry of
its own, so any number of apps or workers in one process never clash on prometheus_client's global registry.
The server's ``GET /metrics`` adds the store-wide gauges (tasks by queue and state, oldest ready age, live
workers, paused queues), read from the store at scrape time, and the figures of ``taskstore doctor``
(``taskstore_health_*``: sizes, dead tuples, autovacuum lag, the xmin horizon, NOTIFY), read at most once a
``HEALTH_EVERY`` (they read the catalogs, and on SQLite every page). A worker's ``--metrics-port`` serves only
its own counters and histograms (``serve_worker_metrics``): every worker exporting the same store-wide gauges
would count them once per worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.routing import BaseRoute

from .. import errors
from .._observe import NullObserver, Outcome
from ..health import HealthReport
from .auth import Role
from .routes import Call, Endpoint, route

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - the extra is installed wherever this module is tested
    raise errors.ConfigError("Prometheus metrics need prometheus_client: pip install 'taskstore[web]'") from exc

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..store import Store
    from .app import WebState

# The classic text format: every name here is a legacy one, and every Prometheus version reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# From a millisecond to ten minutes: no-op handlers and claims land in the first buckets, batch jobs in the last.
HANDLER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# Waiting for a worker can last much longer than running: up to an hour.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

_LABELS = ("queue", "kind")


class _Series:
    """The labelled children of one (queue, kind): one dict lookup per event finds them all."""

    __slots__ = ("claimed", "enqueued", "handler", "latency", "outcomes", "stale")

    def __init__(self, metrics: TaskMetrics, queue: str, kind: str) -> None:
        self.enqueued = metrics._enqueued.labels(queue, kind)
        self.claimed = metrics._claimed.labels(queue, kind)
        self.latency = metrics._latency.labels(queue, kind)
        self.handler = metrics._handler.labels(queue, kind)
        self.stale = metrics._stale.labels(queue, kind)
        self.outcomes = {name: counter.labels(queue, kind) for name, counter in metrics._outcomes.items()}


class TaskMetrics(NullObserver):
    """The counters and histograms of one app or worker, in ``registry`` (a new one by default).

    The labelled children of a (queue, kind) are made together the first time it is seen, and cached: an
    event costs a dict lookup and an increment. (Every series of a pair is then exported, at 0 until it
    moves, so rates and ratios have both sides from the start.)
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, _LABELS, registry=r)

        self._enqueued = counter("taskstore_tasks_enqueued", "Tasks created (a unique task's duplicate is not)")
        self._claimed = counter("taskstore_tasks_claimed", "Tasks claimed by a worker")
        self._outcomes: dict[Outcome, Counter] = {
            "succeeded": counter("taskstore_tasks_succeeded", "Attempts that ended done"),
            "failed": counter("taskstore_tasks_failed", "Attempts that failed (then retried, dead or cancelled)"),
            "retried": counter("taskstore_tasks_retried", "Failed attempts put back to wait, attempts left"),
            "dead": counter("taskstore_tasks_dead", "Tasks that ended dead (out of attempts, or not retryable)"),
            "cancelled": counter("taskstore_tasks_cancelled", "Tasks that ended cancelled"),
        }
        self._stale = counter(
            "taskstore_stale_writes_refused", "Fenced writes refused because the lease was lost (NotOwned/NotClaimed)"
        )
        self._reaped = Counter(
            "taskstore_tasks_reaped", "Timed-out leases failed and expired tasks cancelled by the reaper", registry=r
        )
        self._handler = Histogram(
            "taskstore_handler_duration_seconds",
            "How long a worker's handler ran, whatever its outcome",
            _LABELS,
            buckets=HANDLER_BUCKETS,
            registry=r,
        )
        self._latency = Histogram(
            "taskstore_task_start_latency_seconds",
            "From a task being ready (max of run_at and its last enqueue) to its claim",
            _LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._series: dict[tuple[str, str], _Series] = {}

    def _of(self, queue: str, kind: str) -> _Series:
        series = self._series.get((queue, kind))
        if series is None:
            series = self._series[(queue, kind)] = _Series(self, queue, kind)
        return series

    # -- the observer -------------------------------------------------------------------------------

    def enqueued(self, queue: str, kind: str, count: int) -> None:
        self._of(queue, kind).enqueued.inc(count)

    def claimed(self, queue: str, kind: str, latency: float) -> None:
        series = self._of(queue, kind)
        series.claimed.inc()
        series.latency.observe(latency)

    def finished(self, outcome: Outcome, queue: str, kind: str) -> None:
        self._of(queue, kind).outcomes[outcome].inc()

    def reaped(self, count: int) -> None:
        self._reaped.inc(count)

    def stale_write(self, queue: str, kind: str) -> None:
        self._of(queue, kind).stale.inc()

    def handled(self, queue: str, kind: str, seconds: float) -> None:
        self._of(queue, kind).handler.observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _Families(Collector):
    """A one-scrape collector: the gauge families read from the store just before."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


async def store_gauges(store: Store) -> list[Metric]:
    """The store-wide gauges, read now: tasks by queue and state, oldest ready age, paused queues, live workers."""
    queues = await store.list_queues()
    workers = await store.list_worker_heartbeats()
    now = store.now()
    tasks = GaugeMetricFamily(
        "taskstore_tasks", "Tasks by queue and state (archived ones left out)", labels=["queue", "state"]
    )
    oldest = GaugeMetricFamily(
        "taskstore_queue_oldest_ready_age_seconds",
        "How long the queue's oldest ready task has waited (0 when none is ready)",
        labels=["queue"],
    )
    paused = GaugeMetricFamily("taskstore_queue_paused", "1 while the queue is paused", labels=["queue"])
    for info in queues:
        for state, n in info.counts.items():
            tasks.add_metric([info.name, state.value], n)
        age = 0.0 if info.oldest_ready_at is None else max((now - info.oldest_ready_at).total_seconds(), 0.0)
        oldest.add_metric([info.name], age)
        paused.add_metric([info.name], 1.0 if info.paused else 0.0)
    live = GaugeMetricFamily(
        "taskstore_workers_live", "Workers with a heartbeat within the store's retention window", value=len(workers)
    )
    return [tasks, oldest, paused, live]


# Seconds between two reads of the store's health for /metrics: Prometheus scrapes every 15-60 s, and the
# figures (sizes, dead tuples, vacuum) move over minutes.
HEALTH_EVERY = 60.0


def health_gauges(report: HealthReport) -> list[Metric]:
    """A health report as gauges: ``taskstore_health_<finding>`` for each figure that is a number (labelled by
    ``table`` where it is about one), and ``taskstore_health_level`` (0 ok, 1 warn, 2 bad) for every finding."""
    families: dict[str, GaugeMetricFamily] = {}
    by_table = {f.name for f in report.findings if f.table is not None}
    level = GaugeMetricFamily(
        "taskstore_health_level",
        "taskstore doctor's verdict per finding: 0 ok, 1 warn, 2 bad",
        labels=["check", "table"],
    )
    for f in report.findings:
        level.add_metric([f.name, f.table or ""], float(f.level))
        if isinstance(f.value, str) or f.value is None:
            continue
        family = families.get(f.name)
        if family is None:
            unit = f" ({f.unit})" if f.unit else ""
            family = families[f.name] = GaugeMetricFamily(
                f"taskstore_health_{f.name}",
                f"taskstore doctor's {f.name.replace('_', ' ')}{unit}",
                labels=["table"] if f.name in by_table else [],
            )
        family.add_metric([f.table or ""] if f.name in by_table else [], float(f.value))
    return [*families.values(), level]


class HealthCache:
    """The last health report, read again once it is ``every`` seconds old (one read at a time)."""

    def __init__(self, every: float = HEALTH_EVERY) -> None:
        self.every = every
        self._report: HealthReport | None = None
        self._read_at = -float("inf")
        self._lock: asyncio.Lock | None = None

    async def report(self, store: Store) -> HealthReport:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._report is None or time.monotonic() - self._read_at >= self.every:
                self._report = await store.health()
                self._read_at = time.monotonic()
            return self._report


class AppMetrics:
    """What ``GET /metrics`` of one app serves: its store's events since it opened, and the store's gauges."""

    def __init__(self, health_every: float = HEALTH_EVERY) -> None:
        self.events = TaskMetrics()
        self.health = HealthCache(health_every)

    def attach(self, store: Store) -> Callable[[], None]:
        """Observe ``store``; the callable returned stops it (the app's shutdown calls it)."""
        store.add_observer(self.events)
        return lambda: store.remove_observer(self.events)

    async def scrape(self, store: Store) -> bytes:
        once = CollectorRegistry(auto_describe=False)
        once.register(_Families([*await store_gauges(store), *health_gauges(await self.health.report(store))]))
        return self.events.text() + generate_latest(once)


# -- GET /metrics ---------------------------------------------------------------------------------


async def metrics(call: Call) -> Response:
    app_metrics: AppMetrics = call.state.extras["metrics"]
    return Response(await app_metrics.scrape(call.store), media_type=CONTENT_TYPE)


ENDPOINTS: Sequence[Endpoint] = (
    Endpoint(
        "GET", "/metrics", "metrics", "Prometheus metrics (text format)", Role.READ, metrics,
        response=str, media_type="text/plain", errors=(401, 403, 503), tag="metrics",
        description="Counters and histograms of this server's store since it opened, and gauges read from the "
        "store at each scrape. Each worker serves its own counters with `taskstore worker --metrics-port`.",
    ),
)  # fmt: skip


def routes(state: WebState) -> list[BaseRoute]:
    app_metrics = state.extras["metrics"] = AppMetrics()
    state.on_store(app_metrics.attach)
    return [route(e, state) for e in ENDPOINTS]


# -- a worker's own endpoint ----------------------------------------------------------------------


class WorkerExporter:
    """``taskstore worker --metrics-port``: the worker's ``TaskMetrics`` on prometheus_client's HTTP server.

    The server runs in a daemon thread and answers any path (``/metrics`` by convention); ``close`` stops it.
    """

    def __init__(self, metrics: TaskMetrics, server: Any, thread: Any) -> None:
        self.metrics = metrics
        self._server = server
        self._thread = thread

    @classmethod
    def start(cls, host: str, port: int) -> WorkerExporter:
        metrics = TaskMetrics()
        try:
            server, thread = start_http_server(port, addr=host, registry=metrics.registry)
        except OSError as exc:
            raise errors.ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
        return cls(metrics, server, thread)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
