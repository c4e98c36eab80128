"""OpenTelemetry traces, when ``opentelemetry-api`` is installed (the ``otel`` extra); nothing otherwise.

Enqueue writes the caller's trace context (W3C ``traceparent``/``tracestate``, whatever the global propagator
writes) into the task's ``context``; the worker runs each attempt in a CONSUMER span linked to it. The
application installs and configures the SDK; with no SDK the API's default provider records nothing, and the
worker then skips its span altogether.

The API is imported at the first use, never at ``import taskstore``: without it, or with ``TASKSTORE_OTEL=0``
(also ``false``/``off``/``no``), every entry point here is one global read that returns ``None``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .model import NewTask

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from .model import Task

log = logging.getLogger("taskstore.otel")

_OFF = frozenset({"0", "false", "off", "no"})
_UNKNOWN: Any = object()
_api: Any = _UNKNOWN  # the loaded ``_Api``, or None: not installed or switched off


class _Api:
    """The few API objects used per call, looked up once."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.context import Context
        from opentelemetry.propagators.textmap import Getter
        from opentelemetry.trace import Link, SpanKind, Status, StatusCode

        class StrGetter(Getter[Mapping[str, Any]]):
            """Reads only string values: a task's context is the user's too, and a ``traceparent`` key of
            another type must not reach the propagator (whose parsing would raise on it)."""

            def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
                value = carrier.get(key)
                return [value] if isinstance(value, str) else None

            def keys(self, carrier: Mapping[str, Any]) -> list[str]:
                return [k for k, v in carrier.items() if isinstance(v, str)]

        self.context, self.propagate, self.trace = context, propagate, trace
        self.empty = Context
        self.getter = StrGetter()
        self.Link, self.CONSUMER, self.Status, self.ERROR = Link, SpanKind.CONSUMER, Status, StatusCode.ERROR
        self.silent = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def api() -> _Api | None:
    """The API, or None when it is not installed or ``TASKSTORE_OTEL`` switches it off (read once)."""
    global _api
    if _api is _UNKNOWN:
        _api = _load()
    return _api  # type: ignore[no-any-return]


def _load() -> _Api | None:
    if os.environ.get("TASKSTORE_OTEL", "").strip().lower() in _OFF:
        return None
    try:
        return _Api()
    except ImportError:
        return None


def reload() -> None:
    """Read ``TASKSTORE_OTEL`` (and look for the API) again at the next use: for tests and benchmarks."""
    global _api
    _api = _UNKNOWN


# -- producers ------------------------------------------------------------------------------------


def carrier() -> dict[str, str] | None:
    """The current trace context as W3C fields, or None when there is no valid current span.

    Called once per create call: a batch shares its caller's context.
    """
    otel = api()
    if otel is None:
        return None
    if not otel.trace.get_current_span().get_span_context().is_valid:
        return None
    fields: dict[str, str] = {}
    try:
        otel.propagate.inject(fields)
    except Exception:  # the application's propagator: a fault in it must not refuse the enqueue
        log.warning("the OpenTelemetry propagator failed to inject the trace context", exc_info=True)
        return None
    return fields or None


def traced(new: NewTask, fields: Mapping[str, str]) -> NewTask:
    """``new`` with the trace fields added to its context; a key the caller set keeps the caller's value.

    A copy made slot by slot: ``dataclasses.replace`` would check every field again, twice the cost, for
    a task that was checked when it was made (and the added fields are strings).
    """
    global _fields
    if _fields is None:
        _fields = tuple(f.name for f in dataclasses.fields(NewTask))
    copy = _new(NewTask)
    for name in _fields:
        _set(copy, name, _get(new, name))
    context = new.context
    _set(copy, "context", {**fields} if context is None else {**fields, **context})
    return copy


_fields: tuple[str, ...] | None = None
_new, _get, _set = object.__new__, object.__getattribute__, object.__setattr__


@contextmanager
def extracted(headers: Mapping[str, str]) -> Iterator[None]:
    """Run the block in the trace context a request's ``traceparent`` header carries (if any).

    A valid current span wins: a server instrumented with OpenTelemetry already runs the request in a span
    that is the header's child, and the task is better tied to that one.
    """
    otel = api()
    if otel is None or "traceparent" not in headers or otel.trace.get_current_span().get_span_context().is_valid:
        yield
        return
    token = otel.context.attach(otel.propagate.extract(headers))
    try:
        yield
    finally:
        otel.context.detach(token)


# -- the worker -----------------------------------------------------------------------------------


class Tracing:
    """The worker's tracer: from the provider it was given, else the global one. None while that provider
    records nothing.

    The global provider is looked up again at most once a second, so an SDK configured after the worker
    started is used from then on; not per attempt, since while none is set each lookup reads the
    environment (``OTEL_PYTHON_TRACER_PROVIDER``), a few percent of a busy worker's CPU.
    """

    RECHECK = 1.0  # seconds between lookups of the global provider

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self._seen: object = None
        self._tracer: Tracer | None = None
        self._recheck_at = -math.inf

    def tracer(self) -> Tracer | None:
        otel = api()
        if otel is None:
            return None
        if self._provider is not None:
            provider = self._provider
        else:
            now = time.monotonic()
            if now < self._recheck_at:
                return self._tracer
            self._recheck_at = now + self.RECHECK
            provider = otel.trace.get_tracer_provider()
        if provider is not self._seen:
            from . import __version__

            self._seen = provider
            self._tracer = None if isinstance(provider, otel.silent) else provider.get_tracer("taskstore", __version__)
        return self._tracer


def start_attempt(tracer: Tracer, task: Task) -> tuple[Span, object]:
    """Start the attempt's CONSUMER span, linked to the producer's context, and make it current.

    The span is a new trace's root, not the producer's child: an attempt may run long after the enqueue
    (delays, backoff, a manual retry), once per attempt, and would stretch the producer's trace over all
    of them. The link ties them together for a tracing UI. Returns the span and the token that ``end_attempt``
    gives back.
    """
    otel: _Api = _api
    links = None
    if task.context:
        try:
            producer = otel.propagate.extract(task.context, otel.empty(), otel.getter)
        except Exception:  # the application's propagator, on a context anyone may have written
            log.warning("task %s: its trace context could not be read", task.id, exc_info=True)
        else:
            span_context = otel.trace.get_current_span(producer).get_span_context()
            if span_context.is_valid:
                links = [otel.Link(span_context)]
    span = tracer.start_span(
        f"process {task.queue}",
        context=otel.empty(),  # a root: not a child of whatever ran the worker
        kind=otel.CONSUMER,
        links=links,
        attributes={
            "messaging.system": "taskstore",
            "messaging.operation": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": task.queue,
            "messaging.message.id": task.id,
            "taskstore.task.kind": task.kind,
            "taskstore.task.attempt": task.attempts,
        },
    )
    token = otel.context.attach(otel.trace.set_span_in_context(span))
    return span, token


def end_attempt(span: Span, token: object, outcome: str, error: BaseException | None, failure: str | None) -> None:
    """End the span with the attempt's outcome (``done``, ``retry``, ``dead``, ``cancelled``, …); a failure sets
    its status to ERROR, with the exception the handler raised recorded as an event."""
    otel: _Api = _api
    otel.context.detach(token)
    span.set_attribute("taskstore.task.outcome", outcome)
    if error is not None:
        span.record_exception(error)
    if failure is not None:
        span.set_status(otel.Status(otel.ERROR, failure))
    span.end()
