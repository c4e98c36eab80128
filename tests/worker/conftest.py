"""Every in-process worker test runs on each backend: memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from taskstore import App, FakeClock


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        from ..postgres_server import new_schema, with_schema

        return with_schema(request.getfixturevalue("postgres_db"), new_schema())
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'app.db'}"


@pytest_asyncio.fixture
async def app(url: str) -> AsyncIterator[App]:
    the_app = App(url)
    yield the_app
    await the_app.aclose()


@pytest_asyncio.fixture
async def clocked(url: str) -> AsyncIterator[tuple[App, FakeClock]]:
    """An App on a FakeClock: the tests move time on for retry delays and leases."""
    clock = FakeClock()
    the_app = App(url, clock=clock)
    yield the_app, clock
    await the_app.aclose()
