"""Settling a group from its member tasks: the part every backend shares.

A driver calls ``settle`` inside the transaction that ended one of the group's members (holding the
group's row locked, or the store's lock), with the group and its members as they now stand, and
writes back what it returns. The decision itself is ``transitions.settle_group``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import errors, transitions
from .._recurring import from_template, template_fields
from ..backend import ChordArgs, ChordRow, GroupRow, NewRow
from ..codec import dump_json
from ..model import NewTask, Task


def template_json(new: NewTask) -> str:
    """A callback task's fields as JSON, all but its id and args (stored beside it).

    The callback belongs to no group of its own: it is the group's ending.
    """
    fields = template_fields(new)
    del fields["group_id"]
    return dump_json(fields, "chord callback")


def callback_row(chord: ChordRow, results: Sequence[bytes | None], chord_args: ChordArgs) -> NewRow:
    """The callback to insert: its template, with the members' results put into its args."""
    return NewRow(from_template(chord.template, id=chord.id), chord.id, chord_args(chord.args, results))


def in_order(group: GroupRow, live: Iterable[Task], archived: Iterable[Task]) -> tuple[Task, ...]:
    """The group's member tasks in member order; a live task hides an archived one of the same id.

    A group enqueued with its members lists them; one made with ``init_group`` takes every task that
    names it, in enqueue order.
    """
    found: dict[str, Task] = {}
    for task in sorted(archived, key=lambda t: t.seq):
        found[task.id] = task
    for task in live:
        found[task.id] = task
    if group.member_ids is not None:
        return tuple(found[i] for i in group.member_ids if i in found)
    return tuple(sorted(found.values(), key=lambda t: t.seq))


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a settled group changes: the row to write back, and the callback to insert (if it fires)."""

    group: GroupRow
    callback: NewRow | None


def settle(group: GroupRow, now: datetime, chord_args: ChordArgs) -> Settlement | None:
    """None while a member is unfinished; otherwise keep the group ``ttl`` longer, and fire its chord once."""
    finished, succeeded = transitions.settle_group(group.expected, [t.state for t in group.members])
    if not finished:
        return None
    keep = now + timedelta(seconds=group.ttl or 0.0)
    changed = dataclasses.replace(group, expires_at=max(group.expires_at, keep), updated_at=now)
    callback = None
    if succeeded and group.callback is not None and not group.chord_claimed:
        results = [t.result.value if t.result is not None else None for t in group.members]
        callback = callback_row(group.callback, results, chord_args)
        changed = dataclasses.replace(
            changed, chord_claimed=True, chord_callback_id=group.callback.id, chord_dispatched_at=now
        )
    return Settlement(changed, callback)


def ended_groups(changes: Iterable[tuple[Task, Task]]) -> list[str]:
    """Group ids of tasks a write has just ended (sorted: rows are locked in a stable order)."""
    return sorted({new.group_id for old, new in changes if new.group_id is not None and _ended(old, new)})


def _ended(old: Task, new: Task) -> bool:
    return new.state.is_terminal and (not old.state.is_terminal or new.state is not old.state)


def no_chord_args(template: bytes, results: Sequence[bytes | None]) -> bytes:
    """A driver's ``chord_args`` until a ``Store`` sets its own (the store's codec builds the args)."""
    raise errors.ConfigError("this driver is not attached to a Store: it cannot build a chord's callback")
