"""Prometheus metrics: the store's counters per label, the scrape-time gauges, /metrics, and a worker's own port."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

import taskstore
from taskstore import App, FakeClock, NewTask, State, Worker, WorkerHeartbeat, errors
from taskstore.store import Store
from taskstore.web import create_app
from taskstore.web.metrics import TaskMetrics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The counting is the facade's, but each driver answers acknowledgements and refusals its own way."""
    if request.param == "postgres":
        from ..postgres_server import new_schema, with_schema

        return with_schema(request.getfixturevalue("postgres_db"), new_schema())
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'm.db'}"


@pytest_asyncio.fixture
async def clocked(url: str) -> AsyncIterator[tuple[Store, FakeClock]]:
    clock = FakeClock()
    async with taskstore.open(url, clock=clock) as store:
        yield store, clock


def value(metrics: TaskMetrics, name: str, **labels: str) -> float:
    """A sample's value; 0 when absent (a counter never incremented for those labels has no sample)."""
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels): parsing it also checks the text format."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def asgi_get(app: Any, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET through the ASGI app, from a loopback client (no HTTP client library needed)."""
    headers = [(b"host", b"test")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


# -- the store's events -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_counters_follow_every_outcome_per_queue_and_kind(clocked: tuple[Store, FakeClock]) -> None:
    store, clock = clocked
    m = TaskMetrics()
    store.add_observer(m)

    await store.create_many([NewTask("q1", "a") for _ in range(3)])
    await store.create(NewTask("q1", "a", unique_key="u"))
    # The holder comes back for the duplicate: only the other task of the batch is enqueued.
    await store.create_many([NewTask("q1", "a", unique_key="u"), NewTask("q1", "a", id="late")])
    assert value(m, "taskstore_tasks_enqueued_total", queue="q1", kind="a") == 5
    await store.cancel("late")

    clock.advance(2.0)
    t1, t2, t3, t4 = await store.claim("w", "q1", limit=4)
    assert value(m, "taskstore_tasks_claimed_total", queue="q1", kind="a") == 4
    assert value(m, "taskstore_task_start_latency_seconds_count", queue="q1", kind="a") == 4
    assert value(m, "taskstore_task_start_latency_seconds_sum", queue="q1", kind="a") == pytest.approx(8.0)
    assert value(m, "taskstore_tasks_cancelled_total", queue="q1", kind="a") == 1

    await store.mark_done(t1, 1)
    await store.mark_done_many([t2])
    assert await store.acknowledge_many([(t3, None)]) == [None]  # a task: labelled
    assert t4.claim is not None
    # A bare claim (the HTTP API's completions) carries only the id: labelled from the claim made here.
    assert await store.acknowledge_many([t4.claim]) == [None]
    assert value(m, "taskstore_tasks_succeeded_total", queue="q1", kind="a") == 4

    await store.create(NewTask("q2", "b", id="once", max_attempts=1))
    await store.create(NewTask("q2", "b", id="twice", max_attempts=2))
    claimed = {t.id: t for t in await store.claim("w", "q2", limit=2)}
    assert (await store.mark_failed(claimed["once"], RuntimeError("x"))).state is State.DEAD
    assert (await store.mark_failed(claimed["twice"], RuntimeError("x"))).state is State.FAILED
    assert value(m, "taskstore_tasks_failed_total", queue="q2", kind="b") == 2
    assert value(m, "taskstore_tasks_dead_total", queue="q2", kind="b") == 1
    assert value(m, "taskstore_tasks_retried_total", queue="q2", kind="b") == 1

    await store.create(NewTask("q3", "c", id="c1"))
    await store.cancel("c1")
    await store.create(NewTask("q3", "c", id="c2"))
    (c2,) = await store.claim("w", "q3")
    await store.cancel("c2")  # running: only a request, nothing ended yet
    assert value(m, "taskstore_tasks_cancelled_total", queue="q3", kind="c") == 1
    await store.mark_cancelled(c2)
    assert value(m, "taskstore_tasks_cancelled_total", queue="q3", kind="c") == 2

    await store.create(NewTask("q4", "r", processing_timeout=1))
    (r,) = await store.claim("w", "q4")
    clock.advance(5)
    assert await store.reap() == 1
    assert value(m, "taskstore_tasks_reaped_total") == 1
    assert r.claim is not None
    with pytest.raises(errors.LeaseError):
        await store.report_in(r.claim)
    with pytest.raises(errors.LeaseError):
        await store.mark_done(r)
    assert value(m, "taskstore_stale_writes_refused_total", queue="q4", kind="r") == 2
    assert value(m, "taskstore_tasks_succeeded_total", queue="q4", kind="r") == 0

    store.remove_observer(m)
    await store.create(NewTask("q5", "x"))
    assert value(m, "taskstore_tasks_enqueued_total", queue="q5", kind="x") == 0
    (x,) = await store.claim("w", "q5")
    store.add_observer(m)
    assert x.claim is not None
    assert await store.acknowledge_many([x.claim]) == [None]  # claimed unobserved: nothing tells its labels
    assert value(m, "taskstore_tasks_succeeded_total", queue="", kind="") == 1


@pytest.mark.asyncio
async def test_groups_and_chains_count_what_they_enqueue() -> None:
    async with taskstore.open("memory://") as store:
        m = TaskMetrics()
        store.add_observer(m)
        await store.create_group("g", [NewTask("q", "member"), NewTask("q", "member")])
        await store.create_chain("c", [NewTask("q", "link"), NewTask("q", "link")])  # the first link only, now
        assert value(m, "taskstore_tasks_enqueued_total", queue="q", kind="member") == 2
        assert value(m, "taskstore_tasks_enqueued_total", queue="q", kind="link") == 1


@pytest.mark.asyncio
async def test_a_worker_reports_outcomes_and_handler_durations_labelled(url: str) -> None:
    app = App(url)

    @app.task(queue="jobs", kind="ok")
    async def ok() -> int:
        return 1

    @app.task(queue="jobs", kind="boom", max_attempts=1)
    def boom() -> None:
        raise RuntimeError("no")

    m = TaskMetrics()
    try:
        for _ in range(5):
            await ok.enqueue()
        await boom.enqueue()
        store = await app.store()
        async with Worker(app, concurrency=4, observers=[m], maintenance=False):
            deadline = time.monotonic() + 20
            while await store.count(State.DONE) + await store.count(State.DEAD) < 6:
                assert time.monotonic() < deadline, "the worker did not finish the tasks"
                await asyncio.sleep(0.02)
            while value(m, "taskstore_tasks_succeeded_total", queue="jobs", kind="ok") < 5:
                assert time.monotonic() < deadline, "the successes were not counted"
                await asyncio.sleep(0.02)  # the store counts them as its write returns
        assert m not in store.observers  # the worker's observers leave its store when it stops
        assert value(m, "taskstore_tasks_succeeded_total", queue="jobs", kind="ok") == 5
        assert value(m, "taskstore_tasks_claimed_total", queue="jobs", kind="ok") == 5
        assert value(m, "taskstore_handler_duration_seconds_count", queue="jobs", kind="ok") == 5
        assert value(m, "taskstore_handler_duration_seconds_count", queue="jobs", kind="boom") == 1
        assert value(m, "taskstore_tasks_failed_total", queue="jobs", kind="boom") == 1
        assert value(m, "taskstore_tasks_dead_total", queue="jobs", kind="boom") == 1
        assert value(m, "taskstore_tasks_succeeded_total", queue="", kind="") == 0
    finally:
        await app.aclose()


def test_an_unobserved_store_has_no_observers() -> None:
    store = taskstore.open("memory://")
    assert store.observers == ()


# -- GET /metrics ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_metrics_endpoint_serves_counters_and_gauges_matching_the_store(url: str) -> None:
    clock = FakeClock()
    async with taskstore.open(url, clock=clock) as store:
        app = create_app(store)
        await store.create_many([NewTask("mail", "send") for _ in range(4)])
        await store.create(NewTask("sms", "send"))
        (held,) = await store.claim("w", "mail")
        await store.mark_done(held)
        await store.pause_queue("sms")
        await store.set_worker_heartbeat(WorkerHeartbeat(worker_id="w1", queues=("mail",)))
        clock.advance(7)

        status, headers, body = await asgi_get(app, "/metrics")
        assert status == 200
        assert headers["content-type"].startswith("text/plain")
        got = samples(body.decode())

        for info in await store.list_queues():
            for state, n in info.counts.items():
                assert got[("taskstore_tasks", (("queue", info.name), ("state", state.value)))] == n
        assert got[("taskstore_tasks", (("queue", "mail"), ("state", "queued")))] == 3
        assert got[("taskstore_tasks", (("queue", "mail"), ("state", "done")))] == 1
        assert got[("taskstore_queue_oldest_ready_age_seconds", (("queue", "mail"),))] == pytest.approx(7.0)
        assert got[("taskstore_queue_paused", (("queue", "sms"),))] == 1
        assert got[("taskstore_queue_paused", (("queue", "mail"),))] == 0
        assert got[("taskstore_workers_live", ())] == 1
        assert got[("taskstore_tasks_enqueued_total", (("kind", "send"), ("queue", "mail")))] == 4
        assert got[("taskstore_tasks_claimed_total", (("kind", "send"), ("queue", "mail")))] == 1
        assert got[("taskstore_tasks_succeeded_total", (("kind", "send"), ("queue", "mail")))] == 1

        await store.resume_queue("sms")
        _, _, body = await asgi_get(app, "/metrics")
        assert samples(body.decode())[("taskstore_queue_paused", (("queue", "sms"),))] == 0


@pytest.mark.asyncio
async def test_many_apps_in_one_process_keep_their_own_counts() -> None:
    async with taskstore.open("memory://") as one, taskstore.open("memory://") as two:
        first, second = create_app(one), create_app(two)
        await one.create(NewTask("q", "k"))
        got = [samples((await asgi_get(a, "/metrics"))[2].decode()) for a in (first, second)]
        key = ("taskstore_tasks_enqueued_total", (("kind", "k"), ("queue", "q")))
        assert got[0][key] == 1
        assert key not in got[1]


@pytest.mark.asyncio
async def test_metrics_needs_the_read_role_and_is_in_the_openapi_document() -> None:
    async with taskstore.open("memory://") as store:
        app = create_app(store, tokens=["read:r-secret", "admin:a-secret"])
        assert (await asgi_get(app, "/metrics"))[0] == 401
        assert (await asgi_get(app, "/metrics", "wrong"))[0] == 401
        assert (await asgi_get(app, "/metrics", "r-secret"))[0] == 200
        status, _, body = await asgi_get(app, "/api/openapi.json")
        assert status == 200
        operation = json.loads(body)["paths"]["/metrics"]["get"]
        assert operation["x-taskstore-role"] == "read"
        assert "text/plain" in operation["responses"]["200"]["content"]


@pytest.mark.asyncio
async def test_an_app_on_a_url_observes_the_store_it_opens(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'u.db'}")
    state = app.state.taskstore
    store = await state.store()
    try:
        await store.create(NewTask("q", "k"))
        got = samples((await asgi_get(app, "/metrics"))[2].decode())
        assert got[("taskstore_tasks_enqueued_total", (("kind", "k"), ("queue", "q")))] == 1
    finally:
        await state.close()
    assert store.observers == ()


# -- a worker process with --metrics-port -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return samples(response.read().decode())


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_worker_process_serves_counters_that_move(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    port = _free_port()
    err = (tmp_path / "worker.err").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskstore", "worker", "tests.web.metrics_app:app", "--url", db,
         "--metrics-port", str(port), "--reap-every", "0.5s"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        while True:  # the endpoint is up before the worker claims anything
            assert proc.poll() is None, (tmp_path / "worker.err").read_text()
            try:
                got = _scrape(port)
                break
            except OSError:
                assert time.monotonic() < deadline, "the worker's metrics port never answered"
                await asyncio.sleep(0.1)
        key = ("taskstore_tasks_succeeded_total", (("kind", "metrics.noop"), ("queue", "metrics")))
        assert got.get(key, 0) == 0
        async with taskstore.open(db) as store:
            await store.create_many([NewTask("metrics", "metrics.noop") for _ in range(7)])
        while got.get(key, 0) < 7:
            assert time.monotonic() < deadline, f"counters did not move: {got}"
            await asyncio.sleep(0.1)
            got = _scrape(port)
        assert got[key] == 7
        handled = ("taskstore_handler_duration_seconds_count", (("kind", "metrics.noop"), ("queue", "metrics")))
        assert got[handled] == 7
        assert not any(name == "taskstore_tasks" for name, _ in got)  # the store-wide gauges are the server's
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            err.close()


def test_metrics_port_in_use_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        from taskstore.cli import _worker_metrics

        with pytest.raises(errors.ConfigError, match="cannot serve metrics"):
            _worker_metrics("127.0.0.1", port)


def test_without_prometheus_client_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskstore.cli import _worker_metrics

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "taskstore.web.metrics")
    with pytest.raises(errors.ConfigError, match=r"taskstore\[web\]"):
        _worker_metrics("127.0.0.1", 0)


def test_the_core_and_the_worker_command_import_no_metrics_library() -> None:
    """Observing is in the core; prometheus_client is an extra, imported only for --metrics-port or the web app."""
    code = (
        "import sys, taskstore, taskstore.store, taskstore.worker, taskstore._observe, taskstore.cli\n"
        "print(sorted(m for m in ('prometheus_client', 'starlette', 'msgspec') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
