"""How a ``RecurringTask`` is stored: its template as JSON beside its encoded payload."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from . import limits
from .backend import RecurringRow
from .codec import Codec, decode, dump_json, encode
from .errors import InvalidTask
from .model import NewTask, RecurringTask
from .retry import policy_from_spec


def template_fields(t: NewTask) -> dict[str, Any]:
    """A task template's fields, all but its id, run_at and args, as JSON-ready values.

    Recurring schedules and chord callbacks store a task to create later this way, its payload beside it.
    """
    return {
        "queue": t.queue,
        "kind": t.kind,
        "priority": t.priority,
        "max_attempts": t.max_attempts,
        "processing_timeout": t.processing_timeout,
        "retry": None if t.retry is None else t.retry.to_spec(),
        "context": None if t.context is None else dict(t.context),
        "reference_id": t.reference_id,
        "group_id": t.group_id,
    }


def from_template(template: str, **fields: Any) -> NewTask:
    """The ``NewTask`` a stored template describes; ``fields`` adds what it does not hold (args, id, ...)."""
    stored = json.loads(template)
    retry = stored.pop("retry")
    return NewTask(retry=None if retry is None else policy_from_spec(retry), **stored, **fields)


def to_row(task: RecurringTask, codec: Codec, next_at: datetime) -> RecurringRow:
    t = task.template
    if t.id is not None or t.run_at is not None:
        raise InvalidTask("a recurring task's template takes no id or run_at: each slot sets its own")
    fields = template_fields(t)
    return RecurringRow(
        id=task.id,
        schedule=task.schedule,
        template=limits.json_text(dump_json(fields, "recurring template"), "recurring template"),
        args=encode(codec, t.args, "recurring task args"),
        skip_if_outstanding=task.skip_if_outstanding,
        next_at=next_at,
        owner=task.owner,
    )


def template_of(row: RecurringRow, codec: Codec, **overrides: Any) -> NewTask:
    return from_template(row.template, args=decode(codec, row.args), **overrides)


def from_row(row: RecurringRow, codec: Codec) -> RecurringTask:
    return RecurringTask(
        id=row.id,
        schedule=row.schedule,
        template=template_of(row, codec),
        skip_if_outstanding=row.skip_if_outstanding,
        next_at=row.next_at,
        owner=row.owner,
    )
