"""Errors as ``application/problem+json`` (RFC 9457), with the status codes of SPEC §10.

Every refusal the Python API can make maps to one status here, so an HTTP client sees the same error tree
as a Python caller: ``type`` is the error's class name (``NotFound``, ``NotOwned`` …). Nothing else leaves
the server: an unexpected exception becomes a 500 whose body says only that, and is logged with its
traceback on the server side.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus

import msgspec
from starlette.responses import Response

from .. import errors
from .._render import printable
from .schemas import JSON_ENCODER, Problem

log = logging.getLogger("taskstore.web")

PROBLEM_JSON = "application/problem+json"

# Most specific first: NotOwned and NotClaimed are LeaseErrors, InvalidTask and ConfigError ValueErrors.
_STATUS: tuple[tuple[type[errors.TaskstoreError], int], ...] = (
    (errors.NotFound, 404),
    (errors.NotOwned, 409),
    (errors.NotClaimed, 409),
    (errors.StaleVersion, 409),
    (errors.AlreadyExists, 409),
    (errors.ReportFromThePast, 409),
    (errors.InvalidTask, 422),
    (errors.ConfigError, 422),
    (errors.BackendUnavailable, 503),
)

RETRY_AFTER_SECONDS = 1


class HTTPProblem(Exception):
    """A refusal decided by the HTTP layer itself (auth, body size, malformed JSON, unknown route)."""

    def __init__(self, status: int, type_: str, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.type = type_
        self.detail = detail
        self.field = field


def status_of(exc: errors.TaskstoreError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def problem(status: int, type_: str, detail: str, *, field: str | None = None) -> Problem:
    return Problem(type=type_, title=HTTPStatus(status).phrase, status=status, detail=printable(detail), field=field)


def problem_of(exc: BaseException) -> Problem:
    """The problem document for ``exc``: a taskstore error, a validation error or an ``HTTPProblem``."""
    if isinstance(exc, HTTPProblem):
        return problem(exc.status, exc.type, exc.detail, field=exc.field)
    if isinstance(exc, msgspec.ValidationError):
        return problem(422, "InvalidTask", str(exc), field=_field_of(str(exc)))
    if isinstance(exc, errors.TaskstoreError):
        status = status_of(exc)
        if status == 500:
            log.error("unmapped taskstore error", exc_info=exc)
            return problem(500, "InternalError", "the server failed to handle this request; see its log")
        return problem(status, type(exc).__name__, str(exc))
    log.error("unexpected error while handling a request", exc_info=exc)
    return problem(500, "InternalError", "the server failed to handle this request; see its log")


_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_UNKNOWN = re.compile(r"(?:unknown|missing required) field `([^`]*)`")


def _field_of(message: str) -> str | None:
    """The bad field's path: msgspec ends a message with `` - at `$.tasks[0].queue` `` or names the field."""
    at = _AT.search(message)
    named = _UNKNOWN.search(message)
    if named is not None:
        parent = at.group(1) if at is not None else ""
        return f"{parent}.{named.group(1)}" if parent else named.group(1)
    if at is None:
        return None
    # Inside a value of any type msgspec cannot name the keys (``$.args[...]``): name the field that holds it.
    path = at.group(1).split("[...]", 1)[0]
    return path or None


def problem_response(doc: Problem, headers: dict[str, str] | None = None) -> Response:
    extra = dict(headers or {})
    if doc.status == 503:
        extra.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    if doc.status == 401:
        extra.setdefault("WWW-Authenticate", 'Bearer realm="taskstore"')
    return Response(JSON_ENCODER.encode(doc), status_code=doc.status, media_type=PROBLEM_JSON, headers=extra)


def error_response(exc: BaseException) -> Response:
    return problem_response(problem_of(exc))
