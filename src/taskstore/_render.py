"""Plain-JSON views of taskstore values, for ``--json`` output and logs, and text safe to print.

Task data is whatever a producer put there: it is shown as text, never interpreted. ``printable``
writes every character a terminal would act on (C0/C1 controls such as ESC, bidi overrides that reorder
what is shown, lone surrogates that cannot be encoded) as a visible escape.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any

from .codec import UndecodablePayload
from .model import Claim, Failure, Result, Task

# Controls (C0, DEL, C1), bidi embeddings/overrides/isolates and marks, and lone surrogates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# After json.dumps (which escapes C0 itself), what is left to escape can only sit inside JSON strings.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape", "backslashreplace").decode("ascii")


def printable(value: object) -> str:
    """``str(value)`` with every character a terminal would act on written as a visible escape (``\\x1b``)."""
    return _UNSAFE.sub(_escape, str(value))


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """JSON for scripts: non-ASCII text kept readable, but nothing a terminal would act on left raw."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def payload_json(value: Any) -> Any:
    """A stored payload as JSON; one the codec could not read is base64 with the decoder's error."""
    if isinstance(value, UndecodablePayload):
        return {"undecodable": base64.b64encode(value.data).decode(), "error": value.error}
    return value


def _failure(failure: Failure | None) -> dict[str, Any] | None:
    return None if failure is None else failure.to_json()


def _result(result: Result | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"at": _time(result.at), "value": payload_json(result.value), "failure": _failure(result.failure)}


def claim_json(claim: Claim | None) -> dict[str, Any] | None:
    if claim is None:
        return None
    report = claim.last_report
    return {
        "worker_id": claim.worker_id,
        "claimed_at": _time(claim.claimed_at),
        "times_out_at": _time(claim.times_out_at),
        "last_report": None if report is None else {"at": _time(report.at), "data": report.data},
    }


def task_json(task: Task) -> dict[str, Any]:
    """Every field of a task as JSON-compatible values; the lease token is left out on purpose."""
    return {
        "id": task.id,
        "queue": task.queue,
        "kind": task.kind,
        "state": task.state.value,
        "args": payload_json(task.args),
        "context": task.context,
        "reference_id": task.reference_id,
        "priority": task.priority,
        "run_at": _time(task.run_at),
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "processing_timeout": task.processing_timeout,
        "retry": None if task.retry is None else task.retry.to_spec(),
        "claim": claim_json(task.claim),
        "cancel_requested": task.cancel_requested,
        "result": _result(task.result),
        "created_at": _time(task.created_at),
        "updated_at": _time(task.updated_at),
        "last_enqueued_at": _time(task.last_enqueued_at),
        "finished_at": _time(task.finished_at),
        "version": task.version,
        "recurring_id": task.recurring_id,
        "group_id": task.group_id,
        "unique_key": task.unique_key,
        "concurrency_key": task.concurrency_key,
        "expires_at": _time(task.expires_at),
        "failures": [entry.to_json() for entry in task.failures],
    }
