"""Random operations against a model, on every embedded backend (max_examples per the Hypothesis profile)."""

from __future__ import annotations

import tempfile

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
