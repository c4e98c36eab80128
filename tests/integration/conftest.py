"""Fixtures shared by the process tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store for real worker processes: a SQLite file, or a schema of its own on the tests' PostgreSQL."""
    if request.param == "postgres":
        from ..postgres_server import new_schema, with_schema

        return with_schema(request.getfixturevalue("postgres_db"), new_schema())
    return f"sqlite:///{tmp_path / 'store.db'}"
