"""Groups and chords: fan work out and join it back.

    group = app.group(resize.s(1), resize.s(2), resize.s(3))
    chord = app.chord(group, summarize.s(prefix="thumbs"))
    handle = await chord.enqueue()
    summary = await handle.result(timeout=60)        # summarize(results, prefix="thumbs")

Members carry the group's id; the worker records each member's final status in the group (a
success just before its completion is written, so a worker dying in between makes the member run
again rather than go missing; a member that runs twice counts once). When every member has succeeded, the
callback is enqueued exactly once — its task id is derived from the group's, so however many
workers see the group complete, one callback task exists — with the members' results, in member
order, as its first argument. A member that ends ``dead`` leaves the group failed and visible, with
no callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import errors
from ._ids import task_id
from .model import GroupStatus, NewTask, StatusState, Task, TaskStatus, as_seconds
from .store import Store

if TYPE_CHECKING:
    from .client import App, TaskFunction, TaskHandle

log = logging.getLogger("taskstore.canvas")

R = TypeVar("R")
CALLBACK_KEY = "chord.callback"


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
        A member that went dead means the callback never comes: that raises ``ChordFailed`` at once.
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
                if group is not None and any(s.state is StatusState.FAILED for s in group.results.values()):
                    raise ChordFailed(group) from None
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"chord {self.id!r}: the callback was not enqueued within {limit:g}s")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.25)
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        return await self.app.handle(self.callback).result(timeout=left)


class ChordFailed(errors.TaskstoreError):
    """A member of the chord's group went ``dead``: the callback will not run."""

    def __init__(self, group: GroupStatus) -> None:
        self.group = group
        failed = sorted(k for k, s in group.results.items() if s.state is StatusState.FAILED)
        super().__init__(f"chord {group.id!r}: member(s) {', '.join(failed)} failed; the callback will not run")


class Group:
    def __init__(self, app: App, members: Sequence[Signature[Any]], *, ttl: float | timedelta | None = None) -> None:
        if not members:
            raise errors.InvalidTask("a group needs at least one member")
        self.app = app
        self.members = list(members)
        self.ttl = ttl

    async def _start(self, meta: dict[str, Any]) -> tuple[Store, str, list[str]]:
        store = await self.app.store()
        gid = task_id()
        await store.init_group(gid, len(self.members), meta=meta, ttl=self.ttl)
        news = [sig.new_task(id=member_id(gid, i), group_id=gid) for i, sig in enumerate(self.members)]
        created = await store.create_many(news)
        return store, gid, [t.id for t in created]

    async def enqueue(self) -> GroupHandle:
        _, gid, ids = await self._start({})
        return GroupHandle(self.app, gid, ids)


class Chord:
    def __init__(self, app: App, group: Group | Sequence[Signature[Any]], callback: Signature[Any]) -> None:
        self.group = group if isinstance(group, Group) else Group(app, group)
        self.callback = callback
        self.app = app

    async def enqueue(self) -> ChordHandle:
        spec = {"kind": self.callback.task.kind, "args": list(self.callback.args), "kwargs": dict(self.callback.kwargs)}
        _, gid, ids = await self.group._start({CALLBACK_KEY: spec})
        return ChordHandle(self.app, gid, ids, callback=callback_id(gid))


async def record_member(app: App, store: Store, task: Task, status: TaskStatus) -> None:
    """Record a finished member's status in its group; fire the chord when every member succeeded."""
    group_id = task.group_id
    if group_id is None:
        return
    group = await store.add_group_result(group_id, status)
    if group is None or not group.is_complete or group.meta.get("chord.claimed"):
        return
    spec = group.meta.get(CALLBACK_KEY)
    if not isinstance(spec, dict):
        return
    if any(s.state is not StatusState.SUCCEEDED for s in group.results.values()):
        return  # a failed member: the group stays failed and visible, no callback
    handler = app.tasks.get(spec.get("kind", ""))
    if handler is None:
        log.error("chord %s: callback kind %r is not registered in this worker's App", group_id, spec.get("kind"))
        return
    results = [
        group.results[member_id(group_id, i)].payload
        for i in range(group.expected)
        if member_id(group_id, i) in group.results
    ]
    callback = Signature(handler, tuple(spec.get("args", ())), dict(spec.get("kwargs", {})))
    with contextlib.suppress(errors.AlreadyExists):  # another worker saw it complete first: one callback exists
        await store.create(callback.new_task(id=callback_id(group_id), extra_args=[results]))
    await store.claim_chord(group_id, callback_id(group_id))
