"""Single creates on SQLite under load: those that queue up while the connection's thread is busy go together in one
transaction (group commit in the client), and each caller still gets its own answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import taskstore
from taskstore import NewTask

from .test_single_creates import _coalescer


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tasks.db'}"


def test_concurrent_single_creates_go_together_in_fewer_transactions(url: str) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            alone = await store.create(NewTask("q", "k", {"n": -1}))  # nothing on its way: it leaves at once, alone
            assert (_coalescer(store).batches, _coalescer(store).rows) == (1, 1)
            tasks = await asyncio.gather(*(store.create(NewTask("q", "k", {"n": i})) for i in range(200)))
            assert [t.args for t in tasks] == [{"n": i} for i in range(200)]
            assert len({t.id for t in tasks}) == 200
            assert _coalescer(store).rows == 201
            assert _coalescer(store).batches <= 1 + 2  # one alone, then one batch in flight and what queued behind it
            seqs = [t.seq for t in tasks]
            assert seqs == sorted(seqs)
            assert alone.seq < seqs[0]
            assert await store.count() == 201
            stored = await store.get(tasks[7].id)
            assert stored.args == {"n": 7}
            assert stored.seq == tasks[7].seq
            assert stored.created_at == tasks[7].created_at

    asyncio.run(scenario())
