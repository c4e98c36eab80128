"""Groups and chords: fan work out and join it back.

    group = app.group(resize.s(1), resize.s(2), resize.s(3))
    chord = app.chord(group, summarize.s(prefix="thumbs"))
    handle = await chord.enqueue()
    summary = await handle.result(timeout=60)        # summarize(results, prefix="thumbs")

A group *is* its member tasks (each carries the group's id): there is no second record of their
outcomes to keep in step. The group, its members and the chord's callback template are enqueued in
one transaction (``Store.create_group``). The backend settles the group inside the transaction that
ends a member — the fenced completion, the reaper, a take-over or an admin's cancel — so when the
last member is ``done`` the callback is inserted then, exactly once (its id is derived from the
group's), with the members' results in member order as its first argument. A completion refused
to a stale worker changes nothing, so it cannot fire the chord. A member that ends ``dead`` or
``cancelled`` fails the group at once: ``ChordHandle.result()`` raises ``ChordFailed`` naming it. The
group is kept while a member is unfinished, however long the backlog, and for its ``ttl`` after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import errors
from ._ids import task_id
from .model import GroupStatus, NewTask, StatusState, as_seconds

if TYPE_CHECKING:
    from .client import App, TaskFunction, TaskHandle

R = TypeVar("R")


@dataclass(frozen=True)
class Signature(Generic[R]):
    """A task and its arguments, not yet enqueued: ``fn.s(*args, **kwargs)``."""

    task: TaskFunction[Any, R]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def new_task(
        self, *, id: str | None = None, group_id: str | None = None, extra_args: Sequence[Any] = ()
    ) -> NewTask:
        base = self.task.options(id=id, group_id=group_id)
        return base.new_task(*extra_args, *self.args, **self.kwargs)


def member_id(group_id: str, index: int) -> str:
    return f"{group_id}:{index}"


def callback_id(group_id: str) -> str:
    return f"{group_id}:callback"


@dataclass
class GroupHandle:
    app: App
    id: str
    members: list[str]

    async def status(self) -> GroupStatus | None:
        store = await self.app.store()
        return await store.get_group(self.id)

    def member(self, index: int) -> TaskHandle[Any]:
        return self.app.handle(self.members[index])


@dataclass
class ChordHandle(GroupHandle):
    callback: str = ""

    async def result(self, timeout: float | timedelta | None = None) -> Any:  # noqa: ASYNC109 (as TaskHandle)
        """The callback's result (raises ``TaskFailed`` … as ``TaskHandle.result``).

        While the members run the callback does not exist yet; this waits for it, then for its result.
        A member that ended ``dead`` or ``cancelled`` means the callback never comes: ``ChordFailed``.
        """
        limit = None if timeout is None else as_seconds(timeout, "timeout")
        deadline = None if limit is None else time.monotonic() + limit
        store = await self.app.store()
        pause = 0.01
        while True:
            try:
                await store.get(self.callback)
                break
            except errors.NotFound:
                group = await store.get_group(self.id)
                if group is not None and _failed_members(group):
                    raise ChordFailed(group) from None
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"chord {self.id!r}: the callback was not enqueued within {limit:g}s")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.25)
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        return await self.app.handle(self.callback).result(timeout=left)


def _failed_members(group: GroupStatus) -> list[str]:
    return sorted(k for k, s in group.results.items() if s.state in (StatusState.FAILED, StatusState.CANCELLED))


class ChordFailed(errors.TaskstoreError):
    """A member of the chord's group ended ``dead`` or ``cancelled``: the callback will not run."""

    def __init__(self, group: GroupStatus) -> None:
        self.group = group
        self.members = _failed_members(group)
        ended = ", ".join(f"{k} ({group.results[k].state.value})" for k in self.members)
        super().__init__(f"chord {group.id!r}: member(s) {ended} did not succeed; the callback will not run")


class Group:
    def __init__(self, app: App, members: Sequence[Signature[Any]], *, ttl: float | timedelta | None = None) -> None:
        if not members:
            raise errors.InvalidTask("a group needs at least one member")
        self.app = app
        self.members = list(members)
        self.ttl = ttl

    async def _start(self, callback: Signature[Any] | None) -> tuple[str, list[str]]:
        store = await self.app.store()
        gid = task_id()
        news = [sig.new_task(id=member_id(gid, i), group_id=gid) for i, sig in enumerate(self.members)]
        template = None if callback is None else callback.new_task(id=callback_id(gid))
        created = await store.create_group(gid, news, callback=template, ttl=self.ttl)
        return gid, [t.id for t in created]

    async def enqueue(self) -> GroupHandle:
        gid, ids = await self._start(None)
        return GroupHandle(self.app, gid, ids)


class Chord:
    def __init__(self, app: App, group: Group | Sequence[Signature[Any]], callback: Signature[Any]) -> None:
        self.group = group if isinstance(group, Group) else Group(app, group)
        self.callback = callback
        self.app = app

    async def enqueue(self) -> ChordHandle:
        gid, ids = await self.group._start(self.callback)
        return ChordHandle(self.app, gid, ids, callback=callback_id(gid))
