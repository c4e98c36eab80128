"""Bulk enqueue on PostgreSQL past one statement: a batch larger than ``_INSERT_CHUNK`` goes by COPY, made in chunks,
in one transaction. Still all-or-nothing, in the batch's order, counted once, unique keys as in one statement."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import taskstore
from taskstore import NewTask, State, Task, errors
from taskstore.backends.postgres import driver as pg_backend
from taskstore.retry import Exponential

from ..postgres_server import new_schema, with_schema

CHUNK = 7  # small, so that a batch of a few dozen spans many chunks; the path is the one 10,000 tasks take


@pytest.fixture
def url(postgres_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(pg_backend, "_INSERT_CHUNK", CHUNK)
    return with_schema(postgres_db, new_schema())


def _run(url: str, scenario: Callable[[taskstore.Store], Awaitable[None]]) -> None:
    async def go() -> None:
        async with taskstore.open(url) as store:
            await scenario(store)

    asyncio.run(go())


async def _live(store: taskstore.Store) -> dict[State, int]:
    """The kept counts (migration 11's statement triggers), folded: what the overview shows."""
    return {state: n for q in await store.list_queues() if q.name == "q" for state, n in q.counts.items() if n}


def test_a_batch_of_many_chunks_goes_in_whole_in_order(url: str) -> None:
    async def scenario(store: taskstore.Store) -> None:
        n = 5 * CHUNK + 3
        tasks = await store.create_many([NewTask("q", "k", {"i": i}) for i in range(n)])
        assert [t.args for t in tasks] == [{"i": i} for i in range(n)]
        seqs = [t.seq for t in tasks]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == n
        assert len({t.created_at for t in tasks}) == 1  # one transaction: one clock
        stored = {t.id: t for t in await store.list(limit=1000)}
        assert set(stored) == {t.id for t in tasks}
        for task in tasks:
            assert stored[task.id].seq == task.seq
            assert stored[task.id].created_at == task.created_at
            assert stored[task.id].args == task.args
        assert await _live(store) == {State.QUEUED: n}  # the count trigger fired once per chunk, each counted

    _run(url, scenario)


def test_a_taken_id_in_a_late_chunk_fails_the_whole_batch(url: str) -> None:
    async def scenario(store: taskstore.Store) -> None:
        first = await store.create(NewTask("q", "k", 0))
        batch = [NewTask("q", "k", i) for i in range(3 * CHUNK)]
        batch.append(NewTask("q", "k", "again", id=first.id))
        batch += [NewTask("q", "k", i) for i in range(CHUNK)]
        with pytest.raises(errors.AlreadyExists) as raised:
            await store.create_many(batch)
        assert first.id in str(raised.value)
        assert await store.count() == 1
        assert await _live(store) == {State.QUEUED: 1}
        again = await store.create_many([NewTask("q", "k", i) for i in range(2 * CHUNK + 1)])  # the pool is fine
        assert len(again) == 2 * CHUNK + 1

    _run(url, scenario)


class _Unencodable:
    """A payload the JSON codec refuses."""


@pytest.mark.parametrize(
    ("bad", "raised"),
    [
        (NewTask("q", "k", {"x": _Unencodable()}), errors.InvalidTask),  # refused while its chunk is encoded
        (NewTask("q", "k", {"context": 1}, context={"x": _Unencodable()}), errors.InvalidTask),
        ("not a task", errors.InvalidTask),
        (NewTask("q", "k", "twice", id="twice"), errors.AlreadyExists),  # the id of the batch's first row
    ],
    ids=["payload", "context", "not-a-task", "repeated-id"],
)
@pytest.mark.parametrize("keys", ["plain", "distinct-keys", "repeated-keys"])
def test_a_bad_task_in_a_late_chunk_leaves_nothing(url: str, bad: Any, raised: type[Exception], keys: str) -> None:
    """The store validates each chunk only while the one before is being inserted; a bad one still undoes all."""

    def key(i: int) -> str | None:
        return None if keys == "plain" else f"key-{i % CHUNK if keys == 'repeated-keys' else i}"

    async def scenario(store: taskstore.Store) -> None:
        batch: list[Any] = [NewTask("q", "k", 0, id="twice", unique_key=key(0))]
        batch += [NewTask("q", "k", i, unique_key=key(i)) for i in range(1, 4 * CHUNK)]
        batch.append(bad)
        batch += [NewTask("q", "k", i, unique_key=key(i)) for i in range(4 * CHUNK, 5 * CHUNK)]
        with pytest.raises(raised):
            await store.create_many(batch)
        assert await store.count() == 0
        assert await _live(store) == {}
        # The pool is fine, and the keys were let go with the transaction.
        again = await store.create_many([NewTask("q", "k", i, unique_key=key(i)) for i in range(2 * CHUNK + 1)])
        assert all(task.args == i for i, task in enumerate(again) if keys != "repeated-keys" or i < CHUNK)
        assert await store.count() == len({t.id for t in again})

    _run(url, scenario)


def test_a_task_expiring_before_its_creation_in_a_late_chunk_is_refused(url: str) -> None:
    async def scenario(store: taskstore.Store) -> None:
        past = store.now() - timedelta(seconds=1)
        batch = [NewTask("q", "k", i) for i in range(4 * CHUNK)] + [NewTask("q", "k", "old", expires_at=past)]
        with pytest.raises(errors.InvalidTask, match="not in the future"):
            await store.create_many(batch)
        assert await store.count() == 0

    _run(url, scenario)


def test_a_row_the_server_refuses_in_a_late_chunk_leaves_nothing(url: str, postgres_db: str) -> None:
    schema = url.rsplit("schema=", 1)[1]

    async def scenario(store: taskstore.Store) -> None:
        with psycopg.connect(postgres_db, autocommit=True) as admin:  # a user's own rule on the table
            admin.execute(
                psycopg.sql.SQL("ALTER TABLE {}.tasks ADD CONSTRAINT no_bad CHECK (kind <> 'bad')").format(
                    psycopg.sql.Identifier(schema)
                )
            )
        batch = [NewTask("q", "k", i) for i in range(4 * CHUNK)] + [NewTask("q", "bad")]
        with pytest.raises(errors.BackendUnavailable):
            await store.create_many(batch)
        assert await store.count() == 0
        assert await _live(store) == {}

    _run(url, scenario)


def test_unique_and_plain_mixed_across_chunks(url: str) -> None:
    async def scenario(store: taskstore.Store) -> None:
        held = await store.create(NewTask("q", "k", "holder", unique_key="held"))
        batch: list[NewTask] = []
        for i in range(4 * CHUNK):
            if i % 3 == 0:
                batch.append(NewTask("q", "k", i, unique_key=f"key-{i % 9}"))  # each key repeated in the batch
            elif i % 3 == 1:
                batch.append(NewTask("q", "k", i))
            else:
                batch.append(NewTask("q", "k", i, unique_key="held" if i == 2 else f"own-{i}"))
        tasks = await store.create_many(batch)
        assert len(tasks) == len(batch)
        first_of: dict[str, Any] = {}
        for new, task in zip(batch, tasks, strict=True):
            if new.unique_key == "held":
                assert task.id == held.id
                assert task.args == "holder"
            elif new.unique_key is not None and new.unique_key in first_of:
                assert task is first_of[new.unique_key]  # a repeated key: its first row's task
            else:
                assert task.args == new.args
                if new.unique_key is not None:
                    first_of[new.unique_key] = task
        inserted = {t.id for t in tasks if t.id != held.id}
        assert await store.count() == len(inserted) + 1
        seqs = list(dict.fromkeys(t.seq for t in tasks if t.id in inserted))  # a repeated key's task once
        assert seqs == sorted(seqs)  # the inserted ones, in the batch's order
        assert len(seqs) == len(inserted)
        assert await _live(store) == {State.QUEUED: len(inserted) + 1}

    _run(url, scenario)


def test_payloads_with_odd_bytes_round_trip_across_chunks(url: str) -> None:
    odd = ["\x00nul", "é\u2028\ud7ff", "\\x00", "'; DROP TABLE tasks; --", "🙂" * 50, "", "\n\r\t"]

    async def scenario(store: taskstore.Store) -> None:
        batch = [NewTask("q", "k", {"s": s, "i": i}) for i in range(2 * CHUNK) for s in odd]
        tasks = await store.create_many(batch)
        for task in tasks:
            assert (await store.get(task.id)).args == task.args

    _run(url, scenario)


def test_a_batch_of_none_is_refused(url: str) -> None:
    async def scenario(store: taskstore.Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.create_many([])
        with pytest.raises(errors.InvalidTask):
            await store.create_many(iter([]))

    _run(url, scenario)


def test_a_batch_from_a_generator_with_given_and_fresh_ids(url: str) -> None:
    async def scenario(store: taskstore.Store) -> None:
        given = {3: "given-3", 2 * CHUNK: "given-late"}
        tasks = await store.create_many(NewTask("q", "k", i, id=given.get(i)) for i in range(3 * CHUNK))
        assert [t.args for t in tasks] == list(range(3 * CHUNK))
        assert tasks[3].id == "given-3"
        assert tasks[2 * CHUNK].id == "given-late"
        fresh = [t.id for i, t in enumerate(tasks) if i not in given]
        assert fresh == sorted(fresh)
        assert len(set(fresh)) == len(fresh)

    _run(url, scenario)


def test_each_option_alone_and_together_is_stored_as_returned(url: str) -> None:
    """A row is sent as long as its options need: each option alone (the last one too), all of them, none."""

    async def scenario(store: taskstore.Store) -> None:
        now = store.now()
        options: list[dict[str, Any]] = [
            {},
            {"priority": -4},
            {"max_attempts": 9},
            {"processing_timeout": 12.5},
            {"unique_key": "u-alone"},
            {"unique_key": "u-for", "unique_for": 60},
            {"unique_key": "u-states", "unique_states": {"queued", "claimed"}},
            {"run_at": now + timedelta(minutes=3)},
            {"context": {"k": "v"}},
            {"reference_id": "ref"},
            {"retry": Exponential(base=3.0)},
            {"recurring_id": "rec"},
            {"group_id": "grp"},
            {"concurrency_key": "tenant"},
            {"expires_at": now + timedelta(hours=2)},
        ]
        everything: dict[str, Any] = {}
        for option in options:
            everything.update(option)
        everything["unique_key"] = "u-all"
        options.append(everything)
        batch = [NewTask("q", "k", i, **option) for i, option in enumerate(options * 2)]  # past a chunk
        for i, new in enumerate(batch[len(options) :]):
            if new.unique_key is not None:
                batch[len(options) + i] = dataclasses.replace(new, unique_key=f"{new.unique_key}-2")
        tasks = await store.create_many(batch)
        fields = [f.name for f in dataclasses.fields(Task) if f.name not in {"args", "result", "claim", "failures"}]
        for new, task in zip(batch, tasks, strict=True):
            stored = await store.get(task.id)
            assert stored.args == new.args
            for name in fields:
                assert getattr(stored, name) == getattr(task, name), (new, name)
            assert task.unique_key == new.unique_key
            assert task.concurrency_key == new.concurrency_key
            assert task.expires_at == new.expires_at

    _run(url, scenario)


def _spy_plain_attempts(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each plain insert of a unique batch (the savepoint's attempt): True when it went in."""
    attempts: list[bool] = []
    plain = pg_backend.PostgresDriver._insert_copied

    async def spy(self: Any, conn: Any, rows: Any, count: int) -> list[Task]:
        try:
            created = await plain(self, conn, rows, count)
        except psycopg.errors.UniqueViolation:
            attempts.append(False)
            raise
        attempts.append(True)
        return created

    monkeypatch.setattr(pg_backend.PostgresDriver, "_insert_copied", spy)
    return attempts


def test_distinct_new_keys_past_a_chunk_go_in_by_the_plain_insert_and_still_hold(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = _spy_plain_attempts(monkeypatch)

    async def scenario(store: taskstore.Store) -> None:
        batch = [NewTask("q", "k", i, unique_key=f"key-{i}") for i in range(4 * CHUNK)]
        tasks = await store.create_many(batch)
        assert attempts == [True]
        assert [t.args for t in tasks] == list(range(4 * CHUNK))
        assert await store.count() == len(batch)
        again = await store.create_many([NewTask("q", "k", "again", unique_key=f"key-{i}") for i in range(4 * CHUNK)])
        assert attempts == [True, False]  # every key held: the attempt is undone, the holders answer
        assert [t.id for t in again] == [t.id for t in tasks]
        assert await store.count() == len(batch)
        assert await _live(store) == {State.QUEUED: len(batch)}

    _run(url, scenario)


def test_one_held_key_late_in_a_batch_of_new_keys_gets_its_holder(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = _spy_plain_attempts(monkeypatch)

    async def scenario(store: taskstore.Store) -> None:
        holder = await store.create(NewTask("q", "k", "holder", unique_key="late"))
        batch = [NewTask("q", "k", i, unique_key=f"key-{i}") for i in range(4 * CHUNK)]
        batch.append(NewTask("q", "k", "late", unique_key="late"))
        tasks = await store.create_many(batch)
        assert attempts == [False]
        assert tasks[-1].id == holder.id
        assert [t.args for t in tasks[:-1]] == list(range(4 * CHUNK))
        assert await store.count() == len(batch)  # the holder and the new ones, none twice
        assert await _live(store) == {State.QUEUED: len(batch)}  # the undone attempt's counts undone with it
        listed = [t.id for t in await store.list(limit=1000)]  # nothing paged past: the seqs after the attempt
        assert sorted(listed) == sorted([holder.id, *(t.id for t in tasks[:-1])])
        seqs = [t.seq for t in tasks[:-1]]
        assert seqs == sorted(seqs)

    _run(url, scenario)


def test_a_taken_id_late_in_a_batch_of_new_keys_fails_it_whole(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = _spy_plain_attempts(monkeypatch)

    async def scenario(store: taskstore.Store) -> None:
        first = await store.create(NewTask("q", "k", 0))
        batch = [NewTask("q", "k", i, unique_key=f"key-{i}") for i in range(4 * CHUNK)]
        batch.append(NewTask("q", "k", "again", id=first.id, unique_key="free"))
        with pytest.raises(errors.AlreadyExists):
            await store.create_many(batch)
        assert attempts == [False]
        assert await store.count() == 1
        assert await _live(store) == {State.QUEUED: 1}

    _run(url, scenario)
