"""Handler control: how a handler tells the worker the way its attempt ends (SPEC §9).

    @app.task(retry_for=(ConnectionError,))
    async def charge(order_id: str) -> None:
        if upstream_busy():
            raise taskstore.Retry(delay=30)        # failed; the next attempt in 30 s (spends an attempt)
        if order_gone():
            raise taskstore.Reject("order deleted")  # dead at once, no retry
        ...                                        # a ConnectionError retries; any other error is dead at once

``Retry`` and ``Reject`` are signals a handler raises, not errors taskstore raises, so they are not
``TaskstoreError`` subclasses: a handler that wraps its own store calls in ``except TaskstoreError``
must not swallow the signal it raises itself, and code that catches taskstore's errors should never
see one. They are plain ``Exception`` subclasses (under ``HandlerSignal``), as a handler's other
exceptions are, so middleware sees them pass through like any failure.

``attempt_outcome`` maps what a handler raised to the failure to record and an explicit retry delay;
the retry decision itself (failed with backoff, or dead) stays in ``transitions``.
"""

from __future__ import annotations

import traceback as tb
from collections.abc import Iterable
from datetime import timedelta

from . import limits
from .errors import InvalidTask
from .model import Failure, exception_text

ExceptionTypes = tuple[type[BaseException], ...]


class HandlerSignal(Exception):
    """Raised by a handler to end its attempt in a chosen way. taskstore itself never raises one."""


class Retry(HandlerSignal):
    """End this attempt ``failed`` and run the next after ``delay`` (the task's retry policy when ``None``).

    The attempt is spent: with none left the task goes ``dead`` like any failure. ``delay`` is
    seconds or a ``timedelta``, finite, ``>= 0`` and at most 100 years, or ``InvalidTask`` here.
    """

    def __init__(self, delay: float | timedelta | None = None, reason: str = "") -> None:
        self.delay = None if delay is None else limits.duration(delay, "Retry delay")
        self.reason = str(reason)
        super().__init__(self.delay, self.reason)  # args rebuild it: copy and pickle keep working

    def __str__(self) -> str:
        when = "with the retry policy's delay" if self.delay is None else f"in {self.delay:g}s"
        return f"the handler asked to retry {when}" + (f": {self.reason}" if self.reason else "")


class Reject(HandlerSignal):
    """End the task ``dead`` at once, whatever attempts remain; ``reason`` becomes the failure's message."""

    def __init__(self, reason: str = "") -> None:
        self.reason = str(reason)
        super().__init__(self.reason)

    def __str__(self) -> str:
        return f"rejected by the handler: {self.reason}" if self.reason else "rejected by the handler"


def check_retry_for(value: object) -> ExceptionTypes | None:
    """``retry_for`` as a tuple of exception classes: one class or an iterable of them; ``None`` for all."""
    if value is None:
        return None
    items: Iterable[object] = (value,) if isinstance(value, type) else value  # type: ignore[assignment]
    try:
        types = tuple(items)
    except TypeError:
        raise InvalidTask(f"retry_for must be an exception class or a tuple of them, got {value!r}") from None
    checked: list[type[BaseException]] = []
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise InvalidTask(f"retry_for must hold exception classes only, got {item!r}")
        checked.append(item)
    return tuple(checked)


def attempt_outcome(exc: BaseException, retry_for: ExceptionTypes | None = None) -> tuple[Failure, float | None]:
    """The failure to record for what a handler raised, and the delay it asked for (``None``: the policy's).

    ``Retry`` retries whatever ``retry_for`` says (the handler asked for it by name); ``Reject`` is
    never retried; with ``retry_for`` set, any other exception that is not an instance of one of
    those types is not retryable either.
    """
    if isinstance(exc, Retry):
        return Failure(type=type(exc).__qualname__, message=str(exc), traceback=_cause_traceback(exc)), exc.delay
    if isinstance(exc, Reject):
        failure = Failure(type=type(exc).__qualname__, message=str(exc), traceback=_cause_traceback(exc))
        return _not_retryable(failure), None
    text = exception_text(exc)
    if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt …: named, since their text is often empty
        text = f"the handler raised {type(exc).__qualname__}" + (f": {text}" if text else "")
    failure = Failure(type=type(exc).__qualname__, message=text, traceback="".join(tb.format_exception(exc)))
    if retry_for is not None and not isinstance(exc, retry_for):
        failure = _not_retryable(failure)
    return failure, None


def _not_retryable(failure: Failure) -> Failure:
    return Failure(failure.type, failure.message, failure.traceback, retryable=False, data=failure.data)


def _cause_traceback(exc: BaseException) -> str | None:
    """A signal's own traceback says nothing; the error it was raised from (``raise Retry() from e``) does."""
    cause = exc.__cause__
    if cause is None:
        return None
    return "".join(tb.format_exception(cause))


__all__ = ["HandlerSignal", "Reject", "Retry", "attempt_outcome", "check_retry_for"]
