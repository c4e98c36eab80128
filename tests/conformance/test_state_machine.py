"""Random operations against a model, on every embedded backend (max_examples per the Hypothesis profile)."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import settings

from taskstore.testing.statemachine import remove_sqlite_dir, store_state_machine


def _sqlite_url() -> str:
    return f"sqlite:///{tempfile.mkdtemp(prefix='taskstore-sm-')}/tasks.db"


MemoryMachine = store_state_machine(lambda: "memory://")
MemoryMachine.TestCase.settings = settings(MemoryMachine.TestCase.settings, stateful_step_count=30)
TestMemoryStateMachine = MemoryMachine.TestCase

SQLiteMachine = store_state_machine(_sqlite_url, remove_sqlite_dir)
SQLiteMachine.TestCase.settings = settings(SQLiteMachine.TestCase.settings, stateful_step_count=30)
TestSQLiteStateMachine = SQLiteMachine.TestCase


def _postgres_machine() -> type:
    from ..postgres_server import new_schema, with_schema

    urls: dict[str, str] = {}

    def url() -> str:
        return with_schema(urls["db"], new_schema())

    machine = store_state_machine(url)
    machine.TestCase.settings = settings(
        machine.TestCase.settings, stateful_step_count=30, max_examples=min(machine.TestCase.settings.max_examples, 100)
    )
    return machine, urls


PostgresMachine, _pg_urls = _postgres_machine()


class TestPostgresStateMachine(PostgresMachine.TestCase):  # type: ignore[misc, valid-type]
    @pytest.fixture(autouse=True)
    def _database(self, postgres_db: str) -> None:
        _pg_urls["db"] = postgres_db
