"""The narrow SQLite write statements store exactly what the full update would."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from taskstore import NewTask, transitions
from taskstore.backends._sql import load_script
from taskstore.backends.sqlite._queries import Q
from taskstore.backends.sqlite._rows import insert_params, task_from_row, update_params, write_statement
from taskstore.backends.sqlite.driver import _MIGRATIONS, _statements
from taskstore.model import Task

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _db(path: Path, task: Task) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for version in sorted(_MIGRATIONS):
        for statement in _statements(load_script("taskstore.backends.sqlite", _MIGRATIONS[version])):
            conn.execute(statement)
    conn.execute(Q["insert_task"], insert_params(task, b'{"a":1}'))
    return conn


def test_narrow_writes_match_the_full_update(tmp_path: Path) -> None:
    task = transitions.create(NewTask("q", "k", {"a": 1}), task_id="t1", now=T0, seq=1)
    narrow, full = _db(tmp_path / "narrow.db", task), _db(tmp_path / "full.db", task)
    stored = task_from_row(narrow.execute(Q["get_task"], ("t1",)).fetchone())
    claimed = transitions.claim(stored, worker_id="w", token="tok", now=T0 + timedelta(seconds=1))
    assert claimed.claim is not None
    reported = transitions.report_in(claimed, claimed.claim, now=T0 + timedelta(seconds=2), data={"pct": 5})
    done = transitions.mark_done(reported, claimed.claim, now=T0 + timedelta(seconds=3), value=b'"ok"')
    used = []
    for old, new in [(stored, claimed), (claimed, reported), (reported, done)]:
        name, params = write_statement(old, new)
        used.append(name)
        assert narrow.execute(Q[name], params).rowcount == 1
        assert full.execute(Q["update_task"], update_params(new, old.version)).rowcount == 1
        assert narrow.execute("SELECT * FROM tasks").fetchall() == full.execute("SELECT * FROM tasks").fetchall()
    assert used == ["write_claim", "write_report", "write_done"]


def test_other_changes_take_the_full_update() -> None:
    task = transitions.create(NewTask("q", "k"), task_id="t1", now=T0, seq=1)
    cancelled = transitions.cancel(task, now=T0)
    assert write_statement(task, cancelled)[0] == "update_task"


@pytest.mark.asyncio
async def test_bulk_claim_and_completion_match_the_pure_transitions(tmp_path: Path) -> None:
    """The SQL claim and the staged completion set exactly what transitions.claim / mark_done set."""
    import taskstore
    from taskstore import FakeClock, State
    from taskstore.backends.sqlite import SQLiteDriver

    clock = FakeClock(T0)
    async with taskstore.open(f"sqlite:///{tmp_path / 'bulk.db'}", clock=clock) as store:
        created = await store.create_many([NewTask("q", "k", {"i": i}, processing_timeout=7.5) for i in range(3)])
        clock.advance(1.25)
        claimed = await store.claim("w", ["q"], limit=3)
        assert [t.id for t in claimed] == [t.id for t in created]
        for before, after in zip(created, claimed, strict=True):
            stored_before = before.replace(args=after.args)
            expected = transitions.claim(stored_before, worker_id="w", token=after.claim.token, now=clock.now())  # type: ignore[union-attr]
            assert after == expected
            assert after.seq == before.seq
        clock.advance(2)
        outcomes = await store.mark_done_many([(t, {"n": i}) for i, t in enumerate(claimed)])
        driver = store._driver
        assert isinstance(driver, SQLiteDriver)
        for i, (before, after) in enumerate(zip(claimed, outcomes, strict=True)):
            assert isinstance(after, Task)
            expected = transitions.mark_done(before, before.claim, now=clock.now(), value=b'{"n":%d}' % i)  # type: ignore[arg-type]
            assert after.replace(result=None) == expected.replace(result=None)
            assert after.result is not None
            assert after.result.value == {"n": i}
            assert after.result.at == clock.now()
            assert after.state is State.DONE
