"""OpenTelemetry: enqueue records the trace context in the task, the worker's attempt span is linked to it.

The SDK's tracer provider is handed to the Worker (the global one can be set once per process); producer
spans come from the same provider, and reach ``create`` through the context like any application's.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from taskstore import App, Exponential, NewTask, State, Task, Worker, _otel

pytestmark = pytest.mark.asyncio


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    the_provider = TracerProvider()
    the_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield the_provider
    the_provider.shutdown()


@pytest.fixture(autouse=True)
def fresh_switch() -> Iterator[None]:
    """Each test reads TASKSTORE_OTEL afresh, and leaves no cached answer behind."""
    _otel.reload()
    yield
    _otel.reload()


@pytest_asyncio.fixture
async def app() -> AsyncIterator[App]:
    the_app = App("memory://")
    yield the_app
    await the_app.aclose()


async def ended(app: App, task_id: str, *states: State, timeout: float = 10.0) -> Task:
    store = await app.store()
    deadline = time.monotonic() + timeout
    while (task := await store.get(task_id)).state not in states:
        assert time.monotonic() < deadline, f"task {task_id} stayed {task.state}"
        await asyncio.sleep(0.01)
    return task


def attempt_spans(exporter: InMemorySpanExporter, count: int, timeout: float = 10.0) -> list[ReadableSpan]:
    """The worker's spans, once ``count`` have ended (a span ends as its attempt ends, before the write)."""
    deadline = time.monotonic() + timeout
    while len(spans := [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]) < count:
        assert time.monotonic() < deadline, f"{len(spans)} attempt span(s), expected {count}"
        time.sleep(0.01)
    return spans


def ids(ctx: trace.SpanContext | None) -> tuple[int, int]:
    assert ctx is not None
    return ctx.trace_id, ctx.span_id


def traceparent_of(span: trace.Span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


async def test_enqueue_in_a_span_records_its_context_and_keeps_the_callers_keys(
    app: App, provider: TracerProvider
) -> None:
    @app.task
    def work() -> None:
        pass

    untraced = await work.enqueue()
    with provider.get_tracer("test").start_as_current_span("request") as span:
        plain = await work.enqueue()
        own = await work.options(context={"traceparent": "mine", "tenant": "a"}).enqueue()
        batch = await (await app.store()).create_many([NewTask("default", "work", context={"k": 1})] * 3)
    assert untraced.task is not None
    assert untraced.task.context is None
    assert plain.task is not None
    assert plain.task.context == {"traceparent": traceparent_of(span)}
    assert own.task is not None
    assert own.task.context == {"traceparent": "mine", "tenant": "a"}  # the caller's key is never replaced
    assert [t.context for t in batch] == [{"traceparent": traceparent_of(span), "k": 1}] * 3


async def test_a_batch_is_injected_once(app: App, provider: TracerProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, str]] = []
    real = propagate.inject

    def counted(carrier: dict[str, str]) -> None:
        calls.append(carrier)
        real(carrier)

    monkeypatch.setattr(propagate, "inject", counted)
    store = await app.store()
    with provider.get_tracer("test").start_as_current_span("request"):
        tasks = await store.create_many([NewTask("q", "k") for _ in range(50)])
    assert len(calls) == 1
    assert all(t.context is not None and "traceparent" in t.context for t in tasks)


async def test_a_chords_callback_and_a_chains_later_links_carry_the_enqueuers_context(
    app: App, provider: TracerProvider
) -> None:
    """They are inserted later, by a completion in some worker: the trace is the enqueuer's all the same."""

    @app.task
    async def square(x: int) -> int:
        return x * x

    @app.task
    async def total(results: list[int]) -> int:
        return sum(results)

    @app.task
    async def plus_one(x: int) -> int:
        return x + 1

    with provider.get_tracer("test").start_as_current_span("request") as span:
        chord = await app.chord(app.group(square.s(1), square.s(2)), total.s()).enqueue()
        chain = await app.chain(square.s(3), plus_one.s()).enqueue()
    async with Worker(app):
        assert await chord.result(timeout=10) == 5
        assert await chain.result(timeout=10) == 10
    store = await app.store()
    expected = {"traceparent": traceparent_of(span)}
    created = await store.list(limit=100)
    assert len(created.items) == 5  # the chord's two members and its callback, the chain's two links
    assert [t.context for t in created.items] == [expected] * 5


async def test_enqueue_sync_carries_the_callers_context_to_the_apps_loop(provider: TracerProvider) -> None:
    sync_app = App("memory://")

    @sync_app.task
    def work() -> None:
        pass

    def produce() -> tuple[str, Task | None]:
        with provider.get_tracer("test").start_as_current_span("request") as span:
            return traceparent_of(span), work.enqueue_sync().task

    try:
        expected, task = await asyncio.to_thread(produce)
        assert task is not None
        assert task.context == {"traceparent": expected}
    finally:
        await sync_app.aclose()


