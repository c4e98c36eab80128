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

A chain runs its links one after another, each with the result of the one before as its first argument:

    handle = await app.chain(fetch.s(url), parse.s(), store_rows.s(table="t")).enqueue()
    rows = await handle.result(timeout=60)           # store_rows(parse(fetch(url)), table="t")

It is a group whose members are its links (``Store.create_chain``): only the first is enqueued at once,
and the transaction that ends a link ``done`` inserts the next one, exactly once, by the machinery
that fires a chord. A link that ends ``dead`` or ``cancelled`` stops the chain: no later link runs,
and ``ChainHandle.result()`` raises ``ChainFailed`` naming it.
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
from .model import GroupStatus, NewTask, State, StatusState, Task, as_seconds

if TYPE_CHECKING:
    from .client import App, TaskFunction, TaskHandle
    from .store import Store

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
        return await self.app.on_home(lambda store: store.get_group(self.id))

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
        await self.app.on_home(lambda store: self._callback_created(store, deadline, limit))
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        return await self.app.handle(self.callback).result(timeout=left)

    async def _callback_created(self, store: Store, deadline: float | None, limit: float | None) -> None:
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
        async def start(store: Store) -> tuple[str, list[str]]:
            gid = task_id()
            news = [sig.new_task(id=member_id(gid, i), group_id=gid) for i, sig in enumerate(self.members)]
            template = None if callback is None else callback.new_task(id=callback_id(gid))
            created = await store.create_group(gid, news, callback=template, ttl=self.ttl)
            return gid, [t.id for t in created]

        return await self.app.on_home(start)

    async def enqueue(self) -> GroupHandle:
        gid, ids = await self._start(None)
        if self.app.eager:
            await self.app._run_eagerly(ids)
        return GroupHandle(self.app, gid, ids)

    def enqueue_sync(self) -> GroupHandle:
        return self.app.run_sync(self.enqueue())


class Chord:
    def __init__(self, app: App, group: Group | Sequence[Signature[Any]], callback: Signature[Any]) -> None:
        self.group = group if isinstance(group, Group) else Group(app, group)
        self.callback = callback
        self.app = app

    async def enqueue(self) -> ChordHandle:
        gid, ids = await self.group._start(self.callback)
        if self.app.eager:  # the callback exists once the last member is done: it runs after them
            await self.app._run_eagerly([*ids, callback_id(gid)])
        return ChordHandle(self.app, gid, ids, callback=callback_id(gid))

    def enqueue_sync(self) -> ChordHandle:
        return self.app.run_sync(self.enqueue())


class ChainFailed(errors.TaskstoreError):
    """A link of the chain ended ``dead`` or ``cancelled`` (or never came): the links after it will not run.

    ``index`` and ``link_id`` name the link; ``task`` is it as it ended (``None`` if it was never enqueued).
    """

    def __init__(self, chain_id: str, index: int, link_id: str, task: Task | None) -> None:
        self.chain_id, self.index, self.link_id, self.task = chain_id, index, link_id, task
        self.failure = None if task is None or task.result is None else task.result.failure
        if task is None:
            how = "was never enqueued (the chain's group was gone when the link before it ended)"
        elif task.state is State.CANCELLED:
            how = f"({task.kind}) was cancelled"
        else:
            what = f"{self.failure.type}: {self.failure.message}" if self.failure else "no failure recorded"
            how = f"({task.kind}) failed after {task.attempts} attempt(s): {what}"
        super().__init__(f"chain {chain_id!r}: link {index} {link_id!r} {how}; the links after it will not run")


@dataclass
class ChainHandle:
    app: App
    id: str
    links: list[str]

    async def status(self) -> GroupStatus | None:
        """The chain's group: one result per link that has ended."""
        return await self.app.on_home(lambda store: store.get_group(self.id))

    def link(self, index: int) -> TaskHandle[Any]:
        """A handle on one link (a later link exists only once the one before it is ``done``)."""
        return self.app.handle(self.links[index])

    async def result(self, timeout: float | timedelta | None = None) -> Any:  # noqa: ASYNC109 (as TaskHandle)
        """The last link's result, once every link is ``done``.

        Follows the links in order, waiting on each (a link is there as soon as the one before it is
        ``done``). Raises ``ChainFailed`` naming the first link that ended ``dead`` or ``cancelled``, and
        ``TimeoutError`` when ``timeout`` seconds pass first (the chain itself is not touched).
        """
        limit = None if timeout is None else as_seconds(timeout, "timeout")
        deadline = None if limit is None else time.monotonic() + limit
        return await self.app.on_home(lambda store: self._last_result(store, deadline, limit))

    async def _last_result(self, store: Store, deadline: float | None, limit: float | None) -> Any:
        value: Any = None
        for index, link_id in enumerate(self.links):
            task = await _find(store, link_id, first=index == 0)
            if task is not None and not task.state.is_terminal:
                task = await _ended(store, link_id, deadline, f"chain {self.id!r}", limit)
            if task is None or task.state is not State.DONE:
                raise ChainFailed(self.id, index, link_id, task)
            value = task.result.value if task.result is not None else None
        return value

    def result_sync(self, timeout: float | timedelta | None = None) -> Any:
        return self.app.run_sync(self.result(timeout))


async def _find(store: Store, link_id: str, *, first: bool) -> Task | None:
    """The link, live or archived; ``None`` if it was never enqueued (``NotFound`` for a first link)."""
    try:
        return await store.get(link_id)
    except errors.NotFound:
        try:
            return await store.get_archived(link_id)
        except errors.NotFound:
            if first:
                raise
            return None


async def _ended(store: Store, task_id: str, deadline: float | None, what: str, limit: float | None) -> Task | None:
    """The task once it has ended, watched (not polled) until then (it may be archived by the time it is read)."""
    left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    try:
        async with asyncio.timeout(left):
            async for status in store.watch(task_id):
                if status.state.is_terminal:
                    break
    except TimeoutError:
        raise TimeoutError(f"{what} did not finish within {limit:g}s (waiting on {task_id!r})") from None
    return await _find(store, task_id, first=False)


class Chain:
    def __init__(self, app: App, links: Sequence[Signature[Any]], *, ttl: float | timedelta | None = None) -> None:
        if not links:
            raise errors.InvalidTask("a chain needs at least one link")
        self.app = app
        self.links = list(links)
        self.ttl = ttl

    async def enqueue(self) -> ChainHandle:
        cid = task_id()
        ids = [member_id(cid, i) for i in range(len(self.links))]

        async def create(store: Store) -> None:
            links = [sig.new_task(id=i) for sig, i in zip(self.links, ids, strict=True)]
            await store.create_chain(cid, links, ttl=self.ttl)

        await self.app.on_home(create)
        if self.app.eager:  # each link is created as the one before it is done
            await self.app._run_eagerly(ids)
        return ChainHandle(self.app, cid, ids)

    def enqueue_sync(self) -> ChainHandle:
        return self.app.run_sync(self.enqueue())
