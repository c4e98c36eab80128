"""Enqueueing inside the caller's own transaction (SPEC §3, seed 001's outbox promise).

A task created with ``conn=`` exists if and only if the caller's transaction commits, however that
transaction stands when the enqueue arrives: already begun by the application, or not begun yet (the
enqueue is its first statement, so the join must start it as the driver would and never commit it).
A connection in autocommit mode has no transaction to join and is refused.

A backend with the ``join_transaction`` capability provides the ``caller_connections`` fixture, one
instance per flavor of its driver's connections (sync and async, isolation modes).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import pytest

from taskstore import Store, errors

from ._base import JOIN_TRANSACTION, SuiteBase, new


class CallerConnection(Protocol):
    """One of the application's own connections to the store's database, as its driver hands it out."""

    conn: Any

    async def write(self) -> None:
        """Run the application's own statement (an order row) on ``conn``."""

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def orders(self) -> int:
        """How many order rows are committed, read on another connection."""

    async def close(self) -> None: ...


class CallerConnections(Protocol):
    async def fresh(self) -> CallerConnection:
        """In the driver's default (transactional) mode, with nothing executed yet."""

    async def autocommit(self, *, begun: bool) -> CallerConnection:
        """In autocommit mode; with ``begun`` the application has opened a transaction explicitly."""

    async def aborted(self) -> CallerConnection | None:
        """Inside a transaction a failed statement aborted; ``None`` when the driver has no such state."""

    async def elsewhere(self) -> CallerConnection | None:
        """Open on another database than the store's; ``None`` when the backend cannot tell cheaply."""


_BEGUN = pytest.mark.parametrize("begun", [False, True], ids=["enqueue-first", "after-own-write"])


class JoinTests(SuiteBase):
    @pytest.fixture
    def caller_connections(self) -> CallerConnections:
        self.need(JOIN_TRANSACTION)
        raise NotImplementedError("backends with the join_transaction capability provide this fixture")

    async def _open(self, connections: CallerConnections, begun: bool) -> CallerConnection:
        caller = await connections.fresh()
        if begun:
            await caller.write()
        return caller

    @_BEGUN
    async def test_rollback_leaves_nothing(
        self, store: Store, caller_connections: CallerConnections, begun: bool
    ) -> None:
        caller = await self._open(caller_connections, begun)
        created = await store.create_many([new(id="t1"), new(id="t2")], conn=caller.conn)
        assert [t.id for t in created] == ["t1", "t2"]
        await caller.rollback()
        assert await store.count() == 0
        with pytest.raises(errors.NotFound):
            await store.get("t1")
        assert await store.claim("w", limit=5) == []

    @_BEGUN
    async def test_commit_stores_exactly_the_tasks(
        self, store: Store, caller_connections: CallerConnections, begun: bool
    ) -> None:
        caller = await self._open(caller_connections, begun)
        await store.create_many([new(id="t1"), new(id="t2")], conn=caller.conn)
        assert await store.find_available(limit=10) == []
        assert await store.count() == 0
        await caller.write()  # the transaction goes on after the enqueue
        await caller.commit()
        assert await caller.orders() == (2 if begun else 1)
        assert await store.count() == 2
        assert [t.id for t in await store.claim("w", limit=5)] == ["t1", "t2"]

    async def test_a_claimer_waiting_across_a_rollback_never_gets_the_task(
        self, store: Store, caller_connections: CallerConnections
    ) -> None:
        caller = await caller_connections.fresh()
        waiting = asyncio.create_task(store.claim("w", limit=5, block_for=1.0))
        await store.create(new(id="rolled-back"), conn=caller.conn)
        await caller.rollback()
        assert await asyncio.wait_for(waiting, timeout=60) == []
        assert await store.claim("w", limit=5) == []

    async def test_a_waiting_claimer_gets_the_task_once_committed(
        self, store: Store, caller_connections: CallerConnections
    ) -> None:
        caller = await caller_connections.fresh()
        waiting = asyncio.create_task(store.claim("w", limit=5, block_for=30.0))
        await store.create(new(id="committed"), conn=caller.conn)
        await caller.commit()
        assert [t.id for t in await asyncio.wait_for(waiting, timeout=60)] == ["committed"]

    async def test_autocommit_is_refused_and_stores_nothing(
        self, store: Store, caller_connections: CallerConnections
    ) -> None:
        caller = await caller_connections.autocommit(begun=False)
        with pytest.raises(errors.ConfigError, match="autocommit"):
            await store.create_many([new(id="t1"), new(id="t2")], conn=caller.conn)
        assert await store.count() == 0

    @pytest.mark.parametrize("commit", [False, True], ids=["rollback", "commit"])
    async def test_autocommit_with_an_explicit_begin_is_joined(
        self, store: Store, caller_connections: CallerConnections, commit: bool
    ) -> None:
        caller = await caller_connections.autocommit(begun=True)
        await store.create(new(id="t1"), conn=caller.conn)
        assert await store.count() == 0
        await (caller.commit() if commit else caller.rollback())
        assert await store.count() == (1 if commit else 0)

    async def test_an_aborted_transaction_is_refused(self, store: Store, caller_connections: CallerConnections) -> None:
        caller = await caller_connections.aborted()
        if caller is None:
            pytest.skip("this driver's transactions have no aborted state")
        with pytest.raises(errors.ConfigError, match="failed transaction"):
            await store.create(new(id="t1"), conn=caller.conn)
        await caller.rollback()
        assert await store.count() == 0

    async def test_a_connection_to_another_database_is_refused(
        self, store: Store, caller_connections: CallerConnections
    ) -> None:
        caller = await caller_connections.elsewhere()
        if caller is None:
            pytest.skip("this backend cannot tell another database cheaply")
        with pytest.raises(errors.ConfigError):
            await store.create(new(id="t1"), conn=caller.conn)
        await caller.rollback()
        assert await store.count() == 0

    async def test_a_closed_connection_is_refused(self, store: Store, caller_connections: CallerConnections) -> None:
        caller = await caller_connections.fresh()
        await caller.close()
        with pytest.raises(errors.ConfigError):
            await store.create(new(id="t1"), conn=caller.conn)
        assert await store.count() == 0

    @_BEGUN
    async def test_a_failed_create_leaves_the_transaction_usable(
        self, store: Store, caller_connections: CallerConnections, begun: bool
    ) -> None:
        await store.create(new(id="taken"))
        caller = await self._open(caller_connections, begun)
        with pytest.raises(errors.AlreadyExists) as refused:
            await store.create_many([new(id="ok-1"), new(id="taken")], conn=caller.conn)
        assert refused.value.task_id == "taken"
        await caller.write()
        await store.create(new(id="ok-2"), conn=caller.conn)
        await caller.commit()
        assert await caller.orders() == (2 if begun else 1)
        assert sorted(t.id for t in (await store.list()).items) == ["ok-2", "taken"]

    @_BEGUN
    async def test_a_failed_create_adds_nothing_to_the_transaction(
        self, store: Store, caller_connections: CallerConnections, begun: bool
    ) -> None:
        caller = await self._open(caller_connections, begun)
        await store.create_many([new(id="ok-1"), new(id="taken")], conn=caller.conn)
        with pytest.raises(errors.AlreadyExists) as refused:
            await store.create_many([new(id="ok-2"), new(id="taken")], conn=caller.conn)
        assert refused.value.task_id == "taken"
        await caller.commit()
        assert sorted(t.id for t in (await store.list()).items) == ["ok-1", "taken"]
