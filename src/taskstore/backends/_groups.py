"""Settling a group from its member tasks: the part every backend shares.

A driver calls ``settle`` inside the transaction that ended one of the group's members (holding the
group's row locked, or the store's lock), with the group and its members as they now stand, and
writes back what it returns. The decision itself is ``transitions.settle_group``.

A chain is a group too: its links are its members, but only the first is inserted with it. Each
later link is inserted by ``settle`` in the transaction that ends the link before it ``done``, so the
machinery that fires a chord exactly once also moves a chain on exactly once: a completion refused
to a stale worker changes nothing, and a link already there (live or archived) is never inserted again.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import errors, transitions
from .._recurring import from_template, template_fields
from ..backend import ChordArgs, ChordRow, GroupRow, NewRow
from ..codec import dump_json
from ..model import NewTask, State, Task


def template_json(new: NewTask) -> str:
    """A callback task's fields as JSON, all but its id and args (stored beside it).

    The callback belongs to no group of its own: it is the group's ending.
    """
    fields = template_fields(new)
    del fields["group_id"]
    return dump_json(fields, "chord callback")


def link_template_json(new: NewTask) -> str:
    """A chain link's fields as JSON, all but its id and args: it keeps its ``group_id`` (the chain's)."""
    return dump_json(template_fields(new), "chain link")


def links_json(links: Sequence[ChordRow]) -> str:
    """A chain's stored links, as one JSON text (each link's encoded args in base64)."""
    return json.dumps(
        [{"id": c.id, "template": c.template, "args": base64.b64encode(c.args).decode("ascii")} for c in links]
    )


def links_from_json(text: str | None) -> tuple[ChordRow, ...] | None:
    if text is None:
        return None
    return tuple(ChordRow(d["id"], d["template"], base64.b64decode(d["args"])) for d in json.loads(text))


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
    if group.links is not None:
        return Settlement(changed, next_link(group, chord_args))
    callback = None
    if succeeded and group.callback is not None and not group.chord_claimed:
        results = [t.result.value if t.result is not None else None for t in group.members]
        callback = callback_row(group.callback, results, chord_args)
        changed = dataclasses.replace(
            changed, chord_claimed=True, chord_callback_id=group.callback.id, chord_dispatched_at=now
        )
    return Settlement(changed, callback)


def next_link(group: GroupRow, chord_args: ChordArgs) -> NewRow | None:
    """A chain's next link, with the result of the one before as its first argument, when it is due.

    Due when the chain's members found so far are its first links in order, the last of them is
    ``done``, and the next is not there yet (its id is not among the members, live or archived).
    """
    ids, links, members = group.member_ids or (), group.links or (), group.members
    k = len(members)
    if k == 0 or k >= len(ids) or k > len(links) or tuple(t.id for t in members) != ids[:k]:
        return None
    last = members[-1]
    if last.state is not State.DONE:
        return None
    link = links[k - 1]
    value = last.result.value if last.result is not None else None
    return NewRow(from_template(link.template, id=link.id), link.id, chord_args(link.args, [value], single=True))


def ended_groups(changes: Iterable[tuple[Task, Task]]) -> list[str]:
    """Group ids of tasks a write has just ended (sorted: rows are locked in a stable order)."""
    return sorted({new.group_id for old, new in changes if new.group_id is not None and _ended(old, new)})


def _ended(old: Task, new: Task) -> bool:
    return new.state.is_terminal and (not old.state.is_terminal or new.state is not old.state)


def initial_group(
    group_id: str, expected: int, meta: dict[str, Any], created_at: datetime, now: datetime, expires_at: datetime
) -> GroupRow:
    """A group of tasks run elsewhere as ``put_group`` (re)starts it: no results yet, its TTL from ``now``."""
    return GroupRow(
        group_id,
        expected,
        {},
        dict(meta),
        False,
        None,
        None,
        created_at,
        now,
        expires_at,
        ttl=(expires_at - now).total_seconds(),
    )


def no_chord_args(template: bytes, results: Sequence[bytes | None], /, *, single: bool = False) -> bytes:
    """A driver's ``chord_args`` until a ``Store`` sets its own (the store's codec builds the args)."""
    raise errors.ConfigError("this driver is not attached to a Store: it cannot build a chord's callback")