async def test_the_attempt_span_is_linked_to_the_producer_with_the_messaging_attributes(
    app: App, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    @app.task(queue="mail")
    async def send(to: str) -> str:
        return to

    with provider.get_tracer("test").start_as_current_span("request") as producer:
        handle = await send.enqueue("a@b")
    async with Worker(app, tracer_provider=provider):
        await ended(app, handle.id, State.DONE)
        (span,) = attempt_spans(exporter, 1)
    assert span.name == "process mail"
    assert span.parent is None  # a trace of its own, linked to the producer's
    assert [ids(link.context) for link in span.links] == [ids(producer.get_span_context())]
    assert span.attributes == {
        "messaging.system": "taskstore",
        "messaging.operation": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": "mail",
        "messaging.message.id": handle.id,
        "taskstore.task.kind": send.kind,
        "taskstore.task.attempt": 1,
        "taskstore.task.outcome": "done",
    }
    assert span.status.status_code is StatusCode.UNSET


async def test_a_task_enqueued_without_a_span_gets_an_unlinked_span(
    app: App, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    @app.task
    def work() -> None:
        pass

    # A caller's own "traceparent" that is no trace context (nor even a string) is ignored, not an error.
    handle = await work.options(context={"traceparent": 7}).enqueue()
    async with Worker(app, tracer_provider=provider):
        await ended(app, handle.id, State.DONE)
        (span,) = attempt_spans(exporter, 1)
    assert span.links == ()


async def test_a_failing_attempt_records_the_exception_and_its_outcome(
    app: App, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    @app.task(max_attempts=2, retry=Exponential(base=0.0, jitter=0.0))
    def flaky() -> None:
        raise ValueError("no luck")

    handle = await flaky.enqueue()
    async with Worker(app, tracer_provider=provider):
        await ended(app, handle.id, State.DEAD)
        first, second = attempt_spans(exporter, 2)
    for span, attempt, outcome in ((first, 1, "retry"), (second, 2, "dead")):
        assert span.attributes is not None
        assert span.attributes["taskstore.task.attempt"] == attempt
        assert span.attributes["taskstore.task.outcome"] == outcome
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError: no luck"
        (event,) = span.events
        assert event.name == "exception"
        assert event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"
        assert event.attributes["exception.message"] == "no luck"


async def test_a_sync_handlers_spans_are_children_of_the_attempt_span(
    app: App, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    threads: list[int] = []

    @app.task
    def work() -> None:
        threads.append(threading.get_ident())
        with provider.get_tracer("handler").start_as_current_span("inner work"):
            pass

    handle = await work.enqueue()
    async with Worker(app, tracer_provider=provider):
        await ended(app, handle.id, State.DONE)
        (attempt,) = attempt_spans(exporter, 1)
    assert threads != [threading.get_ident()]  # it did run on a thread of its own
    (inner,) = [s for s in exporter.get_finished_spans() if s.name == "inner work"]
    assert inner.parent is not None
    assert inner.parent.span_id == attempt.context.span_id
    assert inner.context.trace_id == attempt.context.trace_id


async def test_tasks_enqueued_by_a_handler_carry_the_attempts_context(
    app: App, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    @app.task
    async def child() -> None:
        pass

    @app.task
    async def parent() -> str:
        return (await child.enqueue()).id

    first = await parent.enqueue()
    async with Worker(app, tracer_provider=provider):
        done = await ended(app, first.id, State.DONE)
        child_id = done.result.value if done.result else None
        assert isinstance(child_id, str)
        await ended(app, child_id, State.DONE)
        spans = attempt_spans(exporter, 2)
    by_kind = {s.attributes["taskstore.task.kind"]: s for s in spans if s.attributes}
    parent_span = by_kind[parent.kind]
    assert [ids(link.context) for link in by_kind[child.kind].links] == [ids(parent_span.context)]


async def test_switched_off_by_the_environment(
    app: App, provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKSTORE_OTEL", "0")

    @app.task
    def work() -> None:
        pass

    with provider.get_tracer("test").start_as_current_span("request"):
        handle = await work.enqueue()
    assert handle.task is not None
    assert handle.task.context is None
    async with Worker(app, tracer_provider=provider):
        await ended(app, handle.id, State.DONE)
    assert [s.name for s in exporter.get_finished_spans()] == ["request"]  # no attempt span
    assert _otel.api() is None


async def test_a_provider_that_records_nothing_costs_no_span(app: App) -> None:
    """The API's own no-op provider (what an application without an SDK has): the worker skips the span."""
    assert _otel.Tracing(trace.NoOpTracerProvider()).tracer() is None
    assert _otel.Tracing(trace.ProxyTracerProvider()).tracer() is None  # the global one while no SDK is set


async def test_without_the_api_nothing_is_traced_and_nothing_breaks(
    app: App, provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``opentelemetry`` not importable (the ``otel`` extra not installed): tasks run, untraced."""
    with provider.get_tracer("test").start_as_current_span("request"):
        monkeypatch.setitem(sys.modules, "opentelemetry", None)  # an import of it now raises ImportError
        assert _otel.api() is None

        @app.task
        def work() -> None:
            pass

        handle = await work.enqueue()
    assert handle.task is not None
    assert handle.task.context is None
    async with Worker(app, tracer_provider=provider):
        await ended(app, handle.id, State.DONE)
    assert [s.name for s in exporter.get_finished_spans()] == ["request"]


async def test_importing_taskstore_imports_no_opentelemetry() -> None:
    code = (
        "import sys, taskstore, taskstore.worker, taskstore.store, taskstore.cli\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry')\n"
        "assert not loaded, loaded\n"
    )
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], check=True, timeout=60)


async def test_the_trace_survives_every_backend(
    url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The context goes through each backend's storage (JSON text, jsonb) and comes back to the worker."""
    stored_app = App(url)

    @stored_app.task
    def work() -> None:
        pass

    try:
        with provider.get_tracer("test").start_as_current_span("request") as producer:
            handle = await work.enqueue()
        async with Worker(stored_app, tracer_provider=provider):
            await ended(stored_app, handle.id, State.DONE)
            (span,) = attempt_spans(exporter, 1)
        assert [ids(link.context) for link in span.links] == [ids(producer.get_span_context())]
    finally:
        await stored_app.aclose()
