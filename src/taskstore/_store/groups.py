"""Groups, chords and chains (SPEC §4)."""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from .. import _observe, _otel, _statuses, errors, limits
from ..backend import (
    ChordRow,
    GroupRow,
)
from ..backends._groups import link_template_json, template_json
from ..codec import encode
from ..model import (
    GroupStatus,
    NewTask,
    Task,
    TaskStatus,
    check_aware,
    check_id,
)
from .core import (
    StoreCore,
    _json,
    _mapping,
    _status_state,
)


def _chord_template(callback: NewTask, what: str = "a chord callback's") -> dict[str, Any]:
    """A callback's own arguments, as ``{"args": [...], "kwargs": {...}}`` (the results go first at its call)."""
    call = {} if callback.args is None else callback.args
    if (
        not isinstance(call, Mapping)
        or set(call) - {"args", "kwargs"}
        or not isinstance(call.get("args", []), list | tuple)
        or not isinstance(call.get("kwargs", {}), Mapping)
    ):
        raise errors.InvalidTask(f'{what} args must be None or {{"args": [...], "kwargs": {{...}}}}')
    return {"args": list(call.get("args", [])), "kwargs": dict(call.get("kwargs", {}))}


class StoreGroups(StoreCore):
    """Create groups, chords and chains, and read how they stand."""

    # -- groups and chords (SPEC §4) ------------------------------------------------------------

    async def init_group(
        self, id: str, expected: int, meta: Mapping[str, Any] | None = None, ttl: float | timedelta | None = None
    ) -> GroupStatus:
        """Create a group expecting ``expected`` members, or re-initialise it (results and chord claim cleared)."""
        check_id(id, "group id")
        limits.integer(expected, "expected", 0)
        fields = _mapping(meta, "group meta")
        _json(fields, "group meta")
        driver = await self._ready()
        row = await driver.put_group(id, expected, fields, self.now() + timedelta(seconds=self._ttl(ttl)))
        return self._group_status(row)

    async def create_group(
        self,
        id: str,
        members: Iterable[NewTask],
        *,
        callback: NewTask | None = None,
        meta: Mapping[str, Any] | None = None,
        ttl: float | timedelta | None = None,
    ) -> builtins.list[Task]:
        """Enqueue a group: its members and (for a chord) its callback's template, all or nothing.

        Each member gets ``group_id=id`` (an id of its own defaults to ``"{id}:{index}"``). The group *is*
        its members: when the last of them ends ``done`` — in the same transaction as that completion —
        the callback is enqueued exactly once, with id ``callback.id`` or ``"{id}:callback"`` and the
        members' results (in member order) as its first argument. Any member ending ``dead`` or
        ``cancelled`` fails the group. The group is kept while a member is unfinished, then ``ttl`` more.
        """
        check_id(id, "group id")
        news = builtins.list(members)
        if not news:
            raise errors.InvalidTask("a group needs at least one member")
        for new in news:
            if not isinstance(new, NewTask):
                raise errors.InvalidTask(f"expected a NewTask, got {type(new).__name__}")
            if new.group_id not in (None, id):
                raise errors.InvalidTask(f"member {new.id!r} names another group ({new.group_id!r})")
            if new.unique_key is not None:
                # A member handed back as another task's duplicate would leave the group without its member.
                raise errors.InvalidTask(f"a group member cannot be unique (member {new.id!r} has a unique_key)")
        news = [
            dataclasses.replace(new, id=f"{id}:{i}" if new.id is None else new.id, group_id=id)
            for i, new in enumerate(news)
        ]
        fields = _mapping(meta, "group meta")
        _json(fields, "group meta")
        seconds = self._ttl(ttl)
        trace = _otel.carrier()
        chord = None
        if callback is not None:
            if not isinstance(callback, NewTask):
                raise errors.InvalidTask(f"expected a NewTask callback, got {type(callback).__name__}")
            if trace is not None:  # enqueued later, by the last member's completion, for this caller
                callback = _otel.traced(callback, trace)
            template = _chord_template(callback)
            chord = ChordRow(
                id=check_id(f"{id}:callback" if callback.id is None else callback.id, "callback id"),
                template=template_json(callback),
                args=encode(self.codec, template, "callback args"),
            )
        rows = self._rows(news, trace)
        group = self._new_group(id, [r.id for r in rows], fields, seconds, callback=chord)
        driver = await self._ready()
        created = await driver.insert_group(group, rows)
        self._wake()
        self._touched()
        if self._observers:
            _observe.enqueued(self._observers, created)
        return created

    async def create_chain(
        self,
        id: str,
        links: Iterable[NewTask],
        *,
        meta: Mapping[str, Any] | None = None,
        ttl: float | timedelta | None = None,
    ) -> Task:
        """Enqueue a chain: its first link now, each later one once the link before it is ``done``.

        The links are the members of group ``id`` (a link's id defaults to ``"{id}:{index}"``). In the
        transaction that ends link *i* ``done``, link *i+1* is inserted, exactly once, with link *i*'s
        result as its first argument (before its own ``{"args": [...], "kwargs": {...}}``). A link that
        ends ``dead`` or ``cancelled`` fails the group and stops the chain (a manual ``retry`` of it
        resumes it). The group is kept while a link is unfinished, then ``ttl`` more. Returns the first link.
        """
        check_id(id, "chain id")
        news = builtins.list(links)
        if not news:
            raise errors.InvalidTask("a chain needs at least one link")
        for i, new in enumerate(news):
            if not isinstance(new, NewTask):
                raise errors.InvalidTask(f"expected a NewTask, got {type(new).__name__}")
            if new.group_id not in (None, id):
                raise errors.InvalidTask(f"link {new.id!r} names another group ({new.group_id!r})")
            if i and new.run_at is not None:
                raise errors.InvalidTask(
                    "a chain's link after the first takes no run_at: it runs when the one before is done"
                )
        news = [
            dataclasses.replace(new, id=check_id(f"{id}:{i}" if new.id is None else new.id, "link id"), group_id=id)
            for i, new in enumerate(news)
        ]
        ids = [cast(str, new.id) for new in news]
        if len(set(ids)) < len(ids):
            raise errors.InvalidTask("two links of the chain share an id")
        fields = _mapping(meta, "group meta")
        _json(fields, "group meta")
        trace = _otel.carrier()
        if trace is not None:  # every link carries the caller's trace, the later ones inserted by completions
            news = [_otel.traced(new, trace) for new in news]
        later = tuple(
            ChordRow(
                id=ids[i],
                template=link_template_json(new),
                args=encode(self.codec, _chord_template(new, "a chain link's"), "link args"),
            )
            for i, new in enumerate(news[1:], start=1)
        )
        rows = self._rows(news[:1], None)  # traced above
        group = self._new_group(id, ids, fields, self._ttl(ttl), links=later)
        driver = await self._ready()
        (first,) = await driver.insert_group(group, rows)
        self._wake()
        self._touched()
        if self._observers:
            _observe.enqueued(self._observers, [first])
        return first

    def _new_group(
        self,
        id: str,
        member_ids: Sequence[str],
        meta: dict[str, Any],
        ttl: float,
        *,
        callback: ChordRow | None = None,
        links: tuple[ChordRow, ...] | None = None,
    ) -> GroupRow:
        now = self.now()
        return GroupRow(
            id=id,
            expected=len(member_ids),
            results={},
            meta=meta,
            chord_claimed=False,
            chord_callback_id=None,
            chord_dispatched_at=None,
            created_at=now,
            updated_at=now,
            expires_at=now + timedelta(seconds=ttl),
            member_ids=tuple(member_ids),
            callback=callback,
            ttl=ttl,
            links=links,
        )

    async def add_group_result(self, group_id: str, status: TaskStatus) -> GroupStatus | None:
        """Record a member's status (a member reported twice counts once); ``None`` if the group is gone."""
        check_id(group_id, "group id")
        if not isinstance(status, TaskStatus):
            raise errors.InvalidTask(f"expected a TaskStatus, got {type(status).__name__}")
        check_id(status.id, "status id")
        _status_state(status.state)
        limits.integer(status.attempt, "attempt", 0)
        document = status.to_json()
        _json(document, "status")
        driver = await self._ready()
        row = await driver.add_group_result(group_id, status.id, document)
        return None if row is None else self._group_status(row)

    async def get_group(self, id: str) -> GroupStatus | None:
        """The group: statuses recorded with ``add_group_result``, then its member tasks that have ended."""
        driver = await self._ready()
        row = await driver.get_group(check_id(id, "group id"))
        return None if row is None else self._group_status(row)

    def _group_status(self, row: GroupRow) -> GroupStatus:
        meta = dict(row.meta)
        if row.chord_claimed:
            meta["chord.claimed"] = True
            meta["chord.callback_task_id"] = row.chord_callback_id
            at = row.chord_dispatched_at
            meta["chord.dispatched_at"] = None if at is None else at.isoformat()
        results = {member: TaskStatus.from_json(status) for member, status in row.results.items()}
        for task in row.members:
            if task.state.is_terminal:
                results[task.id] = _statuses.status_of(self._decoded(task))
        return GroupStatus(
            id=row.id,
            expected=row.expected,
            results=results,
            meta=meta,
            created_at=row.created_at,
            updated_at=row.updated_at,
            expires_at=row.expires_at,
        )

    async def claim_chord(
        self, group_id: str, callback_id: str | None = None, dispatched_at: datetime | None = None
    ) -> bool:
        """True for exactly one caller, however many race; ``False`` for a missing or expired group."""
        check_id(group_id, "group id")
        if callback_id is not None:
            check_id(callback_id, "callback id")
        when = check_aware(dispatched_at, "dispatched_at") if dispatched_at is not None else self.now()
        driver = await self._ready()
        return await driver.claim_chord(group_id, callback_id, when)

    async def purge_groups(self) -> int:
        """Delete expired groups (the maintenance loop does this)."""
        driver = await self._ready()
        return await driver.purge_groups()
